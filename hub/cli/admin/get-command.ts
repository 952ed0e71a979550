import type { Command } from 'commander';
import {
  Binding,
  GetClusterResponse,
  ListBindingsResponse,
  ListClustersResponse,
  TargetGroupStatus,
} from '../../../shared/index.js';
import {
  adminCommand,
  runAdminCommand,
  type AdminCommandFlags,
  type AdminCommandScope,
  type CliContext,
} from './admin-command.js';
import {
  bindingsTable,
  clusterDetail,
  clustersTable,
  targetGroupDiff,
  targetGroupsTable,
} from './admin-views.js';
import { CliCommandError, CliUsageError } from './cli-errors.js';
import { writeStructured } from './cli-output.js';
import { targetGroupArns, targetGroupStatuses } from './hub-overview.js';

/** The kinds `tgfed get` and `tgfed delete` know. */
export type ResourceKind = 'clusters' | 'bindings' | 'targetgroups';

const KIND_ALIASES: Readonly<Record<string, ResourceKind>> = {
  cluster: 'clusters',
  clusters: 'clusters',
  binding: 'bindings',
  bindings: 'bindings',
  targetgroup: 'targetgroups',
  targetgroups: 'targetgroups',
  'target-group': 'targetgroups',
  'target-groups': 'targetgroups',
  tg: 'targetgroups',
  tgs: 'targetgroups',
};

/** `clusters`, `cluster`, `tg`, ... → the kind; anything else is a usage error. */
export function resourceKind(text: string): ResourceKind {
  const kind = KIND_ALIASES[text.toLowerCase()];
  if (kind === undefined) {
    throw new CliUsageError(
      `unknown kind "${text}": use clusters, bindings or targetgroups (or cluster, binding, tg)`,
    );
  }
  return kind;
}

async function getClusters(scope: AdminCommandScope, name: string | undefined): Promise<void> {
  const { api, io, output } = scope;
  if (name === undefined) {
    const response = await api.listClusters();
    if (output === 'table') io.stdout.write(clustersTable(response.clusters, io.now()));
    else writeStructured(io, output, ListClustersResponse.toJSON(response));
    return;
  }
  const response = await api.getCluster({ id: name });
  if (output === 'table') io.stdout.write(clusterDetail(response, io.now()));
  else writeStructured(io, output, GetClusterResponse.toJSON(response));
}

async function getBindings(scope: AdminCommandScope, name: string | undefined): Promise<void> {
  const { api, io, output } = scope;
  const response = await api.listBindings();
  if (name === undefined) {
    if (output === 'table') io.stdout.write(bindingsTable(response.bindings, io.now()));
    else writeStructured(io, output, ListBindingsResponse.toJSON(response));
    return;
  }
  const binding = response.bindings.find((b) => b.name === name);
  if (binding === undefined) throw new CliCommandError(`binding ${name} not found`, 1);
  if (output === 'table') io.stdout.write(bindingsTable([binding], io.now()));
  else writeStructured(io, output, Binding.toJSON(binding));
}

async function getTargetGroups(scope: AdminCommandScope, arn: string | undefined): Promise<void> {
  const { api, io, output } = scope;
  if (arn === undefined) {
    const statuses = await targetGroupStatuses(api, await targetGroupArns(api));
    if (output === 'table') io.stdout.write(targetGroupsTable(statuses, io.now()));
    else
      writeStructured(io, output, {
        targetGroups: statuses.map((s) => TargetGroupStatus.toJSON(s)),
      });
    return;
  }
  const { status } = await api.getTargetGroupStatus({ arn });
  if (status === undefined) throw new CliCommandError(`target group ${arn} not found`, 1);
  if (output === 'table') io.stdout.write(targetGroupDiff(status, io.now()));
  else writeStructured(io, output, TargetGroupStatus.toJSON(status));
}

/**
 * `tgfed get clusters|bindings|targetgroups [name]`: the list as a table (or the List response
 * message as JSON/YAML), or one item. `targetgroups` lists every group a binding feeds, with
 * its status.
 */
export function getCommand(ctx: CliContext): Command {
  return adminCommand('get', 'List clusters, bindings or target groups, or show one')
    .argument('<kind>', 'clusters, bindings or targetgroups (also: cluster, binding, tg)')
    .argument('[name]', 'a cluster id, binding name or target group ARN')
    .addHelpText(
      'after',
      `
Examples:
  tgfed get clusters
  tgfed get bindings web -o yaml
  tgfed get targetgroups -o json`,
    )
    .action(async (kindText: string, name: string | undefined, flags: AdminCommandFlags) => {
      await runAdminCommand(ctx, 'get', flags, async (scope) => {
        switch (resourceKind(kindText)) {
          case 'clusters':
            return getClusters(scope, name);
          case 'bindings':
            return getBindings(scope, name);
          case 'targetgroups':
            return getTargetGroups(scope, name);
        }
      });
    });
}

import * as grpc from '@grpc/grpc-js';
import { Alert, Cluster, ClusterState, TargetGroupStatus } from '../../../shared/index.js';
import type { AdminApi } from './admin-connection.js';
import { targetGroupArnsOf } from '../../federation/subscription-resolver.js';
import { alertsTable, clusterStateWord, outcomeWord } from './admin-views.js';
import { hasStatus } from './cli-errors.js';
import { age, renderTable } from './cli-output.js';

/** How many GetTargetGroupStatus calls run at once when listing every group. */
const STATUS_CALLS_IN_FLIGHT = 8;

/** Every target group some binding feeds, each once, in binding order. */
export async function targetGroupArns(api: AdminApi): Promise<string[]> {
  const { bindings } = await api.listBindings();
  return [...new Set(bindings.flatMap(targetGroupArnsOf))];
}

/**
 * The status of each group (GetTargetGroupStatus), a few calls at a time. A group whose binding
 * went away meanwhile (NOT_FOUND) is left out.
 */
export async function targetGroupStatuses(
  api: AdminApi,
  arns: readonly string[],
): Promise<TargetGroupStatus[]> {
  const results: (TargetGroupStatus | undefined)[] = new Array<TargetGroupStatus | undefined>(
    arns.length,
  );
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < arns.length) {
      const index = next++;
      const arn = arns[index] as string;
      try {
        results[index] = (await api.getTargetGroupStatus({ arn })).status;
      } catch (err) {
        if (!hasStatus(err, grpc.status.NOT_FOUND)) throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(STATUS_CALLS_IN_FLIGHT, arns.length) }, lane));
  return results.filter((s): s is TargetGroupStatus => s !== undefined);
}

/** Everything `tgfed status` shows. */
export interface HubOverview {
  readonly clusters: readonly Cluster[];
  /** Undefined when the hub does not serve GetTargetGroupStatus (UNIMPLEMENTED). */
  readonly targetGroups: readonly TargetGroupStatus[] | undefined;
  /** Undefined when the hub does not serve ListAlerts (UNIMPLEMENTED). */
  readonly alerts: readonly Alert[] | undefined;
}

async function unlessUnimplemented<T>(work: Promise<T>): Promise<T | undefined> {
  try {
    return await work;
  } catch (err) {
    if (hasStatus(err, grpc.status.UNIMPLEMENTED)) return undefined;
    throw err;
  }
}

/** Clusters, every bound target group's status and the firing alerts, fetched concurrently. */
export async function collectHubOverview(api: AdminApi): Promise<HubOverview> {
  const [clusters, targetGroups, alerts] = await Promise.all([
    api.listClusters().then((r) => r.clusters),
    unlessUnimplemented(targetGroupArns(api).then((arns) => targetGroupStatuses(api, arns))),
    unlessUnimplemented(api.listAlerts().then((r) => r.alerts)),
  ]);
  return { clusters, targetGroups, alerts };
}

/**
 * What needs an operator's attention, one line each: a cluster not connected, a group out of
 * sync or with a held operation, a firing alert. Empty means `tgfed status` exits 0.
 */
export function attentionItems(overview: HubOverview): string[] {
  const items: string[] = [];
  for (const c of overview.clusters) {
    if (c.state !== ClusterState.CLUSTER_STATE_CONNECTED) {
      items.push(`cluster ${c.id} is ${clusterStateWord(c.state)}`);
    }
  }
  for (const g of overview.targetGroups ?? []) {
    const arn = g.targetGroup?.arn ?? '?';
    if (!g.inSync) items.push(`target group ${arn} is not in sync`);
    for (const h of g.heldOperations) items.push(`held operation ${h.id} on ${arn}`);
  }
  for (const a of overview.alerts ?? []) items.push(`alert ${a.name} is firing`);
  return items;
}

/** `tgfed status -o json|yaml`: the messages in their JSON mapping, plus the verdict. */
export function overviewJson(hub: string, overview: HubOverview): unknown {
  return {
    hub,
    healthy: attentionItems(overview).length === 0,
    attention: attentionItems(overview),
    clusters: overview.clusters.map((c) => Cluster.toJSON(c)),
    targetGroupsServed: overview.targetGroups !== undefined,
    targetGroups: (overview.targetGroups ?? []).map((g) => TargetGroupStatus.toJSON(g)),
    alertsServed: overview.alerts !== undefined,
    alerts: (overview.alerts ?? []).map((a) => Alert.toJSON(a)),
  };
}

function countsByWord(words: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const w of words) counts.set(w, (counts.get(w) ?? 0) + 1);
  return [...counts].map(([w, n]) => `${n} ${w}`).join(', ');
}

/** `tgfed status`: one screen of clusters, target groups and alerts. */
export function overviewText(hub: string, overview: HubOverview, nowMs: number): string {
  let text = `hub ${hub}\n\n`;
  const clusters = overview.clusters;
  text += `clusters: ${clusters.length === 0 ? 'none' : countsByWord(clusters.map((c) => clusterStateWord(c.state)))}\n`;
  if (clusters.length > 0) {
    text += renderTable(
      ['cluster', 'state', 'endpoints', 'last-seen'],
      clusters.map((c) => [
        c.id,
        clusterStateWord(c.state),
        String(c.endpointCount),
        age(c.lastSeenUnixMs, nowMs),
      ]),
      '  ',
    );
  }
  text += '\n';
  const groups = overview.targetGroups;
  if (groups === undefined) {
    text += 'target groups: status not served by this hub\n';
  } else {
    const inSync = groups.filter((g) => g.inSync).length;
    text += `target groups: ${groups.length === 0 ? 'none bound' : `${inSync} of ${groups.length} in sync`}\n`;
    if (groups.length > 0) {
      text += renderTable(
        ['target-group', 'in-sync', 'desired', 'actual', 'owned', 'last-outcome', 'held'],
        groups.map((g) => [
          g.targetGroup?.arn ?? '',
          g.inSync ? 'yes' : 'no',
          String(g.desiredTargets),
          String(g.actualTargets),
          String(g.ownedTargets),
          outcomeWord(g.lastOutcome),
          g.heldOperations.map((h) => h.id).join(','),
        ]),
        '  ',
      );
    }
  }
  text += '\n';
  if (overview.alerts === undefined) {
    text += 'alerts: not served by this hub\n';
  } else if (overview.alerts.length === 0) {
    text += 'alerts: none firing\n';
  } else {
    text += `alerts: ${overview.alerts.length} firing\n${alertsTable(overview.alerts, nowMs, '  ')}`;
  }
  const items = attentionItems(overview);
  text += `\n${items.length === 0 ? 'all in sync' : `needs attention: ${items.length} (${items.slice(0, 3).join('; ')}${items.length > 3 ? '; …' : ''})`}\n`;
  return text;
}

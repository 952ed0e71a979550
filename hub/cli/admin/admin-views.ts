import {
  AlertSeverity,
  ClusterState,
  LabelSelectorOperator,
  ReconcileOutcome,
  type Alert,
  type Binding,
  type Cluster,
  type GetClusterResponse,
  type LabelSelector,
  type TargetGroupStatus,
} from '../../../shared/index.js';
import { targetGroupArnsOf } from '../../federation/subscription-resolver.js';
import { age, enumWord, labelsText, renderTable } from './cli-output.js';

// The human (table) views of the admin API's messages. Pure functions of the messages and the
// clock, so the formatting is unit-tested without a hub.

/** `connected`, `stale`, ... */
export function clusterStateWord(state: ClusterState): string {
  return enumWord(ClusterState[state] ?? 'UNRECOGNIZED', 'CLUSTER_STATE_');
}

/** `in-sync`, `applied`, `held`, ...; `-` before the first reconcile. */
export function outcomeWord(outcome: ReconcileOutcome): string {
  if (outcome === ReconcileOutcome.RECONCILE_OUTCOME_UNSPECIFIED) return '-';
  return enumWord(ReconcileOutcome[outcome] ?? 'UNRECOGNIZED', 'RECONCILE_OUTCOME_');
}

/** `critical`, `warning`, `info`. */
export function severityWord(severity: AlertSeverity): string {
  return enumWord(AlertSeverity[severity] ?? 'UNRECOGNIZED', 'ALERT_SEVERITY_');
}

/** A label selector the way kubectl writes one: `env=prod,region in (eu,us),!canary`. */
export function labelSelectorText(selector: LabelSelector | undefined): string {
  if (selector === undefined) return '';
  const parts = [labelsText(selector.matchLabels)].filter((p) => p !== '');
  for (const e of selector.matchExpressions) {
    switch (e.operator) {
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_IN:
        parts.push(`${e.key} in (${e.values.join(',')})`);
        break;
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_NOT_IN:
        parts.push(`${e.key} notin (${e.values.join(',')})`);
        break;
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_EXISTS:
        parts.push(e.key);
        break;
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_DOES_NOT_EXIST:
        parts.push(`!${e.key}`);
        break;
      default:
        parts.push(`${e.key} ?`);
    }
  }
  return parts.join(',');
}

/** `shop/web`, `shop/*`, `*` plus `[app=web]` for a label selector. */
export function servicesText(binding: Binding): string {
  const s = binding.services;
  if (s === undefined) return '*';
  const name = `${s.namespace || '*'}/${s.name || '*'}`;
  const labels = labelSelectorText(s.labels);
  if (labels === '') return name === '*/*' ? '*' : name;
  return name === '*/*' ? `[${labels}]` : `${name}[${labels}]`;
}

/** The port's name or number. */
export function portText(binding: Binding): string {
  const port = binding.port?.port;
  if (port === undefined) return '';
  return port.$case === 'name' ? port.name : String(port.number);
}

/** `east,west`, `env=prod`, or `*` for every cluster. */
export function clustersText(binding: Binding): string {
  const c = binding.clusters;
  const parts = [...(c?.names ?? [])];
  const labels = labelSelectorText(c?.labels);
  if (labels !== '') parts.push(labels);
  return parts.length === 0 ? '*' : parts.join(' or ');
}

function targetText(binding: Binding): string {
  switch (binding.target?.$case) {
    case 'targetGroup':
      return binding.target.targetGroup.arn;
    case 'pool':
      return `pool of ${binding.target.pool.groups.length}: ${targetGroupArnsOf(binding).join(',')}`;
    default:
      return '';
  }
}

/** `get clusters`. */
export function clustersTable(clusters: readonly Cluster[], nowMs: number): string {
  return renderTable(
    ['name', 'state', 'services', 'endpoints', 'last-seen', 'hub', 'agent', 'labels'],
    clusters.map((c) => [
      c.id,
      clusterStateWord(c.state),
      String(c.serviceCount),
      String(c.endpointCount),
      age(c.lastSeenUnixMs, nowMs),
      c.hubId,
      c.agentVersion,
      labelsText(c.labels),
    ]),
  );
}

/** `get clusters <name>`: the cluster and the digests of its services. */
export function clusterDetail(detail: GetClusterResponse, nowMs: number): string {
  const c = detail.cluster;
  if (c === undefined) return '';
  const fields: [string, string][] = [
    ['cluster', c.id],
    ['state', clusterStateWord(c.state)],
    ['labels', labelsText(c.labels) || '-'],
    ['hub', c.hubId || '-'],
    ['agent', c.agentVersion || '-'],
    ['connected', c.connectedSinceUnixMs === 0 ? '-' : `${age(c.connectedSinceUnixMs, nowMs)} ago`],
    ['last seen', c.lastSeenUnixMs === 0 ? '-' : `${age(c.lastSeenUnixMs, nowMs)} ago`],
    ['services', String(c.serviceCount)],
    ['endpoints', String(c.endpointCount)],
    ['allowed CIDRs', c.allowedCidrs.join(', ') || '-'],
    ['last acked', String(c.lastAckedSequence)],
  ];
  const width = Math.max(...fields.map(([k]) => k.length));
  const head = fields.map(([k, v]) => `${k.padEnd(width)}   ${v}\n`).join('');
  if (detail.services.length === 0) return head;
  return `${head}\n${renderTable(
    ['service', 'digest'],
    detail.services.map((s) => [
      s.service === undefined ? '' : `${s.service.namespace}/${s.service.name}`,
      Buffer.from(s.digest).toString('hex'),
    ]),
  )}`;
}

/** `get bindings`. */
export function bindingsTable(bindings: readonly Binding[], nowMs: number): string {
  return renderTable(
    ['name', 'services', 'port', 'clusters', 'version', 'updated', 'target'],
    bindings.map((b) => [
      b.name,
      servicesText(b),
      portText(b),
      clustersText(b),
      String(b.version),
      age(b.updatedUnixMs, nowMs),
      targetText(b),
    ]),
  );
}

/** `get targetgroups`. */
export function targetGroupsTable(statuses: readonly TargetGroupStatus[], nowMs: number): string {
  return renderTable(
    [
      'target-group',
      'bindings',
      'desired',
      'actual',
      'owned',
      'in-sync',
      'last-outcome',
      'last-reconcile',
      'held',
      'conflicts',
    ],
    statuses.map((s) => [
      s.targetGroup?.arn ?? '',
      s.bindings.join(','),
      String(s.desiredTargets),
      String(s.actualTargets),
      String(s.ownedTargets),
      s.inSync ? 'yes' : 'no',
      outcomeWord(s.lastOutcome),
      age(s.lastReconcileUnixMs, nowMs),
      String(s.heldOperations.length),
      String(s.conflicts.length),
    ]),
  );
}

/** The firing alerts. */
export function alertsTable(alerts: readonly Alert[], nowMs: number, indent = ''): string {
  return renderTable(
    ['alert', 'severity', 'since', 'summary'],
    alerts.map((a) => [
      a.name,
      severityWord(a.severity),
      age(a.firingSinceUnixMs, nowMs),
      a.summary,
    ]),
    indent,
  );
}

/**
 * `diff`: desired (from the bindings and the clusters' endpoints), actual (in ELB, as the
 * workers last saw it) and owned (registered by tgfed) targets, with what stands in the way.
 */
export function targetGroupDiff(status: TargetGroupStatus, nowMs: number): string {
  const missing = Math.max(0, status.desiredTargets - status.actualTargets);
  const lines = [
    `target group   ${status.targetGroup?.arn ?? ''}`,
    `bindings       ${status.bindings.join(', ') || '-'}`,
    `in sync        ${status.inSync ? 'yes' : 'no'}`,
    `last reconcile ${
      status.lastReconcileUnixMs === 0
        ? 'never'
        : `${outcomeWord(status.lastOutcome)}, ${age(status.lastReconcileUnixMs, nowMs)} ago`
    }`,
  ];
  if (status.lastError !== '') lines.push(`last error     ${status.lastError}`);
  let text = `${lines.join('\n')}\n\n${renderTable(
    ['targets', 'count', 'meaning'],
    [
      ['desired', String(status.desiredTargets), 'endpoints the bindings select'],
      ['actual', String(status.actualTargets), 'registered in ELB (last seen by the workers)'],
      ['owned', String(status.ownedTargets), 'registered by tgfed (only these are deregistered)'],
    ],
  )}`;
  if (!status.inSync && missing > 0) {
    text += `\nat least ${missing} desired target(s) not registered yet\n`;
  }
  if (status.heldOperations.length > 0) {
    text += `\nheld by the mass-deregistration guard (release with: tgfed release <id>)\n${renderTable(
      ['id', 'deregistrations', 'of-targets', 'held-for', 'reason'],
      status.heldOperations.map((h) => [
        h.id,
        String(h.deregistrations),
        String(h.targetsBefore),
        age(h.heldSinceUnixMs, nowMs),
        h.reason,
      ]),
      '  ',
    )}`;
  }
  if (status.conflicts.length > 0) {
    text += `\nconflicts (one address announced by several clusters; registered once)\n${renderTable(
      ['target', 'clusters'],
      status.conflicts.map((c) => [c.target, c.clusters.join(',')]),
      '  ',
    )}`;
  }
  return text;
}

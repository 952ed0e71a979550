import { describe, expect, it } from 'vitest';
import {
  CidrRejectionWindow,
  HubAlertEvaluator,
  type HubAlertEvaluatorDeps,
  type RejectionCounters,
} from '../../../hub/alerts/index.js';
import type { ClusterStatus } from '../../../hub/federation/desired-targets.js';
import type { GroupDesiredState } from '../../../hub/federation/target-group-desired-state.js';
import type {
  HeldDeregistration,
  ReconcileRecord,
  TargetGroupRecord,
} from '../../../hub/reconcile/index.js';
import {
  AlertSeverity,
  Binding,
  ClusterState,
  type Alert,
  type Cluster,
  type TargetGroup,
} from '../../../shared/index.js';

const NOW = 1_800_000_000_000;
const GRACE_MS = 300_000;

function arn(n: number): string {
  return `arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web-${n}/000000000000000${n}`;
}

function definition(n: number, capacity = 0): TargetGroup {
  return {
    arn: arn(n),
    accountId: '111111111111',
    region: 'eu-west-1',
    roleArn: '',
    externalId: '',
    targetType: 'ip',
    capacity,
    availabilityZone: '',
  };
}

function cluster(id: string, state: ClusterState, lastSeenUnixMs = 0): Cluster {
  return {
    id,
    labels: {},
    state,
    agentVersion: '',
    sessionEpoch: new Uint8Array(0),
    hubId: '',
    connectedSinceUnixMs: 0,
    lastSeenUnixMs,
    serviceCount: 0,
    endpointCount: 0,
    allowedCidrs: [],
    lastAckedSequence: 0,
  };
}

function reconcile(overrides: Partial<ReconcileRecord>): ReconcileRecord {
  return {
    outcome: 'applied',
    reason: 'change',
    startedAtMs: NOW - 1_000,
    durationMs: 10,
    calls: { describe: 0, register: 1, deregister: 0 },
    registered: 1,
    deregistered: 0,
    desired: 1,
    actual: 1,
    owned: 1,
    waitingForCapacity: 0,
    deregistrationsBlocked: 0,
    invalidTargets: [],
    consecutiveFailures: 0,
    ...overrides,
  };
}

function record(options: {
  definition?: TargetGroup;
  present?: number;
  draining?: number;
  last?: ReconcileRecord;
  held?: HeldDeregistration;
}): TargetGroupRecord {
  const actual = new Map<string, 'healthy' | 'draining'>();
  for (let i = 0; i < (options.present ?? 0); i++) actual.set(`10.0.0.${i}:80`, 'healthy');
  for (let i = 0; i < (options.draining ?? 0); i++) actual.set(`10.0.1.${i}:80`, 'draining');
  return {
    definition: options.definition,
    actual,
    actualValid: true,
    describedAtMs: 0,
    nextDriftAtMs: 0,
    refreshRequested: false,
    owned: new Set(),
    last: options.last,
    held: options.held,
  };
}

function desired(n: number, conflicts: GroupDesiredState['conflicts'] = []): GroupDesiredState {
  return {
    targetGroupArn: arn(n),
    targetGroup: definition(n),
    bindings: [`b${n}`],
    bindingsRevision: 1,
    targets: new Map(),
    conflicts,
    deregistrationsBlocked: false,
    awaitingResyncClusters: [],
    initialSyncClusters: [],
    overflow: [],
    unsettledPoolGroups: [],
    resolvedAtMs: NOW,
    unsettledProbes: new Map(),
    basisAtMs: NOW,
  };
}

function bindingTo(n: number): Binding {
  return Binding.fromPartial({
    name: `b${n}`,
    target: { $case: 'targetGroup', targetGroup: definition(n) },
  });
}

/** An evaluator over in-memory state: clusters, bound groups (resolved) and worker records. */
function evaluator(state: {
  clusters?: Cluster[];
  awaitingResync?: string[];
  bound?: Map<number, GroupDesiredState>;
  records?: Map<string, TargetGroupRecord>;
  rejections?: CidrRejectionWindow;
}): HubAlertEvaluator {
  const bound = state.bound ?? new Map<number, GroupDesiredState>();
  const records = state.records ?? new Map<string, TargetGroupRecord>();
  const deps: HubAlertEvaluatorDeps = {
    clusters: { list: () => Promise.resolve(state.clusters ?? []) },
    resync: {
      status: (id): ClusterStatus => ({
        connection: 'connected',
        awaitingResync: (state.awaitingResync ?? []).includes(id),
      }),
    },
    bindings: { list: () => Promise.resolve([...bound.keys()].map(bindingTo)) },
    desired: {
      resolve: (a) => {
        const found = [...bound.values()].find((d) => d.targetGroupArn === a);
        if (found === undefined) throw new Error(`resolved an unbound group ${a}`);
        return Promise.resolve(found);
      },
    },
    records: {
      groups: () => Promise.resolve([...records.keys()]),
      read: (a) => Promise.resolve(records.get(a) ?? record({})),
    },
    ...(state.rejections === undefined ? {} : { cidrRejections: state.rejections }),
  };
  return new HubAlertEvaluator(deps, { disconnectedGraceMs: GRACE_MS });
}

function summary(alerts: Alert[]): [string, Record<string, string>][] {
  return alerts.map((a) => [a.name, a.labels]);
}

describe('HubAlertEvaluator', () => {
  it('fires nothing for connected clusters and healthy groups', async () => {
    const alerts = await evaluator({
      clusters: [cluster('east', ClusterState.CLUSTER_STATE_CONNECTED, NOW)],
      bound: new Map([[1, desired(1)]]),
      records: new Map([
        [arn(1), record({ definition: definition(1), present: 10, last: reconcile({}) })],
      ]),
    }).firingAlerts();
    expect(alerts).toEqual([]);
  });

  it('reports disconnected and stale clusters with when they became so, and clusters awaiting resync', async () => {
    const alerts = await evaluator({
      clusters: [
        cluster('east', ClusterState.CLUSTER_STATE_DISCONNECTED, NOW - 60_000),
        cluster('north', ClusterState.CLUSTER_STATE_DISCONNECTED),
        cluster('syncing', ClusterState.CLUSTER_STATE_SYNCING, NOW),
        cluster('west', ClusterState.CLUSTER_STATE_STALE, NOW - 900_000),
      ],
      awaitingResync: ['syncing'],
    }).firingAlerts();
    expect(alerts).toEqual([
      {
        name: 'TgfedClusterDisconnected',
        severity: AlertSeverity.ALERT_SEVERITY_WARNING,
        summary:
          'Cluster east is disconnected from the tgfed hub; its endpoints are kept as last seen',
        labels: { cluster: 'east' },
        firingSinceUnixMs: NOW - 60_000,
      },
      {
        name: 'TgfedClusterDisconnected',
        severity: AlertSeverity.ALERT_SEVERITY_WARNING,
        summary:
          'Cluster north has not connected to the tgfed hub (since Redis last lost its state)',
        labels: { cluster: 'north' },
        firingSinceUnixMs: 0,
      },
      {
        name: 'TgfedClusterStale',
        severity: AlertSeverity.ALERT_SEVERITY_CRITICAL,
        summary: 'Cluster west is stale: disconnected past its grace period',
        labels: { cluster: 'west' },
        firingSinceUnixMs: NOW - 900_000 + GRACE_MS,
      },
      {
        name: 'TgfedRecoveryInProgress',
        severity: AlertSeverity.ALERT_SEVERITY_WARNING,
        summary:
          'Deregistrations wait for cluster syncing to resync after a Redis loss or cold start',
        labels: { cluster: 'syncing' },
        firingSinceUnixMs: 0,
      },
    ]);
  });

  it('reports a held deregistration until it is released, also for a group no binding targets any more', async () => {
    const held: HeldDeregistration = {
      id: 'held-1',
      targetGroupArn: arn(2),
      deregistrations: 8,
      targetsBefore: 10,
      reason: 'would remove 8 of 10 targets (more than 50%)',
      heldSinceMs: NOW - 5_000,
    };
    const records = new Map([[arn(2), record({ definition: definition(2), present: 10, held })]]);
    const alerts = await evaluator({ records }).firingAlerts();
    expect(alerts).toEqual([
      {
        name: 'TgfedDeregistrationHeld',
        severity: AlertSeverity.ALERT_SEVERITY_CRITICAL,
        summary: `Mass deregistration held for ${arn(2)}: would remove 8 of 10 targets (more than 50%); release it (tgfed release held-1) or restore the endpoints`,
        labels: { target_group: arn(2), held_operation: 'held-1' },
        firingSinceUnixMs: NOW - 5_000,
      },
    ]);
    records.set(arn(2), record({ present: 10, held: { ...held, releasedBy: 'ci' } }));
    expect(await evaluator({ records }).firingAlerts()).toEqual([]);
  });

  it('reports persistent AWS errors at once and other failures after three in a row', async () => {
    const failed = (n: number, errorClass: ReconcileRecord['errorClass'], failures: number) =>
      record({
        definition: definition(n),
        last: reconcile({
          outcome: 'failed',
          errorClass,
          error: `${errorClass} error`,
          consecutiveFailures: failures,
        }),
      });
    const records = new Map([
      [arn(1), failed(1, 'access-denied', 1)],
      [arn(2), failed(2, 'not-found', 4)],
      [arn(3), failed(3, 'transient', 2)],
      [arn(4), failed(4, 'transient', 3)],
    ]);
    const alerts = await evaluator({ records }).firingAlerts();
    const account = '111111111111';
    expect(summary(alerts)).toEqual([
      ['TgfedAwsAccessDenied', { account, target_group: arn(1) }],
      ['TgfedReconcileFailures', { account, target_group: arn(2) }],
      ['TgfedReconcileFailures', { account, target_group: arn(4) }],
      ['TgfedTargetGroupNotFound', { account, target_group: arn(2) }],
    ]);
    // The first failure of a run is when it started; later ones do not say.
    expect(alerts[0]?.firingSinceUnixMs).toBe(NOW - 1_000);
    expect(alerts[3]?.firingSinceUnixMs).toBe(0);
    expect(alerts[2]?.summary).toBe(`3 reconciles of ${arn(4)} failed in a row: transient error`);
  });

  it('reports sustained throttling once per account and region', async () => {
    const throttled = (n: number, failures: number) =>
      record({
        definition: definition(n),
        last: reconcile({
          outcome: 'throttled',
          errorClass: 'throttling',
          consecutiveFailures: failures,
        }),
      });
    const records = new Map([
      [arn(1), throttled(1, 3)],
      [arn(2), throttled(2, 5)],
      [arn(3), throttled(3, 1)],
    ]);
    expect(summary(await evaluator({ records }).firingAlerts())).toEqual([
      ['TgfedAwsThrottlingSustained', { account: '111111111111', region: 'eu-west-1' }],
    ]);
    records.delete(arn(1));
    records.delete(arn(2));
    expect(await evaluator({ records }).firingAlerts()).toEqual([]);
  });

  it('reports groups at capacity (full, waiting for room, refused) and near capacity', async () => {
    const records = new Map([
      // 9 of 10 present (draining ones do not count): near.
      [arn(1), record({ definition: definition(1, 10), present: 9, draining: 3 })],
      // 8 of 10 but targets wait for room: at capacity.
      [
        arn(2),
        record({
          definition: definition(2, 10),
          present: 8,
          last: reconcile({ waitingForCapacity: 2 }),
        }),
      ],
      // ELBv2 refused with TooManyTargets.
      [
        arn(3),
        record({
          definition: definition(3, 10),
          present: 5,
          last: reconcile({
            outcome: 'failed',
            errorClass: 'quota-exceeded',
            consecutiveFailures: 1,
          }),
        }),
      ],
      // 10 of the default 1,000.
      [arn(4), record({ definition: definition(4), present: 10 })],
      [arn(5), record({ definition: definition(5, 10), present: 10 })],
      [arn(6), record({ definition: definition(6, 10), present: 8 })],
    ]);
    const alerts = await evaluator({ records }).firingAlerts();
    expect(summary(alerts)).toEqual([
      ['TgfedTargetGroupAtCapacity', { target_group: arn(2) }],
      ['TgfedTargetGroupAtCapacity', { target_group: arn(3) }],
      ['TgfedTargetGroupAtCapacity', { target_group: arn(5) }],
      ['TgfedTargetGroupNearCapacity', { target_group: arn(1) }],
    ]);
    expect(alerts.map((a) => a.summary)).toEqual([
      `Target group ${arn(2)} is full: 2 target(s) wait for room`,
      `Target group ${arn(3)} is full: ELBv2 refuses more targets (TooManyTargets)`,
      `Target group ${arn(5)} is full: 10 of 10 targets`,
      `Target group ${arn(1)} is 90% full (9 of 10 targets)`,
    ]);
  });

  it('reports conflicts of bound groups from their desired state', async () => {
    const alerts = await evaluator({
      bound: new Map([
        [1, desired(1, [{ target: '10.0.0.1:80', clusters: ['east', 'west'] }])],
        [2, desired(2)],
      ]),
    }).firingAlerts();
    expect(alerts).toEqual([
      {
        name: 'TgfedBindingConflicts',
        severity: AlertSeverity.ALERT_SEVERITY_WARNING,
        summary: `1 target(s) of ${arn(1)} announced by more than one cluster, e.g. 10.0.0.1:80 from east and west`,
        labels: { target_group: arn(1) },
        firingSinceUnixMs: 0,
      },
    ]);
  });

  it('reports clusters whose addresses were refused by the CIDR check within the window', async () => {
    let now = NOW;
    const counters = {
      addressesNotAllowed: 0,
      rejectedByCluster: new Map<string, number>(),
    } satisfies RejectionCounters;
    const window = new CidrRejectionWindow(counters, { windowMs: 60_000, clock: () => now });
    const evaluate = () => evaluator({ rejections: window }).firingAlerts();
    expect(await evaluate()).toEqual([]);

    counters.addressesNotAllowed += 3;
    counters.rejectedByCluster.set('east', 3);
    now += 1_000;
    expect(await evaluate()).toEqual([
      {
        name: 'TgfedEndpointsRejectedByCidr',
        severity: AlertSeverity.ALERT_SEVERITY_WARNING,
        summary:
          'Cluster east announced 3 endpoint(s) outside its allowed CIDRs (seen by this hub replica)',
        labels: { cluster: 'east' },
        firingSinceUnixMs: NOW + 1_000,
      },
    ]);
    // Rejections of another reason (no address rejected) do not count.
    counters.rejectedByCluster.set('west', 2);
    now += 30_000;
    expect(summary(await evaluate())).toEqual([
      ['TgfedEndpointsRejectedByCidr', { cluster: 'east' }],
    ]);
    now += 31_000;
    expect(await evaluate()).toEqual([]);
  });
});

describe('CidrRejectionWindow', () => {
  it('attributes address rejections exactly when the ingest counts them per cluster and reason', () => {
    let now = NOW;
    const counts = (n: number) => ({ rejectedByReason: { address_not_allowed: n } });
    const counters = {
      addressesNotAllowed: 0,
      rejectedByCluster: new Map<string, number>(),
      byCluster: new Map([
        ['east', counts(0)],
        ['west', counts(0)],
      ]),
    };
    const window = new CidrRejectionWindow(counters, { windowMs: 60_000, clock: () => now });
    counters.rejectedByCluster.set('east', 5);
    counters.rejectedByCluster.set('west', 2);
    counters.addressesNotAllowed = 2;
    counters.byCluster.set('west', counts(2));
    now += 1_000;
    expect(window.recent()).toEqual([{ clusterId: 'west', rejected: 2, sinceMs: NOW + 1_000 }]);
    counters.byCluster.set('west', counts(4));
    now += 50_000;
    expect(window.recent()).toEqual([{ clusterId: 'west', rejected: 4, sinceMs: NOW + 1_000 }]);
    now += 60_001;
    expect(window.recent()).toEqual([]);
  });
});

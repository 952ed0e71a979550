import {
  ClusterState,
  silentLogger,
  type Alert,
  type Cluster,
  type Logger,
  type TargetGroup,
} from '../../shared/index.js';
import type { AlertSource } from '../admin/admin-extensions.js';
import type { BindingSource, DesiredStateResolver } from '../admin/desired-state-extensions.js';
import { isPresent } from '../aws/index.js';
import type { ClusterStatusSource } from '../federation/desired-targets.js';
import { targetGroupArnsOf } from '../federation/subscription-resolver.js';
import type { GroupDesiredState } from '../federation/target-group-desired-state.js';
import type { TargetGroupRecord } from '../reconcile/index.js';
import type { CidrRejectionWindow } from './cidr-rejection-window.js';
import { wireSeverityOf, type HubAlertName } from './hub-alert-definitions.js';

/** The clusters as the admin API reports them (a `ClusterInventory`). */
export interface AlertClusterSource {
  list(): Promise<Cluster[]>;
}

/** The workers' records of target groups (a `TargetGroupRecords`). */
export interface AlertTargetGroupRecords {
  /** Every group ever reconciled or scheduled. */
  groups(): Promise<string[]>;
  read(arn: string): Promise<TargetGroupRecord>;
}

/** What {@link HubAlertEvaluator} reads. */
export interface HubAlertEvaluatorDeps {
  /** Connection state of every known cluster. */
  readonly clusters: AlertClusterSource;
  /** Which clusters have not resynced since a Redis loss or cold start (a `ClusterStatusTracker`). */
  readonly resync?: ClusterStatusSource;
  readonly bindings: BindingSource;
  /** Conflicts and definitions of bound groups (a `TargetGroupDesiredState`). */
  readonly desired: DesiredStateResolver;
  readonly records: AlertTargetGroupRecords;
  /** Recent CIDR rejections of this replica's streams. */
  readonly cidrRejections?: CidrRejectionWindow;
}

/** Options of {@link HubAlertEvaluator}. */
export interface HubAlertEvaluatorOptions {
  /** The hub's grace period, to tell when a stale cluster became stale. @default 300000 */
  disconnectedGraceMs?: number;
  /** Share of its capacity from which a group is near capacity. @default 0.9 */
  nearCapacityShare?: number;
  /**
   * Failed (or throttled) reconciles of a group in a row before `TgfedReconcileFailures`
   * (or `TgfedAwsThrottlingSustained`) fires: one is retried and usually succeeds.
   * @default 3
   */
  failuresInARow?: number;
  /** Target groups evaluated at once (each reads its records and resolves its desired state). @default 4 */
  concurrency?: number;
  /** @default silentLogger() */
  logger?: Logger;
}

/** The default capacity of a group (the AWS quota), as the workers apply it. */
const DEFAULT_CAPACITY = 1000;

function compareAlerts(a: Alert, b: Alert): number {
  const key = (x: Alert): string =>
    `${x.name}\n${Object.entries(x.labels)
      .sort(([k1], [k2]) => (k1 < k2 ? -1 : 1))
      .map(([k, v]) => `${k}=${v}`)
      .join(',')}`;
  const ka = key(a);
  const kb = key(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * Evaluates the conditions of the Prometheus rules in deploy/alerts from the hub's own state,
 * for `ListAlerts` and `tgfed status`, so that users without Prometheus see them too. Nothing is
 * cached: each call reads the cluster sessions, every target group's records (those bindings
 * target and those the workers know) and resolves each bound group's desired state, the same
 * readers `ListClusters` and `GetTargetGroupStatus` use. The hub fires at once where the rules
 * wait (`for:`); `firing_since_unix_ms` tells how long a condition has held, 0 when the state
 * does not record it.
 */
export class HubAlertEvaluator implements AlertSource {
  readonly #deps: HubAlertEvaluatorDeps;
  readonly #graceMs: number;
  readonly #nearShare: number;
  readonly #failuresInARow: number;
  readonly #concurrency: number;
  readonly #log: Logger;

  constructor(deps: HubAlertEvaluatorDeps, options: HubAlertEvaluatorOptions = {}) {
    this.#deps = deps;
    this.#graceMs = options.disconnectedGraceMs ?? 300_000;
    this.#nearShare = options.nearCapacityShare ?? 0.9;
    this.#failuresInARow = Math.max(1, options.failuresInARow ?? 3);
    this.#concurrency = Math.max(1, options.concurrency ?? 4);
    this.#log = (options.logger ?? silentLogger()).child({ component: 'alerts' });
  }

  async firingAlerts(): Promise<Alert[]> {
    const [clusterAlerts, groupAlerts] = await Promise.all([
      this.#clusterAlerts(),
      this.#targetGroupAlerts(),
    ]);
    const alerts = [...clusterAlerts, ...groupAlerts, ...this.#cidrAlerts()].sort(compareAlerts);
    this.#log.debug({ firing: alerts.length }, 'alerts evaluated');
    return alerts;
  }

  async #clusterAlerts(): Promise<Alert[]> {
    const alerts: Alert[] = [];
    for (const cluster of await this.#deps.clusters.list()) {
      const labels = { cluster: cluster.id };
      const lastSeen = cluster.lastSeenUnixMs;
      if (cluster.state === ClusterState.CLUSTER_STATE_DISCONNECTED) {
        alerts.push(
          alert(
            'TgfedClusterDisconnected',
            lastSeen === 0
              ? `Cluster ${cluster.id} has not connected to the tgfed hub (since Redis last lost its state)`
              : `Cluster ${cluster.id} is disconnected from the tgfed hub; its endpoints are kept as last seen`,
            labels,
            lastSeen,
          ),
        );
      } else if (cluster.state === ClusterState.CLUSTER_STATE_STALE) {
        alerts.push(
          alert(
            'TgfedClusterStale',
            `Cluster ${cluster.id} is stale: disconnected past its grace period`,
            labels,
            lastSeen === 0 ? 0 : lastSeen + this.#graceMs,
          ),
        );
      }
      if (this.#deps.resync?.status(cluster.id).awaitingResync === true) {
        alerts.push(
          alert(
            'TgfedRecoveryInProgress',
            `Deregistrations wait for cluster ${cluster.id} to resync after a Redis loss or cold start`,
            labels,
            0,
          ),
        );
      }
    }
    return alerts;
  }

  async #targetGroupAlerts(): Promise<Alert[]> {
    const [bindings, known] = await Promise.all([
      this.#deps.bindings.list(),
      this.#deps.records.groups(),
    ]);
    const bound = new Set(bindings.flatMap(targetGroupArnsOf));
    const arns = [...new Set([...bound, ...known])].sort();
    const alerts: Alert[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < arns.length) {
        const arn = arns[next++] as string;
        alerts.push(...(await this.#groupAlerts(arn, bound.has(arn))));
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, arns.length) }, worker));
    // Throttling is an account-wide condition (the rule groups by account and region).
    return mergeThrottling(alerts);
  }

  async #groupAlerts(arn: string, bound: boolean): Promise<Alert[]> {
    const [record, desired] = await Promise.all([
      this.#deps.records.read(arn),
      bound ? this.#deps.desired.resolve(arn) : Promise.resolve(undefined),
    ]);
    const definition = desired?.targetGroup ?? record.definition;
    const alerts: Alert[] = [];
    const group = { target_group: arn };
    const account = { account: definition?.accountId ?? '', target_group: arn };

    const held = record.held;
    if (held !== undefined && held.releasedBy === undefined) {
      alerts.push(
        alert(
          'TgfedDeregistrationHeld',
          `Mass deregistration held for ${arn}: ${held.reason}; release it (tgfed release ${held.id}) or restore the endpoints`,
          { ...group, held_operation: held.id },
          held.heldSinceMs,
        ),
      );
    }

    const last = record.last;
    // The first failure of a run is not recorded, only the latest and the count.
    const failingSince = (failures: number): number =>
      last !== undefined && failures === 1 ? last.startedAtMs : 0;
    if (last?.outcome === 'failed') {
      const failures = last.consecutiveFailures;
      if (last.errorClass === 'access-denied') {
        alerts.push(
          alert(
            'TgfedAwsAccessDenied',
            `tgfed is denied access to ${arn}: ${last.error ?? 'access denied'}`,
            account,
            failingSince(failures),
          ),
        );
      } else if (last.errorClass === 'not-found') {
        alerts.push(
          alert(
            'TgfedTargetGroupNotFound',
            `Target group ${arn} does not exist`,
            account,
            failingSince(failures),
          ),
        );
      }
      if (failures >= this.#failuresInARow) {
        alerts.push(
          alert(
            'TgfedReconcileFailures',
            `${failures} reconciles of ${arn} failed in a row: ${last.error ?? last.errorClass ?? 'unknown error'}`,
            account,
            0,
          ),
        );
      }
    } else if (last?.outcome === 'throttled' && last.consecutiveFailures >= this.#failuresInARow) {
      alerts.push(
        alert(
          'TgfedAwsThrottlingSustained',
          `ELBv2 throttles tgfed in account ${definition?.accountId ?? 'unknown'} (${definition?.region ?? 'unknown region'})`,
          { account: definition?.accountId ?? '', region: definition?.region ?? '' },
          0,
        ),
      );
    }

    const capacity = capacityAlert(arn, definition, record, this.#nearShare);
    if (capacity !== undefined) alerts.push(capacity);

    if (desired !== undefined && desired.conflicts.length > 0) {
      alerts.push(conflictAlert(arn, desired));
    }
    return alerts;
  }

  #cidrAlerts(): Alert[] {
    return (this.#deps.cidrRejections?.recent() ?? []).map((r) =>
      alert(
        'TgfedEndpointsRejectedByCidr',
        `Cluster ${r.clusterId} announced ${r.rejected} endpoint(s) outside its allowed CIDRs (seen by this hub replica)`,
        { cluster: r.clusterId },
        r.sinceMs,
      ),
    );
  }
}

function alert(
  name: HubAlertName,
  summary: string,
  labels: Record<string, string>,
  firingSinceUnixMs: number,
): Alert {
  return {
    name,
    severity: wireSeverityOf(name),
    summary,
    labels,
    firingSinceUnixMs: Math.max(0, Math.round(firingSinceUnixMs)),
  };
}

/** At capacity (full, targets waiting for room, or TooManyTargets), else near capacity. */
function capacityAlert(
  arn: string,
  definition: TargetGroup | undefined,
  record: TargetGroupRecord,
  nearShare: number,
): Alert | undefined {
  const capacity =
    definition !== undefined && definition.capacity > 0 ? definition.capacity : DEFAULT_CAPACITY;
  let present = 0;
  for (const health of record.actual.values()) if (isPresent(health)) present++;
  const waiting = record.last?.waitingForCapacity ?? 0;
  const refused = record.last?.outcome === 'failed' && record.last.errorClass === 'quota-exceeded';
  const labels = { target_group: arn };
  if (present >= capacity || waiting > 0 || refused) {
    const why = refused
      ? 'ELBv2 refuses more targets (TooManyTargets)'
      : waiting > 0
        ? `${waiting} target(s) wait for room`
        : `${present} of ${capacity} targets`;
    return alert('TgfedTargetGroupAtCapacity', `Target group ${arn} is full: ${why}`, labels, 0);
  }
  if (present >= capacity * nearShare) {
    return alert(
      'TgfedTargetGroupNearCapacity',
      `Target group ${arn} is ${Math.floor((present / capacity) * 100)}% full (${present} of ${capacity} targets)`,
      labels,
      0,
    );
  }
  return undefined;
}

function conflictAlert(arn: string, desired: GroupDesiredState): Alert {
  const first = desired.conflicts[0];
  const example =
    first === undefined ? '' : `, e.g. ${first.target} from ${first.clusters.join(' and ')}`;
  return alert(
    'TgfedBindingConflicts',
    `${desired.conflicts.length} target(s) of ${arn} announced by more than one cluster${example}`,
    { target_group: arn },
    0,
  );
}

/** One throttling alert per account and region, however many of its groups are throttled. */
function mergeThrottling(alerts: Alert[]): Alert[] {
  const seen = new Set<string>();
  return alerts.filter((a) => {
    if (a.name !== 'TgfedAwsThrottlingSustained') return true;
    const key = `${a.labels['account']}\n${a.labels['region']}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

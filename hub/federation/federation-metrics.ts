import type { BatchObservableResult, Meter } from '@opentelemetry/api';
import { CachedSample, MetricLabel, MetricName, type HubClusterState } from '../../shared/index.js';
import type { ClusterStatus } from './desired-targets.js';
import type { GroupDesiredState } from './target-group-desired-state.js';

/** The clusters' statuses (a `ClusterStatusTracker`). */
export interface ClusterStatusView {
  /** Every cluster the hub knows of. */
  clusters(): string[];
  status(clusterId: string): ClusterStatus;
}

/** What the hub's federation instruments read. */
export interface FederationMetricsSource {
  readonly clusterStatus: ClusterStatusView;
  /** The target groups of the current bindings. */
  targetGroups(): Promise<string[]>;
  /** Resolves a group's desired state (a `TargetGroupDesiredState`). */
  resolve(targetGroupArn: string): Promise<GroupDesiredState>;
  /** Endpoints stored for a cluster (the store's totals as of its last batch). */
  storedEndpoints(clusterId: string): Promise<number>;
  /**
   * Target groups whose reconcile this replica keeps back until a local cluster's initial sync
   * ends (the reconcile sink's). @default none
   */
  keptBack?(): number;
}

/** Options of {@link FederationMetrics}. */
export interface FederationMetricsOptions {
  /**
   * How long a count of conflicts answers scrapes: counting resolves every bound group.
   * @default 15000
   */
  conflictsMaxAgeMs?: number;
  /**
   * How long the clusters' endpoint counts answer scrapes (one Redis read per cluster).
   * @default 5000
   */
  endpointsMaxAgeMs?: number;
}

/**
 * The hub's federation instruments (metrics contract, Hub): clusters per connection state and
 * per cluster (from the status tracker, which every replica reads alike), the endpoints stored
 * per cluster (read from Redis at most once per `endpointsMaxAgeMs`, so every replica reports
 * the same, whichever streams the cluster), binding conflicts
 * (from the desired state, resolved at most once per `conflictsMaxAgeMs`), and the Redis-loss
 * recovery (deregistrations waiting for resyncs, and waits that timed out).
 */
export class FederationMetrics {
  readonly #recoveryTimeouts;
  readonly #detach: () => void;

  constructor(
    meter: Meter,
    source: FederationMetricsSource,
    options: FederationMetricsOptions = {},
  ) {
    const clusters = meter.createObservableGauge(MetricName.HUB_CLUSTERS, {
      description: 'Known clusters per state (stale: disconnected past the grace period)',
      unit: '{cluster}',
    });
    const connected = meter.createObservableGauge(MetricName.HUB_CLUSTER_CONNECTED, {
      description: '1 while the cluster streams to a hub replica, 0 otherwise',
    });
    const stale = meter.createObservableGauge(MetricName.HUB_CLUSTER_STALE, {
      description: '1 when the cluster is disconnected past the grace period',
    });
    const recovery = meter.createObservableGauge(MetricName.HUB_RECOVERY_IN_PROGRESS, {
      description:
        '1 while deregistrations wait for clusters to resync after a Redis loss or a cold start',
    });
    const keptBack = meter.createObservableGauge(MetricName.HUB_RECONCILES_KEPT_BACK, {
      description:
        "Target groups whose reconcile this hub keeps back until a cluster's initial sync ends",
      unit: '{target_group}',
    });
    const conflicts = meter.createObservableGauge(MetricName.HUB_BINDING_CONFLICTS, {
      description: 'Addresses announced by two clusters for one target group, as resolved now',
      unit: '{conflict}',
    });
    const endpoints = meter.createObservableGauge(MetricName.HUB_CLUSTER_ENDPOINTS, {
      description: 'Endpoints stored per cluster (kept while it is disconnected)',
      unit: '{endpoint}',
    });
    this.#recoveryTimeouts = meter.createCounter(MetricName.HUB_RECOVERY_TIMEOUTS, {
      description: 'Resync waits after a Redis loss or a cold start that ended by timeout',
    });
    // Exposed from the start, so that rules see 0 rather than no series before the first one.
    this.#recoveryTimeouts.add(0);
    const conflictCount = new CachedSample(
      async () => {
        let n = 0;
        for (const arn of await source.targetGroups()) {
          n += (await source.resolve(arn)).conflicts.length;
        }
        return n;
      },
      { maxAgeMs: options.conflictsMaxAgeMs ?? 15_000 },
    );

    const endpointCounts = new CachedSample(
      async () => {
        const ids = source.clusterStatus.clusters();
        const counts = await Promise.all(ids.map((id) => source.storedEndpoints(id)));
        return ids.map((id, i) => [id, counts[i] ?? 0] as const);
      },
      { maxAgeMs: options.endpointsMaxAgeMs ?? 5_000 },
    );

    const observeClusters = (result: BatchObservableResult): void => {
      const tracker = source.clusterStatus;
      const perState: Record<HubClusterState, number> = { connected: 0, disconnected: 0, stale: 0 };
      let awaitingResync = false;
      for (const clusterId of tracker.clusters()) {
        const status = tracker.status(clusterId);
        const state: HubClusterState =
          status.connection === 'connected'
            ? 'connected'
            : status.connection === 'stale'
              ? 'stale'
              : 'disconnected';
        perState[state]++;
        awaitingResync ||= status.awaitingResync;
        const cluster = { [MetricLabel.CLUSTER]: clusterId };
        result.observe(connected, state === 'connected' ? 1 : 0, cluster);
        result.observe(stale, state === 'stale' ? 1 : 0, cluster);
      }
      for (const [state, count] of Object.entries(perState)) {
        result.observe(clusters, count, { [MetricLabel.STATE]: state });
      }
      result.observe(recovery, awaitingResync ? 1 : 0);
      result.observe(keptBack, source.keptBack?.() ?? 0);
    };
    // Separate callbacks: a failed read leaves out its own series only.
    const observeEndpoints = async (result: BatchObservableResult): Promise<void> => {
      for (const [clusterId, count] of await endpointCounts.get()) {
        result.observe(endpoints, count, { [MetricLabel.CLUSTER]: clusterId });
      }
    };
    const observeConflicts = async (result: BatchObservableResult): Promise<void> => {
      result.observe(conflicts, await conflictCount.get());
    };
    const clusterObservables = [clusters, connected, stale, recovery, keptBack];
    meter.addBatchObservableCallback(observeClusters, clusterObservables);
    meter.addBatchObservableCallback(observeEndpoints, [endpoints]);
    meter.addBatchObservableCallback(observeConflicts, [conflicts]);
    this.#detach = () => {
      meter.removeBatchObservableCallback(observeClusters, clusterObservables);
      meter.removeBatchObservableCallback(observeEndpoints, [endpoints]);
      meter.removeBatchObservableCallback(observeConflicts, [conflicts]);
    };
  }

  /** Counts a resync wait that ended by timeout (the tracker's `onResyncTimeout`). */
  recoveryTimedOut(): void {
    this.#recoveryTimeouts.add(1);
  }

  /** Stops reporting. */
  detach(): void {
    this.#detach();
  }
}

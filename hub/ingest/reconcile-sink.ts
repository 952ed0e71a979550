import type { ServiceKey, TraceContext } from '../../shared/index.js';

/**
 * Where the ingest hands the services a batch changed, once they are written to Redis; the
 * batch is acked only after `changed` resolves.
 */
export interface ReconcileSink {
  /**
   * @param observedAtMs when the agent observed the batch's earliest change (its
   *   `observed_base_unix_ms`), for the propagation latency; undefined when not from a batch
   */
  changed(
    clusterId: string,
    services: readonly ServiceKey[],
    batchTrace: TraceContext | undefined,
    observedAtMs?: number,
  ): Promise<void>;

  /**
   * A stream of this hub began a cluster's initial sync after a cold start or a Redis loss (its
   * cluster has not synced against the storage epoch). Until the returned hold ends (the
   * stream's SYNCED or its end), the sink may keep back the reconciles of the groups the
   * cluster feeds: their registrations wait for the sync anyway. Optional.
   */
  initialSyncStarted?(clusterId: string): InitialSyncHold;

  /**
   * After a start or a Redis loss: the initial syncs of these clusters (not synced against the
   * storage epoch) are expected, here or at another replica. Until each begins here, is seen
   * synced ({@link initialSyncSeen}), or a bound passes, the sink may keep back the reconciles of
   * the groups they feed as for a sync under way. Optional.
   */
  initialSyncsExpected?(clusterIds: Iterable<string>): void;

  /** The cluster has synced against the storage epoch, at whichever replica. Optional. */
  initialSyncSeen?(clusterId: string): Promise<void>;
}

/** A cluster's initial sync as the reconcile sink keeps it (see `initialSyncStarted`). */
export interface InitialSyncHold {
  /** Ends the hold (idempotent); resolves once the reconciles it kept back are enqueued. */
  end(): Promise<void>;
}

/** A sink that records every call (until the queue layer exists; also for tests). */
export class RecordingReconcileSink implements ReconcileSink {
  readonly calls: { clusterId: string; services: ServiceKey[] }[] = [];

  changed(clusterId: string, services: readonly ServiceKey[]): Promise<void> {
    this.calls.push({ clusterId, services: [...services] });
    return Promise.resolve();
  }
}

import type { EndpointRejectionReason, HubBatchResult } from '../../shared/index.js';

/** One cluster's ingest tallies (monotonic), for the per-cluster metrics. */
export interface ClusterIngestCounts {
  batchesApplied: number;
  batchesRejected: number;
  endpointChanges: number;
  readonly rejectedByReason: Record<EndpointRejectionReason, number>;
}

/** Counters of the agent ingest, for metrics and tests. Rejections are counted per cluster too. */
export class IngestCounters {
  streams = 0;
  /** Streams refused at once because `maxAgentStreams` were open. */
  streamsRefused = 0;
  /** Messages that did not decode as a `SyncRequest` (grpc-js ended their stream: INTERNAL). */
  malformedMessages = 0;
  unauthenticated = 0;
  permissionDenied = 0;
  protocolViolations = 0;
  standbys = 0;
  admissions = 0;
  batches = 0;
  endpointChanges = 0;
  sequenceErrors = 0;
  digestMismatches = 0;
  invalidChanges = 0;
  addressesNotAllowed = 0;
  limitExceeded = 0;
  heartbeatTimeouts = 0;
  leaseLosses = 0;
  storageLosses = 0;
  /** Cluster id → rejected items (any reason). */
  readonly rejectedByCluster = new Map<string, number>();
  /** Cluster id → its tallies. */
  readonly byCluster = new Map<string, ClusterIngestCounts>();
  /** Called with each batch's time from arrival to ack (the apply-duration histogram). */
  onBatchApplied: ((durationMs: number) => void) | undefined;

  rejected(clusterId: string, count = 1): void {
    this.rejectedByCluster.set(clusterId, (this.rejectedByCluster.get(clusterId) ?? 0) + count);
  }

  /** The tallies of one cluster (created empty). */
  cluster(clusterId: string): ClusterIngestCounts {
    let counts = this.byCluster.get(clusterId);
    if (counts === undefined) {
      counts = {
        batchesApplied: 0,
        batchesRejected: 0,
        endpointChanges: 0,
        rejectedByReason: { address_not_allowed: 0, limit_exceeded: 0, invalid: 0 },
      };
      this.byCluster.set(clusterId, counts);
    }
    return counts;
  }

  /** A batch was acked: `rejected` when the hub refused any of its content (a NACK went too). */
  batchAcked(
    clusterId: string,
    result: HubBatchResult,
    endpointChanges: number,
    durationMs: number,
  ): void {
    const counts = this.cluster(clusterId);
    if (result === 'applied') counts.batchesApplied++;
    else counts.batchesRejected++;
    counts.endpointChanges += endpointChanges;
    this.onBatchApplied?.(durationMs);
  }

  /** Items of a cluster's batch refused for `reason`. */
  endpointsRejected(clusterId: string, reason: EndpointRejectionReason, count: number): void {
    if (count > 0) this.cluster(clusterId).rejectedByReason[reason] += count;
  }
}

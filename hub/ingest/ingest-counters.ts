/** Counters of the agent ingest, for metrics and tests. Rejections are counted per cluster too. */
export class IngestCounters {
  streams = 0;
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

  rejected(clusterId: string, count = 1): void {
    this.rejectedByCluster.set(clusterId, (this.rejectedByCluster.get(clusterId) ?? 0) + count);
  }
}

/** The cluster lease is not (or no longer) held by this token: the write was fenced off. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
  constructor(
    readonly clusterId: string,
    options?: ErrorOptions,
  ) {
    super(`the lease of cluster ${clusterId} is held by another stream or expired`, options);
  }
}

/** Redis lost the hub's data (FLUSHALL, a restart without persistence, a failover gone wrong). */
export class StorageLostError extends Error {
  override readonly name = 'StorageLostError';
}

/** A stored value that this version cannot read. */
export class StoredValueError extends Error {
  override readonly name = 'StoredValueError';
}

/** Redis did not answer (unreachable, timed out, failing over); the operation may be retried. */
export class StateUnavailableError extends Error {
  override readonly name = 'StateUnavailableError';
}

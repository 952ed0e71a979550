/** The stream presented no credentials the hub accepts. */
export class UnauthenticatedError extends Error {
  override readonly name = 'UnauthenticatedError';
}

/** The hello names a cluster other than the one the credentials identify. */
export class ClusterMismatchError extends Error {
  override readonly name = 'ClusterMismatchError';
  constructor(
    readonly authenticatedClusterId: string,
    readonly claimedClusterId: string,
  ) {
    super(
      `credentials identify cluster ${JSON.stringify(authenticatedClusterId)}, ` +
        `but hello names ${JSON.stringify(claimedClusterId)}`,
    );
  }
}

/** A message the protocol does not allow at this point (batch before welcome, second hello). */
export class ProtocolOrderError extends Error {
  override readonly name = 'ProtocolOrderError';
}

/** The stream exceeded a hard limit that cannot be answered with a NACK (batches in flight). */
export class StreamLimitError extends Error {
  override readonly name = 'StreamLimitError';
}

/** Nothing arrived from the agent for three heartbeat intervals. */
export class HeartbeatTimeoutError extends Error {
  override readonly name = 'HeartbeatTimeoutError';
}

/** The hub is shutting down; the agent reconnects elsewhere. */
export class HubClosingError extends Error {
  override readonly name = 'HubClosingError';
  constructor() {
    super('the hub is shutting down');
  }
}

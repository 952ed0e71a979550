import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../shared/index.js';
import {
  LeaseLostError,
  StateUnavailableError,
  StorageLostError,
  StoredValueError,
} from '../state/index.js';
import {
  ClusterMismatchError,
  HeartbeatTimeoutError,
  HubClosingError,
  ProtocolOrderError,
  StreamLimitError,
  UnauthenticatedError,
} from './errors.js';

const codes: [new (...args: never[]) => Error, grpc.status][] = [
  [UnauthenticatedError, grpc.status.UNAUTHENTICATED],
  [ClusterMismatchError, grpc.status.PERMISSION_DENIED],
  [ProtocolOrderError, grpc.status.FAILED_PRECONDITION],
  [StreamLimitError, grpc.status.RESOURCE_EXHAUSTED],
  [HeartbeatTimeoutError, grpc.status.UNAVAILABLE],
  [HubClosingError, grpc.status.UNAVAILABLE],
  // The stream lost its cluster's lease: a retry (reconnect) will sort out who holds it.
  [LeaseLostError, grpc.status.ABORTED],
  [StorageLostError, grpc.status.UNAVAILABLE],
  [StateUnavailableError, grpc.status.UNAVAILABLE],
  [StoredValueError, grpc.status.INTERNAL],
];

/**
 * The one mapping from domain errors to gRPC statuses at the agent boundary. Anything
 * unexpected becomes UNKNOWN with a generic message and is logged (once, here).
 */
export function grpcStatusOf(err: unknown, log: Logger): grpc.StatusObject {
  for (const [type, code] of codes) {
    if (err instanceof type) {
      return { code, details: err.message, metadata: new grpc.Metadata() };
    }
  }
  log.error({ err }, 'unexpected error on an agent stream');
  return {
    code: grpc.status.UNKNOWN,
    details: 'internal error in the hub',
    metadata: new grpc.Metadata(),
  };
}

import * as grpc from '@grpc/grpc-js';
import { FieldViolation, type Logger } from '../../shared/index.js';
import {
  BindingValidationError,
  BindingVersionConflictError,
} from '../federation/binding-store.js';
import { StateUnavailableError, StoredValueError } from '../state/index.js';
import {
  AdminInvalidRequestError,
  AdminNotFoundError,
  AdminNotImplementedError,
  AdminPermissionDeniedError,
  AdminUnauthenticatedError,
} from './errors.js';

/**
 * Trailer carrying the field-level violations of an INVALID_ARGUMENT status: one value per
 * violation, each a binary `tgfed.v1.FieldViolation`. The status message lists them too, for
 * clients that only show the message.
 */
export const FIELD_VIOLATIONS_TRAILER = 'tgfed-field-violations-bin';

const codes: [new (...args: never[]) => Error, grpc.status][] = [
  [AdminUnauthenticatedError, grpc.status.UNAUTHENTICATED],
  [AdminPermissionDeniedError, grpc.status.PERMISSION_DENIED],
  [AdminInvalidRequestError, grpc.status.INVALID_ARGUMENT],
  [AdminNotFoundError, grpc.status.NOT_FOUND],
  [AdminNotImplementedError, grpc.status.UNIMPLEMENTED],
  [BindingVersionConflictError, grpc.status.ABORTED],
  [StateUnavailableError, grpc.status.UNAVAILABLE],
  [StoredValueError, grpc.status.INTERNAL],
];

/** Field violations as the trailer carries them. */
export function fieldViolationsMetadata(violations: readonly FieldViolation[]): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const v of violations) {
    metadata.add(FIELD_VIOLATIONS_TRAILER, Buffer.from(FieldViolation.encode(v).finish()));
  }
  return metadata;
}

/** The field violations of a status's trailers (for clients: the CLI, tests). */
export function fieldViolationsOf(metadata: grpc.Metadata | undefined): FieldViolation[] {
  return (metadata?.get(FIELD_VIOLATIONS_TRAILER) ?? []).map((value) =>
    FieldViolation.decode(typeof value === 'string' ? Buffer.from(value, 'base64') : value),
  );
}

/**
 * The one mapping from domain errors to gRPC statuses at the admin boundary. Anything
 * unexpected becomes UNKNOWN with a generic message and is logged (once, here).
 */
export function adminStatusOf(err: unknown, log: Logger): grpc.StatusObject {
  if (err instanceof BindingValidationError) {
    return {
      code: grpc.status.INVALID_ARGUMENT,
      details: err.message,
      metadata: fieldViolationsMetadata(err.violations),
    };
  }
  for (const [type, code] of codes) {
    if (err instanceof type) return { code, details: err.message, metadata: new grpc.Metadata() };
  }
  // ioredis reports an unreachable Redis with plain errors; the caller may retry.
  if (
    err instanceof Error &&
    /Connection is closed|Command timed out|ECONNREFUSED/.test(err.message)
  ) {
    return {
      code: grpc.status.UNAVAILABLE,
      details: `the hub cannot reach its state store: ${err.message}`,
      metadata: new grpc.Metadata(),
    };
  }
  log.error({ err }, 'unexpected error in an admin call');
  return {
    code: grpc.status.UNKNOWN,
    details: 'internal error in the hub',
    metadata: new grpc.Metadata(),
  };
}

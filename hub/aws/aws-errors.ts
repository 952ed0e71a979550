import { isServerError, isThrottlingError, isTransientError } from '@smithy/core/retry';
import type { SdkError } from '@smithy/types';

/**
 * What a failed AWS call means for the reconcile (DESIGN.md, Reconcile):
 *
 * - `throttling`: retry after backing off; the account's shared bucket is emptied for everyone.
 * - `transient`: network errors, timeouts and 5xx; retry with backoff.
 * - `not-found`: the target group (or listener rule) is gone; alert, retry only slowly.
 * - `access-denied`: the role, its trust policy or the external id is wrong; alert, retry slowly.
 * - `quota-exceeded`: the group is full (TooManyTargets); alert, retry slowly.
 * - `invalid-target`: a target in the call is refused; find and report it, apply the rest.
 * - `unknown`: anything else; retried with backoff like a transient error, and logged.
 */
export type AwsErrorClass =
  | 'throttling'
  | 'transient'
  | 'not-found'
  | 'access-denied'
  | 'quota-exceeded'
  | 'invalid-target'
  | 'unknown';

/** Classes a hot retry cannot fix: the reconcile records them and retries slowly. */
export const PERSISTENT_AWS_ERRORS: ReadonlySet<AwsErrorClass> = new Set([
  'not-found',
  'access-denied',
  'quota-exceeded',
]);

// Error codes as the ELBv2 and STS query protocols send them; SDK v3 names modeled errors
// `<Code>Exception`, so both spellings are listed.
const NOT_FOUND = new Set([
  'TargetGroupNotFound',
  'TargetGroupNotFoundException',
  'ListenerNotFound',
  'ListenerNotFoundException',
  'RuleNotFound',
  'RuleNotFoundException',
  'LoadBalancerNotFound',
  'LoadBalancerNotFoundException',
]);
const ACCESS_DENIED = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'UnauthorizedOperation',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'ExpiredToken',
  'ExpiredTokenException',
  'RegionDisabledException',
]);
const QUOTA_EXCEEDED = new Set([
  'TooManyTargets',
  'TooManyTargetsException',
  'TooManyRegistrationsForTargetId',
  'TooManyRegistrationsForTargetIdException',
]);
const INVALID_TARGET = new Set(['InvalidTarget', 'InvalidTargetException']);

/** The code of an AWS error (`name` for SDK errors, `code` for Node network errors). */
export function awsErrorCode(err: unknown): string {
  if (typeof err !== 'object' || err === null) return 'Unknown';
  const e = err as { name?: unknown; code?: unknown; Code?: unknown };
  if (typeof e.Code === 'string') return e.Code;
  if (typeof e.name === 'string' && e.name !== 'Error') return e.name;
  if (typeof e.code === 'string') return e.code;
  return 'Unknown';
}

/** Classifies a failed AWS call, using the SDK's own throttling and transient checks. */
export function classifyAwsError(err: unknown): AwsErrorClass {
  const code = awsErrorCode(err);
  if (INVALID_TARGET.has(code)) return 'invalid-target';
  if (QUOTA_EXCEEDED.has(code)) return 'quota-exceeded';
  if (NOT_FOUND.has(code)) return 'not-found';
  if (ACCESS_DENIED.has(code)) return 'access-denied';
  if (typeof err !== 'object' || err === null) return 'unknown';
  const sdkError = err as SdkError;
  if (isThrottlingError(sdkError)) return 'throttling';
  if (isTransientError(sdkError) || isServerError(sdkError)) return 'transient';
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (status === 403) return 'access-denied';
  return 'unknown';
}

/** A failed AWS call, classified, with the operation and group it was for. */
export class AwsCallError extends Error {
  override readonly name = 'AwsCallError';
  readonly errorClass: AwsErrorClass;
  readonly code: string;
  readonly operation: string;

  constructor(operation: string, cause: unknown) {
    const code = awsErrorCode(cause);
    const message = cause instanceof Error ? cause.message : String(cause);
    super(`${operation} failed: ${code}: ${message}`, { cause });
    this.errorClass = classifyAwsError(cause);
    this.code = code;
    this.operation = operation;
  }
}

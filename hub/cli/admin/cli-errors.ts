import * as grpc from '@grpc/grpc-js';
import { fieldViolationsOf } from '../../admin/index.js';

/**
 * Exit codes of the admin commands (`tgfed get`, `apply`, ...), documented in `tgfed --help`:
 * scripts can tell a refused operation from a bad invocation, an unreachable hub and a
 * credentials problem.
 */
export const cliExitCodes = {
  /** Done; for `status` and `diff`: everything in sync. */
  ok: 0,
  /** The hub refused or failed the operation (NOT_FOUND, INVALID_ARGUMENT, ...); for `status` and `diff`: something needs attention. */
  failed: 1,
  /** Bad flags or arguments, unreadable or invalid file (bindings, CLI config, token, TLS). */
  usage: 2,
  /** The hub is unreachable or did not answer within `--timeout`. */
  unreachable: 3,
  /** The hub refused the credentials (UNAUTHENTICATED) or the role (PERMISSION_DENIED). */
  denied: 4,
} as const;

/** One of {@link cliExitCodes}. */
export type CliExitCode = (typeof cliExitCodes)[keyof typeof cliExitCodes];

/** The text of `tgfed --help`'s epilogue on exit codes (also in the README). */
export const exitCodesHelp = `Exit codes:
  0  ok (status, diff: everything in sync)
  1  the hub refused or failed the operation (e.g. NOT_FOUND, INVALID_ARGUMENT);
     status, diff: something needs attention
  2  usage: bad flags or arguments, unreadable or invalid file
  3  hub unreachable, or no answer within --timeout
  4  unauthenticated, or the role does not allow the operation`;

/** A bad invocation: flags, arguments, or a file the CLI reads (exit 2). */
export class CliUsageError extends Error {
  override readonly name = 'CliUsageError';
}

/** A command that cannot complete; `exitCode` says why (one of {@link cliExitCodes}). */
export class CliCommandError extends Error {
  override readonly name = 'CliCommandError';
  constructor(
    message: string,
    readonly exitCode: CliExitCode,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<grpc.ServiceError>).code === 'number' &&
    'metadata' in err
  );
}

/** `14 UNAVAILABLE: No connection established`, the way grpc-js names a status. */
export function statusText(err: grpc.ServiceError): string {
  // grpc-js appends an empty "Resolution note: " to connection errors.
  const details = err.details.replace(/\.?\s*Resolution note:\s*$/, '');
  return `${err.code} ${grpc.status[err.code] ?? 'UNKNOWN'}: ${details}`;
}

/**
 * The one mapping from a failed admin call to what the user sees: a one-line message (plus the
 * field violations of an INVALID_ARGUMENT) and the exit code. Anything that is not a gRPC
 * status is passed through unchanged.
 */
export function cliErrorOf(err: unknown, hub: string): unknown {
  if (!isServiceError(err)) return err;
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      return new CliCommandError(`hub ${hub} unreachable (${statusText(err)})`, 3, {
        cause: err,
      });
    case grpc.status.DEADLINE_EXCEEDED:
      return new CliCommandError(
        `hub ${hub} did not answer in time (${statusText(err)}); see --timeout`,
        3,
        { cause: err },
      );
    case grpc.status.UNAUTHENTICATED:
      return new CliCommandError(
        `hub ${hub} refused the credentials (${statusText(err)}); see --token, --token-file, --cert`,
        4,
        { cause: err },
      );
    case grpc.status.PERMISSION_DENIED:
      return new CliCommandError(`not allowed (${statusText(err)})`, 4, { cause: err });
    case grpc.status.INVALID_ARGUMENT: {
      const violations = fieldViolationsOf(err.metadata);
      const lines =
        violations.length === 0
          ? ''
          : violations.map((v) => `\n  ${v.field}: ${v.description}`).join('');
      return new CliCommandError(
        `rejected (${grpc.status[err.code]}): ${violations.length > 0 ? 'invalid fields' : err.details}${lines}`,
        1,
        { cause: err },
      );
    }
    default:
      return new CliCommandError(statusText(err), 1, { cause: err });
  }
}

/** Is this a gRPC status with `code`? */
export function hasStatus(err: unknown, code: grpc.status): boolean {
  return isServiceError(err) && err.code === code;
}

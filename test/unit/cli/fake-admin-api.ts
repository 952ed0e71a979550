import * as grpc from '@grpc/grpc-js';
import type { AdminApi } from '../../../hub/cli/admin/admin-connection.js';
import type { CliExitCode } from '../../../hub/cli/admin/cli-errors.js';
import { runTgfed } from '../../../hub/cli/tgfed-program.js';

/** A gRPC status error as grpc-js hands it to a client. */
export function statusError(
  code: grpc.status,
  details: string,
  metadata = new grpc.Metadata(),
): grpc.ServiceError {
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), {
    code,
    details,
    metadata,
  });
}

function unimplemented(method: string): () => Promise<never> {
  return () => Promise.reject(statusError(grpc.status.UNIMPLEMENTED, `${method} not faked`));
}

/** An AdminApi whose every method answers UNIMPLEMENTED unless `methods` fakes it. */
export function fakeAdminApi(methods: Partial<AdminApi>): AdminApi {
  return {
    listClusters: unimplemented('listClusters'),
    getCluster: unimplemented('getCluster'),
    listBindings: unimplemented('listBindings'),
    applyBinding: unimplemented('applyBinding'),
    deleteBinding: unimplemented('deleteBinding'),
    getTargetGroupStatus: unimplemented('getTargetGroupStatus'),
    triggerReconcile: unimplemented('triggerReconcile'),
    listAlerts: unimplemented('listAlerts'),
    releaseHeldOperation: unimplemented('releaseHeldOperation'),
    ...methods,
  };
}

/** What one in-process `tgfed` run printed and returned. */
export interface FakeRun {
  code: CliExitCode | undefined;
  stdout: string;
  stderr: string;
  /** Connections opened and closed. */
  opened: number;
  closed: number;
}

/** Runs `tgfed argv` against `api` (with `--hub fake:1 --insecure` appended), clock at `nowMs`. */
export async function runAgainst(
  api: AdminApi,
  argv: readonly string[],
  nowMs = 1_000_000,
): Promise<FakeRun> {
  const run: FakeRun = { code: undefined, stdout: '', stderr: '', opened: 0, closed: 0 };
  run.code = await runTgfed([...argv, '--hub', 'fake:1', '--insecure'], {
    io: {
      stdout: { write: (chunk: string) => (run.stdout += chunk) },
      stderr: { write: (chunk: string) => (run.stderr += chunk) },
      readStdin: () => Promise.resolve(''),
      env: {},
      homeDir: '/nonexistent',
      now: () => nowMs,
    },
    connect: () => {
      run.opened++;
      return { api, close: () => void run.closed++ };
    },
  });
  return run;
}

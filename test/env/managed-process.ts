import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { waitFor } from './wait-for.js';

/** Options for {@link startManagedProcess}. */
export interface ManagedProcessOptions {
  /** Short name for logs, e.g. "redis". */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolves truthy once the process serves. */
  ready: () => Promise<boolean>;
  /** @default 60000 */
  readyTimeoutMs?: number;
}

/** A component of the test environment running as a child process. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  /** File with the process's stdout and stderr. */
  readonly logFile: string;
  /** Last lines of the log, for failure messages. */
  logTail(lines?: number): string;
  /** SIGTERM, then SIGKILL after `graceMs`. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL at once (fault injection). */
  kill(): Promise<void>;
}

const live = new Set<ChildProcess>();
// A test run that dies still takes its children down with it.
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Starts a child process, logs it to a file and waits until `ready` says it serves. */
export async function startManagedProcess(options: ManagedProcessOptions): Promise<ManagedProcess> {
  const logDir = mkdtempSync(join(tmpdir(), `tgfed-${options.name}-`));
  const logFile = join(logDir, 'output.log');
  const log = createWriteStream(logFile);
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });

  let exited = false;
  const exit = once(child, 'exit').then(() => {
    exited = true;
    live.delete(child);
  });
  const spawnError = once(child, 'spawn').then(
    () => undefined,
    (err: unknown) => err,
  );

  const tail = (lines = 40): string => {
    try {
      return readFileSync(logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  };

  const stop = async (graceMs = 5_000): Promise<void> => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    }
    log.end();
  };

  const failedToSpawn = await spawnError;
  if (failedToSpawn !== undefined) {
    throw new Error(`${options.name}: cannot start ${options.command}`, { cause: failedToSpawn });
  }

  try {
    await waitFor(
      async () => {
        if (exited) throw new Error(`exited with code ${String(child.exitCode)}`);
        return options.ready();
      },
      { what: `${options.name} to be ready`, timeoutMs: options.readyTimeoutMs ?? 60_000 },
    );
  } catch (err) {
    await stop(1_000);
    throw new Error(`${options.name} did not start; last output:\n${tail()}`, { cause: err });
  }

  return {
    name: options.name,
    pid: child.pid ?? -1,
    logFile,
    logTail: tail,
    stop,
    kill: async () => {
      if (!exited) child.kill('SIGKILL');
      await exit;
    },
  };
}

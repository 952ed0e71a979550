import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { fileURLToPath } from 'node:url';
import { runTgfed } from '../../../hub/cli/tgfed-program.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../../..');

/** What one `tgfed` run printed, and its exit code. */
export interface CliResult {
  code: number | undefined;
  stdout: string;
  stderr: string;
}

/** How a test runs `tgfed`: its home folder, environment and standard input. */
export interface CliRunOptions {
  homeDir: string;
  env?: Record<string, string>;
  stdin?: string;
}

/** Runs `tgfed argv` in this process with captured streams and only the given environment. */
export async function tgfedInProcess(
  argv: readonly string[],
  options: CliRunOptions,
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runTgfed(argv, {
    io: {
      stdout: { write: (chunk: string) => (stdout += chunk) },
      stderr: { write: (chunk: string) => (stderr += chunk) },
      readStdin: () => text(Readable.from([options.stdin ?? ''])),
      env: options.env ?? {},
      homeDir: options.homeDir,
      now: () => Date.now(),
    },
  });
  return { code, stdout, stderr };
}

/**
 * Runs the real entry (`node --import tsx hub/cli/tgfed.ts argv`) as a child process, with
 * only PATH, HOME and `env` in its environment: the exit code is the one a shell sees.
 */
export async function spawnTgfed(
  argv: readonly string[],
  options: CliRunOptions,
): Promise<CliResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'hub/cli/tgfed.ts', ...argv], {
    cwd: repoRoot,
    env: { PATH: process.env['PATH'] ?? '', HOME: options.homeDir, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [stdout, stderr, code] = await Promise.all([
    text(child.stdout),
    text(child.stderr),
    new Promise<number | null>((done) => child.on('exit', (c) => done(c))),
  ]);
  return { code: code ?? undefined, stdout, stderr };
}

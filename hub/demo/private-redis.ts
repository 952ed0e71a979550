import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { accessSync, constants } from 'node:fs';
import { Redis } from 'ioredis';

/** `redis-server` is not installed where the demo looks for it. */
export class RedisServerMissingError extends Error {
  override readonly name = 'RedisServerMissingError';
}

/** A redis-server child process of the demo: no persistence, loopback only, a free port. */
export interface PrivateRedis {
  readonly url: string;
  readonly pid: number;
  /** SIGTERM, SIGKILL after 2 s; removes its folder. Idempotent. */
  stop(): Promise<void>;
}

/** The redis-server binary: `binary`, else `TGFED_REDIS_SERVER`, else the first on PATH. */
export function findRedisServer(binary?: string): string {
  const explicit = binary ?? process.env['TGFED_REDIS_SERVER'];
  const candidates =
    explicit !== undefined && explicit !== ''
      ? [explicit]
      : (process.env['PATH'] ?? '')
          .split(delimiter)
          .filter((dir) => dir !== '')
          .map((dir) => join(dir, 'redis-server'));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new RedisServerMissingError(
    (explicit !== undefined && explicit !== ''
      ? `${explicit} is not an executable redis-server. `
      : 'redis-server is not on PATH. ') +
      'Install Redis (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`), ' +
      'point TGFED_REDIS_SERVER at the binary, or give the demo a Redis with --redis-url.',
  );
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

/** Starts redis-server and resolves once it answers PING (within `timeoutMs`). */
export async function startPrivateRedis(binary: string, timeoutMs = 10_000): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tgfed-demo-redis-'));
  const child: ChildProcess = spawn(
    binary,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      // BullMQ needs this policy: evicting queue keys would lose jobs.
      '--maxmemory-policy',
      'noeviction',
    ],
    // Its own process group: Ctrl-C in a terminal signals the whole foreground group, and
    // redis-server must outlive the hub and workers' shutdown, which stops it last.
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2_000)));
  // Whatever happens to this process, the redis-server goes with it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = once(child, 'exit');

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
        await exited;
        clearTimeout(timer);
      }
      process.removeListener('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    })());

  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`redis-server exited with ${child.exitCode}: ${stderr.trim()}`);
    }
    const probe = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on('error', () => undefined);
    const ok = await probe
      .connect()
      .then(() => probe.ping())
      .then(
        (reply) => reply === 'PONG',
        () => false,
      );
    probe.disconnect();
    if (ok) return { url, pid: child.pid ?? 0, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server did not answer on ${url} within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

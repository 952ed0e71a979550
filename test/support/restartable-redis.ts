import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../env/free-port.js';
import { startManagedProcess, type ManagedProcess } from '../env/managed-process.js';

async function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.setTimeout(1_000);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * A redis-server owned by one test, on a fixed free port with its data in a test-owned folder
 * (append-only file, fsync on every write), that the test can kill and start again, with its
 * data or empty, on the same port: the clients reconnect to the same address.
 */
export class RestartableRedis {
  readonly port: number;
  readonly dir: string;
  readonly #binary: string;
  #process: ManagedProcess | undefined;

  private constructor(binary: string, port: number) {
    this.#binary = binary;
    this.port = port;
    this.dir = mkdtempSync(join(tmpdir(), 'tgfed-redis-restart-'));
  }

  static async start(binary: string): Promise<RestartableRedis> {
    const redis = new RestartableRedis(binary, await freePort());
    await redis.start();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts the server on the same port and folder (reads the append-only file if there is one). */
  async start(): Promise<void> {
    if (this.#process !== undefined) throw new Error('redis is running');
    this.#process = await startManagedProcess({
      name: 'redis-restartable',
      command: this.#binary,
      args: [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--maxmemory-policy',
        'noeviction',
      ],
      ready: () => ping(this.port),
    });
  }

  /** SIGKILL: no shutdown save, only what the append-only file already holds survives. */
  async kill(): Promise<void> {
    await this.#process?.kill();
    this.#process = undefined;
  }

  /** Deletes the data folder's content (call while stopped): the next start is empty. */
  wipe(): void {
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir);
  }

  async stop(): Promise<void> {
    await this.#process?.stop();
    this.#process = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

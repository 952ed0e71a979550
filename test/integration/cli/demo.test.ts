import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../env/free-port.js';
import { spawnTgfed } from './tgfed-runner.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../../..');
const homeDir = mkdtempSync(join(tmpdir(), 'tgfed-demo-test-'));
const redisServer = inject('testenv').redisServer;

/** The demo as a user starts it, its output as it comes, and waits on it. */
class DemoProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'hub/cli/tgfed.ts', 'demo', ...args], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'] ?? '', HOME: homeDir, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    this.child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((done) => this.child.on('exit', (code) => done(code)));
  }

  async waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.stdout);
      if (match !== null) return match;
      if (this.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`no ${pattern} in the demo's output:\n${this.stdout}\n${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterAll(() => rmSync(homeDir, { recursive: true, force: true }));

describe('tgfed demo', () => {
  it('converges, answers tgfed status and get, and stops cleanly without orphans', async () => {
    const adminPort = await freePort();
    const demo = new DemoProcess(
      ['--churn-per-second', '0', '--no-ui', '--admin-address', `127.0.0.1:${adminPort}`],
      { TGFED_REDIS_SERVER: redisServer },
    );
    try {
      const redisPid = Number((await demo.waitFor(/redis-server \(pid (\d+)\)/, 60_000))[1]);
      expect(alive(redisPid)).toBe(true);
      const config = (await demo.waitFor(/export TGFED_CLI_CONFIG=(\S+)/, 10_000))[1]!;
      await demo.waitFor(/initial sync done in [\d.]+ s: every target group in sync/, 90_000);
      expect(demo.stdout).toMatch(/syncing: \d+\/\d+ targets registered in 3 target groups/);

      const env = { TGFED_CLI_CONFIG: config };
      // Converged means tgfed status says so (exit 0); on a loaded machine a follow-up
      // reconcile may still be running the first time it is asked.
      let status = await spawnTgfed(['status', '-o', 'json'], { homeDir, env });
      for (let attempt = 1; attempt < 10 && status.code !== 0; attempt++) {
        await new Promise((r) => setTimeout(r, 2_000));
        status = await spawnTgfed(['status', '-o', 'json'], { homeDir, env });
      }
      expect(status.stderr).toBe('');
      expect(status.code, status.stdout).toBe(0);
      const overview = JSON.parse(status.stdout) as {
        clusters: { id: string; state: string }[];
        targetGroups: { inSync: boolean; desiredTargets: number }[];
      };
      expect(overview.clusters.map((c) => c.id).sort()).toEqual(['central', 'east', 'west']);
      expect(overview.targetGroups).toHaveLength(3);
      expect(overview.targetGroups.every((g) => g.inSync)).toBe(true);
      // web: 10 pods in each of 3 clusters; api: 20 in each, over a pool of two groups.
      expect(overview.targetGroups.reduce((n, g) => n + g.desiredTargets, 0)).toBe(90);

      const get = await spawnTgfed(['get', 'clusters', '-o', 'json'], { homeDir, env });
      expect(get.code).toBe(0);
      expect(get.stdout).toContain('"east"');

      demo.child.kill('SIGTERM');
      expect(await demo.exited).toBe(0);
      expect(demo.stdout).toContain('stopped');
      expect(alive(redisPid)).toBe(false);
    } finally {
      // After a failure: SIGTERM first, so the demo stops its redis-server (a SIGKILL would
      // orphan it: it runs in its own process group), then SIGKILL if it hangs.
      if (demo.child.exitCode === null && demo.child.signalCode === null) {
        demo.child.kill('SIGTERM');
        const timer = setTimeout(() => demo.child.kill('SIGKILL'), 10_000);
        await demo.exited;
        clearTimeout(timer);
      }
    }
  }, 180_000);

  it('says how to install redis-server when it is missing, and exits 2', async () => {
    const demo = new DemoProcess(['--no-ui', '--admin-address', '127.0.0.1:0'], {
      TGFED_REDIS_SERVER: join(homeDir, 'no-such-redis-server'),
    });
    expect(await demo.exited).toBe(2);
    expect(demo.stderr).toMatch(/no-such-redis-server is not an executable redis-server/);
    expect(demo.stderr).toMatch(/apt-get install redis-server/);
  }, 60_000);
});

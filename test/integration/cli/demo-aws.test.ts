import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { afterAll, describe, expect, inject, it } from 'vitest';
import type { TargetGroup } from '../../../shared/index.js';
import { freePort } from '../../env/free-port.js';
import { MOTO_REGION, MOTO_TEST_CREDENTIALS, uniqueAccountId } from '../../env/moto-server.js';
import { MotoAccounts } from '../../support/moto-accounts.js';
import { spawnTgfed } from './tgfed-runner.js';

// `tgfed demo --bindings-file`: the simulated clusters feed real target groups, here in moto, in
// three accounts reached through STS AssumeRole; the demo gets AWS only through the SDK's
// standard environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_REGION), as a user would give it.

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../../..');
const homeDir = mkdtempSync(join(tmpdir(), 'tgfed-demo-aws-test-'));
const redisServer = inject('testenv').redisServer;
const endpoint = inject('motoEndpoint');
const EXTERNAL_ID = 'tgfed-demo-aws-test';
const moto = new MotoAccounts(endpoint, EXTERNAL_ID);

/** The demo as a user starts it, its output as it comes, and waits on it. */
class DemoProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[], env: Record<string, string>) {
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

/**
 * `ip:8080` of the first `count` pods of a service in every simulated cluster (10.1 east,
 * 10.2 west, 10.3 central). Without churn the addresses are deterministic: each cluster hands
 * them out in order, web's 10 pods first, then api's 20.
 */
function podTargets(first: number, count: number): string[] {
  const targets: string[] = [];
  for (const block of [1, 2, 3]) {
    for (let host = first; host < first + count; host++) targets.push(`10.${block}.0.${host}:8080`);
  }
  return targets.sort();
}

/** A bindings file entry's target group, as a user writes it. */
function asFileGroup(group: TargetGroup) {
  return {
    arn: group.arn,
    roleArn: group.roleArn,
    externalId: group.externalId,
    ...(group.capacity > 0 ? { capacity: group.capacity } : {}),
  };
}

afterAll(() => {
  moto.close();
  rmSync(homeDir, { recursive: true, force: true });
});

describe('tgfed demo with a bindings file', () => {
  it('drives real target groups in moto through the SDK settings, not the simulator', async () => {
    const web = await moto.createTargetGroup(uniqueAccountId());
    // 60 api pods over two groups of 45 in two more accounts: the pool has to spread them.
    const apiPool = [
      await moto.createTargetGroup(uniqueAccountId(), 45),
      await moto.createTargetGroup(uniqueAccountId(), 45),
    ];
    const everywhere = { labels: { matchLabels: { env: 'demo' } } };
    const bindingsFile = join(homeDir, 'bindings.yaml');
    writeFileSync(
      bindingsFile,
      toYaml({
        bindings: [
          {
            name: 'web',
            services: { namespace: 'shop', name: 'web' },
            port: { name: 'http' },
            clusters: everywhere,
            targetGroup: asFileGroup(web),
          },
          {
            name: 'api',
            services: { namespace: 'shop', name: 'api' },
            port: { name: 'http' },
            clusters: everywhere,
            pool: { groups: apiPool.map(asFileGroup) },
          },
        ],
      }),
    );

    const adminPort = await freePort();
    const demo = new DemoProcess(
      [
        '--bindings-file',
        bindingsFile,
        '--churn-per-second',
        '0',
        '--no-ui',
        '--admin-address',
        `127.0.0.1:${adminPort}`,
      ],
      {
        TGFED_REDIS_SERVER: redisServer,
        AWS_ENDPOINT_URL: endpoint,
        AWS_ACCESS_KEY_ID: MOTO_TEST_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: MOTO_TEST_CREDENTIALS.secretAccessKey,
        AWS_REGION: MOTO_REGION,
      },
    );
    try {
      await demo.waitFor(/^AWS: from the SDK settings$/m, 60_000);
      expect(demo.stdout).not.toMatch(/ELBv2 simulator/);
      const config = (await demo.waitFor(/export TGFED_CLI_CONFIG=(\S+)/, 10_000))[1]!;
      await demo.waitFor(/initial sync done in [\d.]+ s: every target group in sync/, 120_000);

      expect(await moto.targetsIn(web)).toEqual(podTargets(1, 10));
      const pooled = await Promise.all(apiPool.map((g) => moto.targetsIn(g)));
      expect(pooled.flat().sort()).toEqual(podTargets(11, 20));
      for (const targets of pooled) expect(targets.length).toBeLessThanOrEqual(45);

      const status = await spawnTgfed(['status', '-o', 'json'], {
        homeDir,
        env: { TGFED_CLI_CONFIG: config },
      });
      expect(status.stderr).toBe('');
      expect(status.code).toBe(0);
      const overview = JSON.parse(status.stdout) as {
        healthy: boolean;
        clusters: { id: string; state: string }[];
        targetGroups: {
          targetGroup: { arn: string };
          inSync: boolean;
          desiredTargets: number;
          actualTargets: number;
        }[];
      };
      expect(overview.healthy).toBe(true);
      expect(overview.clusters.map((c) => c.id).sort()).toEqual(['central', 'east', 'west']);
      expect(overview.targetGroups.map((g) => g.targetGroup.arn).sort()).toEqual(
        [web, ...apiPool].map((g) => g.arn).sort(),
      );
      expect(overview.targetGroups.every((g) => g.inSync)).toBe(true);
      expect(overview.targetGroups.reduce((n, g) => n + g.desiredTargets, 0)).toBe(90);

      demo.child.kill('SIGTERM');
      expect(await demo.exited).toBe(0);
      expect(demo.stdout).toContain('stopped');
    } finally {
      demo.child.kill('SIGKILL');
    }
  }, 240_000);
});

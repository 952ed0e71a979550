import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { hashAdminToken } from '../../../hub/admin/index.js';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { freePort } from '../../env/free-port.js';
import { waitFor } from '../../env/wait-for.js';
import { ACCOUNT, REGION } from '../../support/binding-fixtures.js';
import { bearer } from '../../support/test-hub-settings.js';
import { TestFederation } from '../../support/test-federation.js';
import { spawnTgfed as spawnTgfedProcess, tgfedInProcess, type CliResult } from './tgfed-runner.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// The `tgfed` CLI against a real hub (real Redis) with a real worker on the ELBv2 simulator:
// in-process through runTgfed with captured streams, and the real entry as a child process for
// the exit codes a shell sees.

const viewerToken = `viewer-${Math.random().toString(36).slice(2)}`;

let sim: Elbv2SimulatorServer;
let fed: TestFederation;
let home: string;
let hub: string;
let closedPort: number;
let webArn: string;
let guardedArn: string;

/** Runs `tgfed argv` in this process, with an empty home and only the given environment. */
function tgfed(
  argv: readonly string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<CliResult> {
  return tgfedInProcess(argv, { homeDir: home, ...options });
}

/** The admin flags of the test hub with the admin token. */
function admin(...argv: string[]): string[] {
  return [...argv, '--hub', hub, '--insecure', '--token', fed.adminToken];
}

/** Runs the real entry as a child process. */
function spawnTgfed(argv: readonly string[]): Promise<CliResult> {
  return spawnTgfedProcess(argv, { homeDir: home });
}

function writeFile(name: string, content: string): string {
  const path = join(home, name);
  writeFileSync(path, content);
  return path;
}

function bindingYaml(name: string, arn: string, cluster: string): string {
  return toYaml({
    bindings: [
      {
        name,
        services: { namespace: 'shop', name: 'web' },
        port: { name: 'http' },
        clusters: { names: [cluster] },
        targetGroup: { arn, roleArn: `arn:aws:iam::${ACCOUNT}:role/tgfed`, externalId: 'ext' },
      },
    ],
  });
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

interface StatusJson {
  desiredTargets?: number;
  actualTargets?: number;
  ownedTargets?: number;
  inSync?: boolean;
  heldOperations?: { id: string; deregistrations: number; targetsBefore: number }[];
}

async function diffJson(arn: string): Promise<{ code: number | undefined; status: StatusJson }> {
  const result = await tgfed(admin('diff', arn, '-o', 'json'));
  expect(result.stderr).toBe('');
  return { code: result.code, status: JSON.parse(result.stdout) as StatusJson };
}

async function inSync(arn: string, targets: number, what: string): Promise<void> {
  await waitFor(
    async () => {
      const { code, status } = await diffJson(arn);
      return code === 0 && status.desiredTargets === targets && status.actualTargets === targets;
    },
    { what, timeoutMs: 20_000 },
  );
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'tgfed-cli-'));
  sim = await startElbv2Simulator({ rateLimits: false, deregistrationDelayMs: 300 });
  const hubSettings: Record<string, unknown> = {};
  fed = new TestFederation({
    name: 'cli',
    redisUrl: inject('redisUrl'),
    clusters: [
      { id: 'east', block: 1 },
      { id: 'west', block: 2 },
    ],
    hubSettings,
    workerSettings: { driftIntervalMs: 60_000, guardMinTargets: 5 },
  });
  const tokensFile = join(fed.dir, 'cli-admin.yaml');
  writeFileSync(
    tokensFile,
    toYaml({
      tokens: [
        { name: 'ci', role: 'admin', tokenSha256: hashAdminToken(fed.adminToken) },
        { name: 'viewer', role: 'read-only', tokenSha256: hashAdminToken(viewerToken) },
      ],
    }),
  );
  hubSettings['adminTokensFile'] = tokensFile;
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(sim.url));
  hub = `127.0.0.1:${fed.hub.adminPort}`;
  closedPort = await freePort();
  const group = (name: string) =>
    sim.simulator.createTargetGroup({ account: ACCOUNT, region: REGION, name, port: 8080 });
  webArn = group('cli-web');
  guardedArn = group('cli-guarded');
});

afterAll(async () => {
  await fed?.close();
  await sim?.close();
  if (home !== undefined) rmSync(home, { recursive: true, force: true });
});

describe('tgfed against a running hub', () => {
  it('applies a bindings file, then gets the binding back; a second apply changes nothing', async () => {
    const file = writeFile('web.yaml', bindingYaml('cli-web', webArn, 'east'));
    const applied = await tgfed(admin('apply', '-f', file));
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    const version = /^binding\/cli-web configured \(version (\d+)\)\n$/.exec(applied.stdout)?.[1];
    expect(version).toBeDefined();
    const again = await tgfed(admin('apply', '-f', file));
    expect(again.stdout).toBe(`binding/cli-web unchanged (version ${version})\n`);

    const got = await tgfed(admin('get', 'bindings', 'cli-web', '-o', 'yaml'));
    expect(got.code).toBe(0);
    const binding = parseYaml(got.stdout) as Record<string, unknown>;
    expect(binding).toMatchObject({
      name: 'cli-web',
      services: { namespace: 'shop', name: 'web' },
      port: { name: 'http' },
      clusters: { names: ['east'] },
      targetGroup: { arn: webArn, externalId: 'ext' },
      version: Number(version),
    });

    // What get prints can be applied again (version and updatedUnixMs are output-only).
    const list = await tgfed(admin('get', 'bindings', '-o', 'yaml'));
    const roundTrip = await tgfed(admin('apply', '-f', '-', '--dry-run'), { stdin: list.stdout });
    expect(roundTrip).toEqual({
      code: 0,
      stdout: `binding/cli-web unchanged (version ${version}) (dry run)\n`,
      stderr: '',
    });

    const table = await tgfed(admin('get', 'bindings'));
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+SERVICES\s+PORT\s+CLUSTERS\s+VERSION/);
    expect(table.stdout).toMatch(
      new RegExp(`^cli-web\\s+shop/web\\s+http\\s+east\\s+${version}\\s`, 'm'),
    );
  });

  it('lists clusters as JSON with their connection state', async () => {
    fed.setEndpoints('east', range(1, 3));
    fed.setEndpoints('west', range(1, 10));
    // Only services a binding selects are published: cli-web takes shop/web from east.
    const clusters = await waitFor(
      async () => {
        const result = await tgfed(admin('get', 'clusters', '-o', 'json'));
        expect(result.code).toBe(0);
        const parsed = JSON.parse(result.stdout) as {
          clusters: { id: string; state: string; endpointCount?: number }[];
        };
        const ready = parsed.clusters.every((c) => c.state === 'CLUSTER_STATE_CONNECTED');
        return ready && parsed.clusters[0]?.endpointCount === 3 ? parsed.clusters : undefined;
      },
      { what: 'both clusters connected, east with its endpoints', timeoutMs: 20_000 },
    );
    expect(clusters.map((c) => [c.id, c.state])).toEqual([
      ['east', 'CLUSTER_STATE_CONNECTED'],
      ['west', 'CLUSTER_STATE_CONNECTED'],
    ]);

    const table = await tgfed(admin('get', 'clusters'));
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+STATE\s+SERVICES\s+ENDPOINTS/);
    expect(table.stdout).toMatch(/^east\s+connected\s+1\s+3\s/m);

    const one = await tgfed(admin('get', 'cluster', 'east', '-o', 'yaml'));
    expect(one.code).toBe(0);
    const detail = parseYaml(one.stdout) as { cluster: { id: string }; services: unknown[] };
    expect(detail.cluster.id).toBe('east');
    expect(detail.services).toHaveLength(1);

    const missing = await tgfed(admin('get', 'cluster', 'north'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('tgfed get: 5 NOT_FOUND: no cluster north\n');
  });

  it('shows desired, actual and owned targets with diff, and lists target groups', async () => {
    await inSync(webArn, 3, 'cli-web in sync with three targets');
    const { status } = await diffJson(webArn);
    expect(status).toMatchObject({ desiredTargets: 3, actualTargets: 3, ownedTargets: 3 });

    const table = await tgfed(admin('diff', webArn));
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(`target group   ${webArn}\n`);
    expect(table.stdout).toContain('in sync        yes\n');
    expect(table.stdout).toMatch(/^desired\s+3\s/m);
    expect(table.stdout).toMatch(/^owned\s+3\s/m);

    const groups = await tgfed(admin('get', 'targetgroups', '-o', 'json'));
    expect(groups.code).toBe(0);
    const parsed = JSON.parse(groups.stdout) as {
      targetGroups: { targetGroup: { arn: string }; bindings: string[]; inSync?: boolean }[];
    };
    expect(parsed.targetGroups.find((g) => g.targetGroup.arn === webArn)).toMatchObject({
      bindings: ['cli-web'],
      inSync: true,
    });
  });

  it('reports one screen of status; alerts as ListAlerts serves them', async () => {
    // Whether this hub serves ListAlerts decides what status must say about alerts.
    // Whether this hub serves ListAlerts, and what fires, decides what status must say.
    const alerts = await new Promise<string[] | undefined>((done, fail) =>
      fed.admin.listAlerts({}, bearer(fed.adminToken), (err, res) =>
        err === null
          ? done(res.alerts.map((a) => a.name))
          : err.code === grpc.status.UNIMPLEMENTED
            ? done(undefined)
            : fail(err),
      ),
    );
    const result = await tgfed(admin('status'));
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain(`hub ${hub}\n`);
    expect(result.stdout).toMatch(/^clusters: 2 connected$/m);
    expect(result.stdout).toMatch(
      new RegExp(`^  ${webArn.replaceAll('/', '\\/')}\\s+yes\\s+3\\s+3\\s+3\\s`, 'm'),
    );
    if (alerts === undefined) expect(result.stdout).toMatch(/^alerts: not served by this hub$/m);
    else if (alerts.length === 0) expect(result.stdout).toMatch(/^alerts: none firing$/m);
    else expect(result.stdout).toMatch(new RegExp(`^alerts: ${alerts.length} firing$`, 'm'));

    const json = await tgfed(admin('status', '-o', 'json'));
    const parsed = JSON.parse(json.stdout) as {
      healthy: boolean;
      attention: string[];
      alertsServed: boolean;
      alerts: { name: string }[];
      clusters: unknown[];
    };
    expect(parsed.alertsServed).toBe(alerts !== undefined);
    expect(parsed.alerts.map((a) => a.name)).toEqual(alerts ?? []);
    expect(parsed.clusters).toHaveLength(2);
    // Connected clusters and a group in sync: only a firing alert needs attention.
    expect(parsed.attention).toEqual((alerts ?? []).map((name) => `alert ${name} is firing`));
    expect(parsed.healthy).toBe(parsed.attention.length === 0);
    expect(json.code).toBe(parsed.healthy ? 0 : 1);
    expect(result.code).toBe(json.code);
    if (parsed.healthy) expect(result.stdout.trimEnd().split('\n').at(-1)).toBe('all in sync');
  });

  it('queues a reconcile and refuses one for a group no binding targets', async () => {
    const queued = await tgfed(admin('reconcile', webArn, '--refresh'));
    expect(queued.code).toBe(0);
    expect(queued.stdout).toMatch(
      new RegExp(
        `^reconcile of ${webArn.replaceAll('/', '\\/')} queued \\(job .+\\), with a refresh\\n$`,
      ),
    );
    const json = await tgfed(admin('reconcile', webArn, '-o', 'json'));
    expect((JSON.parse(json.stdout) as { jobId: string }).jobId).not.toBe('');

    const unknown = await tgfed(admin('reconcile', `${webArn}0`));
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^tgfed reconcile: 5 NOT_FOUND: no binding targets/);
  });

  it('releases a held mass deregistration; an unknown id is NOT_FOUND (exit 1)', async () => {
    const unknown = await tgfed(admin('release', 'no-such-operation'));
    expect(unknown).toEqual({
      code: 1,
      stdout: '',
      stderr: 'tgfed release: 5 NOT_FOUND: no held operation no-such-operation\n',
    });

    const file = writeFile('guarded.yaml', bindingYaml('cli-guarded', guardedArn, 'west'));
    expect((await tgfed(admin('apply', '-f', file))).code).toBe(0);
    await inSync(guardedArn, 10, 'cli-guarded in sync with ten targets');

    fed.setEndpoints('west', [1, 2]);
    const held = await waitFor(
      async () => (await diffJson(guardedArn)).status.heldOperations?.[0],
      {
        what: 'the guard to hold the removal',
        timeoutMs: 20_000,
      },
    );
    expect(held).toMatchObject({ deregistrations: 8, targetsBefore: 10 });
    const diff = await tgfed(admin('diff', guardedArn));
    expect(diff.code).toBe(1);
    expect(diff.stdout).toContain('held by the mass-deregistration guard');
    expect(diff.stdout).toMatch(new RegExp(`^  ${held.id}\\s+8\\s+10\\s`, 'm'));
    const status = await tgfed(admin('status'));
    expect(status.code).toBe(1);
    expect(status.stdout).toContain(`held operation ${held.id} on ${guardedArn}`);

    const released = await tgfed(admin('release', held.id));
    expect(released).toEqual({
      code: 0,
      stdout: `released ${held.id}: 8 of 10 targets of ${guardedArn} will be deregistered\n`,
      stderr: '',
    });
    await inSync(guardedArn, 2, 'the released removal applied');
  });

  it('deletes a binding by name and the bindings of a file', async () => {
    const file = writeFile(
      'temp.yaml',
      bindingYaml('cli-temp', guardedArn.replace('cli-guarded', 'cli-temp'), 'east'),
    );
    expect((await tgfed(admin('apply', '-f', file))).code).toBe(0);
    const deleted = await tgfed(admin('delete', 'binding', 'cli-temp'));
    expect(deleted).toEqual({ code: 0, stdout: 'binding/cli-temp deleted\n', stderr: '' });
    const gone = await tgfed(admin('get', 'binding', 'cli-temp'));
    expect(gone).toEqual({
      code: 1,
      stdout: '',
      stderr: 'tgfed get: binding cli-temp not found\n',
    });

    const again = await tgfed(admin('delete', 'binding', 'cli-temp'));
    expect(again).toEqual({
      code: 1,
      stdout: '',
      stderr: 'tgfed delete: binding/cli-temp: not found\n',
    });
    expect((await tgfed(admin('delete', 'binding', 'cli-temp', '--ignore-not-found'))).code).toBe(
      0,
    );

    expect((await tgfed(admin('apply', '-f', file))).code).toBe(0);
    const byFile = await tgfed(admin('delete', '-f', file));
    expect(byFile).toEqual({ code: 0, stdout: 'binding/cli-temp deleted\n', stderr: '' });
  });
});

describe('tgfed errors and exit codes', () => {
  it('rejects bad flags and arguments with exit 2 and one clear line', async () => {
    const bogus = await tgfed(admin('get', 'clusters', '--bogus'));
    expect(bogus).toEqual({
      code: 2,
      stdout: '',
      stderr: "tgfed get: unknown option '--bogus' (see tgfed get --help)\n",
    });
    const kind = await tgfed(admin('get', 'pods'));
    expect(kind.code).toBe(2);
    expect(kind.stderr).toMatch(/^tgfed get: unknown kind "pods"/);
    const output = await tgfed(admin('get', 'clusters', '-o', 'xml'));
    expect(output.code).toBe(2);
    expect(output.stderr).toContain("argument 'xml' is invalid");
    const noHub = await tgfed(['get', 'clusters']);
    expect(noHub.code).toBe(2);
    expect(noHub.stderr).toMatch(/^tgfed get: no hub to call: pass --hub/);
    const timeout = await tgfed(admin('status', '--timeout', 'soon'));
    expect(timeout).toMatchObject({
      code: 2,
      stderr: 'tgfed status: --timeout: "soon" is not a duration (e.g. 500ms, 10s, 2m)\n',
    });
  });

  it('rejects an invalid bindings file with exit 2, naming the entry and field', async () => {
    const file = writeFile(
      'bad.yaml',
      toYaml([{ name: 'bad', targetGroup: { arn: webArn, roleARN: 'x' } }]),
    );
    const result = await tgfed(admin('apply', '-f', file));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`tgfed apply: invalid bindings in ${file}:`);
    expect(result.stderr).toContain(`${file}:0:targetGroup.roleARN: unknown field`);
    const missing = await tgfed(admin('apply', '-f', join(home, 'absent.yaml')));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^tgfed apply: cannot read .*absent\.yaml: ENOENT/);
  });

  it('exits 3 when the hub is unreachable', async () => {
    const result = await tgfed([
      'get',
      'bindings',
      '--hub',
      `127.0.0.1:${closedPort}`,
      '--insecure',
      '--timeout',
      '2s',
    ]);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(
      new RegExp(
        `^tgfed get: hub 127\\.0\\.0\\.1:${closedPort} unreachable \\(14 UNAVAILABLE: .*ECONNREFUSED`,
      ),
    );
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('exits 3 when the hub accepts the connection but never answers within --timeout', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((done) => silent.listen(0, '127.0.0.1', done));
    const port = (silent.address() as AddressInfo).port;
    try {
      const started = Date.now();
      const result = await tgfed([
        'get',
        'clusters',
        '--hub',
        `127.0.0.1:${port}`,
        '--insecure',
        '--timeout',
        '700ms',
      ]);
      expect(result.code).toBe(3);
      expect(result.stderr).toMatch(
        new RegExp(
          `^tgfed get: hub 127\\.0\\.0\\.1:${port} did not answer in time \\(4 DEADLINE_EXCEEDED`,
        ),
      );
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((done) => silent.close(done));
    }
  });

  it('exits 4 for a read-only token that applies, and for an unknown token', async () => {
    const file = writeFile('viewer.yaml', bindingYaml('cli-viewer', webArn, 'east'));
    const viewer = ['--hub', hub, '--insecure', '--token', viewerToken];
    expect((await tgfed(['get', 'bindings', ...viewer])).code).toBe(0);
    const apply = await tgfed(['apply', '-f', file, ...viewer]);
    expect(apply.code).toBe(4);
    expect(apply.stderr).toBe(
      'tgfed apply: not allowed (7 PERMISSION_DENIED: viewer has the read-only role; applyBinding needs the admin role)\n',
    );
    const stranger = await tgfed(['status', '--hub', hub, '--insecure', '--token', 'nope']);
    expect(stranger.code).toBe(4);
    expect(stranger.stderr).toMatch(
      /^tgfed status: hub .* refused the credentials \(16 UNAUTHENTICATED/,
    );
  });

  it('selects the hub from a context of the config file; flags and env win over it', async () => {
    const tokenFile = writeFile('admin.token', `${fed.adminToken}\n`);
    const config = writeFile(
      'config.yaml',
      toYaml({
        'current-context': 'gone',
        contexts: [
          { name: 'gone', hub: `127.0.0.1:${closedPort}`, insecure: true, timeout: '2s' },
          { name: 'test', hub, insecure: true, 'token-file': 'admin.token' },
        ],
      }),
    );
    expect(tokenFile).toBe(join(home, 'admin.token'));
    const env = { TGFED_CLI_CONFIG: config };
    expect((await tgfed(['get', 'bindings'], { env })).code).toBe(3);
    const byFlag = await tgfed(['get', 'bindings', '--context', 'test', '-o', 'json'], { env });
    expect(byFlag.code).toBe(0);
    expect(JSON.parse(byFlag.stdout)).toHaveProperty('bindings');
    expect(
      (await tgfed(['get', 'bindings'], { env: { ...env, TGFED_CONTEXT: 'test' } })).code,
    ).toBe(0);
    // --hub beats the current context's hub; the token then comes from the environment.
    const hubFlag = await tgfed(['get', 'bindings', '--hub', hub], {
      env: { ...env, TGFED_TOKEN: fed.adminToken },
    });
    expect(hubFlag.code).toBe(0);
    // TGFED_HUB beats the context, the --token flag beats TGFED_TOKEN.
    const envHub = await tgfed(['get', 'bindings', '--context', 'test', '--token', 'nope'], {
      env: { ...env, TGFED_HUB: `127.0.0.1:${closedPort}` },
    });
    expect(envHub.code).toBe(3);
    const flagToken = await tgfed(['get', 'bindings', '--context', 'test', '--token', 'nope'], {
      env,
    });
    expect(flagToken.code).toBe(4);

    const unknown = await tgfed(['get', 'bindings', '--context', 'prod'], { env });
    expect(unknown).toMatchObject({
      code: 2,
      stderr: `tgfed get: --context: no context prod in ${config} (has: gone, test)\n`,
    });
    const bad = writeFile('bad-config.yaml', toYaml({ contexts: [{ name: 'x', hub: 7444 }] }));
    const invalid = await tgfed(['get', 'bindings'], { env: { TGFED_CLI_CONFIG: bad } });
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toMatch(
      new RegExp(`^tgfed get: invalid CLI config file ${bad}: contexts\\[0\\]\\.hub: `),
    );
  });
});

describe('the tgfed entry as a process', () => {
  it('exits 0 with parseable JSON, 2 on bad flags or settings, 3 unreachable, 4 refused', async () => {
    const [ok, badFlag, unreachable, refused, badHubSettings] = await Promise.all([
      spawnTgfed(admin('get', 'bindings', '-o', 'json')),
      spawnTgfed(admin('status', '--frobnicate')),
      spawnTgfed(['get', 'clusters', '--hub', `127.0.0.1:${closedPort}`, '--insecure']),
      spawnTgfed([
        'apply',
        '-f',
        join(home, 'viewer.yaml'),
        '--hub',
        hub,
        '--insecure',
        '--token',
        viewerToken,
      ]),
      spawnTgfed(['hub', '--admin-address', 'nonsense']),
    ]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const names = (JSON.parse(ok.stdout) as { bindings: { name: string }[] }).bindings.map(
      (b) => b.name,
    );
    expect(names).toEqual(expect.arrayContaining(['cli-web', 'cli-guarded']));
    expect(badFlag).toMatchObject({ code: 2, stdout: '' });
    expect(badFlag.stderr).toBe(
      "tgfed status: unknown option '--frobnicate' (see tgfed status --help)\n",
    );
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toMatch(/^tgfed get: hub .* unreachable \(14 UNAVAILABLE/);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/^tgfed apply: not allowed \(7 PERMISSION_DENIED/);
    // The components keep their own exit codes under tgfed: 2 for bad settings.
    expect(badHubSettings.code).toBe(2);
    expect(badHubSettings.stderr).toMatch(
      /^tgfed hub: invalid configuration:\n {2}adminAddress \(--admin-address\): host:port/,
    );
  }, 60_000);
});

// Soak (issue #9, item 5; not in CI): the whole of tgfed under steady churn for `--minutes`,
// with one fault every `--fault-every-seconds` in rotation, checking that memory stays flat and
// that the state converges after every fault.
//
//   npm run soak                                     (30 minutes, a fault every 120 s)
//   npm run soak -- --minutes 3 --fault-every-seconds 30
//
// Processes, as in the fleet bench (fleet/fleet-bench.ts): a redis-server with its data in an
// append-only file (fsync always), the bundled hub and two bundled workers, one load process
// (fleet/fleet-load.ts) simulating the clusters with the real agent publisher, and the ELBv2 +
// STS simulator in this process with per-account rate limits and latency.
//
// Every cycle of `--fault-every-seconds`: a rolling restart of every pod over 75% of the cycle
// (about 20 pods/s at the default size) and the `big` service scaled up or down; 15% into the
// cycle, one fault in rotation (kill -9 a worker, kill -9 the hub, a cluster's agent away 20 s,
// redis-server killed and restarted from its AOF, 15 s of AWS throttling and 5xx answers). When
// the churn and the fault are over, the bench waits until every group holds exactly the
// expected targets and records how long that took. RSS of hub and workers and Redis
// `used_memory` are sampled every 10 s; growth compares the medians of the 5 minutes after a
// warm-up (the first sixth of the soak, at most 5 minutes: caches, V8's heap and the queues'
// bounded history fill) with the last 5 minutes. Redis memory is also broken down by key
// pattern after the cold start, after the warm-up and at the end, so that growth has a name.
// Table and JSON (+ an SVG of memory over time) go under `--out`.
import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { stringify as toYaml } from 'yaml';
import { hashAdminToken } from '../../hub/admin/index.js';
import { connectAdmin } from '../../hub/cli/admin/admin-connection.js';
import {
  Elbv2Simulator,
  startElbv2Simulator,
  type Elbv2Action,
  type Elbv2Caller,
  type Elbv2Request,
  type Elbv2Responses,
} from '../../hub/aws/simulator/index.js';
import { hashAgentToken } from '../../hub/ingest/index.js';
import { freePort } from '../env/free-port.js';
import { startManagedProcess, type ManagedProcess } from '../env/managed-process.js';
import { loadTestenvManifest } from '../env/testenv-manifest.js';
import { RestartableRedis } from '../support/restartable-redis.js';
import type { FromLoad, ToLoad } from './fleet/fleet-load.js';
import { lineChart, table, type Row } from './fleet/report.js';
import {
  EXTERNAL_ID,
  REGION,
  SCALED_SERVICE,
  SCENARIOS,
  addressPrefix,
  bindingsFileContent,
  clustersFileContent,
  clusterId,
  groupLayout,
  roleArn,
  type FleetScenario,
} from './fleet/scenario.js';

const DEPLOYED_NODE_OPTIONS = '--max-old-space-size=256 --max-semi-space-size=4';
/** The chart's `worker.nodeOptions`. */
const DEPLOYED_WORKER_NODE_OPTIONS = '--max-old-space-size=384 --max-semi-space-size=16';
/** Longest warm-up before the first memory window (a sixth of the soak when shorter). */
const WARM_UP_MAX_S = 300;
/** Memory may grow by less than this between the first and the last window. */
const MAX_GROWTH = 0.1;
const SAMPLE_EVERY_MS = 10_000;
const AGENT_AWAY_MS = 20_000;
const AWS_STORM_MS = 15_000;
const REDIS_DOWN_MS = 5_000;
/**
 * Bound on convergence, counted from the moment the churn and the fault are both over. What is
 * left to do then is small: the last debounce window (500 ms) and one reconcile per group (one
 * call of 50-150 ms per account bucket, well within its burst of 20); after a restart, agents
 * reconnect within their 2 s backoff cap and resync; reconciles that failed during the AWS storm
 * retry with full-jitter doubling from 1 s, and the storm ends ~55 s before the churn does. So a
 * few seconds are expected; 30 s leaves room for the shared 2-core machine.
 */
const CONVERGE_BOUND_MS = 30_000;
/** How long the soak waits for convergence on its own before it plays the operator. */
const UNAIDED_MS = 60_000;
/** A convergence slower than this logs what is still wrong, once (no action taken). */
const SLOW_REPORT_MS = 10_000;

const { values: flags } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'fault-every-seconds': { type: 'string', default: '120' },
    clusters: { type: 'string', default: '10' },
    out: { type: 'string', default: 'bench-results' },
    keep: { type: 'boolean', default: false },
  },
});
const minutes = Number(flags.minutes);
const faultEveryMs = Number(flags['fault-every-seconds']) * 1_000;
if (!(minutes > 0) || !(faultEveryMs >= 20_000)) {
  console.error('--minutes must be positive and --fault-every-seconds at least 20');
  process.exit(2);
}
const outDir = flags.out ?? 'bench-results';

// 10 clusters x 200 endpoints (4 services x 45 pods + `big` at 20, scaled to 30 and back),
// 20 groups in 3 accounts; capacity leaves room for the 30 s of draining targets under churn.
const scenario: FleetScenario = {
  ...SCENARIOS['ci']!,
  name: 'soak',
  clusters: Number(flags.clusters),
  services: 4,
  podsPerService: 45,
  groupsPerService: 4,
  groupCapacity: 300,
  accounts: 3,
  // Scaling down removes a third of the `big` groups' targets: under the guard's half.
  scaleFrom: 20,
  scaleTo: 30,
  scaleGroups: 4,
  workers: 2,
  workerConcurrency: 4,
  loadProcesses: 1,
  chunkSize: 500,
  debounceMs: 500,
  shards: 4,
  phaseTimeoutSeconds: 120,
};
const DEREGISTRATION_DELAY_MS = 30_000;

const repo = resolve(new URL('../..', import.meta.url).pathname);
const runDir = mkdtempSync(join(tmpdir(), 'tgfed-soak-'));
const failures: string[] = [];
const startedAt = performance.now();
const log = (message: string) =>
  console.log(`[${((performance.now() - startedAt) / 1000).toFixed(1).padStart(7)}s] ${message}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

// --- AWS: the simulator, recording every successful deregistration ---------------------------

class DeregistrationRecordingSimulator extends Elbv2Simulator {
  /** [address, group ARN, epoch ms] of every successful DeregisterTargets target. */
  readonly deregistrations: [string, string, number][] = [];
  /** Address → [group ARN, epoch ms] of its successful registrations, to explain a failure. */
  readonly registrations = new Map<string, [string, number][]>();

  override handle<A extends Elbv2Action>(
    caller: Elbv2Caller,
    request: Elbv2Request<A>,
  ): Elbv2Responses[A] {
    const response = super.handle(caller, request);
    const r = request as Elbv2Request;
    if (r.action === 'DeregisterTargets') {
      const now = Date.now();
      for (const t of r.targets) this.deregistrations.push([t.id, r.targetGroupArn, now]);
    }
    if (r.action === 'RegisterTargets') {
      const now = Date.now();
      for (const t of r.targets) {
        const list = this.registrations.get(t.id) ?? [];
        list.push([r.targetGroupArn, now]);
        this.registrations.set(t.id, list);
      }
    }
    return response;
  }
}

const simulator = new DeregistrationRecordingSimulator({
  rateLimits: { mutate: scenario.mutate, describe: scenario.describe },
  latencyMs: { min: scenario.latencyMinMs, max: scenario.latencyMaxMs },
  maxCallLog: 2_000_000,
});
const simServer = await startElbv2Simulator({ simulator });
const groups = groupLayout(scenario).map((g) => ({
  ...g,
  arn: simulator.createTargetGroup({
    account: g.account,
    region: REGION,
    name: g.name,
    port: 8080,
    capacity: scenario.groupCapacity,
    deregistrationDelayMs: DEREGISTRATION_DELAY_MS,
  }),
}));
const accounts = [...new Set(groups.map((g) => g.account))];
for (const account of accounts) simulator.allowRole(roleArn(account), { externalId: EXTERNAL_ID });
const poolOf = new Map<string, typeof groups>();
for (const g of groups) poolOf.set(g.service, [...(poolOf.get(g.service) ?? []), g]);

// --- configuration ---------------------------------------------------------------------------

const file = (name: string, content: unknown): string => {
  const path = join(runDir, name);
  writeFileSync(path, toYaml(content));
  return path;
};
const clustersFile = file('clusters.yaml', clustersFileContent(scenario, 'soak', hashAgentToken));
const bindingsFile = file('bindings.yaml', bindingsFileContent(scenario, 'soak', poolOf));

const ADMIN_TOKEN = 'soak-admin-token';
const adminTokensFile = file('admin.yaml', {
  tokens: [{ name: 'soak', role: 'admin', tokenSha256: hashAdminToken(ADMIN_TOKEN) }],
});

const redisServer = await RestartableRedis.start(loadTestenvManifest().redisServer);
const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1, lazyConnect: false });
redis.on('error', () => undefined); // down during the Redis fault; sampling skips those reads
const state = {
  redisUrl: redisServer.url,
  redisKeyPrefix: 'soak',
  clustersFile,
  reconcileShardCount: scenario.shards,
  reconcileDebounceMs: scenario.debounceMs,
  logLevel: 'warn',
  shutdownGraceMs: 2_000,
};
const hubPorts = { agent: await freePort(), admin: await freePort(), health: await freePort() };
const awsEnv = {
  AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: simServer.url,
  AWS_ENDPOINT_URL_STS: simServer.url,
  AWS_ACCESS_KEY_ID: 'AKIASOAKWORKER000000',
  AWS_SECRET_ACCESS_KEY: 'soak-secret',
  AWS_REGION: REGION,
};

// --- hub and workers: restartable bundled processes on fixed ports --------------------------

/** /proc figures of one process: resident set (MB) and CPU time (ms); undefined once gone. */
function procUsage(pid: number): { rssMb: number; cpuMs: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return undefined;
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the command), in ticks.
    const cpuMs = (Number(fields[11]) + Number(fields[12])) * 10;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return { rssMb: rssKb / 1024, cpuMs };
  } catch {
    return undefined;
  }
}

/** A hub or worker the soak starts, kills with SIGKILL and starts again with the same config. */
class SoakProcess {
  #process: ManagedProcess | undefined;
  /** CPU time of earlier incarnations, and of this one at the last sample. */
  #cpuMsBefore = 0;
  #cpuMsNow = 0;
  incarnation = 0;
  startedAtMs = 0;

  constructor(
    readonly name: string,
    readonly bundle: string,
    readonly config: string,
    readonly healthPort: number,
    readonly env: Record<string, string> = {},
  ) {}

  get pid(): number | undefined {
    return this.#process?.pid;
  }

  async start(): Promise<void> {
    const healthPort = this.healthPort;
    this.#process = await startManagedProcess({
      name: `soak-${this.name}`,
      command: process.execPath,
      args: [join(repo, 'dist/bundle', this.bundle), '--config', this.config],
      cwd: repo,
      env: {
        ...process.env,
        NODE_OPTIONS:
          this.bundle === 'tgfed-worker.mjs' ? DEPLOYED_WORKER_NODE_OPTIONS : DEPLOYED_NODE_OPTIONS,
        ...this.env,
      },
      ready: async () => {
        try {
          return (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).ok;
        } catch {
          return false;
        }
      },
      readyTimeoutMs: 120_000,
    });
    this.incarnation++;
    this.startedAtMs = Date.now();
    this.#cpuMsNow = 0;
  }

  /** RSS and total CPU time over every incarnation; RSS undefined when it is not running. */
  sample(): { rssMb: number | undefined; cpuMs: number } {
    const usage = this.pid === undefined ? undefined : procUsage(this.pid);
    if (usage !== undefined) this.#cpuMsNow = usage.cpuMs;
    return { rssMb: usage?.rssMb, cpuMs: this.#cpuMsBefore + this.#cpuMsNow };
  }

  alive(): boolean {
    return this.pid !== undefined && procUsage(this.pid) !== undefined;
  }

  async kill9(): Promise<void> {
    this.sample();
    this.#cpuMsBefore += this.#cpuMsNow;
    this.#cpuMsNow = 0;
    await this.#process?.kill();
    this.#process = undefined;
  }

  logTail(): string {
    return this.#process?.logTail(20) ?? '';
  }

  async stop(): Promise<void> {
    await this.#process?.stop(5_000);
    this.#process = undefined;
  }
}

const hub = new SoakProcess(
  'hub',
  'tgfed-hub.mjs',
  file('hub.yaml', {
    ...state,
    hubId: 'soak-hub',
    agentAddress: `127.0.0.1:${hubPorts.agent}`,
    adminAddress: `127.0.0.1:${hubPorts.admin}`,
    healthAddress: `127.0.0.1:${hubPorts.health}`,
    insecure: true,
    agentClientCertificates: 'optional',
    adminClientCertificates: 'none',
    adminTokensFile,
    bindingsFile,
  }),
  hubPorts.health,
);
const workers: SoakProcess[] = [];
for (let w = 0; w < scenario.workers; w++) {
  const health = await freePort();
  const config = file(`worker-${w}.yaml`, {
    ...state,
    workerId: `soak-worker-${w}`,
    workerConcurrency: scenario.workerConcurrency,
    reconcileChunkSize: scenario.chunkSize,
    awsMutateRatePerSecond: scenario.mutate.ratePerSecond,
    awsMutateBurst: scenario.mutate.burst,
    awsDescribeRatePerSecond: scenario.describe.ratePerSecond,
    awsDescribeBurst: scenario.describe.burst,
    healthAddress: `127.0.0.1:${health}`,
  });
  workers.push(new SoakProcess(`worker-${w}`, 'tgfed-worker.mjs', config, health, awsEnv));
}
const tgfed = [hub, ...workers];

// --- the load process (fleet-load.ts) ----------------------------------------------------------

/** Address → when the agent last saw it turn unready (epoch ms). */
const unreadyAt = new Map<string, number>();
const inbox: FromLoad[] = [];
let wake: (() => void) | undefined;
const load = fork(
  join(repo, 'test/bench/soak-load.ts'),
  [
    `--target=127.0.0.1:${hubPorts.agent}`,
    `--scenario=${JSON.stringify(scenario)}`,
    '--first-cluster=0',
    `--clusters=${scenario.clusters}`,
  ],
  {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  },
);
let stopping = false;
let loadExit: string | undefined;
load.on('exit', (code, signal) => {
  if (!stopping) {
    // The soak stops here but still reports what it measured so far.
    loadExit = `load process exited (${code ?? signal}) at ${((Date.now() - soakStartMs) / 1000).toFixed(0)} s`;
    console.error(loadExit);
    wake?.();
  }
});
load.on('error', (err) => console.error(`load process: ${err.message}`));
load.on('message', (m: FromLoad) => {
  if (m.type === 'changes') {
    for (const [address, ready, at] of m.changes) if (ready === 0) unreadyAt.set(address, at);
    return;
  }
  inbox.push(m);
  wake?.();
});
const sendLoad = (message: ToLoad) => load.send(message);
async function nextFromLoad<T extends FromLoad['type']>(
  type: T,
): Promise<Extract<FromLoad, { type: T }>> {
  for (;;) {
    const index = inbox.findIndex((m) => m.type === type);
    if (index >= 0) return inbox.splice(index, 1)[0] as Extract<FromLoad, { type: T }>;
    if (loadExit !== undefined) throw new Error(loadExit);
    await new Promise<void>((r) => (wake = r));
  }
}

async function stopAll(): Promise<void> {
  stopping = true;
  if (load.exitCode === null) load.kill('SIGTERM');
  await Promise.allSettled(tgfed.map((p) => p.stop()));
  await simServer.close().catch(() => undefined);
  redis.disconnect();
  admin.close();
  await redisServer.stop().catch(() => undefined);
  if (!flags.keep) rmSync(runDir, { recursive: true, force: true });
}
process.on('exit', () => {
  if (load.exitCode === null) load.kill('SIGKILL');
});

// --- convergence (the check of fleet-bench.ts, which does not export it) -----------------------

async function expectedTargets(): Promise<Map<string, Set<string>>> {
  sendLoad({ type: 'snapshot' });
  const { services } = await nextFromLoad('snapshot');
  return new Map(Object.entries(services).map(([s, addresses]) => [s, new Set(addresses)]));
}

/** What is wrong with AWS compared to `expected`; empty when converged. */
function differences(expected: Map<string, Set<string>>, limit = 5): string[] {
  const problems: string[] = [];
  for (const [service, pool] of poolOf) {
    const want = expected.get(service) ?? new Set<string>();
    const seen = new Set<string>();
    for (const g of pool) {
      const present = simulator.targets(g.arn).filter((t) => t.state !== 'draining');
      for (const t of present) {
        if (seen.has(t.id)) problems.push(`${service}: ${t.id} in two groups`);
        seen.add(t.id);
        if (!want.has(t.id)) problems.push(`${g.name}: ${t.id} should not be there`);
      }
    }
    for (const a of want) if (!seen.has(a)) problems.push(`${service}: ${a} missing`);
    if (problems.length >= limit) break;
  }
  return problems.slice(0, limit);
}

const admin = connectAdmin({
  address: `127.0.0.1:${hubPorts.admin}`,
  token: ADMIN_TOKEN,
  security: { kind: 'insecure' },
  timeoutMs: 5_000,
});
/** Held operations the soak released, as the operator DESIGN.md's guard expects. */
const released: { id: string; group: string; deregistrations: number; atMs: number }[] = [];

/**
 * Releases every operation the mass-deregistration guard holds. A rolling restart that goes on
 * while AWS refuses calls replaces most of a group's pods before the next reconcile can run, so
 * that reconcile removes more than half the group and is held (by design); the soak plays the
 * operator who releases it, and reports how often that happened.
 */
async function releaseHeldOperations(): Promise<number> {
  let count = 0;
  for (const g of groups) {
    try {
      const { status } = await admin.api.getTargetGroupStatus({ arn: g.arn });
      for (const held of status?.heldOperations ?? []) {
        const { operation } = await admin.api.releaseHeldOperation({ id: held.id });
        released.push({
          id: held.id,
          group: g.name,
          deregistrations: operation?.deregistrations ?? 0,
          atMs: Date.now(),
        });
        log(`released held operation ${held.id} on ${g.name}`);
        count++;
      }
    } catch {
      // The hub is restarting or Redis is away: the next poll asks again.
    }
  }
  return count;
}

/** Operator reconciles the soak triggered (`tgfed reconcile`), when a group stayed wrong too long. */
let operatorReconciles = 0;

/** Logs, for the pool of the first problem, what AWS holds in each group against its capacity. */
function logPoolOccupancy(problems: readonly string[]): void {
  const service = [...poolOf.keys()].find((s) =>
    problems.some((p) => p.startsWith(`${s}:`) || p.startsWith(`${s}-`)),
  );
  const pool = service === undefined ? undefined : poolOf.get(service);
  if (pool === undefined) return;
  const held = pool.map((g) => {
    const targets = simulator.targets(g.arn);
    const draining = targets.filter((t) => t.state === 'draining').length;
    return `${g.name} ${targets.length - draining} + ${draining} draining / ${scenario.groupCapacity}`;
  });
  log(`${service} in AWS: ${held.join(', ')}`);
}

/**
 * Logs, for the targets `problems` report missing, where the pool's stored assignment puts them:
 * the groups whose share holds each, and its placement claim (group and age), with the status
 * of those groups as the hub reports it.
 */
async function logMissingPlacements(problems: readonly string[]): Promise<void> {
  const missing = problems.flatMap((p) => {
    const m = /^([a-z0-9-]+): (\S+) missing$/.exec(p);
    return m === null ? [] : [{ service: m[1] as string, ip: m[2] as string }];
  });
  const named = new Set<string>();
  for (const { service, ip } of missing) {
    const pool = poolOf.get(service) ?? [];
    const arns = pool.map((g) => g.arn).sort();
    const inShares: string[] = [];
    for (const g of pool) {
      const [, fields] = await redis.hscan(
        `soak:{tg:${g.arn}}:assignment`,
        0,
        'MATCH',
        `${ip}:*`,
        'COUNT',
        10_000,
      );
      if (fields.length > 0) inShares.push(g.name);
    }
    let claim = 'none';
    for (const key of await redis.keys(`soak:{pool:${service}}:claims:*`)) {
      const [, fields] = await redis.hscan(key, 0, 'MATCH', `${ip}:*`, 'COUNT', 10_000);
      const value = fields[1];
      if (value === undefined) continue;
      const [index, at] = value.split('|');
      const arn = arns[Number(index)];
      const group = pool.find((g) => g.arn === arn);
      claim = `${group?.name ?? value} ${((Date.now() - Number(at)) / 1000).toFixed(1)} s ago`;
      if (group !== undefined) named.add(group.arn);
    }
    for (const g of pool) if (inShares.includes(g.name)) named.add(g.arn);
    log(`${service}: ${ip} in the shares of [${inShares.join(', ')}], claimed for ${claim}`);
  }
  for (const arn of named) {
    try {
      const { status } = await admin.api.getTargetGroupStatus({ arn });
      const g = groups.find((x) => x.arn === arn);
      log(
        `${g?.name ?? arn}: desired ${status?.desiredTargets}, actual ${status?.actualTargets}, ` +
          `outcome ${status?.lastOutcome}, last reconcile ${((Date.now() - Number(status?.lastReconcileUnixMs ?? 0)) / 1000).toFixed(1)} s ago, ` +
          `error '${status?.lastError ?? ''}'`,
      );
    } catch (err) {
      log(`cannot read a group's status: ${String(err)}`);
    }
  }
}

/** Logs the first group `problems` name (or of the pool they name) as the hub reports it. */
async function logWrongGroup(problems: readonly string[]): Promise<void> {
  const wrongGroup =
    groups.find((g) => problems.some((p) => p.startsWith(`${g.name}:`))) ??
    groups.find((g) => problems.some((p) => p.startsWith(`${g.service}:`)));
  if (wrongGroup === undefined) return;
  try {
    const { status } = await admin.api.getTargetGroupStatus({ arn: wrongGroup.arn });
    log(`${wrongGroup.name} as the hub reports it: ${JSON.stringify(status).slice(0, 1_500)}`);
  } catch (err) {
    log(`cannot read ${wrongGroup.name}'s status: ${String(err)}`);
  }
}

/**
 * Polls until AWS holds exactly the expected targets. `ms` is counted from `sinceMs` (NaN on
 * timeout). If AWS is still wrong `UNAIDED_MS` after `sinceMs`, the soak logs what is wrong and
 * what the hub reports, then acts as an operator running `tgfed reconcile` on every group, so
 * that one slow recovery does not hide the faults after it; `operatorAfterMs` says so.
 */
async function converge(
  what: string,
  sinceMs: number,
): Promise<{ ms: number; operatorAfterMs?: number }> {
  const expected = await expectedTargets();
  const deadline = Date.now() + scenario.phaseTimeoutSeconds * 1_000;
  let nextHeldCheck = Date.now() + 3_000;
  let operatorAfterMs: number | undefined;
  let reportedSlow = false;
  for (;;) {
    const problems = differences(expected);
    if (problems.length === 0) {
      const ms = Date.now() - sinceMs;
      return operatorAfterMs === undefined ? { ms } : { ms, operatorAfterMs };
    }
    if (Date.now() >= nextHeldCheck) {
      await releaseHeldOperations();
      nextHeldCheck = Date.now() + 3_000;
    }
    if (!reportedSlow && Date.now() - sinceMs > SLOW_REPORT_MS) {
      reportedSlow = true;
      log(`${what}: slow, still wrong after ${Date.now() - sinceMs} ms: ${problems.join('; ')}`);
      logPoolOccupancy(problems);
      await logMissingPlacements(problems);
      await logWrongGroup(problems);
    }
    if (operatorAfterMs === undefined && Date.now() - sinceMs > UNAIDED_MS) {
      operatorAfterMs = Date.now() - sinceMs;
      log(`${what}: still wrong after ${operatorAfterMs} ms: ${problems.join('; ')}`);
      await logWrongGroup(problems);
      for (const g of groups) {
        try {
          await admin.api.triggerReconcile({ targetGroupArn: g.arn, refresh: false });
          operatorReconciles++;
        } catch (err) {
          log(`tgfed reconcile ${g.name} failed: ${String(err)}`);
        }
      }
    }
    if (Date.now() > deadline) {
      failures.push(
        `${what}: not converged after ${scenario.phaseTimeoutSeconds} s: ${problems.join('; ')}`,
      );
      return operatorAfterMs === undefined
        ? { ms: Number.NaN }
        : { ms: Number.NaN, operatorAfterMs };
    }
    await sleep(250);
  }
}

// --- sampling --------------------------------------------------------------------------------

interface Sample {
  /** Seconds since the churn began. */
  t: number;
  rssMb: Record<string, number | undefined>;
  /** Incarnation of each hub / worker process at the sample. */
  incarnation: Record<string, number>;
  redisUsedMb: number | undefined;
  redisRssMb: number | undefined;
  cpuMs: Record<string, number>;
}
const samples: Sample[] = [];
let soakStartMs = 0;

async function redisMemory(): Promise<{ used?: number; rss?: number }> {
  try {
    const info = await redis.info('memory');
    const mb = (key: string) => Number(new RegExp(`${key}:(\\d+)`).exec(info)?.[1]) / 1024 / 1024;
    return { used: mb('used_memory'), rss: mb('used_memory_rss') };
  } catch {
    return {};
  }
}

/** A key with its ids, addresses, job ids and numbers folded, so that alike keys group. */
function keyPattern(key: string): string {
  return key
    .replace(/arn:[^}\s]*/g, '<arn>')
    .replace(/\b\d{1,3}(\.\d{1,3}){3}(:\d+)?/g, '<ip>')
    .replace(/\b[rw]-[0-9a-z]+-[0-9a-f]{12}\b/g, '<job>')
    .replace(/[0-9a-f]{16,}/gi, '<hex>')
    .replace(/\d+/g, '<n>');
}

/** Redis memory (MEMORY USAGE) and key count by {@link keyPattern}; empty when Redis is down. */
async function redisKeyPatterns(): Promise<Map<string, { keys: number; bytes: number }>> {
  const patterns = new Map<string, { keys: number; bytes: number }>();
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'COUNT', 1_000);
      cursor = next;
      if (keys.length === 0) continue;
      const pipeline = redis.pipeline();
      for (const key of keys) pipeline.memory('USAGE', key);
      const results = (await pipeline.exec()) ?? [];
      keys.forEach((key, i) => {
        const entry = patterns.get(keyPattern(key)) ?? { keys: 0, bytes: 0 };
        entry.keys++;
        entry.bytes += Number(results[i]?.[1] ?? 0);
        patterns.set(keyPattern(key), entry);
      });
    } while (cursor !== '0');
  } catch {
    patterns.clear();
  }
  return patterns;
}
const keyBreakdowns: {
  at: string;
  t: number;
  patterns: Map<string, { keys: number; bytes: number }>;
}[] = [];
async function takeKeyBreakdown(at: string): Promise<void> {
  keyBreakdowns.push({
    at,
    t: (Date.now() - soakStartMs) / 1_000,
    patterns: await redisKeyPatterns(),
  });
}

async function takeSample(): Promise<void> {
  const sample: Sample = {
    t: (Date.now() - soakStartMs) / 1_000,
    rssMb: {},
    incarnation: {},
    redisUsedMb: undefined,
    redisRssMb: undefined,
    cpuMs: {},
  };
  for (const p of tgfed) {
    const { rssMb, cpuMs } = p.sample();
    sample.rssMb[p.name] = rssMb;
    sample.cpuMs[p.name] = cpuMs;
    sample.incarnation[p.name] = p.incarnation;
  }
  const loadUsage = load.pid === undefined ? undefined : procUsage(load.pid);
  sample.rssMb['load'] = loadUsage?.rssMb;
  sample.cpuMs['load'] = loadUsage?.cpuMs ?? 0;
  const memory = await redisMemory();
  sample.redisUsedMb = memory.used;
  sample.redisRssMb = memory.rss;
  samples.push(sample);
  // Once a minute a line in the log, so that an interrupted soak still leaves its figures.
  if (samples.length % 6 === 1) {
    const mb = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(1));
    log(
      `memory: hub ${mb(sample.rssMb['hub'])} MB, worker-0 ${mb(sample.rssMb['worker-0'])} MB, ` +
        `worker-1 ${mb(sample.rssMb['worker-1'])} MB, Redis used_memory ${mb(sample.redisUsedMb)} MB, ` +
        `load ${mb(sample.rssMb['load'])} MB`,
    );
  }
}

// --- faults ----------------------------------------------------------------------------------

type FaultKind = 'worker-kill' | 'hub-kill' | 'agent-away' | 'redis-restart' | 'aws-storm';
const ROTATION: FaultKind[] = [
  'worker-kill',
  'hub-kill',
  'agent-away',
  'redis-restart',
  'aws-storm',
];
/** Processes the soak itself has taken down; any other death is a failure. */
const expectedDown = new Set<SoakProcess>();

interface FaultOutcome {
  /** When the fault was over (process ready again, agent back, faults cleared). */
  healedAtMs: number;
  detail: string;
  /** Targets of a still-ready pod of the away cluster withdrawn while it was away. */
  withdrawnWhileAway?: number;
  /** Calls the injected AWS faults failed. */
  failedCalls?: number;
}

async function restartProcess(p: SoakProcess): Promise<FaultOutcome> {
  expectedDown.add(p);
  await p.kill9();
  // Started again at once, as Kubernetes restarts a crashed container.
  await p.start();
  expectedDown.delete(p);
  return { healedAtMs: Date.now(), detail: `${p.name} incarnation ${p.incarnation}` };
}

async function inject(kind: FaultKind): Promise<FaultOutcome> {
  switch (kind) {
    case 'worker-kill':
      // Always worker-0, so that worker-1 lives the whole soak: its memory is the cleanest figure.
      return restartProcess(workers[0]!);
    case 'hub-kill':
      return restartProcess(hub);
    case 'agent-away': {
      const away = clusterId(0);
      const prefix = `${addressPrefix(0)}.`;
      sendLoad({ type: 'disconnect', cluster: away });
      await nextFromLoad('done');
      const from = Date.now();
      // Pods of the away cluster ready now were ready when it left: none of them may go.
      const stillReady = new Set(
        [...(await expectedTargets()).values()].flatMap((s) =>
          [...s].filter((a) => a.startsWith(prefix)),
        ),
      );
      const already = simulator.deregistrations.length;
      await sleep(AGENT_AWAY_MS);
      const withdrawn = simulator.deregistrations
        .slice(already)
        .filter(([a, , at]) => at >= from && stillReady.has(a)).length;
      sendLoad({ type: 'reconnect', cluster: away });
      await nextFromLoad('done');
      if (withdrawn > 0)
        failures.push(`agent away: ${withdrawn} targets of still-ready pods withdrawn`);
      return {
        healedAtMs: Date.now(),
        detail: `${away} away ${AGENT_AWAY_MS / 1000} s`,
        withdrawnWhileAway: withdrawn,
      };
    }
    case 'redis-restart': {
      await redisServer.kill();
      await sleep(REDIS_DOWN_MS);
      await redisServer.start();
      return { healedAtMs: Date.now(), detail: `down ${REDIS_DOWN_MS / 1000} s, AOF reloaded` };
    }
    case 'aws-storm': {
      const from = Date.now();
      const codes = ['Throttling', 'ServiceUnavailable', 'InternalFailure'];
      accounts.forEach((account, i) =>
        simulator.injectFault({ account, code: codes[i % codes.length]! }),
      );
      await sleep(AWS_STORM_MS);
      simulator.clearFaults();
      const failed = simulator
        .calls()
        .filter((c) => c.atMs >= from && c.errorCode !== undefined).length;
      return {
        healedAtMs: Date.now(),
        detail: `${AWS_STORM_MS / 1000} s: ${accounts
          .map((a, i) => `${a} ${codes[i % codes.length]}`)
          .join(', ')}`,
        failedCalls: failed,
      };
    }
  }
}

// --- figures ---------------------------------------------------------------------------------

function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function groupName(arn: string): string {
  return arn.split('/').at(-2) ?? arn;
}

/** Deregistrations of an address the agent had not reported unready by the time of the call. */
function wrongfulDeregistrations(): { count: number; examples: string[] } {
  const examples: string[] = [];
  let count = 0;
  for (const [address, arn, at] of simulator.deregistrations) {
    const unready = unreadyAt.get(address);
    if (unready !== undefined && unready <= at) continue;
    count++;
    if (examples.length < 5) {
      // Where it was registered before: a pod placed in two groups of its pool at once, and
      // taken out of one of them, shows as registrations in both just before.
      const before = (simulator.registrations.get(address) ?? [])
        .filter(([, registeredAt]) => registeredAt <= at)
        .slice(-3)
        .map(([group, registeredAt]) => `${groupName(group)} at ${registeredAt}`);
      examples.push(
        `${address} from ${groupName(arn)} at ${at} (registered in ${before.join(', ') || 'none'})`,
      );
    }
  }
  return { count, examples };
}

// --- run -------------------------------------------------------------------------------------

interface Convergence {
  cycle: number;
  fault: FaultKind;
  detail: string;
  /** Seconds since the churn began. */
  injectedAtS: number;
  /** From the moment the churn and the fault were both over. */
  convergedMs: number;
  /** From the injection of the fault. */
  sinceFaultMs: number;
  withdrawnWhileAway?: number;
  failedCalls?: number;
  /** Operations the mass-deregistration guard held that the soak released meanwhile. */
  heldReleased: number;
  /** Set when the soak had to trigger reconciles as an operator, this long after the start. */
  operatorAfterMs?: number;
}
const convergences: Convergence[] = [];
let restarts = 0;
let sampler: NodeJS.Timeout | undefined;

try {
  // The processes as shipped: one bundled file each (scripts/bundle.mjs, a few seconds).
  execFileSync(process.execPath, [join(repo, 'scripts/bundle.mjs')], {
    cwd: repo,
    stdio: 'inherit',
  });
  await hub.start();
  for (const w of workers) await w.start();
  const { endpoints } = await nextFromLoad('built');
  log(
    `${scenario.clusters} clusters, ${endpoints} endpoints, ${groups.length} groups in ` +
      `${accounts.length} accounts; hub and ${workers.length} workers ready; run dir ${runDir}`,
  );
  const coldAt = Date.now();
  sendLoad({ type: 'start' });
  await nextFromLoad('started');
  const { ms: coldMs } = await converge('cold start', coldAt);
  log(`cold start converged in ${coldMs} ms`);

  soakStartMs = Date.now();
  const endMs = soakStartMs + minutes * 60_000;
  await takeSample();
  await takeKeyBreakdown('after the cold start');
  const warmUpTimer = setTimeout(
    () => void takeKeyBreakdown('after the warm-up'),
    Math.min(WARM_UP_MAX_S * 1_000, (minutes * 60_000) / 6),
  );
  sampler = setInterval(() => {
    for (const p of tgfed) {
      if (!expectedDown.has(p) && !p.alive()) {
        failures.push(`${p.name} died unexpectedly:\n${p.logTail()}`);
        expectedDown.add(p);
        void p.start().then(() => expectedDown.delete(p));
      }
    }
    void takeSample();
  }, SAMPLE_EVERY_MS);

  const churnMs = Math.round(faultEveryMs * 0.75);
  const cycles = Math.max(1, Math.floor((minutes * 60_000) / faultEveryMs));
  for (let cycle = 0; cycle < cycles; cycle++) {
    const cycleStart = soakStartMs + cycle * faultEveryMs;
    await sleep(cycleStart - Date.now());
    const kind = ROTATION[cycle % ROTATION.length]!;
    sendLoad({
      type: 'scale',
      service: SCALED_SERVICE,
      pods: cycle % 2 === 0 ? scenario.scaleTo : scenario.scaleFrom,
    });
    await nextFromLoad('done');
    sendLoad({ type: 'restart', seconds: churnMs / 1_000 });
    await sleep(cycleStart + faultEveryMs * 0.15 - Date.now());
    const injectedAt = Date.now();
    log(`cycle ${cycle + 1}/${cycles}: ${kind}`);
    const outcome = await inject(kind);
    restarts += (await nextFromLoad('restarted')).restarts;
    const quietAt = Math.max(Date.now(), outcome.healedAtMs);
    const releasedBefore = released.length;
    const { ms: convergedMs, operatorAfterMs } = await converge(
      `cycle ${cycle + 1} (${kind})`,
      quietAt,
    );
    convergences.push({
      cycle: cycle + 1,
      fault: kind,
      detail: outcome.detail,
      injectedAtS: (injectedAt - soakStartMs) / 1_000,
      convergedMs,
      sinceFaultMs: Date.now() - injectedAt,
      heldReleased: released.length - releasedBefore,
      ...(operatorAfterMs === undefined ? {} : { operatorAfterMs }),
      ...(outcome.withdrawnWhileAway === undefined
        ? {}
        : { withdrawnWhileAway: outcome.withdrawnWhileAway }),
      ...(outcome.failedCalls === undefined ? {} : { failedCalls: outcome.failedCalls }),
    });
    log(
      `cycle ${cycle + 1}: ${kind} (${outcome.detail}); converged ${convergedMs} ms after the ` +
        `churn and the fault were over, ${Date.now() - injectedAt} ms after the fault`,
    );
  }
  // The end: quiet, then every group exactly its expected targets once more.
  await sleep(endMs - Date.now());
  const releasedBefore = released.length;
  const end = await converge('end', Date.now());
  const endConvergedMs = end.ms;
  log(`end: converged in ${endConvergedMs} ms`);
  convergences.push({
    cycle: cycles + 1,
    fault: 'end' as FaultKind,
    detail: 'end of the soak, no fault',
    injectedAtS: (Date.now() - soakStartMs) / 1_000,
    convergedMs: endConvergedMs,
    sinceFaultMs: endConvergedMs,
    heldReleased: released.length - releasedBefore,
    ...(end.operatorAfterMs === undefined ? {} : { operatorAfterMs: end.operatorAfterMs }),
  });
  clearInterval(sampler);
  clearTimeout(warmUpTimer);
  await takeSample();
  await takeKeyBreakdown('at the end');
} catch (err) {
  failures.push(`soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
}
clearInterval(sampler);

// --- report ----------------------------------------------------------------------------------

const rows: Row[] = [];
const lastT = samples.at(-1)?.t ?? 0;
const warmUpS = Math.min(WARM_UP_MAX_S, lastT / 6);
const windowS = Math.min(300, (lastT - warmUpS) / 3);
const first = samples.filter((s) => s.t >= warmUpS && s.t <= warmUpS + windowS);
const last = samples.filter((s) => s.t >= lastT - windowS);
const memorySeries: Record<string, (s: Sample) => number | undefined> = {
  'hub RSS': (s) => s.rssMb['hub'],
  'worker-0 RSS': (s) => s.rssMb['worker-0'],
  'worker-1 RSS': (s) => s.rssMb['worker-1'],
  'Redis used_memory': (s) => s.redisUsedMb,
  'Redis RSS': (s) => s.redisRssMb,
  'load RSS': (s) => s.rssMb['load'],
};
const checkedMemory = new Set(['hub RSS', 'worker-0 RSS', 'worker-1 RSS', 'Redis used_memory']);
const memory: Record<string, { firstMb: number; lastMb: number; growth: number }> = {};
for (const [name, pick] of Object.entries(memorySeries)) {
  const values = (ss: Sample[]) => ss.map(pick).filter((v): v is number => v !== undefined);
  const firstMb = median(values(first));
  const lastMb = median(values(last));
  const growth = (lastMb - firstMb) / firstMb;
  memory[name] = { firstMb, lastMb, growth };
  rows.push({
    phase: 'memory',
    measure: `${name}: median of ${(windowS / 60).toFixed(1)} min after ${(warmUpS / 60).toFixed(1)} min warm-up ${firstMb.toFixed(1)} MB, last ${lastMb.toFixed(1)} MB`,
    figure: growth * 100,
    unit: '% growth',
    ...(checkedMemory.has(name) ? { target: MAX_GROWTH * 100, targetNote: 'flat' } : {}),
  });
  if (checkedMemory.has(name) && !(growth < MAX_GROWTH))
    failures.push(`${name} grew ${(growth * 100).toFixed(1)}% (limit ${MAX_GROWTH * 100}%)`);
}
// Within one process lifetime: a kill -9 resets RSS, so the role figures above can hide a leak of
// the hub; compare each long-lived incarnation's own first and last windows too.
for (const p of tgfed) {
  const byIncarnation = new Map<number, { t: number; rss: number }[]>();
  for (const s of samples) {
    const rss = s.rssMb[p.name];
    if (rss === undefined) continue;
    const list = byIncarnation.get(s.incarnation[p.name]!) ?? [];
    list.push({ t: s.t, rss });
    byIncarnation.set(s.incarnation[p.name]!, list);
  }
  let longest: { t: number; rss: number }[] = [];
  for (const list of byIncarnation.values()) if (list.length > longest.length) longest = list;
  if (longest.length < 12) continue;
  const span = longest.at(-1)!.t - longest[0]!.t;
  const w = Math.min(300, span / 3);
  const a = median(longest.filter((x) => x.t <= longest[0]!.t + w).map((x) => x.rss));
  const b = median(longest.filter((x) => x.t >= longest.at(-1)!.t - w).map((x) => x.rss));
  rows.push({
    phase: 'memory',
    measure: `${p.name}, its longest-lived process (${(span / 60).toFixed(1)} min): first ${a.toFixed(1)} MB, last ${b.toFixed(1)} MB`,
    figure: ((b - a) / a) * 100,
    unit: '% growth',
  });
}
// Redis by key pattern: the patterns holding the most memory at the end, and what they held at
// the earlier breakdowns; a pattern that keeps growing names the leak.
const lastBreakdown = keyBreakdowns.at(-1);
if (lastBreakdown !== undefined) {
  const kb = (bytes: number | undefined) => `${((bytes ?? 0) / 1024).toFixed(0)} KB`;
  const top = [...lastBreakdown.patterns.entries()]
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .slice(0, 12);
  for (const [pattern, end] of top) {
    const earlier = keyBreakdowns
      .slice(0, -1)
      .map((b) => {
        const at = b.patterns.get(pattern);
        return `${b.at} ${at?.keys ?? 0} keys ${kb(at?.bytes)}`;
      })
      .join(', ');
    rows.push({
      phase: 'Redis keys',
      measure: `${pattern}: ${earlier}; ${lastBreakdown.at} ${end.keys} keys`,
      figure: end.bytes / 1024,
      unit: 'KB',
    });
  }
}
for (const c of convergences) {
  rows.push({
    phase: `convergence ${c.cycle}`,
    measure:
      `${c.fault} at ${c.injectedAtS.toFixed(0)} s (${c.detail}); ${(c.sinceFaultMs / 1000).toFixed(1)} s after the fault` +
      (c.operatorAfterMs === undefined
        ? ''
        : `; NOT on its own: operator reconcile after ${(c.operatorAfterMs / 1000).toFixed(0)} s`),
    figure: c.convergedMs,
    unit: 'ms',
    target: CONVERGE_BOUND_MS,
    targetNote: 'after churn and fault are over',
  });
  if (!(c.convergedMs <= CONVERGE_BOUND_MS))
    failures.push(
      `convergence ${c.cycle} (${c.fault}) took ${c.convergedMs} ms` +
        (c.operatorAfterMs === undefined
          ? ''
          : ` (not within ${UNAIDED_MS / 1000} s on its own: operator reconcile)`),
    );
  if (c.withdrawnWhileAway !== undefined)
    rows.push({
      phase: `convergence ${c.cycle}`,
      measure: 'targets of still-ready pods withdrawn while the agent was away',
      figure: c.withdrawnWhileAway,
      unit: 'targets',
      target: 0,
      targetNote: 'fail-static',
    });
  if (c.heldReleased > 0)
    rows.push({
      phase: `convergence ${c.cycle}`,
      measure: 'reconciles held by the mass-deregistration guard, released by the soak',
      figure: c.heldReleased,
      unit: 'operations',
    });
  if (c.failedCalls !== undefined)
    rows.push({
      phase: `convergence ${c.cycle}`,
      measure: 'AWS calls failed by the injected faults',
      figure: c.failedCalls,
      unit: 'calls',
    });
}
const wrongful = wrongfulDeregistrations();
rows.push({
  phase: 'whole soak',
  measure: 'deregistrations of pods the agent had not reported unready',
  figure: wrongful.count,
  unit: 'targets',
  target: 0,
  targetNote: 'no target goes that should stay',
});
if (wrongful.count > 0)
  failures.push(
    `${wrongful.count} deregistrations of pods still ready: ${wrongful.examples.join('; ')}`,
  );
rows.push({
  phase: 'whole soak',
  measure: `reconciles held by the guard and released (${[...new Set(released.map((r) => r.group))].join(', ') || 'none'})`,
  figure: released.length,
  unit: 'operations',
});
rows.push({
  phase: 'whole soak',
  measure: 'operator reconciles triggered (a group still wrong 60 s after the fault)',
  figure: operatorReconciles,
  unit: 'groups',
  target: 0,
});
const calls = simulator.calls();
const mutating = calls.filter(
  (c) =>
    c.atMs >= soakStartMs && (c.action === 'RegisterTargets' || c.action === 'DeregisterTargets'),
);
const durationS = lastT;
rows.push(
  {
    phase: 'whole soak',
    measure: `pods restarted (rolling, ${(restarts / Math.max(1, durationS)).toFixed(1)}/s on average)`,
    figure: restarts,
    unit: 'pods',
  },
  {
    phase: 'whole soak',
    measure: 'mutating calls that succeeded',
    figure: mutating.filter((c) => c.errorCode === undefined).length,
    unit: 'calls',
  },
  {
    phase: 'whole soak',
    measure: 'mutating calls throttled by AWS outside the storms',
    figure: mutating.filter(
      (c) =>
        c.errorCode === 'Throttling' &&
        !convergences.some(
          (v) =>
            v.fault === 'aws-storm' &&
            c.atMs >= soakStartMs + v.injectedAtS * 1_000 &&
            c.atMs <= soakStartMs + v.injectedAtS * 1_000 + AWS_STORM_MS + 1_000,
        ),
    ).length,
    unit: 'calls',
  },
);
const firstSample = samples[0];
const lastSample = samples.at(-1);
if (firstSample !== undefined && lastSample !== undefined && durationS > 0) {
  for (const name of ['hub', 'worker-0', 'worker-1', 'load']) {
    rows.push({
      phase: 'whole soak',
      measure: `${name} CPU (average)`,
      figure: ((lastSample.cpuMs[name]! - firstSample.cpuMs[name]!) / (durationS * 1_000)) * 100,
      unit: '% core',
    });
  }
}

const passed = failures.length === 0;
const text = table(rows);
console.log(`\nsoak: ${minutes} min, a fault every ${faultEveryMs / 1000} s\n\n${text}\n`);
mkdirSync(outDir, { recursive: true });
const base = join(outDir, 'soak');
writeFileSync(`${base}.txt`, `${text}\n\n${passed ? 'PASS' : 'FAIL'}\n`);
writeFileSync(
  `${base}.json`,
  JSON.stringify(
    {
      verdict: passed ? 'PASS' : 'FAIL',
      minutes,
      faultEverySeconds: faultEveryMs / 1_000,
      scenario,
      convergeBoundMs: CONVERGE_BOUND_MS,
      maxGrowth: MAX_GROWTH,
      memory,
      redisKeys: keyBreakdowns.map((b) => ({
        at: b.at,
        t: b.t,
        patterns: Object.fromEntries(b.patterns),
      })),
      convergences,
      released,
      rows,
      failures,
      samples,
    },
    null,
    2,
  ),
);
writeFileSync(
  `${base}-memory.svg`,
  lineChart({
    name: 'memory',
    title: `Soak: memory over ${minutes} min (a fault every ${faultEveryMs / 1000} s)`,
    yLabel: 'MB',
    series: Object.fromEntries(
      Object.entries(memorySeries).map(([name, pick]) => [
        name,
        samples.flatMap((s) => {
          const v = pick(s);
          return v === undefined ? [] : [[s.t, v] as [number, number]];
        }),
      ]),
    ),
  }),
);
console.log(`written: ${base}.txt, ${base}.json, ${base}-memory.svg`);
await stopAll();
if (!passed) {
  console.error(
    `\nFAIL: ${failures.length} failure(s):\n${failures.map((f) => `  - ${f}`).join('\n')}`,
  );
  process.exit(1);
}
console.log('PASS');
process.exit(0);

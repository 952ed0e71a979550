// Hub ingest benchmark (issue #4), end to end: endpoint changes per second through the whole
// apply path of one hub process (gRPC, protobuf decode, authentication, validation, cache, one
// fenced Lua script per batch, reconcile sink, ack), hub CPU and RSS, and Redis memory per
// endpoint, next to DESIGN.md's targets. test/bench/hub-apply-bench.ts measures only the cache
// and the Redis write.
//
//   npm run bench:hub-ingest [-- --clusters 100 --per-cluster 1000 --rate 150000 --seconds 20]
//   add --profile <file.cpuprofile> to profile the hub during the churn (top self time printed)
//
// Real components: a private redis-server, the hub's SyncService on a plaintext grpc-js listener
// in this process (bearer-token authentication, address policy; a counting reconcile sink), and a
// separate load processes (hub-ingest-load.ts, 2 by default) running one real SyncPublisher over
// the real ServiceEndpointSets per simulated cluster.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus } from 'node:os';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import {
  AddressPolicy,
  AgentAuthenticator,
  SyncService,
  agentServerOptions,
  hashAgentToken,
  type ReconcileSink,
  type SubscriptionSource,
} from '../../hub/ingest/index.js';
import {
  ClusterEndpointStore,
  ClusterLease,
  StateKeys,
  StorageEpoch,
  createRedis,
} from '../../hub/state/index.js';
import {
  AgentServiceService,
  type EndpointRecord,
  type ServiceKey,
  type Subscription,
} from '../../shared/index.js';
import { startRedisServer } from '../env/redis-server.js';
import { loadTestenvManifest } from '../env/testenv-manifest.js';
import type { FromLoad, LoadStats, ToLoad } from './hub-ingest-load.js';

const { values: args } = parseArgs({
  options: {
    clusters: { type: 'string', default: '100' },
    'per-cluster': { type: 'string', default: '1000' },
    services: { type: 'string', default: '10' },
    'per-slice': { type: 'string', default: '100' },
    // Offered readiness flips per second, over all clusters (the load's own CPU caps it).
    rate: { type: 'string', default: '150000' },
    // Endpoints flipped per slice update. The agent's aggregator re-reads the whole slice on
    // every update (~100 endpoints parsed and digested), so flipping one endpoint per update makes
    // the load, not the hub, the bottleneck; the default flips every endpoint of the slice.
    'flips-per-slice': { type: 'string', default: '100' },
    seconds: { type: 'string', default: '20' },
    'batch-window-ms': { type: 'string', default: '50' },
    'verify-clusters': { type: 'string', default: '5' },
    profile: { type: 'string' },
    // A folder for a V8 CPU profile of the whole load process (node --cpu-prof).
    'load-profile-dir': { type: 'string' },
    // Load processes sharing the clusters (one is CPU-bound before the hub is on 2 cores).
    'load-processes': { type: 'string', default: '2' },
  },
});
const clusters = Number(args.clusters);
const perCluster = Number(args['per-cluster']);
const seconds = Number(args.seconds);
const rate = Number(args.rate);
const flipsPerSlice = Number(args['flips-per-slice']);
const clusterId = (c: number) => `bench-${c}`;
const clusterToken = (c: number) => `bench-token-${c}`;

// --- process figures ----------------------------------------------------------------------

function procStatus(pid: number | 'self'): { rssMb: number; hwmMb: number; cpuMs: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]); // utime + stime, in clock ticks (100/s)
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024, cpuMs: ticks * 10 };
}

// --- the hub --------------------------------------------------------------------------------

/** Every service of every cluster is subscribed. */
class EverythingSubscribed implements SubscriptionSource {
  readonly #subscription: Subscription = { version: 1, selectors: [{ namespace: '', name: '' }] };
  subscriptionFor(): Subscription {
    return this.#subscription;
  }
  onChange(): () => void {
    return () => undefined;
  }
}

/** Counts what the ingest hands over; keeps nothing (the queue layer is not measured here). */
class CountingReconcileSink implements ReconcileSink {
  calls = 0;
  services = 0;
  changed(_clusterId: string, services: readonly ServiceKey[]): Promise<void> {
    this.calls++;
    this.services += services.length;
    return Promise.resolve();
  }
}

const redisServer = await startRedisServer(loadTestenvManifest().redisServer);
const redis = createRedis({ mode: 'standalone', url: redisServer.url });
const keys = new StateKeys('bench');
const store = new ClusterEndpointStore(redis, keys);
const sink = new CountingReconcileSink();
const service = new SyncService(
  {
    store,
    lease: new ClusterLease(redis, { keys, ttlMs: 15_000 }),
    epoch: new StorageEpoch(redis, keys),
    authenticator: new AgentAuthenticator({
      tokenSha256: Object.fromEntries(
        Array.from({ length: clusters }, (_, c) => [clusterId(c), hashAgentToken(clusterToken(c))]),
      ),
    }),
    addressPolicy: new AddressPolicy({ defaultCidrs: ['10.0.0.0/8'] }),
    subscriptions: new EverythingSubscribed(),
    reconcileSink: sink,
  },
  {
    hubId: 'bench-hub',
    limits: { maxEndpointsPerCluster: 1_000_000, maxEndpointsPerService: 100_000 },
  },
);
await service.start();
const server = new grpc.Server(agentServerOptions(service.options));
server.addService(AgentServiceService, service.handlers);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
    err ? reject(err) : resolve(p),
  ),
);

async function usedMemory(): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}
const redisBefore = await usedMemory();
// The hub process before any cluster connects (node, tsx, gRPC, ioredis): not per endpoint.
const baselineRss = procStatus('self').rssMb;

// --- the load processes ---------------------------------------------------------------

const loadProcesses = Math.max(1, Math.min(clusters, Number(args['load-processes'])));

/** One load process and the messages it sent that were not received yet. */
class LoadProcess {
  readonly child: ChildProcess;
  readonly #inbox: FromLoad[] = [];
  #wake: (() => void) | undefined;

  constructor(firstCluster: number, count: number) {
    this.child = fork(
      new URL('./hub-ingest-load.ts', import.meta.url).pathname,
      [
        `--target=127.0.0.1:${port}`,
        `--first-cluster=${firstCluster}`,
        `--clusters=${count}`,
        `--per-cluster=${perCluster}`,
        `--services=${args.services}`,
        `--per-slice=${args['per-slice']}`,
        `--batch-window-ms=${args['batch-window-ms']}`,
      ],
      {
        execArgv: [
          '--import',
          'tsx',
          ...(args['load-profile-dir'] === undefined
            ? []
            : ['--cpu-prof', `--cpu-prof-dir=${args['load-profile-dir']}`]),
        ],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        // NODE_OPTIONS is for the hub (this process): the load keeps V8's defaults.
        env: { ...process.env, NODE_OPTIONS: '' },
      },
    );
    // Never leave a load process behind, whatever happens to this process.
    process.on('exit', () => this.child.kill('SIGKILL'));
    this.child.on('exit', (code) => {
      if (code !== 0 && code !== null) {
        console.error(`load process exited with ${code}`);
        process.exit(1);
      }
    });
    this.child.on('message', (m: FromLoad) => {
      this.#inbox.push(m);
      this.#wake?.();
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  send(message: ToLoad): void {
    this.child.send(message);
  }

  async receive<T extends FromLoad['type']>(
    type: T,
    timeoutMs = 600_000,
  ): Promise<Extract<FromLoad, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#inbox.findIndex((m) => m.type === type);
      if (i >= 0) return this.#inbox.splice(i, 1)[0] as Extract<FromLoad, { type: T }>;
      if (Date.now() > deadline) throw new Error(`no '${type}' from the load process`);
      await new Promise<void>((r) => {
        this.#wake = r;
        setTimeout(r, 1_000);
      });
    }
  }
}

const loads = Array.from({ length: loadProcesses }, (_, k) => {
  const first = Math.floor((k * clusters) / loadProcesses);
  return new LoadProcess(first, Math.floor(((k + 1) * clusters) / loadProcesses) - first);
});
const tell = (m: ToLoad) => loads.forEach((l) => l.send(m));
const receiveAll = <T extends FromLoad['type']>(type: T) =>
  Promise.all(loads.map((l) => l.receive(type)));
function sumStats(all: LoadStats[]): LoadStats {
  const out = { ...all[0]! };
  for (const s of all.slice(1))
    for (const k of Object.keys(out) as (keyof LoadStats)[]) out[k] += s[k];
  return out;
}
const redisPid = redisServer.process.pid;

// --- sampling -----------------------------------------------------------------------------

/** CPU time of the whole machine, busy (every process, this bench's or not), in ms. */
function machineBusyMs(): number {
  const [, user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]!
    .split(/\s+/)
    .map(Number);
  return (
    ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) * 10
  );
}

interface Sample {
  atMs: number;
  machineMs: number;
  changes: number;
  batches: number;
  hub: ReturnType<typeof procStatus>;
  load: ReturnType<typeof procStatus>;
  redis: ReturnType<typeof procStatus>;
}
function sample(): Sample {
  return {
    atMs: performance.now(),
    machineMs: machineBusyMs(),
    changes: service.counters.endpointChanges,
    batches: service.counters.batches,
    hub: procStatus('self'),
    load: loads
      .map((l) => procStatus(l.pid))
      .reduce((a, b) => ({
        rssMb: a.rssMb + b.rssMb,
        hwmMb: a.hwmMb + b.hwmMb,
        cpuMs: a.cpuMs + b.cpuMs,
      })),
    redis: procStatus(redisPid),
  };
}
const cpuPct = (a: Sample, b: Sample, who: 'hub' | 'load' | 'redis' | 'other') =>
  who === 'other'
    ? ((b.machineMs -
        a.machineMs -
        (['hub', 'load', 'redis'] as const).reduce((n, w) => n + b[w].cpuMs - a[w].cpuMs, 0)) /
        (b.atMs - a.atMs)) *
      100
    : ((b[who].cpuMs - a[who].cpuMs) / (b.atMs - a.atMs)) * 100;
const ratePer = (a: Sample, b: Sample) => ((b.changes - a.changes) * 1_000) / (b.atMs - a.atMs);

// 1. Initial sync: every cluster connects and sends its full state as replace batches.
const builtAll = await receiveAll('built');
const built = {
  endpoints: builtAll.reduce((n, b) => n + b.endpoints, 0),
  ms: Math.max(...builtAll.map((b) => b.ms)),
};
console.log(
  `load process built ${clusters} clusters, ${built.endpoints} endpoints in ${built.ms.toFixed(0)} ms`,
);
const total = built.endpoints;
let firstBatch: Sample | undefined;
let peakHubRss = 0;
const syncStart = sample();
tell({ type: 'start' });
let syncEnd: Sample | undefined;
while (syncEnd === undefined) {
  await new Promise((r) => setTimeout(r, 20));
  const s = sample();
  peakHubRss = Math.max(peakHubRss, s.hub.rssMb);
  if (firstBatch === undefined && s.batches > 0) firstBatch = s;
  if (s.changes >= total) syncEnd = s;
  if (s.atMs - syncStart.atMs > 600_000) throw new Error('initial sync did not finish');
}
const syncedAll = await receiveAll('synced');
const synced = {
  ms: Math.max(...syncedAll.map((x) => x.ms)),
  stats: sumStats(syncedAll.map((x) => x.stats)),
};
const redisAfterSync = await usedMemory();
const storedEndpoints = (
  await Promise.all(Array.from({ length: clusters }, (_, c) => store.totals(clusterId(c))))
).reduce((n, t) => n + t.endpoints, 0);
const afterSyncRss = procStatus('self').rssMb;
console.log(
  `initial sync: ${total} endpoints applied in ${(syncEnd.atMs - syncStart.atMs).toFixed(0)} ms ` +
    `(load saw all streams SYNCED after ${synced.ms.toFixed(0)} ms)`,
);

// 2. Churn: readiness flips at the offered rate; the hub applies what it can.
console.log(
  `churning: offered ${rate} flips/s (${flipsPerSlice} per slice update) for ${seconds} s`,
);
let session: Session | undefined;
if (args.profile !== undefined) {
  session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}
const churnStart = sample();
tell({ type: 'churn', seconds, rate: rate / loadProcesses, flipsPerSlice });
const perSecond: Sample[] = [churnStart];
const collector = setInterval(() => {
  const s = sample();
  perSecond.push(s);
  peakHubRss = Math.max(peakHubRss, s.hub.rssMb);
}, 1_000);
const churnedAll = await receiveAll('churned');
const churned = {
  flips: churnedAll.reduce((n, x) => n + x.flips, 0),
  sliceUpserts: churnedAll.reduce((n, x) => n + x.sliceUpserts, 0),
  lagging: churnedAll.reduce((n, x) => n + x.lagging, 0),
  ms: Math.max(...churnedAll.map((x) => x.ms)),
};
const churnEnd = sample();
clearInterval(collector);
let profileSummary: string[] = [];
if (session !== undefined && args.profile !== undefined) {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(args.profile, JSON.stringify(profile));
  profileSummary = summarizeProfile(profile);
  session.disconnect();
}
const drainedAll = await receiveAll('drained');
const drained = {
  ok: drainedAll.every((x) => x.ok),
  ms: Math.max(...drainedAll.map((x) => x.ms)),
  stats: sumStats(drainedAll.map((x) => x.stats)),
};
const drainEnd = sample();
peakHubRss = Math.max(peakHubRss, drainEnd.hub.rssMb);

// 3. Correctness: Redis holds exactly each sampled cluster's state as its agent has it.
const verifyCount = Math.min(clusters, Number(args['verify-clusters']));
const verifyIds = Array.from({ length: verifyCount }, (_, i) =>
  clusterId(Math.floor((i * clusters) / verifyCount)),
);
tell({ type: 'snapshot', clusters: verifyIds });
const snapshot = {
  clusters: Object.assign({}, ...(await receiveAll('snapshot')).map((x) => x.clusters)) as Extract<
    FromLoad,
    { type: 'snapshot' }
  >['clusters'],
};
const problems: string[] = [];
for (const id of verifyIds) {
  const expected = snapshot.clusters[id] ?? {};
  const stored = await store.loadCluster(id);
  const expectedKeys = Object.keys(expected).sort();
  const storedKeys = [...stored.keys()].sort();
  if (expectedKeys.join() !== storedKeys.join()) {
    problems.push(`${id}: services ${storedKeys.join()} stored, ${expectedKeys.join()} expected`);
    continue;
  }
  for (const key of expectedKeys) {
    const want = expected[key] ?? [];
    const have: Map<string, EndpointRecord> =
      stored.get(key)?.endpoints ?? new Map<string, EndpointRecord>();
    if (have.size !== want.length)
      problems.push(`${id} ${key}: ${have.size} endpoints stored, ${want.length} expected`);
    for (const [address, ready, serving, terminating] of want) {
      const r = have.get(address);
      if (r?.ready !== ready || r.serving !== serving || r.terminating !== terminating)
        problems.push(`${id} ${key} ${address}: stored ${JSON.stringify(r)}, expected ${ready}`);
    }
  }
}
const redisEnd = await usedMemory();
const finalTotals = (
  await Promise.all(Array.from({ length: clusters }, (_, c) => store.totals(clusterId(c))))
).reduce((n, t) => n + t.endpoints, 0);
if (finalTotals !== total) problems.push(`Redis totals say ${finalTotals} endpoints, not ${total}`);

tell({ type: 'exit' });
await Promise.all(loads.map((l) => new Promise((r) => l.child.once('exit', r))));
await service.close();
server.forceShutdown();
await redis.quit();
await redisServer.stop();

// --- report -------------------------------------------------------------------------------

const syncFrom = firstBatch ?? syncStart;
const syncRate = ((syncEnd.changes - syncFrom.changes) * 1_000) / (syncEnd.atMs - syncFrom.atMs);
const churnRate = ratePer(churnStart, churnEnd);
const seconds1 = perSecond
  .slice(1)
  .map((s, i) => ratePer(perSecond[i]!, s))
  .slice(1); // the first second ramps up
const median = [...seconds1].sort((a, b) => a - b)[Math.floor(seconds1.length / 2)] ?? 0;
const redisBytes = redisAfterSync - redisBefore;
const redisAt100kMb = ((redisBytes / total) * 100_000) / 1024 / 1024;
const rssAt100k = baselineRss + ((afterSyncRss - baselineRss) * 100_000) / total;

const rows: [string, string, string, string][] = [];
const row = (measure: string, figure: string, targetText: string, ratio: string) =>
  rows.push([measure, figure, targetText, ratio]);
const atLeast = (figure: number, t: number) =>
  `${(figure / t).toFixed(2)} ${figure >= t ? 'pass' : 'FAIL'}`;
const atMost = (figure: number, t: number) =>
  `${(figure / t).toFixed(2)} ${figure <= t ? 'pass' : 'FAIL'}`;
row(
  'apply, initial sync (endpoints/s)',
  syncRate.toFixed(0),
  '>= 50000',
  atLeast(syncRate, 50_000),
);
row(
  'apply, churn, whole window (endpoint changes/s)',
  churnRate.toFixed(0),
  '>= 50000',
  atLeast(churnRate, 50_000),
);
row(
  'apply, churn, median second (changes/s)',
  median.toFixed(0),
  '>= 50000',
  atLeast(median, 50_000),
);
row(
  'offered by the load (flips/s made)',
  ((churned.flips * 1_000) / churned.ms).toFixed(0),
  `${rate}`,
  '',
);
row(`Redis used_memory for ${total} endpoints (MB)`, (redisBytes / 1024 / 1024).toFixed(1), '', '');
row(
  'Redis used_memory at 100k endpoints (MB)',
  redisAt100kMb.toFixed(1),
  '<= 64',
  atMost(redisAt100kMb, 64),
);
row('Redis bytes per endpoint', (redisBytes / total).toFixed(0), '', '');
row(
  `Redis used_memory at the end (MB)`,
  ((redisEnd - redisBefore) / 1024 / 1024).toFixed(1),
  '',
  '',
);
row(`hub RSS after initial sync (MB, ${total} endpoints)`, afterSyncRss.toFixed(0), '', '');
row('hub RSS before any cluster connected (MB)', baselineRss.toFixed(0), '', '');
row(
  'hub RSS at 100k endpoints (baseline + per-endpoint growth scaled, MB)',
  rssAt100k.toFixed(0),
  '<= 300',
  atMost(rssAt100k, 300),
);
row('hub RSS peak, sampled (MB)', peakHubRss.toFixed(0), '<= 300', atMost(peakHubRss, 300));
row(
  'hub RSS high-water mark (VmHWM, MB)',
  drainEnd.hub.hwmMb.toFixed(0),
  '<= 300',
  atMost(drainEnd.hub.hwmMb, 300),
);
row(
  'CPU in initial sync: hub / load / redis / other (%)',
  [
    cpuPct(syncStart, syncEnd, 'hub'),
    cpuPct(syncStart, syncEnd, 'load'),
    cpuPct(syncStart, syncEnd, 'redis'),
    cpuPct(syncStart, syncEnd, 'other'),
  ]
    .map((x) => x.toFixed(0))
    .join(' / '),
  '',
  '',
);
row(
  'CPU in churn: hub / load / redis / other (%)',
  [
    cpuPct(churnStart, churnEnd, 'hub'),
    cpuPct(churnStart, churnEnd, 'load'),
    cpuPct(churnStart, churnEnd, 'redis'),
    cpuPct(churnStart, churnEnd, 'other'),
  ]
    .map((x) => x.toFixed(0))
    .join(' / '),
  '',
  '',
);
row(
  `machine CPU busy in churn (% of ${cpus().length} cores x 100)`,
  (((churnEnd.machineMs - churnStart.machineMs) / (churnEnd.atMs - churnStart.atMs)) * 100).toFixed(
    0,
  ),
  '',
  '',
);
row(
  'hub CPU per 1000 endpoint changes in churn (ms)',
  (
    ((churnEnd.hub.cpuMs - churnStart.hub.cpuMs) * 1000) /
    Math.max(1, churnEnd.changes - churnStart.changes)
  ).toFixed(2),
  '',
  '',
);
row(
  'endpoint changes per batch in churn',
  (
    (churnEnd.changes - churnStart.changes) /
    Math.max(1, churnEnd.batches - churnStart.batches)
  ).toFixed(0),
  '',
  '',
);

const describeStats = (s: LoadStats) =>
  `${s.batchesSent} batches, ${s.endpointChangesSent} endpoint changes sent, ${s.acks} acks, ` +
  `${s.nacks} nacks, ${s.resyncRequests} resync requests, ${s.connects} connects, ` +
  `${s.streamErrors} stream errors, window full ${s.windowFull}x`;
console.log(
  `\nhub ingest benchmark: ${clusters} clusters x ${perCluster} endpoints (${args.services} services, ` +
    `slices of ${args['per-slice']}), ${loadProcesses} load process(es), batch window ${args['batch-window-ms']} ms, ${seconds} s churn`,
);
console.log(
  `stored after initial sync: ${storedEndpoints} endpoints; load: ${describeStats(synced.stats)}`,
);
console.log(
  `churn: ${churned.flips} flips in ${churned.sliceUpserts} slice updates, ` +
    `${churnEnd.changes - churnStart.changes} changes applied in the window, drain ${drained.ok ? 'ok' : 'TIMED OUT'} ` +
    `in ${drained.ms.toFixed(0)} ms (${drainEnd.changes - churnEnd.changes} more); load lagged ${churned.lagging} turns`,
);
console.log(`load totals: ${describeStats(drained.stats)}; reconcile sink: ${sink.calls} calls`);
console.log(`per-second churn apply rates: ${seconds1.map((r) => r.toFixed(0)).join(' ')}\n`);
const width = rows.reduce((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), [] as number[]);
for (const r of [['measure', 'figure', 'target', 'ratio'], ...rows]) {
  console.log(r.map((c, i) => c.padEnd(width[i] ?? 0)).join('  '));
}
console.log(
  `\ncorrectness (${verifyIds.length} clusters compared endpoint by endpoint, totals of all): ` +
    (problems.length === 0 ? 'ok' : `${problems.length} problem(s)`),
);
for (const p of problems.slice(0, 20)) console.log(`  ${p}`);
if (profileSummary.length > 0) {
  console.log(`\nhub CPU profile during churn (${args.profile}), top self time:`);
  for (const line of profileSummary) console.log(`  ${line}`);
}
process.exitCode = problems.length === 0 ? 0 : 1;

// --- profile summary --------------------------------------------------------------------

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
function summarizeProfile(profile: {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
}): string[] {
  const hits = profile.nodes.reduce((n, node) => n + (node.hitCount ?? 0), 0);
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url === '' ? '' : `${basename(url)}:${lineNumber + 1}`;
    const fn = `${functionName || '(anonymous)'} ${where}`.trim();
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + (node.hitCount ?? 0));
    const file =
      url === ''
        ? `(${functionName})`
        : url.replace(/^.*node_modules\//, 'node_modules/').replace(/^.*\/main\//, '');
    byFile.set(file, (byFile.get(file) ?? 0) + (node.hitCount ?? 0));
  }
  const pct = (n: number) => `${((n / Math.max(1, hits)) * 100).toFixed(1).padStart(5)}%`;
  const top = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
  return [
    ...top(byFunction, 25).map(([fn, n]) => `${pct(n)}  ${fn}`),
    'by file:',
    ...top(byFile, 15).map(([file, n]) => `${pct(n)}  ${file}`),
  ];
}

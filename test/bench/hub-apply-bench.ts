// Hub apply benchmark (issue #4): endpoint changes per second through the hub's apply path in
// one process (in-memory digests + one fenced Lua script per batch), and Redis memory per
// endpoint at 100,000 endpoints, next to DESIGN.md's targets.
//
//   scripts/with-node npx tsx test/bench/hub-apply-bench.ts [-- --clusters 100 --per-cluster 1000]
//
// Real components: a private redis-server from the test environment manifest.
import { parseArgs } from 'node:util';
import { ClusterEndpointCache } from '../../hub/state/cluster-endpoint-cache.js';
import {
  ClusterEndpointStore,
  ClusterLease,
  StateKeys,
  createRedis,
  type HeldLease,
  type ServiceWrite,
} from '../../hub/state/index.js';
import type { EndpointRecord, ServiceKey } from '../../shared/index.js';
import { startRedisServer } from '../env/redis-server.js';
import { loadTestenvManifest } from '../env/testenv-manifest.js';

const { values: args } = parseArgs({
  options: {
    clusters: { type: 'string', default: '100' },
    'per-cluster': { type: 'string', default: '1000' },
    'services-per-cluster': { type: 'string', default: '10' },
    'batch-endpoints': { type: 'string', default: '2000' },
    'churn-batches': { type: 'string', default: '300' },
    // Streams of different clusters are served concurrently by one hub process.
    concurrency: { type: 'string', default: '8' },
  },
});
const clusters = Number(args.clusters);
const perCluster = Number(args['per-cluster']);
const servicesPerCluster = Number(args['services-per-cluster']);
const batchEndpoints = Number(args['batch-endpoints']);
const churnBatches = Number(args['churn-batches']);
const concurrency = Number(args.concurrency);
const perService = Math.ceil(perCluster / servicesPerCluster);

const redisServer = await startRedisServer(loadTestenvManifest().redisServer);
const redis = createRedis({ mode: 'standalone', url: redisServer.url });
const keys = new StateKeys('bench');
const store = new ClusterEndpointStore(redis, keys);
const leases = new ClusterLease(redis, { keys, ttlMs: 600_000 });

function record(cluster: number, service: number, i: number, ready: boolean): EndpointRecord {
  const n = service * perService + i;
  return {
    address: `10.${cluster % 250}.${Math.floor(n / 250)}.${(n % 250) + 1}`,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: '' }],
    ready,
    serving: ready,
    terminating: false,
    zone: `eu-west-1${'abc'[n % 3]}`,
    node: `ip-10-0-${n % 20}-1.eu-west-1.compute.internal`,
    pod: { namespace: 'shop', name: `svc${service}-7d9f8b6c5d-${n.toString(36).padStart(5, '0')}` },
  };
}

async function usedMemory(): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}

interface ClusterRun {
  id: string;
  lease: HeldLease;
  cache: ClusterEndpointCache;
  services: ServiceKey[];
}

const runs: ClusterRun[] = [];
for (let c = 0; c < clusters; c++) {
  const id = `cluster-${c}`;
  const attempt = await leases.acquire(id, 'bench');
  if (!attempt.acquired) throw new Error(`lease of ${id} not acquired`);
  runs.push({
    id,
    lease: attempt.lease,
    cache: new ClusterEndpointCache(),
    services: Array.from({ length: servicesPerCluster }, (_, s) => ({
      namespace: 'shop',
      name: `svc-${s}`,
    })),
  });
}

async function inParallel<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

// 1. Initial load: every cluster's full state as replace batches.
const before = await usedMemory();
let t0 = performance.now();
await inParallel(runs, async (run) => {
  let writes: ServiceWrite[] = [];
  let pending = 0;
  for (const [s, service] of run.services.entries()) {
    const records = Array.from({ length: perService }, (_, i) =>
      record(runs.indexOf(run), s, i, true),
    );
    writes.push(run.cache.replace(service, { app: service.name }, records));
    pending += records.length;
    if (pending >= batchEndpoints) {
      await store.applyBatch(run.id, run.lease.token, writes, run.cache.totals());
      writes = [];
      pending = 0;
    }
  }
  if (writes.length > 0)
    await store.applyBatch(run.id, run.lease.token, writes, run.cache.totals());
});
const loadMs = performance.now() - t0;
const total = runs.reduce((n, r) => n + r.cache.endpointCount, 0);
const after = await usedMemory();

// 2. Churn: delta batches of `batchEndpoints` upserts (readiness flips) over a cluster's services.
const changesPerBatch = Math.min(batchEndpoints, perCluster);
let round = 0;
const batches = Array.from({ length: churnBatches }, (_, b) => runs[b % runs.length]!);
t0 = performance.now();
await inParallel(batches, async (run) => {
  const c = runs.indexOf(run);
  const ready = round++ % 2 === 0;
  const perSvc = Math.ceil(changesPerBatch / servicesPerCluster);
  const writes = run.services.map((service, s) =>
    run.cache.delta(
      service,
      Array.from({ length: Math.min(perSvc, perService) }, (_, i) => record(c, s, i, ready)),
      [],
      undefined,
    ),
  );
  await store.applyBatch(run.id, run.lease.token, writes, run.cache.totals());
});
const churnMs = performance.now() - t0;
const churnChanges = churnBatches * Math.min(changesPerBatch, servicesPerCluster * perService);

const loadRate = total / (loadMs / 1000);
const churnRate = churnChanges / (churnMs / 1000);
const memoryMb = (after - before) / 1024 / 1024;
const memoryAt100kMb = (memoryMb * 100_000) / total;
const rows: [string, string, string, string][] = [
  ['measure', 'figure', 'target', 'ratio'],
  [
    'apply, initial load (endpoints/s)',
    loadRate.toFixed(0),
    '>= 50000',
    (loadRate / 50_000).toFixed(2),
  ],
  [
    'apply, churn (endpoint changes/s)',
    churnRate.toFixed(0),
    '>= 50000',
    (churnRate / 50_000).toFixed(2),
  ],
  [`Redis memory for ${total} endpoints (MB)`, memoryMb.toFixed(1), '', ''],
  [
    'Redis memory at 100k endpoints (MB)',
    memoryAt100kMb.toFixed(1),
    '<= 64',
    (memoryAt100kMb / 64).toFixed(2),
  ],
  ['Redis bytes per endpoint', ((after - before) / total).toFixed(0), '', ''],
];
console.log(
  `\n${clusters} clusters x ${perCluster} endpoints (${servicesPerCluster} services each), ` +
    `batches of ${batchEndpoints}, ${concurrency} clusters concurrently\n`,
);
const width = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(width[i] ?? 0)).join('  '));

await redis.quit();
await redisServer.stop();

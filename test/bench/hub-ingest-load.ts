// Load process of the hub ingest benchmark (test/bench/hub-ingest-bench.ts spawns it; not run
// alone). N simulated clusters, each the real agent publisher (SyncPublisher) over the real
// aggregator (ServiceEndpointSets), without Kubernetes: the initial sync, then readiness flips
// of random endpoints at an offered rate. Talks to the bench over the IPC channel.
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import type { V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import { serviceKeyString } from '../../shared/index.js';
import { endpointSlice, type TestEndpoint } from '../support/endpoint-slices.js';
import { TestAgent } from '../support/test-agent.js';

/** Messages from the bench to this process. */
export type ToLoad =
  | { type: 'start' }
  | { type: 'churn'; seconds: number; rate: number; flipsPerSlice: number }
  | { type: 'snapshot'; clusters: string[] }
  | { type: 'exit' };

/** address, ready, serving, terminating */
export type SnapshotEndpoint = [string, boolean, boolean, boolean];

/** Publisher figures summed over every simulated cluster. */
export interface LoadStats {
  batchesSent: number;
  endpointChangesSent: number;
  acks: number;
  nacks: number;
  resyncRequests: number;
  connects: number;
  streamErrors: number;
  windowFull: number;
}

/** Messages from this process to the bench. */
export type FromLoad =
  | { type: 'built'; endpoints: number; ms: number }
  | { type: 'synced'; ms: number; stats: LoadStats }
  | { type: 'churned'; flips: number; sliceUpserts: number; ms: number; lagging: number }
  | { type: 'drained'; ok: boolean; ms: number; stats: LoadStats }
  | { type: 'snapshot'; clusters: Record<string, Record<string, SnapshotEndpoint[]>> };

const { values: args } = parseArgs({
  options: {
    target: { type: 'string' },
    // This process simulates clusters first-cluster .. first-cluster + clusters - 1.
    'first-cluster': { type: 'string', default: '0' },
    clusters: { type: 'string', default: '100' },
    'per-cluster': { type: 'string', default: '1000' },
    services: { type: 'string', default: '10' },
    'per-slice': { type: 'string', default: '100' },
    'batch-window-ms': { type: 'string', default: '50' },
  },
});
const target = args.target ?? '';
const firstCluster = Number(args['first-cluster']);
const clusters = Number(args.clusters);
const perCluster = Number(args['per-cluster']);
const services = Number(args.services);
const perSlice = Number(args['per-slice']);
const perService = Math.ceil(perCluster / services);

function send(message: FromLoad): void {
  process.send?.(message);
}

/** Cluster ids and bearer tokens (the bench derives the same). */
function clusterId(c: number): string {
  return `bench-${c}`;
}
function clusterToken(c: number): string {
  return `bench-token-${c}`;
}

interface SimulatedCluster {
  id: string;
  agent: TestAgent;
  slices: V1EndpointSlice[];
}

function buildSlices(c: number): V1EndpointSlice[] {
  const slices: V1EndpointSlice[] = [];
  for (let s = 0; s < services; s++) {
    for (let start = 0; start < perService; start += perSlice) {
      const endpoints: TestEndpoint[] = [];
      for (let i = start; i < Math.min(perService, start + perSlice); i++) {
        const n = s * perService + i;
        endpoints.push({
          ip: `10.${c % 250}.${Math.floor(n / 250)}.${(n % 250) + 1}`,
          zone: `eu-west-1${'abc'[n % 3]}`,
          node: `ip-10-0-${n % 20}-1.eu-west-1.compute.internal`,
          pod: `svc-${s}-7d9f8b6c5d-${n.toString(36).padStart(5, '0')}`,
        });
      }
      slices.push(
        endpointSlice({
          namespace: 'shop',
          service: `svc-${s}`,
          name: `svc-${s}-${start / perSlice}`,
          endpoints,
          labels: { app: `svc-${s}` },
        }),
      );
    }
  }
  return slices;
}

function sumStats(all: SimulatedCluster[]): LoadStats {
  const out: LoadStats = {
    batchesSent: 0,
    endpointChangesSent: 0,
    acks: 0,
    nacks: 0,
    resyncRequests: 0,
    connects: 0,
    streamErrors: 0,
    windowFull: 0,
  };
  for (const { agent } of all) {
    const s = agent.publisher.stats;
    out.batchesSent += s.batchesSent;
    out.endpointChangesSent += s.endpointChangesSent;
    out.acks += s.acks;
    out.nacks += s.nacks;
    out.resyncRequests += s.resyncRequests;
    out.connects += s.connects;
    out.streamErrors += s.streamErrors;
    out.windowFull += s.windowFull;
  }
  return out;
}

const builtAt = performance.now();
const simulated: SimulatedCluster[] = [];
for (let c = firstCluster; c < firstCluster + clusters; c++) {
  const id = clusterId(c);
  const token = clusterToken(c);
  const agent = new TestAgent({
    clusterId: id,
    target,
    batchWindowMs: Number(args['batch-window-ms']),
    heartbeatIntervalMs: 10_000,
    reconnectInitialMs: 200,
    reconnectMaxMs: 2_000,
    metadata: () => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${token}`);
      return metadata;
    },
  });
  const slices = buildSlices(c);
  agent.upsert(...slices);
  simulated.push({ id, agent, slices });
}
send({
  type: 'built',
  endpoints: simulated.reduce(
    (n, s) => n + [...s.agent.sets.services()].reduce((m, x) => m + x.endpoints.size, 0),
    0,
  ),
  ms: performance.now() - builtAt,
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function drainAll(timeoutMs: number): Promise<boolean> {
  const results = await Promise.all(simulated.map((s) => s.agent.publisher.drain(timeoutMs)));
  return results.every(Boolean);
}

async function start(): Promise<void> {
  const t0 = performance.now();
  for (const s of simulated) s.agent.publisher.start();
  while (simulated.some((s) => s.agent.publisher.state !== 'streaming')) await sleep(20);
  await drainAll(120_000);
  send({ type: 'synced', ms: performance.now() - t0, stats: sumStats(simulated) });
}

/** Flips the readiness of `flips` distinct random endpoints of one random slice. */
function flipSlice(flips: number): number {
  const cluster = simulated[Math.floor(Math.random() * simulated.length)]!;
  const index = Math.floor(Math.random() * cluster.slices.length);
  const slice = cluster.slices[index]!;
  const endpoints: V1Endpoint[] = [...(slice.endpoints ?? [])];
  const picked = new Set<number>();
  const want = Math.min(flips, endpoints.length);
  if (want === endpoints.length) endpoints.forEach((_, i) => picked.add(i));
  while (picked.size < want) picked.add(Math.floor(Math.random() * endpoints.length));
  for (const i of picked) {
    const e = endpoints[i]!;
    const ready = !(e.conditions?.ready ?? true);
    endpoints[i] = { ...e, conditions: { ready, serving: ready, terminating: false } };
  }
  const next: V1EndpointSlice = { ...slice, endpoints };
  cluster.slices[index] = next;
  cluster.agent.upsert(next);
  return picked.size;
}

async function churn(seconds: number, rate: number, flipsPerSlice: number): Promise<void> {
  const t0 = performance.now();
  let flips = 0;
  let sliceUpserts = 0;
  let lagging = 0;
  for (;;) {
    const elapsed = performance.now() - t0;
    if (elapsed >= seconds * 1_000) break;
    const due = Math.floor((rate * elapsed) / 1_000) - flips;
    // At most 20 ms worth of flips per turn, so that gRPC I/O gets the event loop in between.
    const budget = Math.min(due, Math.ceil(rate / 50));
    if (due > rate / 10) lagging++;
    for (let done = 0; done < budget;) {
      const n = flipSlice(flipsPerSlice);
      done += n;
      flips += n;
      sliceUpserts++;
    }
    await sleep(budget >= due ? 5 : 0);
  }
  send({ type: 'churned', flips, sliceUpserts, ms: performance.now() - t0, lagging });
  const drainedAt = performance.now();
  const ok = await drainAll(120_000);
  send({ type: 'drained', ok, ms: performance.now() - drainedAt, stats: sumStats(simulated) });
}

function snapshot(ids: string[]): void {
  const out: Record<string, Record<string, SnapshotEndpoint[]>> = {};
  for (const s of simulated) {
    if (!ids.includes(s.id)) continue;
    const services: Record<string, SnapshotEndpoint[]> = {};
    for (const svc of s.agent.sets.services()) {
      services[serviceKeyString(svc.service)] = [...svc.endpoints.values()].map((r) => [
        r.address,
        r.ready,
        r.serving,
        r.terminating,
      ]);
    }
    out[s.id] = services;
  }
  send({ type: 'snapshot', clusters: out });
}

process.on('message', (message: ToLoad) => {
  const fail = (err: unknown) => {
    console.error('load process failed:', err);
    process.exit(1);
  };
  switch (message.type) {
    case 'start':
      start().catch(fail);
      break;
    case 'churn':
      churn(message.seconds, message.rate, message.flipsPerSlice).catch(fail);
      break;
    case 'snapshot':
      snapshot(message.clusters);
      break;
    case 'exit':
      void Promise.all(simulated.map((s) => s.agent.publisher.close())).then(() => process.exit(0));
      break;
  }
});
// The bench going away ends this process.
process.on('disconnect', () => process.exit(0));

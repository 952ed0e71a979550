// Load process of the fleet benchmark (fleet-bench.ts forks it; not run alone): simulated
// clusters, each the real agent publisher over the real aggregator, fed by SyntheticCluster
// instead of Kubernetes. It reports every readiness change it publishes (address, kind, time) so
// the bench can measure propagation to AWS, and obeys the bench's phase commands over IPC.
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import type { SyncPublisherStats } from '../../../agent/publish/sync-publisher.js';
import {
  SyntheticCluster,
  type SyntheticChange,
} from '../../../agent/synthetic/synthetic-cluster.js';
import {
  NAMESPACE,
  SCENARIOS,
  addressPrefix,
  clusterId,
  clusterServices,
  clusterToken,
  serviceName,
  type FleetScenario,
} from './scenario.js';

/** A change as sent to the bench: address, 1 ready / 0 unready, epoch ms. */
export type ChangeRecord = [string, 0 | 1, number];

export type ToLoad =
  | { type: 'start' }
  | { type: 'restart'; seconds: number }
  | { type: 'scale'; service: string; pods: number }
  | { type: 'disconnect'; cluster: string }
  | { type: 'reconnect'; cluster: string }
  | { type: 'snapshot' }
  | { type: 'stats' }
  | { type: 'exit' };

/** Publisher figures summed over the process's clusters. */
export type LoadStats = Pick<
  SyncPublisherStats,
  | 'batchesSent'
  | 'endpointChangesSent'
  | 'bytesSent'
  | 'acks'
  | 'nacks'
  | 'resyncRequests'
  | 'connects'
  | 'servicesReplaced'
  | 'windowFull'
>;

export type FromLoad =
  | { type: 'built'; endpoints: number }
  | { type: 'started'; ms: number }
  | { type: 'changes'; changes: ChangeRecord[] }
  | { type: 'restarted'; restarts: number }
  | { type: 'done'; command: ToLoad['type'] }
  | { type: 'snapshot'; services: Record<string, string[]> }
  | { type: 'stats'; stats: LoadStats };

const { values: args } = parseArgs({
  options: {
    target: { type: 'string' },
    scenario: { type: 'string' },
    'first-cluster': { type: 'string' },
    clusters: { type: 'string' },
  },
});
const scenario = JSON.parse(args.scenario ?? '{}') as FleetScenario;
if (SCENARIOS[scenario.name] === undefined && scenario.clusters === undefined) {
  throw new Error('fleet-load: --scenario must be a scenario JSON');
}
const first = Number(args['first-cluster']);
const count = Number(args.clusters);

const send = (message: FromLoad) => process.send?.(message);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let changes: ChangeRecord[] = [];
let recording = false;
const onChange = (change: SyntheticChange) => {
  if (recording) changes.push([change.address, change.kind === 'ready' ? 1 : 0, change.atMs]);
};
setInterval(() => {
  if (changes.length === 0) return;
  send({ type: 'changes', changes });
  changes = [];
}, 100).unref();

const clusters: SyntheticCluster[] = [];
for (let c = first; c < first + count; c++) {
  const token = clusterToken(c);
  clusters.push(
    new SyntheticCluster(
      {
        namespace: NAMESPACE,
        services: clusterServices(scenario),
        addressPrefix: addressPrefix(c),
        onChange,
      },
      {
        clusterId: clusterId(c),
        agentVersion: 'fleet-bench',
        target: args.target ?? '',
        credentials: grpc.credentials.createInsecure(),
        // A connection of its own, as each cluster's agent has: grpc-js would otherwise carry
        // every simulated cluster of this process over one shared HTTP/2 connection.
        channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
        batchWindowMs: 50,
        heartbeatIntervalMs: 10_000,
        reconnectInitialMs: 200,
        reconnectMaxMs: 2_000,
        metadata: () => {
          const metadata = new grpc.Metadata();
          metadata.set('authorization', `Bearer ${token}`);
          return metadata;
        },
      },
    ),
  );
}
send({ type: 'built', endpoints: clusters.reduce((n, c) => n + c.readyPods(), 0) });

/** Flushes every cluster every 50 ms (terminated pods leave their slices). */
const flusher = setInterval(() => {
  for (const c of clusters) c.flush();
}, 50);

async function start(): Promise<void> {
  const t0 = performance.now();
  recording = true;
  for (const c of clusters) c.start();
  while (clusters.some((c) => c.publisher.state !== 'streaming')) await sleep(20);
  await Promise.all(clusters.map((c) => c.publisher.drain(600_000)));
  send({ type: 'started', ms: performance.now() - t0 });
}

/**
 * Every pod restarted once, services one after another (as deployments rolled in turn), each
 * service in every cluster at once, its pods spread evenly over the service's share of the time.
 */
async function restart(seconds: number): Promise<void> {
  const perService = (seconds * 1_000) / scenario.services;
  let restarts = 0;
  for (let s = 0; s < scenario.services; s++) {
    const service = serviceName(s);
    const pods = scenario.podsPerService;
    const done = new Array<number>(clusters.length).fill(0);
    const t0 = performance.now();
    for (;;) {
      const share = Math.min(1, (performance.now() - t0) / perService);
      for (const [i, c] of clusters.entries()) {
        const due = Math.floor(share * pods);
        for (; done[i]! < due; done[i]!++) {
          c.restartOldest(service);
          restarts++;
        }
        c.flush();
      }
      if (share >= 1) break;
      await sleep(20);
    }
  }
  send({ type: 'restarted', restarts });
}

function snapshot(): void {
  const services: Record<string, string[]> = {};
  for (const c of clusters) {
    for (const name of c.serviceNames()) {
      (services[name] ??= []).push(...c.readyAddresses(name));
    }
  }
  send({ type: 'snapshot', services });
}

function stats(): LoadStats {
  const out: LoadStats = {
    batchesSent: 0,
    endpointChangesSent: 0,
    bytesSent: 0,
    acks: 0,
    nacks: 0,
    resyncRequests: 0,
    connects: 0,
    servicesReplaced: 0,
    windowFull: 0,
  };
  for (const c of clusters) {
    for (const key of Object.keys(out) as (keyof LoadStats)[]) out[key] += c.publisher.stats[key];
  }
  return out;
}

function cluster(id: string): SyntheticCluster {
  const found = clusters.find((c) => c.clusterId === id);
  if (found === undefined) throw new Error(`no cluster ${id} in this load process`);
  return found;
}

process.on('message', (message: ToLoad) => {
  const fail = (err: unknown) => {
    console.error('fleet load failed:', err);
    process.exit(1);
  };
  const done = () => send({ type: 'done', command: message.type });
  switch (message.type) {
    case 'start':
      start().catch(fail);
      break;
    case 'restart':
      restart(message.seconds).catch(fail);
      break;
    case 'scale':
      for (const c of clusters) {
        c.scale(message.service, message.pods);
        c.flush();
      }
      done();
      break;
    case 'disconnect':
      cluster(message.cluster).disconnect().then(done, fail);
      break;
    case 'reconnect':
      cluster(message.cluster).reconnect();
      done();
      break;
    case 'snapshot':
      snapshot();
      break;
    case 'stats':
      send({ type: 'stats', stats: stats() });
      break;
    case 'exit':
      clearInterval(flusher);
      void Promise.all(clusters.map((c) => c.publisher.close())).then(() => process.exit(0));
      break;
  }
});
process.on('disconnect', () => process.exit(0));
// Stopped by the bench: exit normally, so that a CPU profile (--profile) gets written.
process.once('SIGTERM', () => process.exit(0));

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { stringify as toYaml } from 'yaml';
import { SyntheticCluster } from '../../agent/synthetic/synthetic-cluster.js';
import {
  AdminServiceClient,
  silentLogger,
  type Alert,
  type Cluster,
  type Logger,
  type TargetGroupStatus,
} from '../../shared/index.js';
import { hashAdminToken } from '../admin/index.js';
import { startElbv2Simulator, type Elbv2SimulatorServer } from '../aws/simulator/index.js';
import { hubOptionsSchema, workerOptionsSchema } from '../config/index.js';
import { Hub } from '../hub.js';
import { hashAgentToken } from '../ingest/index.js';
import { ReconcileWorker } from '../reconcile-worker.js';
import { findRedisServer, startPrivateRedis, type PrivateRedis } from './private-redis.js';

/** Options of {@link LocalDemo}. */
export interface LocalDemoOptions {
  /** A Redis to use; without one the demo starts a private redis-server. */
  redisUrl?: string;
  /** The redis-server binary for the private Redis. @default TGFED_REDIS_SERVER or PATH */
  redisServer?: string;
  /** Simulated clusters (at most 9). @default 3 */
  clusters?: number;
  /** Ready pods of `web` per cluster (`api` gets twice as many). @default 10 */
  pods?: number;
  /** Pod restarts and scalings per second over all clusters. @default 2 */
  churnPerSecond?: number;
  /** The admin API listener. @default 127.0.0.1:7444 */
  adminAddress?: string;
  /** The agents' listener. @default 127.0.0.1:0 */
  agentAddress?: string;
  /** Workers (in this process). @default 2 */
  workers?: number;
  /**
   * Bindings to real target groups (the hub's bindings file format). The workers then reach
   * AWS (or moto) with the SDK's standard settings (`AWS_ENDPOINT_URL`, `AWS_PROFILE`, ...)
   * instead of the ELBv2 simulator, and the simulated clusters' services feed those bindings.
   */
  bindingsFile?: string;
  logger?: Logger;
}

/** What {@link LocalDemo.status} reports. */
export interface LocalDemoStatus {
  clusters: Cluster[];
  groups: TargetGroupStatus[];
  alerts: Alert[];
}

const CLUSTER_NAMES = [
  'east',
  'west',
  'central',
  'north',
  'south',
  'alpha',
  'beta',
  'gamma',
  'delta',
];
const DEMO_ACCOUNTS = ['111111111111', '222222222222', '333333333333'];
const REGION = 'eu-west-1';
const EXTERNAL_ID = 'tgfed-demo';

function unary<Req, Res>(
  call: (
    req: Req,
    md: grpc.Metadata,
    o: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r: Res) => void,
  ) => unknown,
  request: Req,
  token: string,
): Promise<Res> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) =>
    call(request, metadata, { deadline: Date.now() + 5_000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

/**
 * tgfed on one machine, for `tgfed demo`: a hub and workers in this process, simulated clusters
 * whose pods churn (the real agent publishing code over the real protocol, SyntheticCluster
 * instead of Kubernetes), a private redis-server unless a Redis URL is given, and the ELBv2
 * simulator as AWS unless real bindings are given. The admin API answers `tgfed` commands.
 */
export class LocalDemo {
  readonly adminToken: string;
  readonly dir: string;
  hub!: Hub;
  readonly workers: ReconcileWorker[] = [];
  readonly clusters: SyntheticCluster[] = [];
  redis: PrivateRedis | undefined;
  simulator: Elbv2SimulatorServer | undefined;
  #admin: AdminServiceClient | undefined;
  #timers: NodeJS.Timeout[] = [];
  readonly #options: LocalDemoOptions;
  readonly #log: Logger;

  private constructor(options: LocalDemoOptions) {
    this.#options = options;
    this.#log = options.logger ?? silentLogger();
    this.adminToken = `demo-${randomBytes(12).toString('hex')}`;
    this.dir = mkdtempSync(join(tmpdir(), 'tgfed-demo-'));
  }

  /** Starts everything; on failure stops what started and rethrows. */
  static async start(options: LocalDemoOptions = {}): Promise<LocalDemo> {
    const demo = new LocalDemo(options);
    try {
      await demo.#start();
      return demo;
    } catch (err) {
      await demo.close();
      throw err;
    }
  }

  get adminPort(): number {
    return this.hub.adminPort;
  }

  async #start(): Promise<void> {
    const o = this.#options;
    const clusterCount = Math.min(CLUSTER_NAMES.length, Math.max(1, o.clusters ?? 3));
    const pods = o.pods ?? 10;

    let redisUrl = o.redisUrl;
    if (redisUrl === undefined) {
      this.redis = await startPrivateRedis(findRedisServer(o.redisServer));
      redisUrl = this.redis.url;
      this.#log.info({ url: redisUrl, pid: this.redis.pid }, 'private redis-server started');
    }

    const file = (name: string, content: unknown): string => {
      const path = join(this.dir, name);
      writeFileSync(path, toYaml(content));
      return path;
    };
    const names = CLUSTER_NAMES.slice(0, clusterCount);
    const agentToken = (id: string) => `${this.adminToken}-${id}`;
    const clustersFile = file('clusters.yaml', {
      clusters: names.map((id, i) => ({
        id,
        labels: { env: 'demo', region: id },
        allowedCidrs: [`10.${i + 1}.0.0/16`],
        tokenSha256: [hashAgentToken(agentToken(id))],
      })),
    });
    const adminTokensFile = file('admin.yaml', {
      tokens: [{ name: 'demo', role: 'admin', tokenSha256: hashAdminToken(this.adminToken) }],
    });

    let bindingsFile = o.bindingsFile;
    let awsClients = {};
    if (bindingsFile === undefined) {
      this.simulator = await startElbv2Simulator({
        latencyMs: { min: 20, max: 80 },
        healthyAfterMs: 3_000,
        deregistrationDelayMs: 15_000,
      });
      const sim = this.simulator.simulator;
      const group = (account: string, name: string, capacity: number) => ({
        arn: sim.createTargetGroup({ account, region: REGION, name, port: 8080, capacity }),
        roleArn: `arn:aws:iam::${account}:role/tgfed-demo`,
        externalId: EXTERNAL_ID,
        capacity,
      });
      for (const account of DEMO_ACCOUNTS) {
        sim.allowRole(`arn:aws:iam::${account}:role/tgfed-demo`, { externalId: EXTERNAL_ID });
      }
      const everywhere = { labels: { matchLabels: { env: 'demo' } } };
      bindingsFile = file('bindings.yaml', {
        bindings: [
          {
            name: 'web',
            services: { namespace: 'shop', name: 'web' },
            port: { name: 'http' },
            clusters: everywhere,
            targetGroup: group(DEMO_ACCOUNTS[0]!, 'demo-web', 1_000),
          },
          {
            // A pool: `api` outgrows one group's (deliberately small) capacity. Each group holds
            // 90% of the service: a pool is placed by rendezvous hashing on random group ARNs,
            // so one group may get well over half (at 1.5 x half, a group past 90% of its
            // capacity, which fires TgfedTargetGroupNearCapacity, came in about 1 run of 140).
            name: 'api',
            services: { namespace: 'shop', name: 'api' },
            port: { name: 'http' },
            clusters: everywhere,
            pool: {
              groups: [
                group(DEMO_ACCOUNTS[1]!, 'demo-api-a', Math.ceil(0.9 * 2 * pods * clusterCount)),
                group(DEMO_ACCOUNTS[2]!, 'demo-api-b', Math.ceil(0.9 * 2 * pods * clusterCount)),
              ],
            },
          },
        ],
      });
      const endpoint = this.simulator.url;
      const credentials = { accessKeyId: 'AKIADEMO000000000000', secretAccessKey: 'demo' };
      awsClients = { elbv2: { endpoint, credentials }, sts: { endpoint, credentials } };
    }

    const state = {
      redisUrl,
      redisKeyPrefix: 'tgfed-demo',
      clustersFile,
      reconcileShardCount: 4,
      reconcileDebounceMs: 300,
      shutdownGraceMs: 3_000,
    };
    this.hub = new Hub(
      hubOptionsSchema.parse({
        ...state,
        hubId: 'demo-hub',
        agentAddress: o.agentAddress ?? '127.0.0.1:0',
        adminAddress: o.adminAddress ?? '127.0.0.1:7444',
        healthAddress: '127.0.0.1:0',
        insecure: true,
        agentClientCertificates: 'optional',
        adminClientCertificates: 'none',
        adminTokensFile,
        bindingsFile,
      }),
      { logger: this.#log.child({ component: 'hub' }) },
    );
    await this.hub.start();
    for (let w = 0; w < (o.workers ?? 2); w++) {
      const worker = new ReconcileWorker(
        workerOptionsSchema.parse({
          ...state,
          workerId: `demo-worker-${w}`,
          healthAddress: '127.0.0.1:0',
          driftIntervalMs: 60_000,
          followUpMs: 3_000,
        }),
        { logger: this.#log.child({ component: `worker-${w}` }), awsClients },
      );
      await worker.start();
      this.workers.push(worker);
    }

    for (const [i, id] of names.entries()) {
      const cluster = new SyntheticCluster(
        {
          namespace: 'shop',
          services: [
            { name: 'web', pods },
            { name: 'api', pods: pods * 2 },
          ],
          addressPrefix: `10.${i + 1}`,
          terminationMs: 5_000,
        },
        {
          clusterId: id,
          agentVersion: 'demo',
          target: `127.0.0.1:${this.hub.agentPort}`,
          credentials: grpc.credentials.createInsecure(),
          metadata: () => {
            const metadata = new grpc.Metadata();
            metadata.set('authorization', `Bearer ${agentToken(id)}`);
            return metadata;
          },
        },
      );
      cluster.start();
      this.clusters.push(cluster);
    }
    this.#admin = new AdminServiceClient(
      `127.0.0.1:${this.hub.adminPort}`,
      grpc.credentials.createInsecure(),
    );

    this.#timers.push(
      setInterval(() => {
        for (const c of this.clusters) c.flush();
      }, 100),
    );
    const churn = o.churnPerSecond ?? 2;
    if (churn > 0) {
      this.#timers.push(setInterval(() => this.#churnOnce(pods), 1_000 / churn));
    }
  }

  /** One change somewhere: mostly a pod restart, sometimes a scale up or down by one. */
  #churnOnce(pods: number): void {
    const cluster = this.clusters[Math.floor(Math.random() * this.clusters.length)];
    if (cluster === undefined) return;
    const service = Math.random() < 0.5 ? 'web' : 'api';
    const base = service === 'web' ? pods : pods * 2;
    const roll = Math.random();
    const now = cluster.readyPods(service);
    if (roll < 0.8) cluster.restartOldest(service);
    else if (roll < 0.9 && now < Math.ceil(base * 1.3)) cluster.scale(service, now + 1);
    else if (now > Math.floor(base * 0.7)) cluster.scale(service, now - 1);
  }

  /** Clusters, target groups (desired vs actual, in sync) and alerts, from the admin API. */
  async status(): Promise<LocalDemoStatus> {
    const admin = this.#admin;
    if (admin === undefined) throw new Error('the demo is not running');
    const token = this.adminToken;
    const { clusters } = await unary(admin.listClusters.bind(admin), {}, token);
    const { bindings } = await unary(admin.listBindings.bind(admin), {}, token);
    const arns = new Set<string>();
    for (const b of bindings) {
      if (b.target?.$case === 'targetGroup') arns.add(b.target.targetGroup.arn);
      if (b.target?.$case === 'pool') for (const g of b.target.pool.groups) arns.add(g.arn);
    }
    const groups: TargetGroupStatus[] = [];
    for (const arn of arns) {
      const { status } = await unary(admin.getTargetGroupStatus.bind(admin), { arn }, token);
      if (status !== undefined) groups.push(status);
    }
    const alerts = await unary(admin.listAlerts.bind(admin), {}, token).then(
      (res) => res.alerts,
      () => [],
    );
    return { clusters, groups, alerts };
  }

  /** Stops churn, agents, workers, hub, simulator and the private redis-server. Every step runs. */
  async close(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    const step = async (what: string, run: () => Promise<unknown> | undefined) => {
      try {
        await run();
      } catch (err) {
        this.#log.warn({ err }, `demo: stopping ${what} failed`);
      }
    };
    await Promise.all(this.clusters.map((c) => step('a cluster', () => c.disconnect())));
    this.#admin?.close();
    for (const worker of this.workers) await step('a worker', () => worker.shutdown(1_000));
    await step('the hub', () => this.hub?.shutdown());
    await step('the simulator', () => this.simulator?.close());
    await step('redis-server', () => this.redis?.stop());
    rmSync(this.dir, { recursive: true, force: true });
  }
}

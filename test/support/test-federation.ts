import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { workerOptionsSchema } from '../../hub/config/index.js';
import { Hub, type HubDependencies } from '../../hub/hub.js';
import { ReconcileWorker, type ReconcileWorkerDependencies } from '../../hub/reconcile-worker.js';
import { TargetGroupRecords } from '../../hub/reconcile/index.js';
import {
  AdminServiceClient,
  type ApplyBindingRequest,
  type ApplyBindingResponse,
  type Binding,
  type DeleteBindingRequest,
  type DeleteBindingResponse,
  type GetTargetGroupStatusRequest,
  type GetTargetGroupStatusResponse,
  type ReleaseHeldOperationRequest,
  type ReleaseHeldOperationResponse,
  type TriggerReconcileRequest,
  type TriggerReconcileResponse,
  type HeldOperation,
  type TargetGroupStatus,
} from '../../shared/index.js';
import { waitFor } from '../env/wait-for.js';
import { endpointSlice } from './endpoint-slices.js';
import { TestAgent } from './test-agent.js';
import { agentTokenOf, testHubSettings, type TestHubCluster, bearer } from './test-hub-settings.js';

/** What a federation test sets up. */
export interface TestFederationSpec {
  name: string;
  redisUrl: string;
  clusters: readonly TestHubCluster[];
  /** Hub settings besides the defaults of `testHubSettings`. */
  hubSettings?: Record<string, unknown>;
  /** Worker settings besides the test defaults (short lock and drift interval). */
  workerSettings?: Record<string, unknown>;
  /** What the hub is given rather than creates (e.g. its telemetry). @default {} */
  hubDependencies?: HubDependencies;
}

function unary<Req, Res>(
  call: (
    req: Req,
    md: grpc.Metadata,
    cb: (err: grpc.ServiceError | null, res: Res) => void,
  ) => unknown,
  request: Req,
  token: string,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    call(request, bearer(token), (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/**
 * A whole tgfed on loopback for integration tests: a real hub (plaintext gRPC, unique Redis key
 * prefix), test agents speaking the real protocol, and any number of real workers, all on the
 * test environment's Redis. `close()` stops everything and deletes the test's keys.
 */
export class TestFederation {
  readonly spec: TestFederationSpec;
  readonly keyPrefix: string;
  readonly adminToken: string;
  readonly dir: string;
  readonly agents = new Map<string, TestAgent>();
  readonly workers: ReconcileWorker[] = [];
  /** Hub replicas besides {@link hub} ({@link startReplica}). */
  readonly replicas: Hub[] = [];
  readonly redis: Redis;
  readonly records: TargetGroupRecords;
  hub!: Hub;
  admin!: AdminServiceClient;

  constructor(spec: TestFederationSpec) {
    this.spec = spec;
    this.keyPrefix = `${spec.name}-${randomBytes(4).toString('hex')}`;
    this.adminToken = `admin-token-${this.keyPrefix}`;
    this.dir = mkdtempSync(join(tmpdir(), `tgfed-${spec.name}-`));
    this.redis = new Redis(spec.redisUrl, { maxRetriesPerRequest: null });
    this.records = new TargetGroupRecords(this.redis, this.keyPrefix);
  }

  /** Starts the hub. */
  async start(): Promise<void> {
    this.hub = await this.#startHub(`${this.spec.name}-hub`);
    this.admin = new AdminServiceClient(
      `127.0.0.1:${this.hub.adminPort}`,
      grpc.credentials.createInsecure(),
    );
  }

  /** Starts another hub replica on the same Redis keys and clusters file (closed with the rest). */
  async startReplica(hubId: string): Promise<Hub> {
    const replica = await this.#startHub(hubId);
    this.replicas.push(replica);
    return replica;
  }

  async #startHub(hubId: string): Promise<Hub> {
    const hub = new Hub(
      testHubSettings({
        hubId,
        dir: this.dir,
        clusters: this.spec.clusters,
        adminToken: this.adminToken,
        settings: {
          redisUrl: this.spec.redisUrl,
          redisKeyPrefix: this.keyPrefix,
          reconcileShardCount: 4,
          reconcileDebounceMs: 200,
          ...this.spec.hubSettings,
        },
      }),
      this.spec.hubDependencies,
    );
    await hub.start();
    return hub;
  }

  /** Starts a worker on the same Redis and clusters file. */
  async startWorker(
    deps: ReconcileWorkerDependencies,
    settings: Record<string, unknown> = {},
  ): Promise<ReconcileWorker> {
    const worker = new ReconcileWorker(
      workerOptionsSchema.parse({
        workerId: `${this.spec.name}-worker-${this.workers.length}`,
        redisUrl: this.spec.redisUrl,
        redisKeyPrefix: this.keyPrefix,
        clustersFile: join(this.dir, 'clusters.yaml'),
        reconcileShardCount: 4,
        reconcileDebounceMs: 200,
        healthAddress: '127.0.0.1:0',
        lockDurationMs: 2_000,
        followUpMs: 1_000,
        shutdownGraceMs: 2_000,
        ...this.spec.hubSettings,
        ...this.spec.workerSettings,
        ...settings,
      }),
      deps,
    );
    await worker.start();
    this.workers.push(worker);
    return worker;
  }

  /**
   * Starts (or returns) the agent of a cluster; it publishes what `setEndpoints` gives it.
   * @param port where a new agent connects (e.g. a fault relay in front of the hub)
   * @default the hub's agent port
   */
  agent(clusterId: string, port: number = this.hub.agentPort): TestAgent {
    let agent = this.agents.get(clusterId);
    if (agent === undefined) {
      agent = new TestAgent({
        clusterId,
        target: `127.0.0.1:${port}`,
        metadata: () => bearer(agentTokenOf(clusterId)),
      });
      this.agents.set(clusterId, agent);
      agent.publisher.start();
    }
    return agent;
  }

  /** Sets the ready endpoints of `shop/web` (port `http` 8080) in a cluster: `10.<block>.<h>`. */
  setEndpoints(
    clusterId: string,
    hosts: readonly number[],
    notReady: readonly number[] = [],
  ): void {
    const block = this.spec.clusters.find((c) => c.id === clusterId)?.block;
    if (block === undefined) throw new Error(`unknown test cluster ${clusterId}`);
    this.agent(clusterId).upsert(
      endpointSlice({
        namespace: 'shop',
        service: 'web',
        name: 'web-1',
        endpoints: [
          ...hosts.map((h) => ({ ip: webIp(block, h) })),
          ...notReady.map((h) => ({ ip: webIp(block, h), ready: false })),
        ],
        ports: [{ name: 'http', port: 8080 }],
      }),
    );
  }

  applyBinding(binding: Binding): Promise<ApplyBindingResponse> {
    return unary<ApplyBindingRequest, ApplyBindingResponse>(
      this.admin.applyBinding.bind(this.admin),
      { binding, dryRun: false },
      this.adminToken,
    );
  }

  deleteBinding(name: string): Promise<unknown> {
    return unary<DeleteBindingRequest, DeleteBindingResponse>(
      this.admin.deleteBinding.bind(this.admin),
      { name, version: 0 },
      this.adminToken,
    );
  }

  async status(arn: string): Promise<TargetGroupStatus | undefined> {
    const res = await unary<GetTargetGroupStatusRequest, GetTargetGroupStatusResponse>(
      this.admin.getTargetGroupStatus.bind(this.admin),
      { arn },
      this.adminToken,
    );
    return res.status;
  }

  /**
   * Waits for the group's status to satisfy `settled`. AWS (moto or the simulator) holds the
   * targets as soon as a call is made; the reconcile that made it records its outcome after the
   * response, so a test that saw the targets arrive waits here before reading the status.
   */
  async statusWhen(
    arn: string,
    settled: (status: TargetGroupStatus) => boolean,
    what: string,
  ): Promise<TargetGroupStatus> {
    return await waitFor(
      async () => {
        const status = await this.status(arn);
        return status !== undefined && settled(status) ? status : undefined;
      },
      { what, timeoutMs: 10_000 },
    );
  }

  async release(id: string): Promise<HeldOperation | undefined> {
    const res = await unary<ReleaseHeldOperationRequest, ReleaseHeldOperationResponse>(
      this.admin.releaseHeldOperation.bind(this.admin),
      { id },
      this.adminToken,
    );
    return res.operation;
  }

  async triggerReconcile(arn: string, refresh: boolean): Promise<string> {
    const res = await unary<TriggerReconcileRequest, TriggerReconcileResponse>(
      this.admin.triggerReconcile.bind(this.admin),
      { targetGroupArn: arn, refresh },
      this.adminToken,
    );
    return res.jobId;
  }

  /** Stops agents, workers and the hub; deletes the test's keys. Every step runs. */
  async close(): Promise<void> {
    for (const agent of this.agents.values()) await agent.publisher.close().catch(() => undefined);
    for (const worker of this.workers) await worker.shutdown(0).catch(() => undefined);
    this.admin?.close();
    await this.hub?.shutdown().catch(() => undefined);
    for (const replica of this.replicas) await replica.shutdown().catch(() => undefined);
    const keys = await this.redis.keys(`${this.keyPrefix}:*`);
    if (keys.length > 0) await this.redis.del(...keys);
    await this.redis.quit();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The address of test host `h` in cluster block `block` (h from 1 to 62,500). */
export function webIp(block: number, h: number): string {
  return `10.${block}.${Math.floor(h / 250)}.${(h % 250) + 1}`;
}

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { workerOptionsSchema } from '../../../hub/config/index.js';
import { Hub } from '../../../hub/hub.js';
import { ReconcileWorker } from '../../../hub/reconcile-worker.js';
import {
  AdminServiceClient,
  type ApplyBindingResponse,
  type Binding,
  type GetTargetGroupStatusResponse,
} from '../../../shared/index.js';
import { startRedisCluster, type RedisCluster } from '../../env/redis-cluster.js';
import { waitFor } from '../../env/wait-for.js';
import { alertKeys, listAlerts } from '../../support/admin-alerts.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import { TestAgent } from '../../support/test-agent.js';
import { webIp } from '../../support/test-federation.js';
import { agentTokenOf, bearer, testHubSettings } from '../../support/test-hub-settings.js';

// The whole path on a real 3-master Redis Cluster: agents → hub → BullMQ queues → two workers →
// the ELBv2 simulator, with one pool of groups and one single group, fed by three clusters.

const adminToken = 'rel-rc-admin';
const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
  { id: 'north', block: 3 },
];
const keyPrefix = 'rel-rc';

let dir: string;
let redisCluster: RedisCluster;
let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let hub: Hub;
let admin: AdminServiceClient;
const workers: ReconcileWorker[] = [];
const agents = new Map<string, TestAgent>();
const hosts = new Map<string, number[]>();

function announce(clusterId: string, list: number[]): void {
  const block = clusters.find((c) => c.id === clusterId)?.block as number;
  hosts.set(clusterId, list);
  agents.get(clusterId)?.upsert(
    endpointSlice({
      namespace: 'shop',
      service: 'web',
      name: 'web-1',
      endpoints: list.map((h) => ({ ip: webIp(block, h) })),
      ports: [{ name: 'http', port: 8080 }],
    }),
  );
}

function wanted(): string[] {
  return clusters
    .flatMap((c) => (hosts.get(c.id) ?? []).map((h) => `${webIp(c.block, h)}:8080`))
    .sort();
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

function applyBinding(b: Binding): Promise<ApplyBindingResponse> {
  return new Promise((resolve, reject) =>
    admin.applyBinding({ binding: b, dryRun: false }, bearer(adminToken), (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

function status(arn: string): Promise<GetTargetGroupStatusResponse> {
  return new Promise((resolve, reject) =>
    admin.getTargetGroupStatus({ arn }, bearer(adminToken), (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

beforeAll(async () => {
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  [redisCluster, simServer] = await Promise.all([
    startRedisCluster(inject('testenv').redisServer, { masters: 3 }),
    startElbv2Simulator({ simulator: sim }),
  ]);
  dir = mkdtempSync(join(tmpdir(), 'tgfed-rel-rc-'));
  const state = {
    redisClusterNodes: [redisCluster.addresses[0]],
    redisKeyPrefix: keyPrefix,
    reconcileShardCount: 4,
    reconcileDebounceMs: 200,
  };
  const options = testHubSettings({
    hubId: 'rel-rc-hub',
    dir,
    clusters,
    adminToken,
    settings: state,
  });
  hub = new Hub(options);
  await hub.start();
  admin = new AdminServiceClient(`127.0.0.1:${hub.adminPort}`, grpc.credentials.createInsecure());
  for (let w = 0; w < 2; w++) {
    const worker = new ReconcileWorker(
      workerOptionsSchema.parse({
        ...state,
        workerId: `rel-rc-worker-${w}`,
        clustersFile: options.clustersFile,
        healthAddress: '127.0.0.1:0',
        lockDurationMs: 2_000,
        followUpMs: 1_000,
        driftIntervalMs: 600_000,
        shutdownGraceMs: 1_000,
      }),
      {
        awsClients: {
          elbv2: {
            endpoint: simServer.url,
            credentials: { accessKeyId: `AKIDRC${w}`, secretAccessKey: 'secret' },
          },
          sts: { endpoint: simServer.url },
        },
      },
    );
    await worker.start();
    workers.push(worker);
  }
  for (const c of clusters) {
    const agent = new TestAgent({
      clusterId: c.id,
      target: `127.0.0.1:${hub.agentPort}`,
      metadata: () => bearer(agentTokenOf(c.id)),
    });
    agents.set(c.id, agent);
    agent.publisher.start();
  }
}, 90_000);

afterAll(async () => {
  for (const agent of agents.values()) await agent.publisher.close().catch(() => undefined);
  for (const worker of workers) await worker.shutdown(0).catch(() => undefined);
  admin?.close();
  await hub?.shutdown().catch(() => undefined);
  await redisCluster?.stop();
  await simServer?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('tgfed on a 3-master Redis Cluster, end to end', () => {
  it('converges a pool and a group fed by three clusters through two workers, each target registered once', async () => {
    const pool = [0, 1].map((n) =>
      sim.createTargetGroup({
        account: ACCOUNT,
        region: REGION,
        name: `rel-rc-pool-${n}`,
        port: 8080,
        capacity: 100,
      }),
    );
    const single = sim.createTargetGroup({
      account: ACCOUNT,
      region: REGION,
      name: 'rel-rc-single',
      port: 8080,
    });
    await applyBinding(
      binding({
        name: 'rc-pool',
        clusters: { names: clusters.map((c) => c.id), labels: undefined },
        target: {
          $case: 'pool',
          pool: {
            groups: pool.map((arn) => targetGroup({ arn, capacity: 100 })),
            listenerRuleArn: '',
          },
        },
      }),
    );
    await applyBinding(
      binding({
        name: 'rc-single',
        clusters: { names: ['east'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: single }) },
      }),
    );
    for (const c of clusters) announce(c.id, range(1, 20));

    const poolTargets = () => pool.flatMap((arn) => sim.registered(arn)).sort();
    await waitFor(() => JSON.stringify(poolTargets()) === JSON.stringify(wanted()), {
      what: 'the pool to hold every cluster’s targets',
      timeoutMs: 30_000,
    });
    const eastOnly = () => wanted().filter((t) => t.startsWith('10.1.'));
    await waitFor(() => JSON.stringify(sim.registered(single)) === JSON.stringify(eastOnly()), {
      what: 'the single group to hold east’s targets',
      timeoutMs: 30_000,
    });
    for (const arn of pool) {
      // The pool spreads the endpoints over both groups.
      expect(sim.registered(arn).length).toBeGreaterThan(0);
    }

    // Churn: a rolling replacement in every cluster.
    for (const c of clusters) announce(c.id, [...range(6, 15), ...range(100, 5)]);
    await waitFor(
      () =>
        JSON.stringify(poolTargets()) === JSON.stringify(wanted()) &&
        JSON.stringify(sim.registered(single)) === JSON.stringify(eastOnly()),
      { what: 'every group after the churn', timeoutMs: 30_000 },
    );
    for (const arn of [...pool, single]) {
      const twice = [...(sim.registrations.get(arn) ?? [])].filter(([, n]) => n > 1);
      expect(twice).toEqual([]);
    }
    for (const arn of [...pool, single]) {
      await waitFor(async () => (await status(arn)).status?.inSync === true, {
        what: `${arn} in sync`,
        timeoutMs: 10_000,
      });
    }
    await waitFor(async () => (await listAlerts(admin, adminToken)).length === 0, {
      what: 'no alert once everything converged',
      timeoutMs: 10_000,
    }).catch(async (err: unknown) => {
      const firing = alertKeys(await listAlerts(admin, adminToken)).join(', ');
      throw new Error(`alerts still firing: ${firing}`, { cause: err });
    });
    // Every master holds tgfed keys: no single hash tag put everything on one node.
    for (const node of redisCluster.nodes) {
      const direct = new Redis({ host: '127.0.0.1', port: node.port, maxRetriesPerRequest: 1 });
      try {
        expect((await direct.keys(`${keyPrefix}*`)).length).toBeGreaterThan(0);
      } finally {
        direct.disconnect();
      }
    }
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { BindingStore } from '../../../hub/federation/binding-store.js';
import { Hub } from '../../../hub/hub.js';
import {
  compileReconcileQueueOptions,
  reconcileQueueAddresses,
  reconcileQueueFor,
  type ReconcileRequest,
} from '../../../hub/queue/index.js';
import {
  AdminServiceClient,
  ClusterState,
  type Cluster,
  type ListClustersResponse,
} from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { agentTokenOf, testHubSettings, bearer } from '../../support/test-hub-settings.js';
import { TestAgent } from '../../support/test-agent.js';

const adminToken = 'admin-token-of-the-reconcile-test';
const clusters = [
  { id: 'east', block: 1, version: 'tgfed-agent/1.0.0' },
  { id: 'west', block: 2, version: 'tgfed-agent/1.1.0' },
];
const GROUP = targetGroupArn(7);
const shardCount = 4;

let dir: string;
let hub: Hub;
let redis: Redis;
let keyPrefix: string;
let admin: AdminServiceClient;
const agents = new Map<string, TestAgent>();

function listClusters(): Promise<Cluster[]> {
  return new Promise((resolve, reject) =>
    admin.listClusters({}, bearer(adminToken), (err, res: ListClustersResponse) =>
      err ? reject(err) : resolve(res.clusters),
    ),
  );
}

/** Pending and active reconcile jobs, per shard, over every shard. */
async function reconcileJobs(): Promise<Map<number, ReconcileRequest[]>> {
  const byShard = new Map<number, ReconcileRequest[]>();
  const options = compileReconcileQueueOptions({ keyPrefix, shardCount });
  for (const address of reconcileQueueAddresses(options)) {
    const queue = new Queue<ReconcileRequest>(address.name, {
      connection: redis,
      prefix: address.prefix,
    });
    const jobs = await queue.getJobs(['delayed', 'wait', 'active', 'prioritized']);
    await queue.close();
    if (jobs.length > 0)
      byShard.set(
        address.shard,
        jobs.map((j) => j.data),
      );
  }
  return byShard;
}

function webSlice(block: number, hosts: number[]) {
  return endpointSlice({
    namespace: 'shop',
    service: 'web',
    name: 'web-1',
    endpoints: hosts.map((h) => ({ ip: `10.${block}.0.${h}` })),
    ports: [{ name: 'http', port: 8080 }],
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tgfed-hub-reconcile-'));
  keyPrefix = `hubrq-${randomBytes(4).toString('hex')}`;
  // BullMQ needs maxRetriesPerRequest null on the connection it is given.
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  // The binding is stored before the hub starts: its first snapshot carries it.
  const bindings = new BindingStore(redis, { keyPrefix });
  await bindings.apply(
    binding({
      name: 'web-everywhere',
      clusters: { names: clusters.map((c) => c.id), labels: undefined },
      target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: GROUP }) },
    }),
  );
  await bindings.close();
  const options = testHubSettings({
    hubId: 'hub-reconcile-test',
    dir,
    clusters,
    adminToken,
    settings: {
      redisUrl: inject('redisUrl'),
      redisKeyPrefix: keyPrefix,
      reconcileShardCount: shardCount,
      reconcileDebounceMs: 60_000,
    },
  });
  hub = new Hub(options);
  await hub.start();
  admin = new AdminServiceClient(`127.0.0.1:${hub.adminPort}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  for (const agent of agents.values()) await agent.publisher.close();
  admin?.close();
  await hub?.shutdown();
  if (redis !== undefined) {
    const keys = await redis.keys(`${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('Hub with its default reconcile queues', () => {
  it('enqueues one deduplicated reconcile for a binding fed by two clusters, in the group’s shard', async () => {
    for (const c of clusters) {
      const agent = new TestAgent({
        clusterId: c.id,
        target: `127.0.0.1:${hub.agentPort}`,
        metadata: () => bearer(agentTokenOf(c.id)),
        agentVersion: c.version,
      });
      agents.set(c.id, agent);
      agent.upsert(webSlice(c.block, [5, 6]));
      agent.publisher.start();
    }
    const connected = await waitFor(
      async () => {
        const listed = await listClusters();
        const ready = listed.filter(
          (c) => c.state === ClusterState.CLUSTER_STATE_CONNECTED && c.endpointCount === 2,
        );
        return ready.length === clusters.length ? listed : undefined;
      },
      { what: 'both clusters to be CONNECTED with their endpoints', timeoutMs: 20_000 },
    );
    expect(connected.map((c) => [c.id, c.agentVersion, c.hubId])).toEqual(
      clusters.map((c) => [c.id, c.version, 'hub-reconcile-test']),
    );

    agents.get('east')?.upsert(webSlice(1, [5, 6, 7]));
    await waitFor(
      async () => (await listClusters()).find((c) => c.id === 'east')?.endpointCount === 3,
      { what: 'the changed endpoint to be stored' },
    );

    const jobs = await reconcileJobs();
    const shard = reconcileQueueFor(
      GROUP,
      compileReconcileQueueOptions({ keyPrefix, shardCount }),
    ).shard;
    expect([...jobs.keys()]).toEqual([shard]);
    expect(jobs.get(shard)?.map((j) => j.targetGroupArn)).toEqual([GROUP]);
    expect(jobs.get(shard)?.[0]?.reason).toBe('endpoints');
  });
});

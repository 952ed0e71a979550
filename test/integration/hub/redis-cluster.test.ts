import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { Queue } from 'bullmq';
import { Cluster as RedisClusterClient, Redis } from 'ioredis';
import { BindingStore } from '../../../hub/federation/binding-store.js';
import { Hub } from '../../../hub/hub.js';
import {
  compileReconcileQueueOptions,
  reconcileQueueAddresses,
  reconcileQueueFor,
  type ReconcileRequest,
} from '../../../hub/queue/index.js';
import {
  ClusterEndpointStore,
  createRedis,
  StateKeys,
  type RedisClient,
} from '../../../hub/state/index.js';
import {
  AdminServiceClient,
  ClusterState,
  type ApplyBindingResponse,
  type Binding,
  type Cluster,
  type GetTargetGroupStatusResponse,
  type ListBindingsResponse,
  type ListClustersResponse,
} from '../../../shared/index.js';
import { startRedisCluster, type RedisCluster } from '../../env/redis-cluster.js';
import { waitFor } from '../../env/wait-for.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { agentTokenOf, testHubSettings, bearer } from '../../support/test-hub-settings.js';
import { TestAgent } from '../../support/test-agent.js';

const adminToken = 'admin-token-of-the-redis-cluster-test';
// Ids whose `{c:<id>}` tags hash to slots of different masters (asserted below, not assumed).
const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
  { id: 'north', block: 3 },
];
const GROUP = targetGroupArn(11);
const shardCount = 4;
const keyPrefix = 'rc';
const service = { namespace: 'shop', name: 'web' };

let dir: string;
let redisCluster: RedisCluster;
let hub: Hub;
let redis: RedisClient;
let admin: AdminServiceClient;
const agents = new Map<string, TestAgent>();

function listClusters(): Promise<Cluster[]> {
  return new Promise((resolve, reject) =>
    admin.listClusters({}, bearer(adminToken), (err, res: ListClustersResponse) =>
      err ? reject(err) : resolve(res.clusters),
    ),
  );
}

function applyBinding(b: Binding): Promise<ApplyBindingResponse> {
  return new Promise((resolve, reject) =>
    admin.applyBinding(
      { binding: b, dryRun: false },
      bearer(adminToken),
      (err, res: ApplyBindingResponse) => (err ? reject(err) : resolve(res)),
    ),
  );
}

function listBindings(): Promise<ListBindingsResponse> {
  return new Promise((resolve, reject) =>
    admin.listBindings({}, bearer(adminToken), (err, res: ListBindingsResponse) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

function targetGroupStatus(arn: string): Promise<GetTargetGroupStatusResponse> {
  return new Promise((resolve, reject) =>
    admin.getTargetGroupStatus(
      { arn },
      bearer(adminToken),
      (err, res: GetTargetGroupStatusResponse) => (err ? reject(err) : resolve(res)),
    ),
  );
}

/** The master that serves `key`'s slot, by CLUSTER KEYSLOT and the nodes' slot ranges. */
async function ownerOf(key: string): Promise<{ slot: number; port: number }> {
  const slot = Number(await redis.call('CLUSTER', 'KEYSLOT', key));
  const node = redisCluster.nodes.find((n) => slot >= n.slots[0] && slot <= n.slots[1]);
  if (node === undefined) throw new Error(`no node serves slot ${slot}`);
  return { slot, port: node.port };
}

/** EXISTS on one node directly (no redirection): true only where the key really lives. */
async function existsOn(port: number, key: string): Promise<boolean> {
  const direct = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  try {
    return (await direct.exists(key)) === 1;
  } finally {
    direct.disconnect();
  }
}

/** Pending and active reconcile jobs, per shard, over every shard, read through the cluster. */
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
    namespace: service.namespace,
    service: service.name,
    name: 'web-1',
    endpoints: hosts.map((h) => ({ ip: `10.${block}.0.${h}` })),
    ports: [{ name: 'http', port: 8080 }],
  });
}

beforeAll(async () => {
  redisCluster = await startRedisCluster(inject('testenv').redisServer, { masters: 3 });
  console.info(
    `redis cluster of ${redisCluster.nodes.length} masters ok after ${redisCluster.startupMs} ms`,
  );
  dir = mkdtempSync(join(tmpdir(), 'tgfed-hub-redis-cluster-'));
  // BullMQ needs maxRetriesPerRequest null on the connection it is given (createRedis sets it).
  redis = createRedis({ mode: 'cluster', nodes: redisCluster.addresses });
  const options = testHubSettings({
    hubId: 'hub-redis-cluster-test',
    dir,
    clusters,
    adminToken,
    settings: {
      // One seed only: the client must discover the other masters itself.
      redisClusterNodes: [redisCluster.addresses[1]],
      redisKeyPrefix: keyPrefix,
      reconcileShardCount: shardCount,
      reconcileDebounceMs: 60_000,
    },
  });
  hub = new Hub(options);
  await hub.start();
  admin = new AdminServiceClient(`127.0.0.1:${hub.adminPort}`, grpc.credentials.createInsecure());
}, 60_000);

afterAll(async () => {
  for (const agent of agents.values()) await agent.publisher.close();
  admin?.close();
  await hub?.shutdown();
  redis?.disconnect();
  await redisCluster?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('Hub on a 3-master Redis Cluster', () => {
  it('is a real cluster: three masters, every slot served', async () => {
    expect(redis).toBeInstanceOf(RedisClusterClient);
    // The client discovers every master itself (CLUSTER SLOTS), from any seed.
    await waitFor(() => (redis as RedisClusterClient).nodes('master').length === 3, {
      what: 'the client to discover three masters',
    });
    const info = String(await redis.call('CLUSTER', 'INFO'));
    expect(info).toContain('cluster_state:ok');
    expect(info).toContain('cluster_size:3');
  });

  it('applies and lists a binding through the admin API, and the binding store reads it', async () => {
    const applied = await applyBinding(
      binding({
        name: 'web-everywhere',
        clusters: { names: clusters.map((c) => c.id), labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: GROUP }) },
      }),
    );
    expect(applied.changed).toBe(true);
    expect(applied.binding?.version).toBeGreaterThan(0);
    const listed = await listBindings();
    expect(listed.bindings.map((b) => [b.name, b.version])).toEqual([
      ['web-everywhere', applied.binding?.version],
    ]);
    const store = new BindingStore(redis, { keyPrefix });
    try {
      expect((await store.list()).map((b) => b.name)).toEqual(['web-everywhere']);
      expect(await store.revision()).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });

  it('syncs three agents, stores their endpoints spread over the masters, and enqueues one reconcile', async () => {
    for (const c of clusters) {
      const agent = new TestAgent({
        clusterId: c.id,
        target: `127.0.0.1:${hub.agentPort}`,
        metadata: () => bearer(agentTokenOf(c.id)),
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
      { what: 'every cluster to be CONNECTED with its endpoints', timeoutMs: 20_000 },
    );
    expect(connected.map((c) => c.id).sort()).toEqual(clusters.map((c) => c.id).sort());

    // Redis holds the endpoint state, read through the hub's own store API.
    const keys = new StateKeys(keyPrefix);
    const store = new ClusterEndpointStore(redis, keys);
    for (const c of clusters) {
      const stored = await store.readService(c.id, service);
      expect([...(stored?.endpoints.keys() ?? [])].sort()).toEqual([
        `10.${c.block}.0.5`,
        `10.${c.block}.0.6`,
      ]);
      expect(await store.totals(c.id)).toEqual({ endpoints: 2, services: 1 });
    }
    // Admission indexed every cluster; their indexes read together (one read per master's tag).
    expect(await store.indexedClusterIds()).toEqual(clusters.map((c) => c.id).sort());
    const ids = clusters.map((c) => c.id);
    expect(
      await store.serviceMetasOfClusters(
        ids.map((clusterId) => ({ clusterId, serviceKeys: ['shop/web', 'shop/none'] })),
      ),
    ).toEqual(await Promise.all(ids.map((id) => store.serviceMetasOf(id, ['shop/web']))));
    // And their services, each read on its own master.
    expect(await store.readServices(ids.map((clusterId) => ({ clusterId, service })))).toEqual(
      await Promise.all(ids.map((id) => store.readService(id, service))),
    );

    // Each cluster's keys share one slot; different clusters land on more than one master.
    const owners = new Map<string, number>();
    for (const c of clusters) {
      const perKey = await Promise.all(
        [keys.services(c.id), keys.totals(c.id), keys.service(c.id, 'shop/web')].map(ownerOf),
      );
      expect(new Set(perKey.map((o) => o.slot)).size).toBe(1);
      const port = perKey[0]?.port ?? -1;
      expect(await existsOn(port, keys.services(c.id))).toBe(true);
      owners.set(c.id, port);
    }
    expect(new Set(owners.values()).size).toBeGreaterThan(1);

    // Changes of two clusters on different masters: one reconcile job, deduplicated, in the
    // group's shard.
    agents.get('east')?.upsert(webSlice(1, [5, 6, 7]));
    agents.get('west')?.upsert(webSlice(2, [5, 6, 7, 8]));
    await waitFor(
      async () => {
        const listed = await listClusters();
        return (
          listed.find((c) => c.id === 'east')?.endpointCount === 3 &&
          listed.find((c) => c.id === 'west')?.endpointCount === 4
        );
      },
      { what: 'the changed endpoints to be stored' },
    );
    // The desired state gathers every cluster's endpoints (found by SCAN over every master).
    const status = await waitFor(
      async () => {
        const s = (await targetGroupStatus(GROUP)).status;
        return s?.desiredTargets === 3 + 4 + 2 ? s : undefined;
      },
      { what: 'the desired targets of all three clusters' },
    );
    expect(status.bindings).toEqual(['web-everywhere']);
    expect(status.conflicts).toEqual([]);
    const expectedShard = reconcileQueueFor(
      GROUP,
      compileReconcileQueueOptions({ keyPrefix, shardCount }),
    );
    const jobs = await waitFor(
      async () => {
        const found = await reconcileJobs();
        return found.size > 0 ? found : undefined;
      },
      { what: 'a reconcile job' },
    );
    expect([...jobs.keys()]).toEqual([expectedShard.shard]);
    expect(jobs.get(expectedShard.shard)?.map((j) => j.targetGroupArn)).toEqual([GROUP]);
    // The queue's keys live on the master of its hash tag.
    const queueOwner = await ownerOf(`${expectedShard.prefix}:${expectedShard.name}:meta`);
    expect(
      await existsOn(queueOwner.port, `${expectedShard.prefix}:${expectedShard.name}:meta`),
    ).toBe(true);
  });
});

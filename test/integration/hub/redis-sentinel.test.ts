import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { Hub } from '../../../hub/hub.js';
import { ClusterEndpointStore, StateKeys } from '../../../hub/state/index.js';
import {
  AdminServiceClient,
  ClusterState,
  type ApplyBindingResponse,
  type Binding,
  type Cluster,
  type ListClustersResponse,
} from '../../../shared/index.js';
import { startRedisSentinel, type RedisSentinelSetup } from '../../env/redis-sentinel.js';
import { waitFor } from '../../env/wait-for.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { sortedEntries, TestAgent } from '../../support/test-agent.js';
import { agentTokenOf, testHubSettings, bearer } from '../../support/test-hub-settings.js';

const adminToken = 'admin-token-of-the-redis-sentinel-test';
const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];
const GROUP = targetGroupArn(12);
const keyPrefix = 'rs';
const service = { namespace: 'shop', name: 'web' };

let dir: string;
let sentinel: RedisSentinelSetup;
let hub: Hub;
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

function webSlice(block: number, hosts: number[]) {
  return endpointSlice({
    namespace: service.namespace,
    service: service.name,
    name: 'web-1',
    endpoints: hosts.map((h) => ({ ip: `10.${block}.0.${h}` })),
    ports: [{ name: 'http', port: 8080 }],
  });
}

/** Runs `fn` on a plain connection to one server (no Sentinel, no redirection). */
async function onServer<T>(port: number, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const direct = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  try {
    return await fn(direct);
  } finally {
    direct.disconnect();
  }
}

/** What one server holds for a cluster, in the form of `TestAgent.snapshot()`. */
async function storedSnapshot(port: number, clusterId: string): Promise<Record<string, unknown>> {
  return onServer(port, async (redis) => {
    const store = new ClusterEndpointStore(redis, new StateKeys(keyPrefix));
    const out: Record<string, unknown> = {};
    for (const [key, held] of await store.loadCluster(clusterId)) {
      out[key] = { labels: { ...held.labels }, endpoints: sortedEntries(held.endpoints) };
    }
    return out;
  });
}

/** True when the server on `port` holds exactly every agent's state. */
async function holdsAgentState(port: number): Promise<boolean> {
  for (const [id, agent] of agents) {
    const stored = await storedSnapshot(port, id);
    if (JSON.stringify(stored) !== JSON.stringify(agent.snapshot())) return false;
  }
  return true;
}

beforeAll(async () => {
  sentinel = await startRedisSentinel(inject('testenv').redisServer, {
    replicas: 1,
    sentinels: 3,
  });
  console.info(
    `redis sentinel (3 sentinels, master ${sentinel.master.port}, replica ${sentinel.replica.port}) ready after ${sentinel.startupMs} ms`,
  );
  dir = mkdtempSync(join(tmpdir(), 'tgfed-hub-redis-sentinel-'));
  const options = testHubSettings({
    hubId: 'hub-redis-sentinel-test',
    dir,
    clusters,
    adminToken,
    settings: {
      redisSentinels: sentinel.sentinelAddresses,
      redisSentinelName: sentinel.masterName,
      redisKeyPrefix: keyPrefix,
      reconcileShardCount: 2,
    },
  });
  hub = new Hub(options);
  await hub.start();
  admin = new AdminServiceClient(`127.0.0.1:${hub.adminPort}`, grpc.credentials.createInsecure());
}, 90_000);

afterAll(async () => {
  for (const agent of agents.values()) await agent.publisher.close();
  admin?.close();
  await hub?.shutdown();
  await sentinel?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('Hub on Redis Sentinel (master, replica, 3 sentinels)', () => {
  it('syncs two agents through the master the sentinels name', async () => {
    const applied = await applyBinding(
      binding({
        name: 'web-both',
        clusters: { names: clusters.map((c) => c.id), labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: GROUP }) },
      }),
    );
    expect(applied.changed).toBe(true);
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
    const listed = await waitFor(
      async () => {
        const all = await listClusters();
        const ready = all.filter(
          (c) => c.state === ClusterState.CLUSTER_STATE_CONNECTED && c.endpointCount === 2,
        );
        return ready.length === clusters.length ? all : undefined;
      },
      { what: 'both clusters to be CONNECTED with their endpoints', timeoutMs: 20_000 },
    );
    expect(listed.map((c) => c.id).sort()).toEqual(clusters.map((c) => c.id).sort());

    // The master holds exactly the agents' state; the replica has it too (replicated).
    expect(await holdsAgentState(sentinel.master.port)).toBe(true);
    for (const c of clusters) {
      expect(Object.keys(await storedSnapshot(sentinel.master.port, c.id))).toEqual(['shop/web']);
    }
    await waitFor(() => holdsAgentState(sentinel.replica.port), {
      what: 'the replica to hold the agents state',
    });
    // The replica refuses writes: the hub can only have written to the master.
    await expect(
      onServer(sentinel.replica.port, (r) => r.set(`${keyPrefix}:probe`, '1')),
    ).rejects.toThrow(/READONLY/);
  });

  it('follows a sentinel failover: writes go to the new master and the state ends exact', async () => {
    const keys = new StateKeys(keyPrefix);
    const oldMaster = sentinel.master;
    const newMaster = sentinel.replica;
    const epochBefore = await onServer(oldMaster.port, (r) => r.get(keys.epoch()));
    expect(epochBefore).not.toBeNull();
    const lossesBefore = hub.syncService?.counters.storageLosses ?? 0;

    const started = Date.now();
    const failover = sentinel.failover();
    // As soon as any sentinel names the new master, change both clusters: these writes must
    // reach the new master, never a demoted one that would drop them when it resyncs.
    await waitFor(
      async () =>
        onServer(sentinel.sentinels[0]?.port ?? 0, async (r) => {
          const reply = await r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', sentinel.masterName);
          return Array.isArray(reply) && Number(reply[1]) === newMaster.port;
        }),
      { what: 'the sentinel to report the new master' },
    );
    const switchedMs = Date.now() - started;
    // The hub follows at once (+switch-master), long before the sentinels demote the former
    // master (which would cut its clients): no client but the sentinels stays on the old one.
    await waitFor(
      async () =>
        onServer(oldMaster.port, async (r) => {
          const clients = String(await r.call('CLIENT', 'LIST'))
            .split('\n')
            .filter((line) => line.trim() !== '')
            .filter((line) => !/ name=sentinel-/.test(line) && !/ cmd=client\|list /.test(line));
          return clients.length === 0;
        }),
      { what: 'the hub to leave the former master', timeoutMs: 5_000 },
    );
    const followedMs = Date.now() - started;
    agents.get('east')?.upsert(webSlice(1, [5, 6, 7]));
    agents.get('west')?.upsert(webSlice(2, [5, 6, 7, 8]));
    await waitFor(
      async () => {
        const all = await listClusters();
        return (
          all.find((c) => c.id === 'east')?.endpointCount === 3 &&
          all.find((c) => c.id === 'west')?.endpointCount === 4
        );
      },
      { what: 'the changes to be stored', timeoutMs: 30_000 },
    );
    // Acknowledged changes are on the new master already, not on the deposed one.
    expect(await holdsAgentState(newMaster.port)).toBe(true);
    const changedMs = Date.now() - started;
    await failover;
    const failoverMs = Date.now() - started;
    expect(sentinel.master.port).toBe(newMaster.port);

    // A last change after the failover completed, then the end state: exact on the new master.
    agents.get('east')?.upsert(webSlice(1, [6, 7, 9]));
    await waitFor(() => holdsAgentState(newMaster.port), {
      what: 'the new master to hold exactly every agent state',
      timeoutMs: 30_000,
    });
    const exactMs = Date.now() - started;
    console.info(
      `sentinel failover: new master reported after ${switchedMs} ms, hub followed after ${followedMs} ms, ` +
        `changes stored after ${changedMs} ms, ` +
        `former master demoted and in sync after ${failoverMs} ms, exact state after ${exactMs} ms`,
    );
    const listed = await listClusters();
    expect(listed.map((c) => [c.id, c.state, c.endpointCount]).sort()).toEqual([
      ['east', ClusterState.CLUSTER_STATE_CONNECTED, 3],
      ['west', ClusterState.CLUSTER_STATE_CONNECTED, 4],
    ]);
    // The replica had the epoch before the failover: no storage loss, the same epoch.
    expect(await onServer(newMaster.port, (r) => r.get(keys.epoch()))).toBe(epochBefore);
    expect(hub.syncService?.counters.storageLosses ?? 0).toBe(lossesBefore);
    // The former master is a replica now and holds the same exact state.
    await expect(onServer(oldMaster.port, (r) => r.set(`${keyPrefix}:probe`, '1'))).rejects.toThrow(
      /READONLY/,
    );
    await waitFor(() => holdsAgentState(oldMaster.port), {
      what: 'the former master, now a replica, to hold the same state',
    });
  }, 90_000);
});

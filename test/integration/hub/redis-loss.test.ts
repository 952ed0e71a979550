import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { GroupDesiredState } from '../../../hub/federation/target-group-desired-state.js';
import { Hub } from '../../../hub/hub.js';
import {
  compileReconcileQueueOptions,
  reconcileQueueAddresses,
  type ReconcileRequest,
} from '../../../hub/queue/index.js';
import {
  ClusterEndpointStore,
  ClusterSessionRecords,
  StateKeys,
} from '../../../hub/state/index.js';
import { serviceKeyString } from '../../../shared/index.js';
import { startRedisServer, type RedisServer } from '../../env/redis-server.js';
import { waitFor } from '../../env/wait-for.js';
import { targetGroupArn } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { HoldableRelay } from '../../support/holdable-relay.js';
import { agentTokenOf, testHubSettings, bearer } from '../../support/test-hub-settings.js';
import { TestAgent } from '../../support/test-agent.js';

// A private redis-server: this file FLUSHALLs it, which the shared one must never see.

const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];
const GROUP = targetGroupArn(11);
const keyPrefix = 'redis-loss';
const shardCount = 2;

let dir: string;
let redisServer: RedisServer;
let redis: Redis;
let hub: Hub;
const keys = new StateKeys(keyPrefix);
const relays = new Map<string, HoldableRelay>();
const agents = new Map<string, TestAgent>();

function webSlice(block: number, hosts: readonly number[]) {
  return endpointSlice({
    namespace: 'shop',
    service: 'web',
    name: 'web-1',
    endpoints: hosts.map((h) => ({ ip: `10.${block}.0.${h}` })),
    ports: [{ name: 'http', port: 8080 }],
  });
}

function resolve(): Promise<GroupDesiredState> {
  const desired = hub.desiredState;
  if (desired === undefined) throw new Error('the hub has no desired state');
  return desired.resolve(GROUP);
}

/** The targets every agent announces now, as the group should hold them. */
function agentTargets(): string[] {
  const out: string[] = [];
  for (const agent of agents.values()) {
    for (const s of agent.sets.services()) {
      for (const address of s.endpoints.keys()) out.push(`${address}:8080`);
    }
  }
  return out.sort();
}

/** Per service, the endpoint addresses: what the agent holds and what Redis holds. */
async function agentAndStored(clusterId: string): Promise<[string, string]> {
  const agent = agents.get(clusterId) as TestAgent;
  const want: Record<string, string[]> = {};
  for (const s of agent.sets.services()) {
    want[serviceKeyString(s.service)] = [...s.endpoints.keys()].sort();
  }
  const got: Record<string, string[]> = {};
  const store = new ClusterEndpointStore(redis, keys);
  for (const [key, s] of await store.loadCluster(clusterId)) {
    got[key] = [...s.endpoints.keys()].sort();
  }
  return [JSON.stringify(want), JSON.stringify(got)];
}

/** Pending reconcile jobs over every shard. */
async function reconcileJobs(): Promise<ReconcileRequest[]> {
  const out: ReconcileRequest[] = [];
  const options = compileReconcileQueueOptions({ keyPrefix, shardCount });
  for (const address of reconcileQueueAddresses(options)) {
    const queue = new Queue<ReconcileRequest>(address.name, {
      connection: redis,
      prefix: address.prefix,
    });
    const jobs = await queue.getJobs(['delayed', 'wait', 'active', 'prioritized']);
    await queue.close();
    out.push(...jobs.map((j) => j.data));
  }
  return out;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tgfed-redis-loss-'));
  redisServer = await startRedisServer(inject('testenv').redisServer);
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  const options = testHubSettings({
    hubId: 'hub-redis-loss-test',
    dir,
    clusters,
    bindingsFile: {
      bindings: [
        {
          name: 'web-everywhere',
          services: { namespace: 'shop', name: 'web' },
          port: { name: 'http' },
          clusters: { names: clusters.map((c) => c.id) },
          targetGroup: { arn: GROUP, roleArn: 'arn:aws:iam::111111111111:role/tgfed' },
        },
      ],
    },
    settings: {
      redisUrl: redisServer.url,
      redisKeyPrefix: keyPrefix,
      reconcileShardCount: shardCount,
      reconcileDebounceMs: 60_000,
    },
  });
  hub = new Hub(options);
  await hub.start();
  for (const c of clusters) {
    const relay = new HoldableRelay(hub.agentPort);
    relays.set(c.id, relay);
    const port = await relay.listen();
    const agent = new TestAgent({
      clusterId: c.id,
      target: `127.0.0.1:${port}`,
      metadata: () => bearer(agentTokenOf(c.id)),
    });
    agents.set(c.id, agent);
    agent.upsert(webSlice(c.block, [5, 6]));
    agent.publisher.start();
  }
}, 30_000);

afterAll(async () => {
  for (const agent of agents.values()) await agent.publisher.close();
  await hub?.shutdown();
  for (const relay of relays.values()) await relay.close();
  await redis?.quit();
  await redisServer?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('Hub after a Redis FLUSHALL under load', () => {
  it('detects the loss, blocks deregistrations until every feeding cluster resynced, and recovers', async () => {
    // Synced: both clusters' endpoints desired, nothing blocked.
    await waitFor(
      async () => {
        const state = await resolve();
        return (
          !state.deregistrationsBlocked &&
          JSON.stringify([...state.targets.keys()]) === JSON.stringify(agentTargets())
        );
      },
      { what: 'both clusters synced into the desired state', timeoutMs: 20_000 },
    );
    const epochBefore = await redis.get(keys.epoch());
    expect(epochBefore).not.toBeNull();

    // Churn: every agent keeps changing one endpoint.
    let round = 0;
    const churn = setInterval(() => {
      round++;
      for (const c of clusters) {
        agents.get(c.id)?.upsert(webSlice(c.block, [5, 6, 10 + (round % 40)]));
      }
    }, 20);
    const resolutions: { state: GroupDesiredState; before: string[]; after: string[] }[] = [];
    const epochNow = async () => (await redis.get(keys.epoch())) ?? '';
    const sessions = new ClusterSessionRecords(redis, keys);
    /** Clusters whose SYNCED is recorded at the current storage epoch. */
    const syncedNow = async (): Promise<string[]> => {
      const epoch = await epochNow();
      const out: string[] = [];
      for (const c of clusters) {
        const record = await sessions.read(c.id);
        if (epoch !== '' && record?.syncedStorageEpoch === epoch) out.push(c.id);
      }
      return out;
    };
    /** Resolves, and records which clusters had resynced before and after the resolution. */
    const observe = async (): Promise<GroupDesiredState> => {
      const before = await syncedNow();
      const state = await resolve();
      resolutions.push({ state, before, after: await syncedNow() });
      return state;
    };

    try {
      // Flush in the middle of the churn, not before it started.
      await waitFor(() => round >= 10, { what: 'churn to be under way' });
      await redis.flushall();

      // Right after the flush, before the hub noticed: already blocked, both clusters awaited.
      const first = await observe();
      expect(first.deregistrationsBlocked).toBe(true);
      expect(first.awaitingResyncClusters).toEqual(['east', 'west']);
      // Agents may not come back until the test lets them.
      for (const relay of relays.values()) relay.hold();

      // Detected through the storage epoch: streams end, a new epoch is written.
      const sync = hub.syncService;
      if (sync === undefined) throw new Error('no sync service');
      const intact = await sync.checkStorage();
      expect(intact).toBe(false);
      expect(sync.counters.storageLosses).toBe(1);
      const epochAfter = await epochNow();
      expect(epochAfter).not.toBe('');
      expect(epochAfter).not.toBe(epochBefore);
      await waitFor(() => sync.admittedClusters().length === 0, {
        what: 'every stream to end after the loss',
      });

      // The bindings file is written again; the group is still blocked on both clusters.
      const rebound = await waitFor(
        async () => {
          const state = await observe();
          return state.bindings.length > 0 ? state : undefined;
        },
        { what: 'the file bindings to be written again' },
      );
      expect(rebound.bindings).toEqual(['web-everywhere']);
      expect(rebound.deregistrationsBlocked).toBe(true);
      expect(rebound.awaitingResyncClusters).toEqual(['east', 'west']);

      // East may resync; west is still held off: blocked on west alone.
      (relays.get('east') as HoldableRelay).release();
      await waitFor(
        async () =>
          JSON.stringify((await observe()).awaitingResyncClusters) === JSON.stringify(['west']),
        { what: 'east to resync while west is held off', timeoutMs: 20_000 },
      ).catch((err: unknown) => {
        const last = resolutions.at(-1);
        throw new Error(
          `last: awaiting ${String(last?.state.awaitingResyncClusters)}, synced ${String(last?.after)}, admitted ${String(sync.admittedClusters())}`,
          { cause: err },
        );
      });
      for (let i = 0; i < 5; i++) {
        const state = await observe();
        expect(state.deregistrationsBlocked).toBe(true);
        expect(state.awaitingResyncClusters).toEqual(['west']);
      }

      // West too: unblocked, and only once both resynced.
      (relays.get('west') as HoldableRelay).release();
      await waitFor(async () => !(await observe()).deregistrationsBlocked, {
        what: 'deregistrations to be unblocked after both clusters resynced',
        timeoutMs: 20_000,
      });
    } finally {
      clearInterval(churn);
      for (const relay of relays.values()) relay.release();
    }

    // Every resolution after the flush was blocked until both clusters' SYNCED at the new epoch.
    expect(resolutions.length).toBeGreaterThan(3);
    for (const { state, before, after } of resolutions) {
      const awaited = clusters.map((c) => c.id).filter((id) => !before.includes(id));
      if (!state.deregistrationsBlocked) expect(after.sort()).toEqual(['east', 'west']);
      for (const id of awaited) expect(state.awaitingResyncClusters).toContain(id);
    }

    // Redis holds exactly the agents' state again, and the group desires exactly it.
    for (const c of clusters) {
      let last: [string, string] = ['', ''];
      await waitFor(
        async () => {
          last = await agentAndStored(c.id);
          return last[0] === last[1];
        },
        { what: `Redis to hold exactly ${c.id}'s state`, timeoutMs: 20_000 },
      ).catch((err: unknown) => {
        throw new Error(`${c.id}: agent ${last[0]} vs Redis ${last[1]}`, { cause: err });
      });
    }
    await waitFor(
      async () => {
        const state = await resolve();
        return (
          !state.deregistrationsBlocked &&
          JSON.stringify([...state.targets.keys()]) === JSON.stringify(agentTargets())
        );
      },
      { what: 'the desired state to match both agents again' },
    );

    // The queues were lost with Redis; whatever was enqueued since is for the bound group only.
    // (Jobs carry no targets: the worker (#5) must honour `deregistrationsBlocked` itself.)
    const jobs = await reconcileJobs();
    expect(jobs.length).toBeGreaterThan(0);
    expect(new Set(jobs.map((j) => j.targetGroupArn))).toEqual(new Set([GROUP]));
    for (const job of jobs) expect(['endpoints', 'binding']).toContain(job.reason);
  }, 90_000);
});

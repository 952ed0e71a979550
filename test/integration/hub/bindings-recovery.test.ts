import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import type { GroupDesiredState } from '../../../hub/federation/target-group-desired-state.js';
import { Hub } from '../../../hub/hub.js';
import { StateKeys } from '../../../hub/state/index.js';
import {
  AdminServiceClient,
  Binding,
  type ApplyBindingResponse,
  type ListBindingsResponse,
} from '../../../shared/index.js';
import { startRedisServer, type RedisServer } from '../../env/redis-server.js';
import { waitFor } from '../../env/wait-for.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { HoldableRelay } from '../../support/holdable-relay.js';
import { agentTokenOf, testHubSettings, bearer } from '../../support/test-hub-settings.js';
import { TestAgent } from '../../support/test-agent.js';

// A private redis-server: this file FLUSHALLs it, which the shared one must never see.

const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];
const FILE_GROUP = targetGroupArn(21);
const API_GROUP = targetGroupArn(22);
const DELETED_GROUP = targetGroupArn(23);
const keyPrefix = 'bindings-recovery';
const adminToken = 'admin-token-of-the-bindings-recovery-test';

let dir: string;
let redisServer: RedisServer;
let redis: Redis;
let hub: Hub;
let admin: AdminServiceClient;
const keys = new StateKeys(keyPrefix);
const relays = new Map<string, HoldableRelay>();
const agents = new Map<string, TestAgent>();

function applyBinding(b: Binding): Promise<ApplyBindingResponse> {
  return new Promise((resolve, reject) =>
    admin.applyBinding({ binding: b, dryRun: false }, bearer(adminToken), (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

function deleteBinding(name: string): Promise<void> {
  return new Promise((resolve, reject) =>
    admin.deleteBinding({ name, version: 0 }, bearer(adminToken), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
}

function listBindings(): Promise<Binding[]> {
  return new Promise((resolve, reject) =>
    admin.listBindings({}, bearer(adminToken), (err, res: ListBindingsResponse) =>
      err ? reject(err) : resolve(res.bindings),
    ),
  );
}

/** A binding's content: everything but the store's version and time. */
function contentOf(b: Binding | undefined): unknown {
  return b === undefined ? undefined : Binding.toJSON({ ...b, version: 0, updatedUnixMs: 0 });
}

function webSlice(block: number, hosts: readonly number[]) {
  return endpointSlice({
    namespace: 'shop',
    service: 'web',
    name: 'web-1',
    endpoints: hosts.map((h) => ({ ip: `10.${block}.0.${h}` })),
    ports: [{ name: 'http', port: 8080 }],
  });
}

function resolve(group: string): Promise<GroupDesiredState> {
  const desired = hub.desiredState;
  if (desired === undefined) throw new Error('the hub has no desired state');
  return desired.resolve(group);
}

/** The targets every agent announces now, as a group fed by every cluster should hold them. */
function agentTargets(): string[] {
  const out: string[] = [];
  for (const agent of agents.values()) {
    for (const s of agent.sets.services()) {
      for (const address of s.endpoints.keys()) out.push(`${address}:8080`);
    }
  }
  return out.sort();
}

async function syncedInto(group: string): Promise<boolean> {
  const state = await resolve(group);
  return (
    !state.deregistrationsBlocked &&
    JSON.stringify([...state.targets.keys()]) === JSON.stringify(agentTargets())
  );
}

const apiBinding = binding({
  name: 'api-web',
  clusters: { names: clusters.map((c) => c.id), labels: undefined },
  target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: API_GROUP }) },
});
const deletedBinding = binding({
  name: 'api-deleted',
  clusters: { names: clusters.map((c) => c.id), labels: undefined },
  target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: DELETED_GROUP }) },
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tgfed-bindings-recovery-'));
  redisServer = await startRedisServer(inject('testenv').redisServer);
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  const options = testHubSettings({
    hubId: 'hub-bindings-recovery-test',
    dir,
    clusters,
    adminToken,
    bindingsFile: {
      bindings: [
        {
          name: 'web-everywhere',
          services: { namespace: 'shop', name: 'web' },
          port: { name: 'http' },
          clusters: { names: clusters.map((c) => c.id) },
          targetGroup: { arn: FILE_GROUP, roleArn: 'arn:aws:iam::111111111111:role/tgfed' },
        },
      ],
    },
    settings: {
      redisUrl: redisServer.url,
      redisKeyPrefix: keyPrefix,
      reconcileShardCount: 2,
      reconcileDebounceMs: 60_000,
    },
  });
  hub = new Hub(options);
  await hub.start();
  admin = new AdminServiceClient(`127.0.0.1:${hub.adminPort}`, grpc.credentials.createInsecure());
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
  admin?.close();
  await hub?.shutdown();
  for (const relay of relays.values()) await relay.close();
  await redis?.quit();
  await redisServer?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('Hub bindings after a Redis FLUSHALL', () => {
  it('writes back admin API bindings it saw, not the ones deleted before the loss', async () => {
    const applied = await applyBinding(apiBinding);
    expect(applied.changed).toBe(true);
    await applyBinding(deletedBinding);
    await deleteBinding('api-deleted');
    const before = await listBindings();
    expect(before.map((b) => b.name)).toEqual(['api-web', 'web-everywhere']);

    // Synced: the admin binding's group desires both clusters' endpoints.
    await waitFor(() => syncedInto(API_GROUP), {
      what: 'both clusters synced into the admin binding group',
      timeoutMs: 20_000,
    });
    // The replica remembers what it saw: the deletion included.
    const recovery = hub.bindingRecovery;
    if (recovery === undefined) throw new Error('no binding recovery');
    await waitFor(
      () =>
        JSON.stringify(recovery.remembered?.bindings.map((b) => b.name)) ===
        JSON.stringify(['api-web', 'web-everywhere']),
      { what: 'the deletion to be remembered' },
    );
    const epochBefore = await redis.get(keys.epoch());

    try {
      await redis.flushall();
      for (const relay of relays.values()) relay.hold();
      expect(await listBindings()).toEqual([]);

      const sync = hub.syncService;
      if (sync === undefined) throw new Error('no sync service');
      expect(await sync.checkStorage()).toBe(false);
      expect(await redis.get(keys.epoch())).not.toBe(epochBefore);

      // Written back: the admin binding with its content, the file binding, not the deleted one.
      await waitFor(() => recovery.counters.restores === 1, { what: 'the bindings written back' });
      expect(recovery.counters.restoredBindings).toBe(2);
      expect(recovery.counters.failures).toBe(0);
      const after = await listBindings();
      expect(after.map((b) => b.name)).toEqual(['api-web', 'web-everywhere']);
      for (const b of after) {
        expect(contentOf(b)).toEqual(contentOf(before.find((x) => x.name === b.name)));
        expect(b.version).toBeGreaterThan(0);
      }

      // A second detection (another replica, or this one again) writes nothing more.
      expect(await hub.bindingRecovery?.restore((await redis.get(keys.epoch())) ?? '')).toEqual(
        expect.objectContaining({ performed: false }),
      );

      // The admin binding's group is computed again, blocked until both clusters resync.
      const state = await resolve(API_GROUP);
      expect(state.bindings).toEqual(['api-web']);
      expect(state.deregistrationsBlocked).toBe(true);
      expect(state.awaitingResyncClusters).toEqual(['east', 'west']);
      const deleted = await resolve(DELETED_GROUP);
      expect(deleted.bindings).toEqual([]);

      for (const relay of relays.values()) relay.release();
      await waitFor(() => syncedInto(API_GROUP), {
        what: 'the admin binding group to desire both clusters again',
        timeoutMs: 20_000,
      });
      await waitFor(() => syncedInto(FILE_GROUP), {
        what: 'the file binding group to desire both clusters again',
        timeoutMs: 20_000,
      });
    } finally {
      for (const relay of relays.values()) relay.release();
    }

    // The deleted binding stays deleted, and what is remembered follows the restored store.
    expect((await listBindings()).map((b) => b.name)).toEqual(['api-web', 'web-everywhere']);
    expect(recovery.remembered?.bindings.map((b) => b.name)).toEqual(['api-web', 'web-everywhere']);
    // The restored store is a new generation: later admin changes are remembered again.
    await deleteBinding('api-web');
    await waitFor(
      () =>
        JSON.stringify(recovery.remembered?.bindings.map((b) => b.name)) ===
        JSON.stringify(['web-everywhere']),
      { what: 'a deletion after the restore to be remembered' },
    );
    expect((await resolve(API_GROUP)).bindings).toEqual([]);
  }, 90_000);
});

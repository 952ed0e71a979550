import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { ClusterStatusTracker } from '../../../hub/federation/cluster-status-tracker.js';
import {
  ClusterSessionRecords,
  StateKeys,
  createRedis,
  type RedisClient,
} from '../../../hub/state/index.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const graceMs = 60_000;
const resyncTimeoutMs = 120_000;

/** A tracker over a fresh key prefix, with a clock the test moves. */
function setup(): {
  redis: RedisClient;
  keys: StateKeys;
  records: ClusterSessionRecords;
  clock: { now: number };
  timeouts: string[];
  tracker: ClusterStatusTracker;
} {
  const redis = createRedis({ mode: 'standalone', url: inject('redisUrl') });
  const keys = new StateKeys(`status-${randomBytes(4).toString('hex')}`);
  closers.push(async () => {
    const stored = await redis.keys(`${keys.prefix}:*`);
    if (stored.length > 0) await redis.del(...stored);
    await redis.quit();
  });
  const records = new ClusterSessionRecords(redis, keys);
  const clock = { now: 1_000_000 };
  const timeouts: string[] = [];
  const tracker = new ClusterStatusTracker(redis, records, {
    keys,
    disconnectedGraceMs: graceMs,
    resyncTimeoutMs,
    refreshIntervalMs: 0,
    clock: () => clock.now,
    onResyncTimeout: (clusterId) => timeouts.push(clusterId),
  });
  closers.push(() => tracker.close());
  tracker.track(['a', 'b']);
  return { redis, keys, records, clock, timeouts, tracker };
}

const admission = { hubId: 'hub-1', agentVersion: 'v1', sessionEpoch: 'ab', atMs: 1 };

async function admit(
  s: ReturnType<typeof setup>,
  clusterId: string,
  streamId: string,
): Promise<void> {
  await s.redis.set(s.keys.lease(clusterId), `token/hub-1`);
  await s.records.admitted(clusterId, {
    hubId: 'hub-1',
    agentVersion: 'v1',
    sessionEpoch: 'ab',
    streamId,
    atMs: s.clock.now,
  });
}

describe('ClusterStatusTracker', () => {
  it('holds deregistrations of a connected cluster until it syncs against the current epoch', async () => {
    const s = setup();
    await s.redis.set(s.keys.epoch(), 'epoch-1');
    await admit(s, 'a', 'stream-1');
    await s.tracker.refresh();
    // Streaming its first sync in this epoch: registrations into its groups wait for it...
    expect(s.tracker.status('a')).toEqual({
      connection: 'connected',
      awaitingResync: true,
      initialSync: true,
    });
    // ...but only for initialSyncHoldMs (10 s) after its stream was admitted.
    s.clock.now += 10_000;
    expect(s.tracker.status('a')).toMatchObject({ awaitingResync: true, initialSync: false });

    await s.records.synced('a', 'stream-1', {
      atMs: s.clock.now,
      storageEpoch: 'epoch-1',
      lastAckedSequence: 3,
    });
    await s.tracker.refresh();
    expect(s.tracker.status('a')).toEqual({
      connection: 'connected',
      awaitingResync: false,
      initialSync: false,
    });

    // A reconnect within the same storage epoch resyncs a complete state: nothing to hold.
    await admit(s, 'a', 'stream-2');
    await s.tracker.refresh();
    expect(s.tracker.status('a')).toEqual({
      connection: 'connected',
      awaitingResync: false,
      initialSync: false,
    });
  });

  it('counts a stream being admitted (its lease taken, its record not yet written) as syncing', async () => {
    const s = setup();
    await s.redis.set(s.keys.epoch(), 'epoch-1');
    await s.redis.set(s.keys.lease('a'), 'token/hub-1');
    await s.tracker.refresh();
    expect(s.tracker.status('a')).toEqual({
      connection: 'connected',
      awaitingResync: true,
      initialSync: true,
    });
    // For initialSyncHoldMs from when it was first seen so, should the record never come.
    s.clock.now += 9_000;
    await s.tracker.refresh();
    expect(s.tracker.status('a').initialSync).toBe(true);
    s.clock.now += 1_000;
    expect(s.tracker.status('a').initialSync).toBe(false);
    // The record written: from then on its admission time counts.
    await admit(s, 'a', 'stream-1');
    await s.tracker.refresh();
    expect(s.tracker.status('a').initialSync).toBe(true);
  });

  it('reads again on demand only when the last read began longer ago than asked', async () => {
    const s = setup();
    await s.redis.set(s.keys.epoch(), 'epoch-1');
    await admit(s, 'a', 'stream-1');
    await s.tracker.refresh();
    expect(s.tracker.status('a').initialSync).toBe(true);
    await s.records.synced('a', 'stream-1', {
      atMs: s.clock.now,
      storageEpoch: 'epoch-1',
      lastAckedSequence: 1,
    });
    s.clock.now += 100;
    await s.tracker.refreshOlderThan(250);
    expect(s.tracker.status('a').initialSync, 'read 100 ms ago: not again').toBe(true);
    s.clock.now += 200;
    await s.tracker.refreshOlderThan(250);
    expect(s.tracker.status('a')).toMatchObject({ awaitingResync: false, initialSync: false });
    // A new stream learns the epoch of its cluster's last SYNCED (the hub's initial-sync hold).
    expect(await s.records.admitted('a', { ...admission, streamId: 'stream-2' })).toEqual({
      syncedStorageEpoch: 'epoch-1',
    });
    expect(await s.records.admitted('b', { ...admission, streamId: 'stream-3' })).toEqual({
      syncedStorageEpoch: undefined,
    });
  });

  it('keeps a disconnected cluster within its grace period and calls it stale after', async () => {
    const s = setup();
    await s.redis.set(s.keys.epoch(), 'epoch-1');
    await admit(s, 'a', 'stream-1');
    await s.records.synced('a', 'stream-1', {
      atMs: s.clock.now,
      storageEpoch: 'epoch-1',
      lastAckedSequence: 1,
    });
    await s.records.ended('a', 'stream-1', s.clock.now);
    await s.redis.del(s.keys.lease('a'));
    await s.tracker.refresh();
    expect(s.tracker.status('a')).toEqual({
      connection: 'disconnected-within-grace',
      awaitingResync: false,
      initialSync: false,
    });
    s.clock.now += graceMs + 1;
    expect(s.tracker.status('a').connection).toBe('stale');
  });

  it('ignores the updates of a stream that was taken over', async () => {
    const s = setup();
    await admit(s, 'a', 'stream-1');
    await admit(s, 'a', 'stream-2');
    expect(await s.records.ended('a', 'stream-1', s.clock.now)).toBe(false);
    expect((await s.records.read('a'))?.disconnectedAtMs).toBeUndefined();
    expect(await s.records.ended('a', 'stream-2', s.clock.now)).toBe(true);
  });

  it('after a Redis loss, holds every cluster until it resyncs or the timeout passes, with one alert', async () => {
    const s = setup();
    await s.redis.set(s.keys.epoch(), 'epoch-1');
    for (const id of ['a', 'b']) {
      await admit(s, id, `stream-${id}`);
      await s.records.synced(id, `stream-${id}`, {
        atMs: s.clock.now,
        storageEpoch: 'epoch-1',
        lastAckedSequence: 1,
      });
    }
    await s.tracker.refresh();
    expect(s.tracker.status('a').awaitingResync).toBe(false);

    // The loss: a new epoch (records of a FLUSHALL would be gone too; kept here, they are stale).
    s.clock.now += 5_000;
    await s.redis.set(s.keys.epoch(), 'epoch-2');
    await s.tracker.refresh();
    expect(s.tracker.status('a').awaitingResync).toBe(true);
    expect(s.tracker.status('b').awaitingResync).toBe(true);

    await admit(s, 'a', 'stream-a2');
    await s.records.synced('a', 'stream-a2', {
      atMs: s.clock.now,
      storageEpoch: 'epoch-2',
      lastAckedSequence: 1,
    });
    await s.tracker.refresh();
    expect(s.tracker.status('a').awaitingResync).toBe(false);
    expect(s.tracker.status('b').awaitingResync).toBe(true);

    s.clock.now += resyncTimeoutMs;
    expect(s.tracker.status('b').awaitingResync).toBe(false);
    expect(s.tracker.status('b').awaitingResync).toBe(false);
    expect(s.timeouts).toEqual(['b']);
  });

  it('treats a cluster without a record after a cold start as awaiting resync, within its grace', async () => {
    const s = setup();
    await s.redis.set(s.keys.epoch(), 'epoch-1');
    await s.tracker.refresh();
    expect(s.tracker.status('never')).toEqual({
      connection: 'disconnected-within-grace',
      awaitingResync: true,
      initialSync: false,
    });
    s.clock.now += resyncTimeoutMs;
    expect(s.tracker.status('never')).toEqual({
      connection: 'stale',
      awaitingResync: false,
      initialSync: false,
    });
    expect(s.timeouts).toEqual(['never']);
  });
});

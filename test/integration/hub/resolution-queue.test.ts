import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { waitFor } from '../../env/wait-for.js';
import {
  BullMqReconcileSink,
  type BullMqReconcileSinkOptions,
} from '../../../hub/queue/bullmq-reconcile-sink.js';
import { ReconcileConsumer } from '../../../hub/reconcile/reconcile-consumer.js';
import type { ReconcileResult } from '../../../hub/reconcile/target-group-reconciler.js';
import {
  dueNextReconcile,
  reconcileJobOptions,
  reconcileQueueAddresses,
  reconcileQueueFor,
  takeTraceLinks,
  type ReconcileRequest,
} from '../../../hub/queue/reconcile-contract.js';
import type { Binding, TraceContext } from '../../../shared/index.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';

/** Things to close after each test, newest first. */
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function connection(): Redis {
  // BullMQ workers block on Redis; it requires maxRetriesPerRequest null on their connection.
  const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  closers.push(() => redis.quit());
  return redis;
}

const CLUSTER_LABELS: Record<string, Record<string, string>> = {
  'prod-eu': { env: 'prod', region: 'eu' },
  'prod-us': { env: 'prod', region: 'us' },
  dev: { env: 'dev', region: 'eu' },
};

function newSink(options: BullMqReconcileSinkOptions = {}): {
  sink: BullMqReconcileSink;
  keyPrefix: string;
  redis: Redis;
} {
  const keyPrefix = `tgfed-test-${randomUUID()}`;
  const redis = connection();
  closers.push(async () => {
    const cleaner = connection();
    const keys = await cleaner.keys(`${keyPrefix}:*`);
    if (keys.length > 0) await cleaner.del(...keys);
  });
  const sink = new BullMqReconcileSink(
    redis,
    { labels: (id) => CLUSTER_LABELS[id] },
    { keyPrefix, shardCount: 4, debounceMs: 60_000, ...options },
  );
  closers.push(() => sink.close());
  return { sink, keyPrefix, redis };
}

/** Pending (delayed, waiting) and active jobs per target group over every shard. */
async function pendingJobs(sink: BullMqReconcileSink): Promise<Map<string, ReconcileRequest[]>> {
  const byGroup = new Map<string, ReconcileRequest[]>();
  for (const address of reconcileQueueAddresses(sink.options)) {
    const queue = new Queue<ReconcileRequest>(address.name, {
      connection: connection(),
      prefix: address.prefix,
    });
    const jobs = await queue.getJobs(['delayed', 'wait', 'active', 'prioritized']);
    await queue.close();
    for (const job of jobs) {
      const list = byGroup.get(job.data.targetGroupArn) ?? [];
      list.push(job.data);
      byGroup.set(job.data.targetGroupArn, list);
    }
  }
  return byGroup;
}

/** Groups with a delayed job (waiting for their debounce window) over every shard. */
async function delayedGroups(sink: BullMqReconcileSink): Promise<string[]> {
  const groups: string[] = [];
  for (const address of reconcileQueueAddresses(sink.options)) {
    const queue = new Queue<ReconcileRequest>(address.name, {
      connection: connection(),
      prefix: address.prefix,
    });
    for (const job of await queue.getJobs(['delayed'])) groups.push(job.data.targetGroupArn);
    await queue.close();
  }
  return groups.sort();
}

function trace(n: number): TraceContext {
  const traceId = new Uint8Array(16).fill(0xab);
  traceId[15] = n;
  return { traceId, parentId: new Uint8Array(8).fill(n + 1), traceFlags: 1, tracestate: '' };
}

const A_GROUP = targetGroupArn(1);
const B_GROUP = targetGroupArn(2);
const POOL = [targetGroupArn(10), targetGroupArn(11), targetGroupArn(12)];

const BINDINGS: Binding[] = [
  binding({
    name: 'a',
    services: { namespace: 'shop', name: 'web', labels: undefined },
    clusters: { names: ['prod-eu', 'prod-us', 'dev'], labels: undefined },
    target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: A_GROUP }) },
  }),
  binding({
    name: 'b',
    services: { namespace: 'shop', name: 'api', labels: undefined },
    clusters: { names: [], labels: { matchLabels: { env: 'prod' }, matchExpressions: [] } },
    target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: B_GROUP }) },
  }),
  binding({
    name: 'pool',
    services: { namespace: 'big', name: '', labels: undefined },
    clusters: { names: [], labels: undefined },
    target: {
      $case: 'pool',
      pool: { groups: POOL.map((arn) => targetGroup({ arn })), listenerRuleArn: '' },
    },
  }),
];

describe('BullMqReconcileSink on the real Redis and BullMQ', () => {
  it('coalesces many changes to one group within the debounce window into exactly one waiting job', async () => {
    const { sink, redis } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    for (let i = 0; i < 25; i++) {
      await sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], trace(i));
    }
    await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        sink.changed('prod-us', [{ namespace: 'shop', name: 'web' }], trace(100 + i)),
      ),
    );
    const pending = await pendingJobs(sink);
    expect([...pending.keys()]).toEqual([A_GROUP]);
    expect(pending.get(A_GROUP)).toHaveLength(1);
    expect(pending.get(A_GROUP)?.[0]).toMatchObject({
      targetGroupArn: A_GROUP,
      reason: 'endpoints',
    });
    // The first batch's link is in the job; the 49 coalesced ones wait for the worker.
    const links = await takeTraceLinks(redis, reconcileQueueFor(A_GROUP, sink.options), A_GROUP);
    expect(new Set([...links, ...(pending.get(A_GROUP)?.[0]?.traceLinks ?? [])]).size).toBe(50);
  });

  it('makes one add per group for the batches that arrive while an add is under way', async () => {
    const { sink, redis } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    const address = reconcileQueueFor(A_GROUP, sink.options);
    // 40 batches at once: the first flushes alone, the other 39 wait for it and share the next.
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        sink.changed(i % 2 ? 'prod-eu' : 'prod-us', [{ namespace: 'shop', name: 'web' }], trace(i)),
      ),
    );
    // BullMQ logs every add in the queue's event stream: a new job or a deduplicated one.
    const events = await redis.xrange(`${address.prefix}:${address.name}:events`, '-', '+');
    const adds = events.filter(([, fields]) =>
      ['added', 'deduplicated', 'debounced'].includes(fields[1] ?? ''),
    );
    expect(adds).toHaveLength(2);
    expect((await pendingJobs(sink)).get(A_GROUP)).toHaveLength(1);
    // No batch's link is lost in the merge.
    const links = await takeTraceLinks(redis, address, A_GROUP);
    const job = (await pendingJobs(sink)).get(A_GROUP)?.[0];
    expect(new Set([...links, ...(job?.traceLinks ?? [])]).size).toBe(40);

    // A batch alone is added at once, without waiting for anything.
    await sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], trace(77));
    const after = await redis.xrange(`${address.prefix}:${address.name}:events`, '-', '+');
    expect(after.filter(([, f]) => f[1] === 'deduplicated' || f[1] === 'added')).toHaveLength(3);
  });

  it('fails every batch of a flush whose add failed, so that none is acknowledged', async () => {
    const { sink, redis } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    redis.disconnect();
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) =>
        sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], trace(i)),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(Array(5).fill('rejected'));
    // And the sink recovers with its connection.
    await redis.connect();
    await sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], trace(9));
    expect((await pendingJobs(sink)).get(A_GROUP)).toHaveLength(1);
  });

  it('enqueues only the groups of the binding whose service changed', async () => {
    const { sink } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    await sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], undefined);
    expect([...(await pendingJobs(sink)).keys()]).toEqual([A_GROUP]);
    await sink.changed('prod-eu', [{ namespace: 'shop', name: 'cart' }], undefined);
    expect([...(await pendingJobs(sink)).keys()]).toEqual([A_GROUP]);
  });

  it('follows a binding’s cluster label selector', async () => {
    const { sink } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    await sink.changed('dev', [{ namespace: 'shop', name: 'api' }], undefined);
    expect(await pendingJobs(sink)).toEqual(new Map());
    await sink.changed('prod-us', [{ namespace: 'shop', name: 'api' }], undefined);
    expect([...(await pendingJobs(sink)).keys()]).toEqual([B_GROUP]);
  });

  it('keeps back the reconciles of groups a local initial sync feeds until no such sync is left', async () => {
    const { sink, redis } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    const eu = sink.initialSyncStarted('prod-eu');
    const us = sink.initialSyncStarted('prod-us');
    const web = [{ namespace: 'shop', name: 'web' }];
    await sink.changed('prod-eu', web, trace(1), 1_000);
    // dev is not syncing, but A is fed by syncing clusters: its reconcile would hold anyway.
    await sink.changed('dev', web, trace(2), 900);
    await sink.changed('prod-us', [{ namespace: 'shop', name: 'api' }], trace(3), 1_100);
    expect(sink.deferredGroups).toEqual([A_GROUP, B_GROUP].sort());
    expect(await pendingJobs(sink)).toEqual(new Map());

    // prod-us still feeds both groups.
    await eu.end();
    expect(await pendingJobs(sink)).toEqual(new Map());
    await us.end();
    expect(sink.deferredGroups).toEqual([]);
    const pending = await pendingJobs(sink);
    // Every group the holds covered goes, kept back or not (the pool's too: it had no batch).
    expect([...pending.keys()].sort()).toEqual([A_GROUP, B_GROUP, ...POOL].sort());
    expect(pending.get(POOL[0]!)?.[0]).toMatchObject({ traceLinks: [] });
    const a = pending.get(A_GROUP)?.[0];
    expect(a).toMatchObject({ reason: 'endpoints', observedAtMs: 900 });
    // Every batch's link, straight to its batch (no enqueue span was made for it).
    const parent = (n: number) =>
      `00-${Buffer.from(trace(n).traceId).toString('hex')}-${Buffer.from(trace(n).parentId).toString('hex')}-01`;
    expect(a?.traceLinks.slice().sort()).toEqual([parent(1), parent(2)].sort());
    expect(pending.get(B_GROUP)?.[0]).toMatchObject({ observedAtMs: 1_100 });
    expect(pending.get(B_GROUP)?.[0]?.traceLinks).toEqual([parent(3)]);
    // They waited for the sync: no debounce window on top (the sink's is a minute here).
    expect(await delayedGroups(sink)).toEqual([]);
    // Ending again changes nothing; a group no sync feeds is enqueued at once.
    await us.end();
    await sink.changed('dev', web, trace(4));
    expect(await takeTraceLinks(redis, reconcileQueueFor(A_GROUP, sink.options), A_GROUP)).toEqual([
      parent(4),
    ]);
  });

  it('keeps back the reconciles of groups fed by clusters whose initial sync is expected', async () => {
    const { sink } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    sink.initialSyncsExpected(['prod-eu', 'prod-us']);
    expect(sink.expectedSyncs).toEqual(['prod-eu', 'prod-us']);
    // dev is not expected, but its groups A and the pool are fed by clusters that are.
    await sink.changed('dev', [{ namespace: 'shop', name: 'web' }], trace(1), 700);
    await sink.changed('dev', [{ namespace: 'big', name: 'search' }], trace(2));
    expect(sink.deferredGroups).toEqual([A_GROUP, ...POOL].sort());
    // prod-eu's sync begins here: its hold takes over, and ends before prod-us has synced.
    const eu = sink.initialSyncStarted('prod-eu');
    expect(sink.expectedSyncs).toEqual(['prod-us']);
    await eu.end();
    expect(await pendingJobs(sink)).toEqual(new Map());
    // B had nothing kept back, but prod-eu's end owes it a reconcile: kept back for prod-us.
    expect(sink.deferredGroups).toEqual([A_GROUP, B_GROUP, ...POOL].sort());
    // prod-us is seen synced (at another replica): everything goes, once.
    await sink.initialSyncSeen('prod-us');
    await sink.initialSyncSeen('prod-us');
    expect(sink.expectedSyncs).toEqual([]);
    expect(sink.deferredGroups).toEqual([]);
    const pending = await pendingJobs(sink);
    expect([...pending.keys()].sort()).toEqual([A_GROUP, B_GROUP, ...POOL].sort());
    expect(pending.get(A_GROUP)).toHaveLength(1);
    expect(pending.get(A_GROUP)?.[0]).toMatchObject({ observedAtMs: 700 });
    // Expecting a cluster that syncs here already changes nothing.
    const dev = sink.initialSyncStarted('dev');
    sink.initialSyncsExpected(['dev']);
    expect(sink.expectedSyncs).toEqual([]);
    await dev.end();
  });

  it('ends an expected sync after initialSyncHoldMs and at close, and expects none when it is 0', async () => {
    const timed = newSink({ initialSyncHoldMs: 300 }).sink;
    await timed.updateBindings({ revision: 1, bindings: BINDINGS });
    timed.initialSyncsExpected(['dev']);
    await timed.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], trace(1));
    expect(timed.deferredGroups).toEqual([A_GROUP]);
    await waitFor(async () => (await pendingJobs(timed)).size === 1, {
      what: 'the kept-back group enqueued when the expected sync ran out',
    });
    expect(timed.expectedSyncs).toEqual([]);
    // Only what was kept back: nothing of dev came, so the pool it feeds is not enqueued.
    expect([...(await pendingJobs(timed)).keys()]).toEqual([A_GROUP]);

    const closing = newSink().sink;
    await closing.updateBindings({ revision: 1, bindings: BINDINGS });
    closing.initialSyncsExpected(['dev']);
    await closing.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], trace(1));
    await closing.close();
    expect([...(await pendingJobs(closing)).keys()]).toEqual([A_GROUP]);

    const off = newSink({ initialSyncHoldMs: 0 }).sink;
    await off.updateBindings({ revision: 1, bindings: BINDINGS });
    off.initialSyncsExpected(['dev']);
    expect(off.expectedSyncs).toEqual([]);
    await off.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], trace(1));
    expect([...(await pendingJobs(off)).keys()]).toEqual([A_GROUP]);
  });

  it('ends a hold after initialSyncHoldMs, at close, and holds nothing when it is 0', async () => {
    const timed = newSink({ initialSyncHoldMs: 300 }).sink;
    await timed.updateBindings({ revision: 1, bindings: BINDINGS });
    timed.initialSyncStarted('dev');
    await timed.changed('dev', [{ namespace: 'big', name: 'search' }], trace(1));
    expect(timed.deferredGroups).toEqual([...POOL].sort());
    // dev feeds the pool and group A (binding a names it).
    await waitFor(async () => (await pendingJobs(timed)).size === POOL.length + 1, {
      what: 'the groups enqueued when the hold ran out',
    });
    expect(timed.deferredGroups).toEqual([]);

    const closing = newSink().sink;
    await closing.updateBindings({ revision: 1, bindings: BINDINGS });
    closing.initialSyncStarted('dev');
    await closing.changed('dev', [{ namespace: 'big', name: 'search' }], trace(1));
    await closing.close();
    expect([...(await pendingJobs(closing)).keys()].sort()).toEqual([...POOL, A_GROUP].sort());

    const off = newSink({ initialSyncHoldMs: 0 }).sink;
    await off.updateBindings({ revision: 1, bindings: BINDINGS });
    await off.initialSyncStarted('dev').end();
    off.initialSyncStarted('dev');
    await off.changed('dev', [{ namespace: 'big', name: 'search' }], trace(1));
    expect(off.deferredGroups).toEqual([]);
    expect((await pendingJobs(off)).size).toBe(POOL.length);
    expect(() => newSink({ initialSyncHoldMs: -1 })).toThrow(/initialSyncHoldMs/);
  });

  it('keeps back what a failed release could not enqueue, and enqueues it again', async () => {
    const { sink, redis } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    const hold = sink.initialSyncStarted('prod-eu');
    await sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], trace(1), 500);
    redis.disconnect();
    const ending = hold.end();
    await expect(ending).rejects.toThrow();
    // Ending again answers the same release.
    await expect(hold.end()).rejects.toThrow();
    // Nothing dropped: group A with its link and time, and the rest of what the hold covered.
    expect(sink.deferredGroups).toEqual([A_GROUP, B_GROUP, ...POOL].sort());
    await redis.connect();
    await waitFor(async () => (await pendingJobs(sink)).size === 5, {
      what: 'the release tried again',
    });
    expect(sink.deferredGroups).toEqual([]);
    expect((await pendingJobs(sink)).get(A_GROUP)?.[0]).toMatchObject({ observedAtMs: 500 });
  });

  it('regroups the holds when the bindings change', async () => {
    const { sink } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    sink.initialSyncStarted('dev');
    await sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], trace(1));
    expect(sink.deferredGroups).toEqual([A_GROUP]);
    // dev no longer feeds A: its kept-back reconcile goes (with the binding's own request).
    const narrowed = BINDINGS.map((b) =>
      b.name === 'a' ? { ...b, clusters: { names: ['prod-eu', 'prod-us'], labels: undefined } } : b,
    );
    await sink.updateBindings({ revision: 2, bindings: narrowed });
    expect(sink.deferredGroups).toEqual([]);
    expect([...(await pendingJobs(sink)).keys()]).toEqual([A_GROUP]);
    // And a binding that now selects dev makes its group wait.
    const widened = narrowed.map((b) =>
      b.name === 'b' ? { ...b, clusters: { names: ['dev'], labels: undefined } } : b,
    );
    await sink.updateBindings({ revision: 3, bindings: widened });
    await sink.changed('dev', [{ namespace: 'shop', name: 'api' }], trace(2));
    expect(sink.deferredGroups).toEqual([B_GROUP]);
  });

  it('enqueues every group of a pool binding', async () => {
    const { sink } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    await sink.changed('dev', [{ namespace: 'big', name: 'search' }], trace(1));
    const pending = await pendingJobs(sink);
    expect([...pending.keys()].sort()).toEqual([...POOL].sort());
    for (const arn of POOL) expect(pending.get(arn)).toHaveLength(1);
  });

  it('enqueues the old and new groups of a changed binding, and those of a deleted one', async () => {
    const { sink } = newSink();
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    expect(await pendingJobs(sink)).toEqual(new Map());
    const moved = targetGroupArn(3);
    const [a, b] = BINDINGS;
    if (a === undefined || b === undefined) throw new Error('fixtures');
    const changed = await sink.updateBindings({
      revision: 2,
      bindings: [
        { ...a, target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: moved }) } },
        b,
      ],
    });
    expect(changed.map((e) => e.targetGroupArn).sort()).toEqual([A_GROUP, moved, ...POOL].sort());
    const pending = await pendingJobs(sink);
    expect(pending.get(moved)?.[0]?.reason).toBe('binding');
    expect(pending.has(B_GROUP)).toBe(false);
  });

  it('takes the bindings written back after a Redis loss even at a lower revision', async () => {
    const { sink } = newSink();
    const [a, b] = BINDINGS;
    if (a === undefined || b === undefined) throw new Error('fixtures');
    await sink.updateBindings({ revision: 5_000, bindings: [a], generation: 'before' });
    // Within a generation an older revision is stale; an emptied store keeps the last index.
    expect(
      await sink.updateBindings({ revision: 4_000, bindings: [], generation: 'before' }),
    ).toEqual([]);
    expect(await sink.updateBindings({ revision: 0, bindings: [], generation: '' })).toEqual([]);
    await sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], undefined);
    expect([...(await pendingJobs(sink)).keys()]).toEqual([A_GROUP]);
    // Written back in a new generation, at a lower revision (a replica with a slower clock).
    const changed = await sink.updateBindings({
      revision: 10,
      bindings: [a, b],
      generation: 'after',
    });
    expect(changed.map((e) => e.targetGroupArn)).toEqual([B_GROUP]);
    await sink.changed('prod-us', [{ namespace: 'shop', name: 'api' }], undefined);
    expect([...(await pendingJobs(sink)).keys()].sort()).toEqual([A_GROUP, B_GROUP].sort());
  });

  it('runs at most one reconcile of a group at a time and one more for changes made meanwhile', async () => {
    const { sink } = newSink({ debounceMs: 0, shardCount: 1 });
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    const [address] = reconcileQueueAddresses(sink.options);
    if (address === undefined) throw new Error('no queue');
    let running = 0;
    let maxRunning = 0;
    const runs: string[] = [];
    let release: () => void = () => undefined;
    const firstStarted = new Promise<void>((resolveStarted) => {
      const worker = new Worker<ReconcileRequest>(
        address.name,
        async (job) => {
          running++;
          maxRunning = Math.max(maxRunning, running);
          runs.push(job.id ?? '');
          if (runs.length === 1) {
            resolveStarted();
            await new Promise<void>((r) => (release = r));
          }
          running--;
        },
        { connection: connection(), prefix: address.prefix, concurrency: 4 },
      );
      closers.push(() => worker.close());
    });
    await sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], undefined);
    await firstStarted;
    for (let i = 0; i < 10; i++) {
      await sink.changed('prod-eu', [{ namespace: 'shop', name: 'web' }], undefined);
    }
    release();
    await waitFor(() => runs.length >= 2, { what: 'the follow-up run', timeoutMs: 20_000 });
    // Give a wrongly duplicated third job the chance to show up before asserting: wait until
    // the queue is empty.
    const queue = new Queue(address.name, { connection: connection(), prefix: address.prefix });
    closers.push(() => queue.close());
    await waitFor(
      async () => {
        const counts = await queue.getJobCounts('active', 'wait', 'delayed');
        return (counts.active ?? 0) + (counts.wait ?? 0) + (counts.delayed ?? 0) === 0;
      },
      { what: 'the queue to drain', timeoutMs: 20_000 },
    );
    expect(runs).toHaveLength(2);
    expect(maxRunning).toBe(1);
  });

  it('enqueues the changes made during a reconcile due as it finishes, once their window ended', async () => {
    // A plain BullMQ worker (no consumer, so no catch-up after the job): only the stored next
    // job's delay, set before the running job finishes, decides when the follow-up is due.
    const debounceMs = 1_500;
    const { sink } = newSink({ debounceMs, shardCount: 1 });
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    const [address] = reconcileQueueAddresses(sink.options);
    if (address === undefined) throw new Error('no queue');
    const redis = connection();
    const web = [{ namespace: 'shop', name: 'web' }];
    const api = [{ namespace: 'shop', name: 'api' }];
    const gates = new Map<string, () => void>();
    const delays = new Map<string, number | undefined>();
    const runs: string[] = [];
    /** When each group's follow-up began. */
    const starts = new Map<string, number>();
    const worker = new Worker<ReconcileRequest>(
      address.name,
      async (job) => {
        const arn = job.data.targetGroupArn;
        runs.push(arn);
        if (runs.filter((r) => r === arn).length > 1) {
          starts.set(arn, Date.now());
          return;
        }
        await new Promise<void>((r) => gates.set(arn, r));
        delays.set(
          arn,
          await dueNextReconcile(redis, address, arn, {
            startedAtMs: job.processedOn ?? 0,
            debounceMs,
            nowMs: Date.now(),
          }),
        );
      },
      { connection: connection(), prefix: address.prefix, concurrency: 4 },
    );
    closers.push(() => worker.close());
    const queue = new Queue<ReconcileRequest>(address.name, {
      connection: connection(),
      prefix: address.prefix,
    });
    closers.push(() => queue.close());
    // The first reconciles, due at once (as after an initial sync: no window).
    for (const arn of [A_GROUP, B_GROUP]) {
      const request: ReconcileRequest = {
        targetGroupArn: arn,
        reason: 'endpoints',
        requestedAtMs: Date.now(),
        traceLinks: [],
      };
      await queue.add(
        'reconcile',
        request,
        reconcileJobOptions(request, sink.options, undefined, 0),
      );
    }
    await waitFor(() => gates.has(A_GROUP) && gates.has(B_GROUP), {
      what: 'both first reconciles to run',
    });
    // Changes meanwhile. A's reconcile runs on past their window, B's ends well within it.
    const changedAt = Date.now();
    await sink.changed('prod-eu', web, undefined, changedAt);
    await sink.changed('prod-eu', api, undefined, changedAt);
    const released = new Map<string, number>();
    const release = (arn: string, afterMs: number) =>
      setTimeout(
        () => {
          released.set(arn, Date.now());
          gates.get(arn)?.();
        },
        changedAt + afterMs - Date.now(),
      );
    release(A_GROUP, debounceMs + 200);
    release(B_GROUP, 200);
    await waitFor(() => runs.filter((r) => r === B_GROUP).length === 2, {
      what: "B's follow-up",
    });
    await waitFor(() => runs.filter((r) => r === A_GROUP).length === 2, {
      what: "A's follow-up",
    });
    // A: due at once, where BullMQ alone would have waited a whole window after the reconcile.
    expect(delays.get(A_GROUP)).toBe(0);
    expect(starts.get(A_GROUP)! - released.get(A_GROUP)!).toBeLessThan(debounceMs - 500);
    // B: due when the changes' window ends, not a window after its reconcile.
    expect(delays.get(B_GROUP)).toBeGreaterThan(debounceMs - 500);
    expect(delays.get(B_GROUP)).toBeLessThan(debounceMs);
    expect(starts.get(B_GROUP)! - changedAt).toBeGreaterThanOrEqual(debounceMs - 50);
    expect(starts.get(B_GROUP)! - changedAt).toBeLessThan(debounceMs + 200 + 500);
    // Nothing stored next: nothing to set.
    expect(
      await dueNextReconcile(redis, address, A_GROUP, {
        startedAtMs: 0,
        debounceMs,
        nowMs: Date.now(),
      }),
    ).toBeUndefined();
  });

  it('runs the changes made during a reconcile when their own window ends, not a window after it', async () => {
    // Debounce 2 s. Each group's first reconcile is held while a change arrives, then for 1.5 s
    // (A) or 2.5 s (B) more. BullMQ enqueues the follow-up with a whole window from the end of
    // the held reconcile (A: 3.5 s after the change, B: 4.5 s); it is due when the change's own
    // window ends (A: 2 s after it), or at once when that passed while the reconcile ran (B).
    const debounceMs = 2_000;
    const { sink } = newSink({ debounceMs, shardCount: 2 });
    await sink.updateBindings({ revision: 1, bindings: BINDINGS });
    const starts = new Map<string, number[]>();
    const gates = new Map<string, () => void>();
    const consumer = new ReconcileConsumer(
      connection(),
      {
        reconcile: async (arn) => {
          const list = starts.get(arn) ?? [];
          list.push(Date.now());
          starts.set(arn, list);
          if (list.length === 1) await new Promise<void>((r) => gates.set(arn, r));
          return {
            targetGroupArn: arn,
            record: {
              outcome: 'in-sync',
              reason: 'endpoints',
              startedAtMs: list.at(-1) ?? 0,
              durationMs: 0,
              calls: { describe: 0, register: 0, deregister: 0 },
              registered: 0,
              deregistered: 0,
              desired: 0,
              actual: 0,
              owned: 0,
              waitingForCapacity: 0,
              deregistrationsBlocked: 0,
              invalidTargets: [],
              consecutiveFailures: 0,
            },
            held: undefined,
            driftFound: 0,
            nextDueAtMs: Number.POSITIVE_INFINITY,
          } satisfies ReconcileResult;
        },
      },
      { ...sink.options, concurrency: 2 },
    );
    closers.push(() => consumer.close(1_000));
    await consumer.start();

    const web = [{ namespace: 'shop', name: 'web' }];
    const api = [{ namespace: 'shop', name: 'api' }];
    await sink.changed('prod-eu', web, undefined, Date.now());
    await sink.changed('prod-eu', api, undefined, Date.now());
    await waitFor(() => gates.has(A_GROUP) && gates.has(B_GROUP), {
      what: 'both first reconciles to run',
      timeoutMs: 10_000,
    });
    const changedAt = Date.now();
    await sink.changed('prod-eu', web, undefined, changedAt);
    await sink.changed('prod-eu', api, undefined, changedAt);
    const release = (arn: string, afterMs: number) =>
      setTimeout(() => gates.get(arn)?.(), changedAt + afterMs - Date.now());
    release(A_GROUP, 1_500);
    release(B_GROUP, 2_500);
    await waitFor(() => (starts.get(A_GROUP)?.length ?? 0) >= 2, {
      what: "A's follow-up",
      timeoutMs: 10_000,
    });
    await waitFor(() => (starts.get(B_GROUP)?.length ?? 0) >= 2, {
      what: "B's follow-up",
      timeoutMs: 10_000,
    });
    const a = (starts.get(A_GROUP)?.[1] ?? 0) - changedAt;
    const b = (starts.get(B_GROUP)?.[1] ?? 0) - changedAt;
    // A: its window still holds (at least 2 s after the change), but not a window after the run.
    expect(a).toBeGreaterThanOrEqual(debounceMs - 50);
    expect(a).toBeLessThan(1_500 + debounceMs - 600);
    // B: due when the run ended, not 2 s later.
    expect(b).toBeGreaterThanOrEqual(2_500 - 50);
    expect(b).toBeLessThan(2_500 + debounceMs - 600);
    expect(starts.get(A_GROUP)).toHaveLength(2);
    expect(starts.get(B_GROUP)).toHaveLength(2);
  });
});

import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { ReconcileScheduler } from '../../../hub/reconcile/reconcile-scheduler.js';
import { TargetGroupRecords } from '../../../hub/reconcile/target-group-records.js';
import type { ReconcileReason } from '../../../hub/queue/index.js';
import { createRedis, type RedisClient } from '../../../hub/state/index.js';
import { targetGroupArn } from '../../support/binding-fixtures.js';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function setUp(): {
  records: TargetGroupRecords;
  requests: [string, ReconcileReason][];
  scheduler: ReconcileScheduler;
  clock: { now: number };
  redis: RedisClient;
} {
  const redis: RedisClient = createRedis({ mode: 'standalone', url: inject('redisUrl') });
  const prefix = `sched-${randomBytes(4).toString('hex')}`;
  closers.push(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });
  const records = new TargetGroupRecords(redis, prefix);
  const requests: [string, ReconcileReason][] = [];
  const clock = { now: 1_000_000 };
  const scheduler = new ReconcileScheduler(
    records,
    { request: (arn, reason) => Promise.resolve(requests.push([arn, reason])) },
    { clock: () => clock.now },
  );
  closers.push(() => scheduler.close());
  return { records, requests, scheduler, clock, redis };
}

describe('ReconcileScheduler on the real Redis', () => {
  it('enqueues a nudged group when its nudge is due, once, even if its schedule moved later', async () => {
    const { records, requests, scheduler, clock } = setUp();
    const [a, b] = [targetGroupArn(1), targetGroupArn(2)];
    await records.schedule(a, clock.now + 300_000);
    await records.schedule(b, clock.now + 300_000);
    await records.nudge([a], clock.now + 15_000, clock.now);
    // A later nudge does not postpone an earlier one.
    await records.nudge([a], clock.now + 60_000, clock.now);
    // A reconcile of `a` that began before the nudge finishes and sets its next drift check.
    await records.schedule(a, clock.now + 300_000);

    expect(await scheduler.tick()).toBe(0);
    clock.now += 15_000;
    expect(await scheduler.tick()).toBe(1);
    expect(requests).toEqual([[a, 'endpoints']]);
    clock.now += 60_000;
    expect(await scheduler.tick()).toBe(0);
    expect(requests).toHaveLength(1);
  });

  it('keeps a nudge whose request failed for the next look-up', async () => {
    const { records, requests, clock } = setUp();
    const arn = targetGroupArn(4);
    await records.nudge([arn], clock.now, clock.now);
    let fail = true;
    const scheduler = new ReconcileScheduler(
      records,
      {
        request: (a, reason) =>
          fail
            ? Promise.reject(new Error('Redis down'))
            : Promise.resolve(requests.push([a, reason])),
      },
      { clock: () => clock.now },
    );
    closers.push(() => scheduler.close());
    await expect(scheduler.tick()).rejects.toThrow('Redis down');
    fail = false;
    expect(await scheduler.tick()).toBe(1);
    expect(requests).toEqual([[arn, 'endpoints']]);
  });

  it('keeps a nudge made while its group’s request was being made', async () => {
    const { records, clock } = setUp();
    const arn = targetGroupArn(5);
    const requests: string[] = [];
    const scheduler = new ReconcileScheduler(
      records,
      {
        // Another group's resolution nudges this one again while the request is made: what it
        // asks for was written after the request, so the request does not cover it.
        request: async (a) => {
          requests.push(a);
          clock.now += 10;
          await records.nudge([a], clock.now + 15_000, clock.now);
        },
      },
      { clock: () => clock.now },
    );
    closers.push(() => scheduler.close());
    await records.nudge([arn], clock.now, clock.now - 5_000);
    expect(await scheduler.tick()).toBe(1);
    // The earlier due time stays (a nudge never moves later), and so does the nudge.
    expect(await records.nudged(clock.now, 10)).toEqual([arn]);
    expect(await scheduler.tick()).toBe(1);
    expect(requests).toEqual([arn, arn]);
  });

  it('settles a nudge made before a time, and only such a nudge', async () => {
    const { records, clock, redis } = setUp();
    const [a, b, c] = [targetGroupArn(6), targetGroupArn(7), targetGroupArn(8)];
    await records.nudge([a, b], clock.now + 15_000, clock.now);
    // The latest time a nudge was made counts: b was asked for again later.
    await records.nudge([b], clock.now + 20_000, clock.now + 1_000);
    expect(await records.settleNudge(a, clock.now + 1)).toBe(true);
    expect(await records.settleNudge(b, clock.now + 1)).toBe(false);
    expect(await records.nudged(clock.now + 60_000, 10)).toEqual([b]);
    expect(await records.settleNudge(b, clock.now + 1_001)).toBe(true);
    expect(await records.nudged(clock.now + 60_000, 10)).toEqual([]);
    // A nudge an older worker wrote, without a made time: looked up, settled by any reconcile.
    await redis.zadd(records.legacyNudgeKey(), clock.now, c);
    expect(await records.nudged(clock.now, 10)).toEqual([c]);
    expect(await records.settleNudge(c, 0)).toBe(true);
    expect(await records.nudged(clock.now + 60_000, 10)).toEqual([]);
  });

  it('enqueues groups whose schedule is due and claims them', async () => {
    const { records, requests, scheduler, clock } = setUp();
    const arn = targetGroupArn(3);
    await records.schedule(arn, clock.now - 1);
    expect(await scheduler.tick()).toBe(1);
    expect(requests).toEqual([[arn, 'drift']]);
    // Claimed: not due again until its reconcile reports back or the claim runs out.
    expect(await scheduler.tick()).toBe(0);
  });
});

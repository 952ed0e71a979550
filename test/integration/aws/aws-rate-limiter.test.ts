import { randomUUID } from 'node:crypto';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { Cluster as RedisClusterClient, Redis } from 'ioredis';
import {
  AwsRateLimiter,
  BUCKET_MIN_TTL_MS,
  RateLimitTimeoutError,
  type AwsOperationClass,
  type AwsRateLimiterOptions,
  type AwsRateLimitWait,
} from '../../../hub/aws/aws-rate-limiter.js';
import { createRedis, type RedisClient } from '../../../hub/state/index.js';
import { startRedisCluster, type RedisCluster } from '../../env/redis-cluster.js';
import { waitFor } from '../../env/wait-for.js';

const ACCOUNT = '111111111111';
const OTHER_ACCOUNT = '222222222222';
const REGION = 'eu-west-1';

/** Things to close after each test, newest first. */
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function connection(): RedisClient {
  const redis = createRedis({ mode: 'standalone', url: inject('redisUrl') });
  closers.push(() => redis.quit());
  return redis;
}

/**
 * A bucket clock the test drives: every limiter of a test reads it, and their sleeps advance it
 * instead of waiting, so refill is exact and no test waits for real time.
 */
class TestClock {
  micros = 1_800_000_000_000_000;
  readonly sleeps: number[] = [];
  advanceMs(ms: number): void {
    this.micros += ms * 1000;
  }
  readonly nowMicros = (): number => this.micros;
  readonly sleep = (ms: number): Promise<void> => {
    this.sleeps.push(ms);
    this.advanceMs(ms);
    return Promise.resolve();
  };
}

/** A unique key prefix per test, whose keys are deleted afterwards. */
function uniquePrefix(): string {
  const prefix = `tgfed-test-${randomUUID()}`;
  closers.push(async () => {
    const redis = new Redis(inject('redisUrl'));
    try {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
  });
  return prefix;
}

/**
 * A limiter on its own connection, on the test's clock, without jitter, and without a reserve
 * (the buckets exactly as configured; the reserve has its own test).
 */
function limiter(
  clock: TestClock,
  keyPrefix: string,
  options: AwsRateLimiterOptions = {},
): AwsRateLimiter {
  return new AwsRateLimiter(connection(), {
    keyPrefix,
    nowMicros: clock.nowMicros,
    sleep: clock.sleep,
    random: () => 0,
    reserveTokens: 0,
    ...options,
  });
}

/** How many single tokens the bucket hands out right now (takes them all). */
async function drain(
  limiter: AwsRateLimiter,
  account: string,
  region: string,
  cls: AwsOperationClass,
): Promise<number> {
  let taken = 0;
  while ((await limiter.tryAcquire(account, region, cls)).acquired) taken++;
  return taken;
}

describe('AwsRateLimiter', () => {
  it('serves the burst at once, then refills at the configured rate up to the burst', async () => {
    const clock = new TestClock();
    const aws = limiter(clock, uniquePrefix(), {
      limits: { mutate: { ratePerSecond: 4, burst: 20 } },
    });

    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(20);
    expect(await aws.tryAcquire(ACCOUNT, REGION, 'mutate')).toEqual({
      acquired: false,
      retryAfterMs: 250,
    });
    clock.advanceMs(249);
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(0);
    clock.advanceMs(1);
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(1);
    clock.advanceMs(1000);
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(4);
    clock.advanceMs(3_600_000);
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(20);
  });

  it('keeps one token of every bucket in reserve by default, and never less than one call', async () => {
    const clock = new TestClock();
    const prefix = uniquePrefix();
    const withDefault = new AwsRateLimiter(connection(), {
      keyPrefix: prefix,
      nowMicros: clock.nowMicros,
      sleep: clock.sleep,
      random: () => 0,
      limits: { mutate: { ratePerSecond: 4, burst: 20 }, modify: { ratePerSecond: 1, burst: 1 } },
    });
    expect(withDefault.options.reserveTokens).toBe(1);
    // 19 of the 20 at once: AWS's bucket keeps a token more than this one.
    expect(await drain(withDefault, ACCOUNT, REGION, 'mutate')).toBe(19);
    // The refill rate is AWS's.
    clock.advanceMs(1000);
    expect(await drain(withDefault, ACCOUNT, REGION, 'mutate')).toBe(4);
    clock.advanceMs(3_600_000);
    expect(await drain(withDefault, ACCOUNT, REGION, 'mutate')).toBe(19);
    // A bucket of one call still serves it.
    expect(await drain(withDefault, ACCOUNT, REGION, 'modify')).toBe(1);
    expect(() => new AwsRateLimiter(connection(), { reserveTokens: -1 })).toThrow(
      /reserveTokens must be an integer/,
    );
  });

  it('uses the ELBv2 defaults when no limits are given', async () => {
    const clock = new TestClock();
    const aws = limiter(clock, uniquePrefix());
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(20);
    expect(await drain(aws, ACCOUNT, REGION, 'describe')).toBe(200);
    expect(await drain(aws, ACCOUNT, REGION, 'modify')).toBe(20);
    clock.advanceMs(1000);
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(4);
    expect(await drain(aws, ACCOUNT, REGION, 'describe')).toBe(50);
    expect(await drain(aws, ACCOUNT, REGION, 'modify')).toBe(3);
  });

  it('sleeps until the bucket has refilled and reports the wait', async () => {
    const clock = new TestClock();
    const waits: AwsRateLimitWait[] = [];
    const aws = limiter(clock, uniquePrefix(), {
      limits: { mutate: { ratePerSecond: 4, burst: 20 } },
      onWait: (event) => waits.push(event),
    });
    await drain(aws, ACCOUNT, REGION, 'mutate');

    expect(await aws.acquire(ACCOUNT, REGION, 'mutate')).toEqual({ waitedMs: 250 });
    expect(await aws.acquire(ACCOUNT, REGION, 'mutate', { tokens: 3 })).toEqual({
      waitedMs: 750,
    });
    expect(clock.sleeps).toEqual([250, 750]);
    expect(waits).toEqual([
      { account: ACCOUNT, region: REGION, cls: 'mutate', waitedMs: 250, outcome: 'acquired' },
      { account: ACCOUNT, region: REGION, cls: 'mutate', waitedMs: 750, outcome: 'acquired' },
    ]);
    // Served at once: no sleep, no wait reported.
    clock.advanceMs(10_000);
    expect(await aws.acquire(ACCOUNT, REGION, 'mutate')).toEqual({ waitedMs: 0 });
    expect(waits).toHaveLength(2);
  });

  it('waits for a token without taking it, and gives up after maxWaitMs', async () => {
    const clock = new TestClock();
    const aws = limiter(clock, uniquePrefix(), {
      limits: { mutate: { ratePerSecond: 4, burst: 20 } },
      maxWaitMs: 1_000,
    });
    // A full bucket: no wait, and nothing taken.
    expect(await aws.whenAvailable(ACCOUNT, REGION, 'mutate')).toEqual({ waitedMs: 0 });
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(20);
    expect(await aws.whenAvailable(ACCOUNT, REGION, 'mutate')).toEqual({ waitedMs: 250 });
    // The token it waited for is still there for the call.
    expect(await aws.tryAcquire(ACCOUNT, REGION, 'mutate')).toEqual({ acquired: true });
    // A penalty longer than maxWaitMs: it stops waiting at the budget.
    await aws.penalize(ACCOUNT, REGION, 'mutate', 5_000);
    expect(await aws.whenAvailable(ACCOUNT, REGION, 'mutate')).toEqual({ waitedMs: 1_000 });
    expect(await aws.tryAcquire(ACCOUNT, REGION, 'mutate')).toMatchObject({ acquired: false });
  });

  it('adds jitter to the sleep', async () => {
    const clock = new TestClock();
    const aws = limiter(clock, uniquePrefix(), {
      limits: { mutate: { ratePerSecond: 4, burst: 1 } },
      random: () => 0.5,
    });
    await drain(aws, ACCOUNT, REGION, 'mutate');
    // 250 ms to the next token, plus half of (a fifth of 250 + 5).
    expect(await aws.acquire(ACCOUNT, REGION, 'mutate')).toEqual({ waitedMs: 277 });
  });

  it('shares one bucket between limiters on different connections', async () => {
    const clock = new TestClock();
    const prefix = uniquePrefix();
    const options = { limits: { mutate: { ratePerSecond: 4, burst: 20 } } };
    const first = limiter(clock, prefix, options);
    const second = limiter(clock, prefix, options);

    for (let i = 0; i < 10; i++) {
      expect((await first.tryAcquire(ACCOUNT, REGION, 'mutate')).acquired).toBe(true);
      expect((await second.tryAcquire(ACCOUNT, REGION, 'mutate')).acquired).toBe(true);
    }
    expect((await first.tryAcquire(ACCOUNT, REGION, 'mutate')).acquired).toBe(false);
    expect((await second.tryAcquire(ACCOUNT, REGION, 'mutate')).acquired).toBe(false);
    clock.advanceMs(500);
    expect(await drain(second, ACCOUNT, REGION, 'mutate')).toBe(2);
    expect(await drain(first, ACCOUNT, REGION, 'mutate')).toBe(0);
  });

  it('keeps the buckets of different accounts, regions and classes apart', async () => {
    const clock = new TestClock();
    const aws = limiter(clock, uniquePrefix(), {
      limits: { mutate: { ratePerSecond: 1, burst: 3 }, modify: { ratePerSecond: 1, burst: 3 } },
    });
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(3);
    expect(await drain(aws, OTHER_ACCOUNT, REGION, 'mutate')).toBe(3);
    expect(await drain(aws, ACCOUNT, 'us-east-1', 'mutate')).toBe(3);
    expect(await drain(aws, ACCOUNT, REGION, 'modify')).toBe(3);
    expect(aws.bucketKey(ACCOUNT, REGION, 'mutate')).toBe(
      `${aws.options.keyPrefix}:{aws:${ACCOUNT}:${REGION}}:bucket:mutate`,
    );
  });

  it('blocks every worker for the period of a penalty, without stacking penalties', async () => {
    const clock = new TestClock();
    const prefix = uniquePrefix();
    const options = { limits: { mutate: { ratePerSecond: 4, burst: 20 } } };
    const first = limiter(clock, prefix, options);
    const second = limiter(clock, prefix, options);
    expect((await first.tryAcquire(ACCOUNT, REGION, 'mutate')).acquired).toBe(true);

    await first.penalize(ACCOUNT, REGION, 'mutate', 2000);
    // Workers throttled at the same time all report it; that is still one penalty.
    await second.penalize(ACCOUNT, REGION, 'mutate', 2000);
    // 8 tokens of debt plus the one wanted.
    expect(await second.tryAcquire(ACCOUNT, REGION, 'mutate')).toEqual({
      acquired: false,
      retryAfterMs: 2250,
    });
    clock.advanceMs(2000);
    expect(await drain(first, ACCOUNT, REGION, 'mutate')).toBe(0);
    expect(await drain(second, ACCOUNT, REGION, 'mutate')).toBe(0);
    clock.advanceMs(250);
    expect(await drain(second, ACCOUNT, REGION, 'mutate')).toBe(1);

    // A shorter penalty does not cut a longer one short.
    await first.penalize(ACCOUNT, REGION, 'mutate', 10_000);
    await second.penalize(ACCOUNT, REGION, 'mutate', 1000);
    expect(await first.tryAcquire(ACCOUNT, REGION, 'mutate')).toEqual({
      acquired: false,
      retryAfterMs: 10_250,
    });
    // Other buckets are not affected.
    expect((await first.tryAcquire(OTHER_ACCOUNT, REGION, 'mutate')).acquired).toBe(true);
    expect((await first.tryAcquire(ACCOUNT, REGION, 'describe')).acquired).toBe(true);
  });

  it('lengthens the penalty while throttles of calls made after it go on, and starts short again', async () => {
    const clock = new TestClock();
    const prefix = uniquePrefix();
    const options = { limits: { mutate: { ratePerSecond: 4, burst: 20 } } };
    const first = limiter(clock, prefix, options);
    const second = limiter(clock, prefix, options);
    const streak = (tokenTakenMsAgo: number) => ({ maxMs: 2000, tokenTakenMsAgo });
    // A lone throttle: the short penalty, then one token's refill.
    expect(await first.penalize(ACCOUNT, REGION, 'mutate', 250, streak(100))).toBe(250);
    expect(await first.tryAcquire(ACCOUNT, REGION, 'mutate')).toEqual({
      acquired: false,
      retryAfterMs: 500,
    });
    // Another worker's call, sent before that penalty, throttled too: the same throttling.
    clock.advanceMs(50);
    expect(await second.penalize(ACCOUNT, REGION, 'mutate', 250, streak(120))).toBe(250);
    expect(await first.tryAcquire(ACCOUNT, REGION, 'mutate')).toEqual({
      acquired: false,
      retryAfterMs: 450,
    });
    // Calls that took their token after the last penalty and were throttled anyway: it goes on.
    const lengths: number[] = [];
    for (let i = 0; i < 4; i++) {
      clock.advanceMs(3000);
      expect(await drain(first, ACCOUNT, REGION, 'mutate')).toBeGreaterThan(0);
      clock.advanceMs(10);
      lengths.push(await second.penalize(ACCOUNT, REGION, 'mutate', 250, streak(10)));
    }
    expect(lengths).toEqual([500, 1000, 2000, 2000]);
    expect(await first.tryAcquire(ACCOUNT, REGION, 'mutate')).toEqual({
      acquired: false,
      retryAfterMs: 2250,
    });
    // Quiet for longer than the streak: short again.
    clock.advanceMs(BUCKET_MIN_TTL_MS + 2000);
    expect(await first.penalize(ACCOUNT, REGION, 'mutate', 250, streak(10))).toBe(250);
    // Without a streak, the penalty is the one asked for, as before.
    clock.advanceMs(100);
    expect(await first.penalize(ACCOUNT, REGION, 'mutate', 300)).toBe(300);
    await expect(first.penalize(ACCOUNT, REGION, 'mutate', 250, streak(-1))).rejects.toThrow(
      RangeError,
    );
  });

  it('applies an account override to that account only', async () => {
    const clock = new TestClock();
    const aws = limiter(clock, uniquePrefix(), {
      limits: { mutate: { ratePerSecond: 4, burst: 20 } },
      overrides: [
        { account: OTHER_ACCOUNT, ratePerSecond: 1, burst: 5 },
        { account: OTHER_ACCOUNT, class: 'mutate', ratePerSecond: 2, burst: 2 },
      ],
    });
    expect(await drain(aws, OTHER_ACCOUNT, REGION, 'mutate')).toBe(2);
    expect(await drain(aws, OTHER_ACCOUNT, REGION, 'modify')).toBe(5);
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(20);
    clock.advanceMs(1000);
    expect(await drain(aws, OTHER_ACCOUNT, REGION, 'mutate')).toBe(2);
    expect(await drain(aws, OTHER_ACCOUNT, REGION, 'modify')).toBe(1);
    expect(await drain(aws, ACCOUNT, REGION, 'mutate')).toBe(4);
  });

  it('rejects with the signal reason when aborted, and takes no token when aborted before', async () => {
    const clock = new TestClock();
    let sleeping: (() => void) | undefined;
    const asleep = new Promise<void>((resolve) => (sleeping = resolve));
    const aws = limiter(clock, uniquePrefix(), {
      limits: { mutate: { ratePerSecond: 1, burst: 1 } },
      // A real sleep, so the acquire is still waiting when the test aborts it.
      sleep: (ms, signal) => {
        sleeping?.();
        return sleepFor(ms, undefined, { signal });
      },
    });
    const aborted = new AbortController();
    aborted.abort(new Error('shutting down'));
    await expect(
      aws.acquire(ACCOUNT, REGION, 'mutate', { signal: aborted.signal }),
    ).rejects.toThrow('shutting down');
    expect((await aws.tryAcquire(ACCOUNT, REGION, 'mutate')).acquired).toBe(true);

    const controller = new AbortController();
    const reason = new Error('worker closing');
    const waiting = aws.acquire(ACCOUNT, REGION, 'mutate', { signal: controller.signal });
    await asleep;
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
  });

  it('rejects with RateLimitTimeoutError when the tokens would come after maxWaitMs', async () => {
    const clock = new TestClock();
    const prefix = uniquePrefix();
    const limits = { mutate: { ratePerSecond: 1, burst: 1 } };
    const waits: AwsRateLimitWait[] = [];
    const aws = limiter(clock, prefix, {
      limits,
      maxWaitMs: 1500,
      onWait: (event) => waits.push(event),
    });
    await drain(aws, ACCOUNT, REGION, 'mutate');
    await aws.penalize(ACCOUNT, REGION, 'mutate', 5000);

    // Known at once: it does not sleep first.
    const error = await aws.acquire(ACCOUNT, REGION, 'mutate').catch((err: unknown) => err);
    expect(error).toBeInstanceOf(RateLimitTimeoutError);
    expect(error).toMatchObject({ name: 'RateLimitTimeoutError', waitedMs: 0, retryAfterMs: 6000 });
    expect(clock.sleeps).toEqual([]);

    // A competitor takes the token this acquire waited for; the next one is beyond the budget.
    clock.advanceMs(10_000);
    await drain(aws, ACCOUNT, REGION, 'mutate');
    const competitor = limiter(clock, prefix, { limits });
    const contended = new AwsRateLimiter(connection(), {
      keyPrefix: prefix,
      limits,
      maxWaitMs: 1500,
      nowMicros: clock.nowMicros,
      random: () => 0,
      sleep: async (ms) => {
        await clock.sleep(ms);
        expect((await competitor.tryAcquire(ACCOUNT, REGION, 'mutate')).acquired).toBe(true);
      },
    });
    await expect(contended.acquire(ACCOUNT, REGION, 'mutate')).rejects.toMatchObject({
      name: 'RateLimitTimeoutError',
      waitedMs: 1000,
      retryAfterMs: 1000,
    });
    expect(waits).toEqual([
      { account: ACCOUNT, region: REGION, cls: 'mutate', waitedMs: 0, outcome: 'timeout' },
    ]);
  });

  it('gives bucket keys a TTL of twice the time to fill up, at least ten seconds', async () => {
    const clock = new TestClock();
    const redis = connection();
    const aws = limiter(clock, uniquePrefix(), {
      limits: { mutate: { ratePerSecond: 4, burst: 20 } },
    });
    const key = aws.bucketKey(ACCOUNT, REGION, 'mutate');
    await aws.acquire(ACCOUNT, REGION, 'mutate');
    const short = await redis.pttl(key);
    expect(short).toBeGreaterThan(9000);
    expect(short).toBeLessThanOrEqual(10_000);

    await aws.penalize(ACCOUNT, REGION, 'mutate', 60_000);
    // 240 tokens of debt + 20 of burst at 4 per second, twice over.
    const long = await redis.pttl(key);
    expect(long).toBeGreaterThan(120_000);
    expect(long).toBeLessThanOrEqual(130_000);
    expect(await redis.hgetall(key)).toEqual({
      tokens: '-240',
      updated: String(clock.micros),
    });
  });

  it('serves concurrent acquires of two workers on Redis time, beyond the burst', async () => {
    const prefix = uniquePrefix();
    const options = { keyPrefix: prefix, limits: { mutate: { ratePerSecond: 100, burst: 20 } } };
    const first = new AwsRateLimiter(connection(), options);
    const second = new AwsRateLimiter(connection(), options);
    const results = await Promise.allSettled(
      Array.from({ length: 25 }, (_, i) =>
        (i % 2 === 0 ? first : second).acquire(ACCOUNT, REGION, 'mutate'),
      ),
    );
    // Counts only: how many had to sleep depends on how fast Redis answered.
    expect(results.map((r) => r.status)).toEqual(Array<string>(25).fill('fulfilled'));
  });
});

describe('AwsRateLimiter on a 3-master Redis Cluster', () => {
  let cluster: RedisCluster;
  let redis: RedisClient;

  beforeAll(async () => {
    cluster = await startRedisCluster(inject('testenv').redisServer, { masters: 3 });
    redis = createRedis({ mode: 'cluster', nodes: cluster.addresses });
  }, 60_000);

  afterAll(async () => {
    redis?.disconnect();
    await cluster?.stop();
  });

  /** The slot of `key` and the port of the master that serves it. */
  async function ownerOf(key: string): Promise<{ slot: number; port: number }> {
    const slot = Number(await redis.call('CLUSTER', 'KEYSLOT', key));
    const node = cluster.nodes.find((n) => slot >= n.slots[0] && slot <= n.slots[1]);
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

  it('keeps each account and region in one slot and spreads accounts over the masters', async () => {
    expect(redis).toBeInstanceOf(RedisClusterClient);
    await waitFor(() => (redis as RedisClusterClient).nodes('master').length === 3, {
      what: 'the client to discover three masters',
    });
    const aws = new AwsRateLimiter(redis, {
      keyPrefix: `tgfed-test-${randomUUID()}`,
      limits: { mutate: { ratePerSecond: 4, burst: 2 } },
      maxWaitMs: 0,
      reserveTokens: 0,
    });
    const accounts = ['111111111111', '222222222222', '333333333333', '444444444444'];
    const masters = new Set<number>();
    const slots = new Set<number>();
    for (const account of accounts) {
      await aws.acquire(account, REGION, 'mutate', { tokens: 2 });
      await aws.acquire(account, REGION, 'describe');
      await aws.penalize(account, REGION, 'modify', 1000);
      await expect(aws.acquire(account, REGION, 'mutate')).rejects.toBeInstanceOf(
        RateLimitTimeoutError,
      );
      const owners = await Promise.all(
        (['mutate', 'describe', 'modify'] as const).map((cls) =>
          ownerOf(aws.bucketKey(account, REGION, cls)),
        ),
      );
      expect(new Set(owners.map((o) => o.slot)).size).toBe(1);
      const owner = owners[0];
      if (owner === undefined) throw new Error('no owner');
      expect(await existsOn(owner.port, aws.bucketKey(account, REGION, 'mutate'))).toBe(true);
      slots.add(owner.slot);
      masters.add(owner.port);
    }
    expect(slots.size).toBe(accounts.length);
    expect(masters.size).toBeGreaterThan(1);
  });
});

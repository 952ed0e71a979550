import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  BullMqReconcileSink,
  MAX_TRACE_LINKS,
  keepTraceLinks,
  observedAtKey,
  reconcileQueueFor,
  takeObservedAt,
  takeTraceLinks,
  traceLinksKey,
  type ReconcileRequest,
} from '../../../hub/queue/index.js';

// The propagation latency needs, at the worker, when an agent observed the earliest change a
// reconcile applies, although BullMQ keeps only the first request of a pending job.

const ARN = 'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/obs/0123456789abcdef';
const closers: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function setup() {
  const keyPrefix = `tgfed-obs-${randomUUID()}`;
  const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  const sink = new BullMqReconcileSink(
    redis,
    { labels: () => ({}) },
    { keyPrefix, shardCount: 2, debounceMs: 60_000 },
  );
  const address = reconcileQueueFor(ARN, sink.options);
  const queue = new Queue<ReconcileRequest>(address.name, {
    connection: redis,
    prefix: address.prefix,
  });
  closers.push(async () => {
    const keys = await redis.keys(`${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });
  closers.push(() => queue.close());
  closers.push(() => sink.close());
  return { sink, redis, address, queue };
}

describe('observation times of coalesced reconcile requests', () => {
  it('keeps the first request’s time in the job and the earliest coalesced one beside it', async () => {
    const { sink, redis, address, queue } = setup();
    const first = await sink.request(ARN, 'endpoints', [], 5_000);
    const later = await sink.request(ARN, 'endpoints', [], 7_000);
    const earlier = await sink.request(ARN, 'endpoints', [], 3_000);
    await sink.request(ARN, 'binding', []);
    expect(first.coalesced).toBe(false);
    expect([later.coalesced, earlier.coalesced]).toEqual([true, true]);

    const [job] = await queue.getJobs(['delayed', 'waiting']);
    expect(job?.data.observedAtMs).toBe(5_000);
    expect(await takeObservedAt(redis, address, ARN)).toBe(3_000);
    // Taken: the next reconcile starts afresh.
    expect(await takeObservedAt(redis, address, ARN)).toBeUndefined();
  });

  it('keeps the latest trace links and the earliest time, each with an expiry, in one script', async () => {
    const { redis, address } = setup();
    const links = Array.from({ length: MAX_TRACE_LINKS + 40 }, (_, i) => `link-${i}`);
    await keepTraceLinks(redis, address, ARN, {
      traceLinks: links.slice(0, 100),
      observedAtMs: 9_000,
      ttlMs: 60_000,
    });
    await keepTraceLinks(redis, address, ARN, { traceLinks: links.slice(100), ttlMs: 60_000 });
    await keepTraceLinks(redis, address, ARN, {
      traceLinks: [],
      observedAtMs: 4_000,
      ttlMs: 60_000,
    });
    await keepTraceLinks(redis, address, ARN, {
      traceLinks: [],
      observedAtMs: 6_000,
      ttlMs: 60_000,
    });
    for (const key of [traceLinksKey(address, ARN), observedAtKey(address, ARN)]) {
      const ttl = await redis.pttl(key);
      expect(ttl, key).toBeGreaterThan(0);
      expect(ttl, key).toBeLessThanOrEqual(60_000);
    }
    expect(await takeTraceLinks(redis, address, ARN)).toEqual(links.slice(-MAX_TRACE_LINKS));
    expect(await takeObservedAt(redis, address, ARN)).toBe(4_000);
  });

  it('carries no time for requests that are not endpoint changes', async () => {
    const { sink, redis, address, queue } = setup();
    await sink.request(ARN, 'binding', []);
    await sink.request(ARN, 'operator', []);
    const jobs = await queue.getJobs(['delayed', 'waiting']);
    expect(jobs.map((j) => j.data.observedAtMs)).toEqual(jobs.map(() => undefined));
    expect(await takeObservedAt(redis, address, ARN)).toBeUndefined();
  });
});

import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';

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

describe('BullMQ on the real Redis', () => {
  it('runs a job from queue to worker and records its result in Redis', async () => {
    const prefix = `tgfed-test-${randomUUID()}`;
    const queueName = 'reconcile';
    const queue = new Queue(queueName, { connection: connection(), prefix });
    closers.push(() => queue.close());
    const events = new QueueEvents(queueName, { connection: connection(), prefix });
    closers.push(() => events.close());
    await events.waitUntilReady();

    const seen: string[] = [];
    const worker = new Worker<{ targetGroupArn: string }, { registered: number }>(
      queueName,
      (job) => {
        seen.push(job.data.targetGroupArn);
        return Promise.resolve({ registered: job.data.targetGroupArn.length });
      },
      { connection: connection(), prefix },
    );
    closers.push(() => worker.close());

    const arn =
      'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/0123456789abcdef';
    const job = await queue.add('reconcile', { targetGroupArn: arn });
    const result: unknown = await job.waitUntilFinished(events, 30_000);

    expect(result).toEqual({ registered: arn.length });
    expect(seen).toEqual([arn]);
    const stored = await queue.getJob(job.id ?? '');
    expect(await stored?.getState()).toBe('completed');
    expect(stored?.returnvalue).toEqual({ registered: arn.length });
    // Everything this test wrote lives under its own prefix.
    const keys = await connection().keys(`${prefix}:*`);
    expect(keys.length).toBeGreaterThan(0);
  });
});

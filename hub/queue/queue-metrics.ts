import type { BatchObservableResult, Meter } from '@opentelemetry/api';
import { Queue } from 'bullmq';
import { CachedSample, MetricLabel, MetricName, type QueueJobState } from '../../shared/index.js';
import type { RedisClient } from '../state/index.js';
import type { ReconcileQueueAddress } from './reconcile-contract.js';

/** Options of {@link QueueMetrics}. */
export interface QueueMetricsOptions {
  /**
   * How long one reading of the queues answers scrapes (each reading costs two Redis calls per
   * shard).
   * @default 5000
   */
  maxAgeMs?: number;
  /** @default Date.now */
  clock?: () => number;
}

interface ShardSample {
  readonly shard: number;
  readonly counts: Record<QueueJobState, number>;
  readonly oldestAgeSeconds: number;
}

const STATES: readonly QueueJobState[] = ['waiting', 'active', 'delayed'];

/**
 * Depth and oldest waiting job of the reconcile queues a worker consumes (metrics contract,
 * Worker): read with BullMQ's `getJobCounts` and the oldest waiting job, at most once per
 * `maxAgeMs` whatever the scrape rate. The age counts from when the job became runnable (its
 * debounce delay over), so a healthy queue reports about 0.
 */
export class QueueMetrics {
  readonly #queues: { shard: number; queue: Queue }[];
  readonly #detach: () => void;

  /** @param connection shared by the queues; the caller closes it after {@link close}. */
  constructor(
    meter: Meter,
    connection: RedisClient,
    addresses: readonly ReconcileQueueAddress[],
    options: QueueMetricsOptions = {},
  ) {
    const clock = options.clock ?? Date.now;
    this.#queues = addresses.map((a) => ({
      shard: a.shard,
      // A reader only: the hub's queues own the queue's settings (its event stream length).
      queue: new Queue(a.name, { connection, prefix: a.prefix, skipMetasUpdate: true }),
    }));
    for (const { queue } of this.#queues) queue.on('error', () => undefined);
    const jobs = meter.createObservableGauge(MetricName.QUEUE_JOBS, {
      description: 'Reconcile jobs per shard and state',
      unit: '{job}',
    });
    const oldest = meter.createObservableGauge(MetricName.QUEUE_OLDEST_JOB_AGE, {
      description: 'Age of the oldest waiting reconcile job per shard, 0 when none',
      unit: 's',
    });
    const sample = new CachedSample(
      () =>
        Promise.all(
          this.#queues.map(async ({ shard, queue }): Promise<ShardSample> => {
            const [counts, [first]] = await Promise.all([
              queue.getJobCounts(...STATES),
              queue.getJobs(['wait'], 0, 0, true),
            ]);
            const readyAtMs =
              first === undefined ? undefined : first.timestamp + (first.delay ?? 0);
            return {
              shard,
              counts: {
                waiting: counts['waiting'] ?? 0,
                active: counts['active'] ?? 0,
                delayed: counts['delayed'] ?? 0,
              },
              oldestAgeSeconds:
                readyAtMs === undefined ? 0 : Math.max(0, clock() - readyAtMs) / 1000,
            };
          }),
        ),
      { maxAgeMs: options.maxAgeMs ?? 5_000, clock },
    );
    const observe = async (result: BatchObservableResult): Promise<void> => {
      for (const s of await sample.get()) {
        const shard = { [MetricLabel.SHARD]: String(s.shard) };
        for (const state of STATES) {
          result.observe(jobs, s.counts[state], { ...shard, [MetricLabel.STATE]: state });
        }
        result.observe(oldest, s.oldestAgeSeconds, shard);
      }
    };
    meter.addBatchObservableCallback(observe, [jobs, oldest]);
    this.#detach = () => meter.removeBatchObservableCallback(observe, [jobs, oldest]);
  }

  /** Stops reporting and closes the queues (not the connection). */
  async close(): Promise<void> {
    this.#detach();
    await Promise.allSettled(this.#queues.map(({ queue }) => queue.close()));
  }
}

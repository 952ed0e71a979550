import type { Logger } from '../../shared/index.js';
import { silentLogger } from '../../shared/index.js';
import type { ReconcileReason } from '../queue/index.js';
import type { TargetGroupRecords } from './target-group-records.js';

/** Enqueues a reconcile (a `BullMqReconcileSink`). */
export interface ReconcileRequester {
  request(targetGroupArn: string, reason: ReconcileReason): Promise<unknown>;
}

/** Options of {@link ReconcileScheduler}. */
export interface ReconcileSchedulerOptions {
  /** How often due groups are looked up. @default 1000 */
  intervalMs?: number;
  /** Most groups enqueued per look-up. @default 500 */
  batchSize?: number;
  /**
   * After enqueuing a due group, how long before it counts as due again if its reconcile never
   * reports back (the reconcile sets the real next time when it finishes).
   * @default 60000
   */
  claimMs?: number;
  /** @default Date.now */
  clock?: () => number;
  /** @default silentLogger() */
  logger?: Logger;
}

/**
 * Brings back target groups that need a reconcile without any change: drift checks, retries
 * after AWS errors, and follow-ups (targets waiting for room, blocked deregistrations, stale
 * clusters' health). Each reconcile writes when its group is next due into the schedule
 * (`TargetGroupRecords`); this enqueues the groups whose time has come. Every worker runs one:
 * the queue's deduplication makes the duplicates free, and groups due at once spread over the
 * shards.
 *
 * Due groups go through the normal queue (with its debounce) rather than as long-delayed jobs,
 * because a delayed job would hold the group's deduplication slot and make the changes that
 * join it wait as long.
 */
export class ReconcileScheduler {
  readonly #records: TargetGroupRecords;
  readonly #requester: ReconcileRequester;
  readonly #intervalMs: number;
  readonly #batchSize: number;
  readonly #claimMs: number;
  readonly #clock: () => number;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;
  #closed = false;

  constructor(
    records: TargetGroupRecords,
    requester: ReconcileRequester,
    options: ReconcileSchedulerOptions = {},
  ) {
    this.#records = records;
    this.#requester = requester;
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#batchSize = options.batchSize ?? 500;
    this.#claimMs = options.claimMs ?? 60_000;
    this.#clock = options.clock ?? Date.now;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'reconcile-scheduler' });
  }

  /** Looks up due groups every `intervalMs` until {@link close}. */
  start(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(() => {
      this.tick().catch((err: unknown) =>
        this.#log.warn({ err }, 'cannot enqueue due target groups'),
      );
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /** Enqueues the groups due now; returns how many. One look-up at a time. */
  tick(): Promise<number> {
    this.#running ??= this.#tick().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #tick(): Promise<number> {
    const now = this.#clock();
    const due = await this.#records.due(now, this.#batchSize);
    for (const arn of due) {
      if (this.#closed) break;
      await this.#requester.request(arn, 'drift');
      await this.#records.schedule(arn, now + this.#claimMs);
    }
    if (due.length > 0) this.#log.debug({ groups: due.length }, 'due target groups enqueued');
    // Groups another group's resolution gave a target their share lacks, or a sync's end asked
    // for (see TargetGroupRecords.nudge). Each nudge is settled only once its request is in: one
    // that fails stays for the next look-up, and one made meanwhile stays too.
    const nudged = await this.#records.nudged(now, this.#batchSize);
    for (const arn of nudged) {
      if (this.#closed) break;
      const requestedAtMs = this.#clock();
      await this.#requester.request(arn, 'endpoints');
      await this.#records.settleNudge(arn, requestedAtMs);
    }
    return due.length + nudged.length;
  }

  /** Stops looking up; waits for a look-up in progress. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
  }
}

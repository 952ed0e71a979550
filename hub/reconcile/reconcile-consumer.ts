import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Logger } from '../../shared/index.js';
import { silentLogger } from '../../shared/index.js';
import { withObservedChanges } from '../aws/aws-call-metrics.js';
import {
  RECONCILE_JOB_NAME,
  compileReconcileQueueOptions,
  reconcileQueueAddresses,
  takeObservedAt,
  takeTraceLinks,
  type CompiledReconcileQueueOptions,
  type ReconcileQueueAddress,
  type ReconcileQueueOptions,
  type ReconcileRequest,
} from '../queue/index.js';
import type { RedisClient } from '../state/index.js';
import type { ReconcileContext, ReconcileResult } from './target-group-reconciler.js';

/** What the consumer runs per job (a `TargetGroupReconciler`). */
export interface GroupReconciler {
  reconcile(arn: string, context: ReconcileContext): Promise<ReconcileResult>;
}

/** Options of {@link ReconcileConsumer}. */
export interface ReconcileConsumerOptions extends ReconcileQueueOptions {
  /**
   * Shards (queues) to consume; a worker may take a subset to spread shards over processes.
   * @default every shard
   */
  shards?: readonly number[];
  /**
   * Target groups reconciled at once per shard. Each reconcile takes one token per AWS call from
   * the account's shared bucket, so a group rebuilding many chunks and a small group advance
   * call by call side by side: the rebuild does not starve the others.
   * @default 4
   */
  concurrency?: number;
  /**
   * A job whose worker stopped renewing its lock this long (killed, partitioned) is taken over
   * by another worker; BullMQ checks for such stalled jobs every half of it.
   * @default 30000
   */
  lockDurationMs?: number;
  /** Called after every reconcile (metrics, tests). */
  onReconciled?: (result: ReconcileResult, request: ReconcileRequest) => void;
  /** @default silentLogger() */
  logger?: Logger;
}

/** Lifecycle of a {@link ReconcileConsumer}. */
export type ReconcileConsumerState = 'idle' | 'running' | 'closing' | 'closed';

/** What a finished reconcile job returns (kept by BullMQ with the job, for inspection). */
export interface ReconcileJobResult {
  readonly outcome: string;
  readonly registered: number;
  readonly deregistered: number;
  readonly calls: number;
}

/** How long a close waits for cancelled reconciles before it gives up on them. */
const CANCEL_WAIT_MS = 2_000;

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    promise.then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]);
  clearTimeout(timer);
  return settled;
}

function requestOf(job: Job<ReconcileRequest>): ReconcileRequest {
  const data = job.data as Partial<ReconcileRequest> | undefined;
  if (typeof data?.targetGroupArn !== 'string' || data.targetGroupArn === '') {
    // A job no hub of this version wrote: retrying cannot fix it.
    throw new UnrecoverableError(`job ${job.id ?? '?'} has no targetGroupArn`);
  }
  return {
    targetGroupArn: data.targetGroupArn,
    reason: data.reason ?? 'endpoints',
    requestedAtMs: typeof data.requestedAtMs === 'number' ? data.requestedAtMs : 0,
    traceLinks: Array.isArray(data.traceLinks) ? data.traceLinks : [],
    ...(typeof data.observedAtMs === 'number' ? { observedAtMs: data.observedAtMs } : {}),
  };
}

/**
 * Consumes the reconcile queues (the contract in `queue/reconcile-contract.ts`): one BullMQ
 * worker per shard, each reconciling up to `concurrency` groups at once. BullMQ's
 * deduplication keeps one active job per group across every worker process, and a job whose
 * worker dies is taken over when its lock expires. A reconcile that throws (Redis failed) is
 * retried by the job's attempts; AWS errors are the reconciler's to record and schedule.
 */
export class ReconcileConsumer {
  readonly queueOptions: CompiledReconcileQueueOptions;
  readonly #connection: RedisClient;
  readonly #reconciler: GroupReconciler;
  readonly #options: ReconcileConsumerOptions;
  readonly #log: Logger;
  readonly #workers: Worker<ReconcileRequest, ReconcileJobResult>[] = [];
  #state: ReconcileConsumerState = 'idle';

  /**
   * @param connection a connection for BullMQ: no command timeout (workers block on Redis),
   *   `maxRetriesPerRequest: null`; BullMQ duplicates it for its blocking reads.
   */
  constructor(
    connection: RedisClient,
    reconciler: GroupReconciler,
    options: ReconcileConsumerOptions = {},
  ) {
    this.queueOptions = compileReconcileQueueOptions(options);
    this.#connection = connection;
    this.#reconciler = reconciler;
    this.#options = options;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'reconcile-consumer' });
  }

  get state(): ReconcileConsumerState {
    return this.#state;
  }

  /** The shards this consumer takes. */
  get shards(): number[] {
    return this.#addresses().map((a) => a.shard);
  }

  /** Starts one BullMQ worker per shard and waits until each is connected. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new Error(`consumer cannot start in state ${this.#state}`);
    this.#setState('running');
    const lockDuration = this.#options.lockDurationMs ?? 30_000;
    for (const address of this.#addresses()) {
      const worker = new Worker<ReconcileRequest, ReconcileJobResult>(
        address.name,
        (job, _token, signal) => this.#process(address, job, signal),
        {
          connection: this.#connection,
          prefix: address.prefix,
          concurrency: this.#options.concurrency ?? 4,
          lockDuration,
          stalledInterval: Math.max(500, Math.floor(lockDuration / 2)),
          // A job found stalled twice (its workers keep dying on it) fails instead of looping.
          maxStalledCount: 2,
        },
      );
      worker.on('error', (err) =>
        this.#log.warn({ err, shard: address.shard }, 'reconcile worker error'),
      );
      worker.on('failed', (job, err) =>
        this.#log.warn(
          { err, shard: address.shard, targetGroupArn: job?.data.targetGroupArn },
          'reconcile job failed',
        ),
      );
      this.#workers.push(worker);
    }
    await Promise.all(this.#workers.map((w) => w.waitUntilReady()));
  }

  /**
   * Stops taking jobs and lets running reconciles finish within `graceMs`; then cancels them
   * (their AWS calls are aborted) and stops waiting after `CANCEL_WAIT_MS` more. A reconcile cut
   * short is taken over by another worker when its lock expires, and its group's cache is marked
   * untrusted, so the next reconcile describes first. Idempotent.
   */
  async close(graceMs = 20_000): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#setState('closing');
    // BullMQ memoizes close(): a forced close after a graceful one would wait just the same.
    const closed = Promise.allSettled(this.#workers.map((w) => w.close()));
    if (!(await settlesWithin(closed, graceMs))) {
      this.#log.warn({ graceMs }, 'reconciles did not finish in time: cancelling them');
      for (const worker of this.#workers) worker.cancelAllJobs('worker shutting down');
      if (!(await settlesWithin(closed, CANCEL_WAIT_MS))) {
        this.#log.warn('reconciles ignored cancellation: leaving them to expire their locks');
      }
    }
    this.#setState('closed');
  }

  #addresses(): ReconcileQueueAddress[] {
    const all = reconcileQueueAddresses(this.queueOptions);
    const wanted = this.#options.shards;
    if (wanted === undefined || wanted.length === 0) return all;
    const set = new Set(wanted);
    return all.filter((a) => set.has(a.shard));
  }

  async #process(
    address: ReconcileQueueAddress,
    job: Job<ReconcileRequest>,
    signal: AbortSignal | undefined,
  ): Promise<ReconcileJobResult> {
    if (job.name !== RECONCILE_JOB_NAME) {
      throw new UnrecoverableError(`unexpected job ${job.name} on a reconcile queue`);
    }
    const request = requestOf(job);
    const [coalesced, coalescedObservedAtMs] = await Promise.all([
      takeTraceLinks(this.#connection, address, request.targetGroupArn),
      takeObservedAt(this.#connection, address, request.targetGroupArn),
    ]);
    const traceLinks = [...new Set([...request.traceLinks, ...coalesced])];
    const observed = [request.observedAtMs, coalescedObservedAtMs].filter(
      (t): t is number => t !== undefined,
    );
    // The AWS calls that apply these changes record the propagation latency from the earliest.
    const result = await withObservedChanges(
      observed.length === 0 ? undefined : Math.min(...observed),
      () =>
        this.#reconciler.reconcile(request.targetGroupArn, {
          reason: request.reason,
          traceLinks,
          ...(signal === undefined ? {} : { signal }),
        }),
    );
    this.#options.onReconciled?.(result, request);
    const { calls } = result.record;
    return {
      outcome: result.record.outcome,
      registered: result.record.registered,
      deregistered: result.record.deregistered,
      calls: calls.describe + calls.register + calls.deregister,
    };
  }

  #setState(state: ReconcileConsumerState): void {
    this.#log.debug({ from: this.#state, to: state }, 'reconcile consumer state');
    this.#state = state;
  }
}

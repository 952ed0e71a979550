import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { Job, UnrecoverableError, Worker } from 'bullmq';
import type { Logger } from '../../shared/index.js';
import {
  SpanAttribute,
  SpanName,
  TGFED_TRACER_NAME,
  linksFromTraceparents,
  silentLogger,
  withSpan,
} from '../../shared/index.js';
import { withObservedChanges } from '../aws/aws-call-metrics.js';
import {
  MAX_TRACE_LINKS,
  RECONCILE_JOB_NAME,
  compileReconcileQueueOptions,
  deduplicationKey,
  dueNextReconcile,
  reconcileQueueAddresses,
  keepTraceLinks,
  peekObservedAt,
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
  /**
   * Starts a `tgfed.reconcile` span per job, linked to every request it coalesced; the AWS
   * calls made within it are its children. @default the global tracer (a no-op unless registered)
   */
  tracer?: Tracer;
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

/**
 * The links a reconcile span carries: the job's own request first (it opened the debounce
 * window), then the newest coalesced ones, at most {@link MAX_TRACE_LINKS} in all (OpenTelemetry's
 * default span link limit). Producers already keep only the newest {@link MAX_TRACE_LINKS}
 * coalesced links per pending job, so under heavy churn the oldest requests of a long window
 * are not linked; the reconcile still applies them, and `tgfed.reconcile.links_dropped` counts
 * what this side left off.
 */
export function cappedTraceLinks(traceLinks: readonly string[]): {
  kept: string[];
  dropped: number;
} {
  if (traceLinks.length <= MAX_TRACE_LINKS) return { kept: [...traceLinks], dropped: 0 };
  const [first = '', ...rest] = traceLinks;
  return {
    kept: [first, ...rest.slice(rest.length - (MAX_TRACE_LINKS - 1))],
    dropped: traceLinks.length - MAX_TRACE_LINKS,
  };
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
  readonly #tracer: Tracer;
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
    this.#tracer = options.tracer ?? trace.getTracer(TGFED_TRACER_NAME);
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
      worker.on('completed', (job) => {
        this.#catchUp(worker, address, job).catch((err: unknown) =>
          this.#log.debug({ err, shard: address.shard }, 'cannot bring the next reconcile forward'),
        );
      });
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

  /**
   * Changes made while a group's reconcile ran wait in the group's next job, which BullMQ
   * enqueues when the reconcile finishes with a whole debounce window from then: in a rolling
   * restart most changes waited out the rest of the running reconcile, then that window, then
   * their own reconcile. Their window began with the first of them (as observed, and never
   * before the finished reconcile began, whatever the agents' clocks): the next job is due when
   * that window ends, now if it has. So reconciles of a group still begin at least `debounceMs`
   * apart, and no change waits for more than one window besides the reconcile before it.
   */
  async #catchUp(
    worker: Worker<ReconcileRequest, ReconcileJobResult>,
    address: ReconcileQueueAddress,
    finished: Job<ReconcileRequest, ReconcileJobResult>,
  ): Promise<void> {
    const debounceMs = this.queueOptions.debounceMs;
    const arn = finished.data.targetGroupArn;
    if (debounceMs === 0 || finished.processedOn === undefined) return;
    const [nextId, observedAtMs] = await Promise.all([
      this.#connection.get(deduplicationKey(address, arn)),
      peekObservedAt(this.#connection, address, arn),
    ]);
    if (nextId === null || nextId === finished.id || observedAtMs === undefined) return;
    const dueInMs = Math.max(observedAtMs, finished.processedOn) + debounceMs - Date.now();
    if (dueInMs >= debounceMs) return;
    const next = await Job.fromId<ReconcileRequest, ReconcileJobResult>(worker, nextId);
    // Already running, or replaced by an operator's request: nothing to bring forward.
    if (next === undefined || !(await next.isDelayed())) return;
    if (dueInMs <= 0) await next.promote();
    else await next.changeDelay(dueInMs);
  }

  /**
   * Before the job finishes: the group's next job, which BullMQ enqueues as it finishes, gets
   * the rest of its changes' window as its delay (see `dueNextReconcile`). In a rolling restart
   * most of a busy group's reconciles begin as soon as the one before lets them: this way the
   * finishing job enqueues the next one due (and a worker takes it in the same round trip, often
   * this one), where the catch-up after it took four round trips more.
   */
  async #dueNext(address: ReconcileQueueAddress, job: Job, arn: string): Promise<void> {
    const debounceMs = this.queueOptions.debounceMs;
    if (debounceMs === 0 || job.processedOn === undefined) return;
    await dueNextReconcile(this.#connection, address, arn, {
      startedAtMs: job.processedOn,
      debounceMs,
      nowMs: Date.now(),
    }).catch((err: unknown) =>
      this.#log.debug({ err, shard: address.shard }, 'cannot bring the next reconcile forward'),
    );
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
    const links = cappedTraceLinks([...new Set([...request.traceLinks, ...coalesced])]);
    const observed = [request.observedAtMs, coalescedObservedAtMs].filter(
      (t): t is number => t !== undefined,
    );
    // A trace of its own (a job coalesces requests of many traces), linked to each of them.
    return withSpan(
      this.#tracer,
      SpanName.RECONCILE,
      {
        kind: SpanKind.CONSUMER,
        links: linksFromTraceparents(links.kept),
        attributes: {
          [SpanAttribute.MESSAGING_SYSTEM]: 'bullmq',
          [SpanAttribute.MESSAGING_OPERATION_TYPE]: 'process',
          [SpanAttribute.MESSAGING_OPERATION_NAME]: 'process',
          [SpanAttribute.MESSAGING_DESTINATION_NAME]: `${address.prefix}:${address.name}`,
          [SpanAttribute.MESSAGING_MESSAGE_ID]: job.id ?? '',
          [SpanAttribute.TGFED_SHARD]: address.shard,
          [SpanAttribute.TGFED_TARGET_GROUP_ARN]: request.targetGroupArn,
          [SpanAttribute.TGFED_RECONCILE_REASON]: request.reason,
          [SpanAttribute.TGFED_RECONCILE_LINKS]: links.kept.length,
          [SpanAttribute.TGFED_RECONCILE_LINKS_DROPPED]: links.dropped,
        },
      },
      async (span) => {
        // The AWS calls that apply these changes record the propagation latency from the earliest.
        const result = await withObservedChanges(
          observed.length === 0 ? undefined : Math.min(...observed),
          () =>
            this.#reconciler.reconcile(request.targetGroupArn, {
              reason: request.reason,
              traceLinks: links.kept,
              ...(signal === undefined ? {} : { signal }),
            }),
        );
        annotateReconcileSpan(span, result);
        if ((result.record.waitingForSync ?? 0) > 0) {
          // Registrations wait for a cluster's initial sync: the reconcile that makes them links
          // these batches and measures their propagation latency.
          await keepTraceLinks(this.#connection, address, request.targetGroupArn, {
            traceLinks: links.kept,
            observedAtMs: observed.length === 0 ? undefined : Math.min(...observed),
            ttlMs: this.queueOptions.traceLinksTtlMs,
          }).catch((err: unknown) =>
            this.#log.warn({ err }, 'cannot keep the trace links of waiting registrations'),
          );
        }
        await this.#dueNext(address, job, request.targetGroupArn);
        this.#options.onReconciled?.(result, request);
        const { calls } = result.record;
        return {
          outcome: result.record.outcome,
          registered: result.record.registered,
          deregistered: result.record.deregistered,
          calls: calls.describe + calls.register + calls.deregister,
        };
      },
      ROOT_CONTEXT,
    );
  }

  #setState(state: ReconcileConsumerState): void {
    this.#log.debug({ from: this.#state, to: state }, 'reconcile consumer state');
    this.#state = state;
  }
}

function annotateReconcileSpan(span: Span, result: ReconcileResult): void {
  const { record } = result;
  span.setAttributes({
    [SpanAttribute.TGFED_RECONCILE_OUTCOME]: record.outcome,
    [SpanAttribute.TGFED_RECONCILE_REGISTERED]: record.registered,
    [SpanAttribute.TGFED_RECONCILE_DEREGISTERED]: record.deregistered,
    [SpanAttribute.TGFED_RECONCILE_CALLS]:
      record.calls.describe + record.calls.register + record.calls.deregister,
    [SpanAttribute.TGFED_RECONCILE_CALLS_DESCRIBE]: record.calls.describe,
    [SpanAttribute.TGFED_RECONCILE_CALLS_REGISTER]: record.calls.register,
    [SpanAttribute.TGFED_RECONCILE_CALLS_DEREGISTER]: record.calls.deregister,
  });
  if (record.outcome === 'failed') {
    span.setAttribute(SpanAttribute.ERROR_TYPE, record.errorClass ?? 'unknown');
    span.setStatus({ code: SpanStatusCode.ERROR, message: record.error ?? 'reconcile failed' });
  }
}

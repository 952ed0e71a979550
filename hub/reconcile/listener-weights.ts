import { randomBytes } from 'node:crypto';
import type { Meter } from '@opentelemetry/api';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Logger } from '../../shared/index.js';
import { MetricLabel, MetricName, silentLogger } from '../../shared/index.js';
import { classifyAwsError } from '../aws/aws-errors.js';
import type {
  ListenerRuleApi,
  ListenerRuleApiFactory,
  ListenerRuleLocation,
} from '../aws/listener-rule-api.js';
import type { RedisClient } from '../state/index.js';
import { countReadyTargets } from './forward-weights.js';
import { ListenerWeightRecords } from './listener-weight-records.js';
import {
  ListenerWeightUpdater,
  type ListenerWeightResult,
  type ListenerWeightUpdaterOptions,
  type WeightedBindingSource,
} from './listener-weight-updater.js';
import type { AwsCallLimiter } from './target-group-reconciler.js';

/** The BullMQ queue name of weights updates. */
export const LISTENER_WEIGHTS_QUEUE_NAME = 'listener-weights';
const JOB_NAME = 'weights';

/** Why a weights update was requested. */
export type ListenerWeightReason = 'group-reconciled' | 'binding-removed' | 'operator';

interface ListenerWeightJob {
  readonly listenerRuleArn: string;
  readonly reason: ListenerWeightReason;
}

/** The bindings as {@link ListenerWeights} watches them (a `BindingStore`). */
export interface WeightedBindingStore extends WeightedBindingSource {
  /** Changes with every write of the bindings. */
  revision(): Promise<number>;
}

/** Where the groups' actual targets are cached (a `TargetGroupRecords`). */
export interface ActualTargetKeys {
  actualKey(targetGroupArn: string): string;
}

/** Options of {@link ListenerWeights}. */
export interface ListenerWeightsOptions extends ListenerWeightUpdaterOptions {
  /** Prefix of every key; the hub state's prefix. @default 'tgfed' */
  keyPrefix?: string;
  /**
   * The debounce window of a rule: the first group reconcile starts it, and one update after it
   * weighs every change of the pool's groups within it (their reconciles run side by side,
   * each after its own debounce).
   * @default 3000
   */
  debounceMs?: number;
  /** Runs of an update that hit throttling or a transient error. @default 8 */
  attempts?: number;
  /** First retry delay of such an update (doubling). @default 1000 */
  backoffMs?: number;
  /** Updates run at once per worker (each is a handful of calls). @default 2 */
  concurrency?: number;
  /** Records `tgfed_aws_calls_total` for DescribeRules / ModifyRule / … when given. */
  meter?: Meter;
  /** Called after every update (tests). */
  onUpdated?: (result: ListenerWeightResult) => void;
}

/** Lifecycle of {@link ListenerWeights}. */
export type ListenerWeightsState = 'idle' | 'running' | 'closed';

/** Counts rule calls like the target group calls (`tgfed_aws_calls_total`). */
function instrumented(rules: ListenerRuleApiFactory, meter: Meter): ListenerRuleApiFactory {
  const calls = meter.createCounter(MetricName.AWS_CALLS, {
    description: 'ELBv2 calls by account, region, operation and result',
    unit: '{call}',
  });
  const measure = async <T>(
    location: ListenerRuleLocation,
    operation: string,
    call: () => Promise<T>,
  ): Promise<T> => {
    let result = 'ok';
    try {
      return await call();
    } catch (err) {
      result = classifyAwsError(err) === 'throttling' ? 'throttled' : 'error';
      throw err;
    } finally {
      calls.add(1, {
        [MetricLabel.ACCOUNT]: location.accountId,
        [MetricLabel.REGION]: location.region,
        [MetricLabel.OPERATION]: operation,
        [MetricLabel.RESULT]: result,
      });
    }
  };
  return {
    forRule(location: ListenerRuleLocation): ListenerRuleApi {
      const api = rules.forRule(location);
      const listener = location.ruleArn.includes(':listener/');
      return {
        describeActions: (signal) =>
          measure(location, listener ? 'DescribeListeners' : 'DescribeRules', () =>
            api.describeActions(signal),
          ),
        modifyActions: (actions, signal) =>
          measure(location, listener ? 'ModifyListener' : 'ModifyRule', () =>
            api.modifyActions(actions, signal),
          ),
      };
    },
  };
}

/**
 * Keeps the weighted forward actions of pools that name a `listenerRuleArn` (DESIGN.md, Pools).
 * After a worker reconciles a group of such a pool, {@link groupReconciled} asks for an update
 * of the rule on a BullMQ queue of its own (`<prefix>:{lw}`): one deduplication id per rule
 * (`keepLastIfActive`, as the reconcile queues), so at most one update of a rule runs at a time
 * across every worker and one more waits, and `delay: debounceMs` makes the reconciles of all
 * the pool's groups in one window a single update. An update that was throttled or hit a
 * transient error is retried by BullMQ with exponential backoff (the job keeps its
 * deduplication slot meanwhile, so requests join the retry); a persistent one (not found,
 * access denied, a configuration error) is recorded and waits for the next group reconcile.
 */
export class ListenerWeights {
  readonly updater: ListenerWeightUpdater;
  readonly records: ListenerWeightRecords;
  readonly #connection: RedisClient;
  readonly #bindings: WeightedBindingStore;
  readonly #options: ListenerWeightsOptions;
  readonly #prefix: string;
  readonly #log: Logger;
  #queue: Queue<ListenerWeightJob> | undefined;
  #worker: Worker<ListenerWeightJob> | undefined;
  #state: ListenerWeightsState = 'idle';
  #index: { revision: number; rulesOf: Map<string, Set<string>> } | undefined;

  /**
   * @param connection for BullMQ (no command timeout, `maxRetriesPerRequest: null`)
   * @param redis for the records and the groups' cached targets
   */
  constructor(
    connection: RedisClient,
    redis: RedisClient,
    deps: {
      bindings: WeightedBindingStore;
      rules: ListenerRuleApiFactory;
      limiter: AwsCallLimiter;
      groups: ActualTargetKeys;
    },
    options: ListenerWeightsOptions = {},
  ) {
    this.#connection = connection;
    this.#bindings = deps.bindings;
    this.#options = options;
    const keyPrefix = options.keyPrefix ?? 'tgfed';
    this.#prefix = `${keyPrefix}:{lw}`;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'listener-weights' });
    this.records = new ListenerWeightRecords(redis, keyPrefix);
    const groups = deps.groups;
    this.updater = new ListenerWeightUpdater(
      {
        bindings: deps.bindings,
        ready: {
          readyTargets: async (arn) => countReadyTargets(await redis.hvals(groups.actualKey(arn))),
        },
        rules: options.meter === undefined ? deps.rules : instrumented(deps.rules, options.meter),
        limiter: deps.limiter,
        records: this.records,
      },
      options,
    );
  }

  get state(): ListenerWeightsState {
    return this.#state;
  }

  /** Starts the queue and the worker that runs the updates. */
  async start(): Promise<void> {
    if (this.#state !== 'idle')
      throw new Error(`listener weights cannot start in state ${this.#state}`);
    this.#state = 'running';
    this.#queue = new Queue<ListenerWeightJob>(LISTENER_WEIGHTS_QUEUE_NAME, {
      connection: this.#connection,
      prefix: this.#prefix,
      // Nothing reads the event stream; keep it short (see ReconcileQueueOptions.eventsMaxLen).
      streams: { events: { maxLen: 1000 } },
    });
    this.#worker = new Worker<ListenerWeightJob>(
      LISTENER_WEIGHTS_QUEUE_NAME,
      (job, _token, signal) => this.#process(job, signal),
      {
        connection: this.#connection,
        prefix: this.#prefix,
        concurrency: this.#options.concurrency ?? 2,
      },
    );
    this.#worker.on('error', (err) => this.#log.warn({ err }, 'listener weights worker error'));
    this.#worker.on('failed', (job, err) =>
      this.#log.warn(
        { err, listenerRuleArn: job?.data.listenerRuleArn, attempts: job?.attemptsMade },
        'listener weights update failed',
      ),
    );
    await Promise.all([this.#queue.waitUntilReady(), this.#worker.waitUntilReady()]);
  }

  /** Requests an update of every rule whose pool holds the group (none for most groups). */
  async groupReconciled(targetGroupArn: string): Promise<void> {
    const rules = (await this.#rulesOf()).get(targetGroupArn);
    if (rules === undefined) return;
    for (const rule of rules) await this.request(rule, 'group-reconciled');
  }

  /** Requests an update of one rule after the debounce window (joining a pending one). */
  async request(listenerRuleArn: string, reason: ListenerWeightReason): Promise<void> {
    const queue = this.#queue;
    if (queue === undefined || this.#state !== 'running') return;
    await queue.add(
      JOB_NAME,
      { listenerRuleArn, reason },
      {
        jobId: `w-${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`,
        delay: reason === 'operator' ? 0 : (this.#options.debounceMs ?? 3000),
        deduplication: { id: `lw:${listenerRuleArn}`, keepLastIfActive: true },
        attempts: this.#options.attempts ?? 8,
        backoff: { type: 'exponential', delay: this.#options.backoffMs ?? 1000 },
        removeOnComplete: { count: 100 },
        removeOnFail: { count: 100 },
      },
    );
  }

  /** Stops the worker (running updates finish) and the queue. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    const steps = [() => this.#worker?.close(), () => this.#queue?.close()];
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        this.#log.warn({ err }, 'listener weights close step failed');
      }
    }
  }

  /** Group ARN → rules of the pools holding it, rebuilt when the bindings revision moves. */
  async #rulesOf(): Promise<Map<string, Set<string>>> {
    const revision = await this.#bindings.revision();
    if (this.#index?.revision === revision) return this.#index.rulesOf;
    const snapshot = await this.#bindings.snapshot();
    const rulesOf = new Map<string, Set<string>>();
    for (const binding of snapshot.bindings) {
      if (binding.target?.$case !== 'pool') continue;
      const rule = binding.target.pool.listenerRuleArn;
      if (rule === '') continue;
      for (const group of binding.target.pool.groups) {
        let set = rulesOf.get(group.arn);
        if (set === undefined) rulesOf.set(group.arn, (set = new Set()));
        set.add(rule);
      }
    }
    const before = this.#index;
    this.#index = { revision: snapshot.revision, rulesOf };
    if (before !== undefined) {
      // A rule no binding names any more gets one last update, which clears its groups' weights.
      const named = new Set([...rulesOf.values()].flatMap((set) => [...set]));
      const dropped = new Set([...before.rulesOf.values()].flatMap((set) => [...set]));
      for (const rule of dropped) if (!named.has(rule)) await this.request(rule, 'binding-removed');
    }
    return rulesOf;
  }

  async #process(job: Job<ListenerWeightJob>, signal: AbortSignal | undefined): Promise<string> {
    const rule = job.data.listenerRuleArn;
    if (job.name !== JOB_NAME || typeof rule !== 'string' || rule === '') {
      throw new UnrecoverableError(`job ${job.id ?? '?'} is not a listener weights update`);
    }
    const result = await this.updater.update(rule, {
      reason: job.data.reason,
      ...(signal === undefined ? {} : { signal }),
    });
    this.#options.onUpdated?.(result);
    if (result.retry) {
      // BullMQ retries the job after its exponential backoff; the record says why.
      throw new Error(`listener rule ${rule}: ${result.record.error ?? result.record.outcome}`);
    }
    return result.record.outcome;
  }
}

import { randomBytes } from 'node:crypto';
import type { JobsOptions } from 'bullmq';
import type { RedisClient } from '../state/index.js';

/**
 * The contract between the hub (producer) and the workers (consumers) of reconcile work.
 *
 * - Unit of work: one target group. A job carries only a {@link ReconcileRequest}; the worker reads
 *   the desired state from Redis when it runs, so a job that absorbed many changes is as good as
 *   the newest of them.
 * - Sharding: a group's ARN picks one of `shardCount` queues by a stable hash
 *   ({@link reconcileShard}); every producer and worker must use the same `shardCount` (changing
 *   it needs drained queues, or one group could be reconciled from two queues at once).
 * - Redis Cluster: each queue has its own BullMQ prefix `<keyPrefix>:{rq<shard>}`, whose hash tag
 *   puts all of that queue's keys (and its trace links) in one slot, as BullMQ's Lua scripts need,
 *   while the shards spread over the masters.
 * - Coalescing: one deduplication id per group ({@link reconcileDeduplicationId}), see
 *   {@link reconcileJobOptions}.
 */

/** Why a reconcile was requested. A hint for logs and metrics: coalescing keeps the first one. */
export type ReconcileReason = 'endpoints' | 'binding' | 'cluster-status' | 'drift' | 'operator';

/** The data of one reconcile job. */
export interface ReconcileRequest {
  readonly targetGroupArn: string;
  readonly reason: ReconcileReason;
  readonly requestedAtMs: number;
  /**
   * W3C `traceparent`s of the batches that caused it, for span links. Links of requests
   * coalesced into this job are in {@link traceLinksKey}; the worker takes both.
   */
  readonly traceLinks: string[];
  /**
   * When an agent observed the earliest change this request carries (absent when not caused by
   * endpoint changes), for the propagation latency. A coalesced request's time is kept in
   * {@link observedAtKey} when it is earlier; the worker takes the earliest of both.
   */
  readonly observedAtMs?: number;
}

/** The BullMQ job name of reconcile jobs. */
export const RECONCILE_JOB_NAME = 'reconcile';
/** The BullMQ queue name of every shard (the shard is in the prefix). */
export const RECONCILE_QUEUE_NAME = 'reconcile';
/** Runs of a reconcile job before it fails (retried only when Redis failed during it). */
export const RECONCILE_JOB_ATTEMPTS = 5;
/** Most trace links kept per pending reconcile (OpenTelemetry's default span link limit). */
export const MAX_TRACE_LINKS = 128;

/** Options of the reconcile queues. */
export interface ReconcileQueueOptions {
  /**
   * Prefix of every key; the hub state's prefix.
   * @default 'tgfed'
   */
  keyPrefix?: string;
  /**
   * Number of queues (shards). Must be the same for every hub and worker.
   * @default 16
   */
  shardCount?: number;
  /**
   * The debounce window: a group's first change starts it; the changes within it are handled by
   * the one reconcile that runs when it ends.
   * @default 1000
   */
  debounceMs?: number;
  /**
   * Completed and failed jobs BullMQ keeps per queue, for inspection (the outcome of every
   * reconcile is recorded apart from the job, for the admin API).
   * @default 100
   */
  keepFinishedJobs?: number;
  /**
   * Approximate length BullMQ trims each queue's event stream to. Nothing in tgfed reads the
   * stream; it is kept short so that Redis memory does not grow with the shard count.
   * @default 1000
   */
  eventsMaxLen?: number;
  /**
   * How long coalesced trace links are kept when no worker takes them.
   * @default 86_400_000 (one day)
   */
  traceLinksTtlMs?: number;
}

/** {@link ReconcileQueueOptions} with every value present and checked. */
export interface CompiledReconcileQueueOptions {
  readonly keyPrefix: string;
  readonly shardCount: number;
  readonly debounceMs: number;
  readonly keepFinishedJobs: number;
  readonly eventsMaxLen: number;
  readonly traceLinksTtlMs: number;
}

/** A reconcile queue option is out of range. */
export class ReconcileQueueOptionsError extends Error {
  override readonly name = 'ReconcileQueueOptionsError';
}

function integerIn(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ReconcileQueueOptionsError(`${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** Fills defaults and checks ranges; throws {@link ReconcileQueueOptionsError} naming the setting. */
export function compileReconcileQueueOptions(
  options: ReconcileQueueOptions = {},
): CompiledReconcileQueueOptions {
  const keyPrefix = options.keyPrefix ?? 'tgfed';
  if (keyPrefix === '' || /[{}]/.test(keyPrefix)) {
    throw new ReconcileQueueOptionsError('keyPrefix must be non-empty and contain no braces');
  }
  return {
    keyPrefix,
    shardCount: integerIn('shardCount', options.shardCount ?? 16, 1, 1024),
    debounceMs: integerIn('debounceMs', options.debounceMs ?? 1000, 0, 3_600_000),
    keepFinishedJobs: integerIn('keepFinishedJobs', options.keepFinishedJobs ?? 100, 0, 1_000_000),
    eventsMaxLen: integerIn('eventsMaxLen', options.eventsMaxLen ?? 1000, 0, 1_000_000),
    traceLinksTtlMs: integerIn(
      'traceLinksTtlMs',
      options.traceLinksTtlMs ?? 86_400_000,
      1,
      2 ** 31,
    ),
  };
}

/** Where one shard's queue lives. */
export interface ReconcileQueueAddress {
  readonly shard: number;
  /** BullMQ queue name. */
  readonly name: string;
  /** BullMQ `prefix` option: carries the shard's hash tag. */
  readonly prefix: string;
}

// FNV-1a 32: stable across processes, platforms and versions (unlike any runtime hash).
function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  const bytes = Buffer.from(text, 'utf8');
  for (const byte of bytes) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The shard (0 … shardCount-1) of a target group. */
export function reconcileShard(targetGroupArn: string, shardCount: number): number {
  return fnv1a32(targetGroupArn) % shardCount;
}

/** The queue of one shard. */
export function reconcileQueueAddress(
  shard: number,
  options: CompiledReconcileQueueOptions,
): ReconcileQueueAddress {
  return { shard, name: RECONCILE_QUEUE_NAME, prefix: `${options.keyPrefix}:{rq${shard}}` };
}

/** Every shard's queue, for workers (a worker may consume a subset). */
export function reconcileQueueAddresses(
  options: CompiledReconcileQueueOptions,
): ReconcileQueueAddress[] {
  return Array.from({ length: options.shardCount }, (_, shard) =>
    reconcileQueueAddress(shard, options),
  );
}

/** The queue of a target group. */
export function reconcileQueueFor(
  targetGroupArn: string,
  options: CompiledReconcileQueueOptions,
): ReconcileQueueAddress {
  return reconcileQueueAddress(reconcileShard(targetGroupArn, options.shardCount), options);
}

/** The deduplication id of a target group's reconcile jobs (one per group). */
export function reconcileDeduplicationId(targetGroupArn: string): string {
  return `tg:${targetGroupArn}`;
}

/**
 * The Redis list of trace links of requests coalesced into a pending reconcile. It shares the
 * queue's hash tag. Producers RPUSH and trim to {@link MAX_TRACE_LINKS}; the worker takes it
 * with {@link takeTraceLinks} when the job starts.
 */
export function traceLinksKey(address: ReconcileQueueAddress, targetGroupArn: string): string {
  return `${address.prefix}:links:${targetGroupArn}`;
}

/**
 * The earliest observation time of the requests coalesced into a pending reconcile: a sorted set
 * with one member whose score only goes down (`ZADD LT`). It shares the queue's hash tag; the
 * worker takes it with {@link takeObservedAt} when the job starts.
 */
export function observedAtKey(address: ReconcileQueueAddress, targetGroupArn: string): string {
  return `${address.prefix}:observed:${targetGroupArn}`;
}

/**
 * BullMQ's deduplication key of a group's reconcile jobs (`<prefix>:<queue>:de:<id>`, see
 * `deduplicateJob.lua`): the id of the group's pending job, or of the next one BullMQ enqueues
 * when the active one finishes.
 */
export function deduplicationKey(address: ReconcileQueueAddress, targetGroupArn: string): string {
  return `${address.prefix}:${address.name}:de:${reconcileDeduplicationId(targetGroupArn)}`;
}

/** The member of {@link observedAtKey}. */
export const OBSERVED_AT_MEMBER = 'at';

/**
 * The job options of one request. Verified against BullMQ 6.7 (`types/deduplication-options.d.ts`,
 * `commands/includes/deduplicateJob.lua`, `storeDeduplicatedNextJob.lua`,
 * `requeueDeduplicatedJob.lua`):
 *
 * - `deduplication: { id, keepLastIfActive: true }` without `ttl`: the dedup key is set with
 *   `SET NX` and no expiry, and deleted when the job finishes (completes or finally fails). While
 *   the group's job is delayed or waiting, another add returns that job's id and adds nothing.
 *   While it is active, the add is stored as the "next" job (`<prefix>:<queue>:dn:<id>`, newest
 *   data wins) and enqueued when the active one finishes. So at most one active and one waiting
 *   job per group: never two reconciles of a group at once, never a change lost behind a running
 *   one. (`ttl` is ignored with `keepLastIfActive`; a stale key whose job vanished is recovered by
 *   `recoverStaleDeduplicationKey`.)
 * - `delay: debounceMs` is the debounce window, as a throttle: the first change starts it and
 *   later ones join it. (Reconciles an initial sync kept back are enqueued with `delayMs` 0:
 *   their changes waited for the whole sync already.) BullMQ's "debounce mode" (`extend` + `replace` + `ttl`) restarts the
 *   window on every add, which under constant churn would postpone the reconcile forever.
 *   The next job BullMQ enqueues when an active one finishes gets a whole window from then; the
 *   consumer moves it to when its first change's window ends (see `ReconcileConsumer`), so a
 *   change made during a reconcile waits for one window, not the rest of the reconcile and a
 *   window after it.
 * - `operator` requests use `delay: 0` and `replace: true`: a job still delayed is replaced by
 *   one that runs now (`replace` removes only a *delayed* job; a waiting one already runs soon).
 * - `jobId` is unique per request, so the returned job's id tells whether it was coalesced.
 * - `attempts` / `backoff`: a reconcile throws only when Redis fails (AWS errors are recorded
 *   and rescheduled by the worker itself), so a few quick retries cover a failover; the group
 *   keeps its deduplication slot meanwhile and changes join the retry.
 */
export function reconcileJobOptions(
  request: ReconcileRequest,
  options: CompiledReconcileQueueOptions,
  jobId: string = newReconcileJobId(),
  delayMs: number = options.debounceMs,
): JobsOptions {
  const now = request.reason === 'operator';
  return {
    jobId,
    delay: now ? 0 : delayMs,
    deduplication: {
      id: reconcileDeduplicationId(request.targetGroupArn),
      keepLastIfActive: true,
      ...(now ? { replace: true } : {}),
    },
    attempts: RECONCILE_JOB_ATTEMPTS,
    backoff: { type: 'exponential', delay: 1000 },
    removeOnComplete: { count: options.keepFinishedJobs },
    removeOnFail: { count: options.keepFinishedJobs },
  };
}

/** A fresh job id (BullMQ forbids ids that are integers or start with `0:`). */
export function newReconcileJobId(): string {
  return `r-${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
}

// KEYS: the links list, the observation sorted set (one hash tag). ARGV: TTL (ms), links kept at
// most, the observation time ('' for none), its member, then the links to append.
const keepTraceLinksLua = `
if #ARGV > 4 then
  redis.call('RPUSH', KEYS[1], unpack(ARGV, 5))
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], 'LT', ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return 1
`;
const keepTraceLinksCommand = 'tgfedKeepTraceLinks';
type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;
const defined = new WeakSet<RedisClient>();

/**
 * Keeps trace links and the earliest observation time for a group's next reconcile to take: the
 * hub's for a request coalesced into a pending job, the worker's for changes a reconcile did not
 * apply yet (registrations waiting for a cluster's initial sync). Kept `ttlMs` when nobody takes
 * them.
 *
 * One script (the keys share the queue's hash tag), not a transaction: a transaction on the
 * queue connection copies BullMQ's whole script table (ioredis builds every MULTI as a pipeline
 * that copies the connection's defined scripts). And not five plain commands either: the hub
 * keeps links for every group a batch feeds whose reconcile is pending, and at fleet scale the
 * writes of those commands were a tenth of the hub's CPU.
 */
export async function keepTraceLinks(
  redis: RedisClient,
  address: ReconcileQueueAddress,
  targetGroupArn: string,
  kept: { traceLinks: readonly string[]; observedAtMs?: number | undefined; ttlMs: number },
): Promise<void> {
  if (kept.traceLinks.length === 0 && kept.observedAtMs === undefined) return;
  if (!defined.has(redis)) {
    redis.defineCommand(keepTraceLinksCommand, { lua: keepTraceLinksLua, numberOfKeys: 2 });
    defined.add(redis);
  }
  const command = (redis as unknown as Record<string, ScriptCommand>)[keepTraceLinksCommand];
  await command?.call(
    redis,
    traceLinksKey(address, targetGroupArn),
    observedAtKey(address, targetGroupArn),
    kept.ttlMs,
    MAX_TRACE_LINKS,
    kept.observedAtMs === undefined ? '' : kept.observedAtMs,
    OBSERVED_AT_MEMBER,
    // The list keeps the last MAX_TRACE_LINKS anyway.
    ...kept.traceLinks.slice(-MAX_TRACE_LINKS),
  );
}

/**
 * Takes (reads and clears) the coalesced trace links of a group; for the worker. One LPOP of up to
 * {@link MAX_TRACE_LINKS} (all a kept list holds): atomic without a transaction, which on the
 * queue connection would copy BullMQ's script table for every job.
 */
export async function takeTraceLinks(
  redis: RedisClient,
  address: ReconcileQueueAddress,
  targetGroupArn: string,
): Promise<string[]> {
  const links = await redis.lpop(traceLinksKey(address, targetGroupArn), MAX_TRACE_LINKS);
  return [...new Set(links ?? [])];
}

// KEYS: BullMQ's stored next job of a group (`dn`, see `storeDeduplicatedNextJob.lua`), the
// observation sorted set (one hash tag). ARGV: when the running job began, the debounce window,
// now (ms), the observation member. Returns the delay set, or -1 when none was.
const dueNextReconcileLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local observed = redis.call('ZSCORE', KEYS[2], ARGV[4])
if not observed then return -1 end
local window = tonumber(ARGV[2])
local due = math.max(tonumber(observed), tonumber(ARGV[1])) + window - tonumber(ARGV[3])
if due >= window then return -1 end
if due < 0 then due = 0 end
local opts = cjson.decode(redis.call('HGET', KEYS[1], 'opts'))
opts['delay'] = math.floor(due)
redis.call('HSET', KEYS[1], 'opts', cjson.encode(opts))
return opts['delay']
`;
const dueNextReconcileCommand = 'tgfedDueNextReconcile';
const dueNextDefined = new WeakSet<RedisClient>();

/**
 * Sets when a group's next reconcile is due, before its running one finishes: the changes made
 * while it ran wait in BullMQ's stored next job (`<prefix>:<queue>:dn:<id>`), which BullMQ
 * enqueues as the running job finishes with the delay stored with it, a whole debounce window.
 * Their window began with the first of them (as observed, never before the running job began):
 * the stored delay becomes what is left of it, 0 when it has ended, so that the job that
 * finishes enqueues it due, and a worker (often the same, in the same round trip) takes it. A
 * request stored after this (newest data wins) has the whole window again; the consumer's
 * catch-up after the job completed moves it then. Returns the delay set, or undefined when
 * there is no next job or its window is whole anyway.
 */
export async function dueNextReconcile(
  redis: RedisClient,
  address: ReconcileQueueAddress,
  targetGroupArn: string,
  at: { startedAtMs: number; debounceMs: number; nowMs: number },
): Promise<number | undefined> {
  if (!dueNextDefined.has(redis)) {
    redis.defineCommand(dueNextReconcileCommand, { lua: dueNextReconcileLua, numberOfKeys: 2 });
    dueNextDefined.add(redis);
  }
  const command = (redis as unknown as Record<string, ScriptCommand>)[dueNextReconcileCommand];
  const delay = await command?.call(
    redis,
    `${address.prefix}:${address.name}:dn:${reconcileDeduplicationId(targetGroupArn)}`,
    observedAtKey(address, targetGroupArn),
    at.startedAtMs,
    at.debounceMs,
    at.nowMs,
    OBSERVED_AT_MEMBER,
  );
  return typeof delay === 'number' && delay >= 0 ? delay : undefined;
}

/** The earliest observation time kept for a group's pending reconcile, left in place. */
export async function peekObservedAt(
  redis: RedisClient,
  address: ReconcileQueueAddress,
  targetGroupArn: string,
): Promise<number | undefined> {
  const score = await redis.zscore(observedAtKey(address, targetGroupArn), OBSERVED_AT_MEMBER);
  if (score === null) return undefined;
  const atMs = Number(score);
  return Number.isFinite(atMs) ? atMs : undefined;
}

/**
 * Takes (reads and clears) the earliest coalesced observation time of a group; for the worker.
 * The sorted set holds one member, so ZPOPMIN takes it.
 */
export async function takeObservedAt(
  redis: RedisClient,
  address: ReconcileQueueAddress,
  targetGroupArn: string,
): Promise<number | undefined> {
  const popped = await redis.zpopmin(observedAtKey(address, targetGroupArn));
  const score = popped[1];
  if (score === undefined) return undefined;
  const atMs = Number(score);
  return Number.isFinite(atMs) ? atMs : undefined;
}

import { setTimeout as sleepFor } from 'node:timers/promises';
import type { RedisClient } from '../state/index.js';

/**
 * A token bucket per AWS account, region and operation class, shared in Redis by every worker
 * process, so that all of them together stay within ELBv2's API rate limits.
 *
 * Key schema: `<keyPrefix>:{aws:<account>:<region>}:bucket:<class>`, a hash
 * `{ tokens: <float>, updated: <µs of Redis TIME> }` (after a throttle, with the last penalty's
 * `penaltyMs` and `penaltyAt`, see {@link AwsRateLimiter.penalize}) with a PEXPIRE of at least
 * {@link BUCKET_MIN_TTL_MS} and twice the time the bucket needs to fill up, so idle buckets
 * vanish (a vanished bucket is re-created full, which it would have been by then anyway). The
 * hash tag `{aws:<account>:<region>}` keeps the buckets of one account and region in one Redis
 * Cluster slot, while accounts spread over the masters.
 *
 * Fairness: every AWS call takes one token and waiters are not queued, so a target group whose
 * reconcile makes many calls (a long chunked rebuild) competes call by call with small groups
 * in the same account; it is not served first, and it does not starve the others either.
 *
 * Every worker must use the same limits: each one passes its own to the script on every call.
 */

/**
 * ELBv2 operation classes that AWS throttles separately: `mutate` is RegisterTargets and
 * DeregisterTargets, `describe` is Describe*, `modify` is every other changing call.
 */
export type AwsOperationClass = 'mutate' | 'describe' | 'modify';

/** Sustained rate and burst of one bucket. */
export interface AwsRateLimit {
  /** Tokens added per second. */
  readonly ratePerSecond: number;
  /** Tokens a full bucket holds: the calls that may go at once after a quiet period. */
  readonly burst: number;
}

/** A limit for some accounts, regions and classes; an absent field matches every value. */
export interface AwsRateLimitOverride extends AwsRateLimit {
  readonly account?: string;
  readonly region?: string;
  readonly class?: AwsOperationClass;
}

/** Every operation class, in a stable order. */
export const AWS_OPERATION_CLASSES: readonly AwsOperationClass[] = ['mutate', 'describe', 'modify'];

/** ELBv2's documented default limits per account and region. */
export const DEFAULT_AWS_RATE_LIMITS: Readonly<Record<AwsOperationClass, AwsRateLimit>> = {
  mutate: { ratePerSecond: 4, burst: 20 },
  describe: { ratePerSecond: 50, burst: 200 },
  modify: { ratePerSecond: 3, burst: 20 },
};

/** The shortest TTL of a bucket key. */
export const BUCKET_MIN_TTL_MS = 10_000;

/**
 * The penalty of a lone throttle (see {@link AwsRateLimiter.penalize}): about one refill of a
 * mutate bucket, what a call that reached AWS a little early needs; a throttling that goes on
 * doubles it up to {@link DEFAULT_THROTTLE_PENALTY_MAX_MS}.
 */
export const DEFAULT_THROTTLE_PENALTY_MS = 250;

/** The longest penalty a throttling that goes on reaches by default. */
export const DEFAULT_THROTTLE_PENALTY_MAX_MS = 8_000;

/** What a {@link AwsRateLimiterOptions.onWait} callback is told. */
export interface AwsRateLimitWait {
  readonly account: string;
  readonly region: string;
  readonly cls: AwsOperationClass;
  /** Time spent sleeping for tokens. */
  readonly waitedMs: number;
  /** Whether the acquire got its tokens in the end, or why not. */
  readonly outcome: 'acquired' | 'timeout' | 'aborted';
}

/** Options of an {@link AwsRateLimiter}. */
export interface AwsRateLimiterOptions {
  /**
   * Prefix of every key; the hub state's prefix.
   * @default 'tgfed'
   */
  keyPrefix?: string;
  /**
   * Limits per class, for every account and region; classes left out keep their default.
   * @default DEFAULT_AWS_RATE_LIMITS
   */
  limits?: Partial<Record<AwsOperationClass, AwsRateLimit>>;
  /**
   * Limits for some accounts, regions or classes (an account with a raised quota, a region with
   * lower limits). The most specific match wins: an override naming the account beats one naming
   * the region, which beats one naming only the class; within that, one naming more fields wins.
   * Two overrides naming the same fields with the same values are an error.
   * @default []
   */
  overrides?: readonly AwsRateLimitOverride[];
  /**
   * Longest time an acquire sleeps for tokens. An acquire that would need longer rejects with
   * {@link RateLimitTimeoutError} as soon as that is known (it does not sleep first). 0 never
   * waits.
   * @default 60_000
   */
  maxWaitMs?: number;
  /**
   * Tokens of every bucket the limiter never hands out, so that it serves at most `burst - reserve`
   * calls at once (and never fewer than one). The shared bucket and AWS's refill on different
   * clocks, and a call reaches AWS some milliseconds after its token was taken, later for some
   * calls than for others: calls served exactly at the refill rate can reach AWS closer together
   * than AWS refills, and the one that comes too soon is throttled. A token in reserve absorbs up
   * to one refill interval of such jitter (250 ms at 4 calls a second) for the price of one call
   * of the burst.
   * @default 1
   */
  reserveTokens?: number;
  /**
   * Random numbers in [0, 1) for the jitter added to every sleep, which spreads the retries of
   * workers that wait for the same bucket.
   * @default Math.random
   */
  random?: () => number;
  /**
   * Sleeps `ms`; rejects when `signal` aborts. For tests.
   * @default setTimeout of node:timers/promises
   */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /**
   * Called once per acquire that had to wait or gave up (not for those served at once), when it
   * ends, for metrics. Errors it throws are ignored.
   * @default undefined
   */
  onWait?: (event: AwsRateLimitWait) => void;
  /**
   * FOR TESTS ONLY: the bucket clock in microseconds, passed to the script instead of Redis
   * `TIME`, so a test drives refill deterministically. Production must leave it unset: the point
   * of Redis `TIME` is that the workers' clocks do not matter.
   * @default undefined (Redis TIME)
   */
  nowMicros?: () => number;
}

/** {@link AwsRateLimiterOptions} with every value present and checked. */
export interface CompiledAwsRateLimiterOptions {
  readonly keyPrefix: string;
  readonly limits: Readonly<Record<AwsOperationClass, AwsRateLimit>>;
  /** Sorted most specific first. */
  readonly overrides: readonly AwsRateLimitOverride[];
  readonly maxWaitMs: number;
  readonly reserveTokens: number;
  readonly random: () => number;
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly onWait: ((event: AwsRateLimitWait) => void) | undefined;
  readonly nowMicros: (() => number) | undefined;
}

/** An AWS rate limiter option is missing its mark. */
export class AwsRateLimiterOptionsError extends Error {
  override readonly name = 'AwsRateLimiterOptionsError';
}

/** An acquire would have waited longer than `maxWaitMs` for its tokens. */
export class RateLimitTimeoutError extends Error {
  override readonly name = 'RateLimitTimeoutError';
  readonly account: string;
  readonly region: string;
  readonly cls: AwsOperationClass;
  /** Time already spent sleeping. */
  readonly waitedMs: number;
  /** When the bucket would have had the tokens, counted from now. */
  readonly retryAfterMs: number;

  constructor(fields: {
    account: string;
    region: string;
    cls: AwsOperationClass;
    waitedMs: number;
    retryAfterMs: number;
    maxWaitMs: number;
  }) {
    super(
      `AWS rate limit of ${fields.cls} calls in account ${fields.account} region ` +
        `${fields.region}: tokens in ${fields.retryAfterMs} ms after ${fields.waitedMs} ms of ` +
        `waiting, beyond maxWaitMs ${fields.maxWaitMs}`,
    );
    this.account = fields.account;
    this.region = fields.region;
    this.cls = fields.cls;
    this.waitedMs = fields.waitedMs;
    this.retryAfterMs = fields.retryAfterMs;
  }
}

// The limits the script accepts: a bucket of at most a million tokens refilled at most a million
// times a second keeps every float in the script exact enough.
const MAX_RATE_PER_SECOND = 1_000_000;
const MAX_BURST = 1_000_000;
const MAX_WAIT_MS = 2 ** 31 - 1;
// Throttles this long after a penalty, of calls that took their token after it, lengthen it.
const PENALTY_STREAK_MS = BUCKET_MIN_TTL_MS;
// Jitter up to a fifth of the wait plus a few ms: enough that waiters on one bucket do not all
// retry in the same millisecond, small enough not to waste the refill.
const JITTER_FRACTION = 0.2;
const JITTER_MIN_MS = 5;

function checkPenalty(name: string, ms: number): void {
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_WAIT_MS) {
    throw new RangeError(`${name} must be a number from 0 to ${MAX_WAIT_MS}`);
  }
}

function checkLimit(name: string, limit: AwsRateLimit): AwsRateLimit {
  const { ratePerSecond, burst } = limit;
  if (
    !Number.isFinite(ratePerSecond) ||
    ratePerSecond <= 0 ||
    ratePerSecond > MAX_RATE_PER_SECOND
  ) {
    throw new AwsRateLimiterOptionsError(
      `${name}.ratePerSecond must be a number above 0 and at most ${MAX_RATE_PER_SECOND}`,
    );
  }
  if (!Number.isInteger(burst) || burst < 1 || burst > MAX_BURST) {
    throw new AwsRateLimiterOptionsError(`${name}.burst must be an integer from 1 to ${MAX_BURST}`);
  }
  return { ratePerSecond, burst };
}

function checkKeyPart(name: string, value: string): void {
  // Braces would break the hash tag; a colon would make keys of different buckets ambiguous.
  if (value === '' || /[{}:\s]/.test(value)) {
    throw new RangeError(`${name} must be non-empty without braces, colons or spaces`);
  }
}

function isOperationClass(value: unknown): value is AwsOperationClass {
  return (AWS_OPERATION_CLASSES as readonly unknown[]).includes(value);
}

// Account 4, region 2, class 1: a total order of the matcher shapes, account first.
function specificity(o: AwsRateLimitOverride): number {
  return (
    (o.account !== undefined ? 4 : 0) +
    (o.region !== undefined ? 2 : 0) +
    (o.class !== undefined ? 1 : 0)
  );
}

/** Fills defaults and checks values; throws {@link AwsRateLimiterOptionsError} naming the setting. */
export function compileAwsRateLimiterOptions(
  options: AwsRateLimiterOptions = {},
): CompiledAwsRateLimiterOptions {
  const keyPrefix = options.keyPrefix ?? 'tgfed';
  if (keyPrefix === '' || /[{}]/.test(keyPrefix)) {
    throw new AwsRateLimiterOptionsError('keyPrefix must be non-empty and contain no braces');
  }
  for (const cls of Object.keys(options.limits ?? {})) {
    if (!isOperationClass(cls)) {
      throw new AwsRateLimiterOptionsError(
        `limits.${cls} is not an operation class (${AWS_OPERATION_CLASSES.join(', ')})`,
      );
    }
  }
  const limits = {
    mutate: checkLimit('limits.mutate', options.limits?.mutate ?? DEFAULT_AWS_RATE_LIMITS.mutate),
    describe: checkLimit(
      'limits.describe',
      options.limits?.describe ?? DEFAULT_AWS_RATE_LIMITS.describe,
    ),
    modify: checkLimit('limits.modify', options.limits?.modify ?? DEFAULT_AWS_RATE_LIMITS.modify),
  };
  const seen = new Set<string>();
  const overrides = (options.overrides ?? []).map((o, i) => {
    const name = `overrides[${i}]`;
    if (o.account !== undefined) checkOverridePart(`${name}.account`, o.account);
    if (o.region !== undefined) checkOverridePart(`${name}.region`, o.region);
    if (o.class !== undefined && !isOperationClass(o.class)) {
      throw new AwsRateLimiterOptionsError(
        `${name}.class must be one of ${AWS_OPERATION_CLASSES.join(', ')}`,
      );
    }
    const matcher = JSON.stringify([o.account ?? null, o.region ?? null, o.class ?? null]);
    if (seen.has(matcher)) {
      throw new AwsRateLimiterOptionsError(`${name} matches the same buckets as an earlier one`);
    }
    seen.add(matcher);
    return { account: o.account, region: o.region, class: o.class, ...checkLimit(name, o) };
  });
  overrides.sort((a, b) => specificity(b) - specificity(a));
  const maxWaitMs = options.maxWaitMs ?? 60_000;
  if (!Number.isInteger(maxWaitMs) || maxWaitMs < 0 || maxWaitMs > MAX_WAIT_MS) {
    throw new AwsRateLimiterOptionsError(`maxWaitMs must be an integer from 0 to ${MAX_WAIT_MS}`);
  }
  const reserveTokens = options.reserveTokens ?? 1;
  if (!Number.isInteger(reserveTokens) || reserveTokens < 0 || reserveTokens > MAX_BURST) {
    throw new AwsRateLimiterOptionsError(`reserveTokens must be an integer from 0 to ${MAX_BURST}`);
  }
  return {
    keyPrefix,
    limits,
    overrides,
    maxWaitMs,
    reserveTokens,
    random: options.random ?? Math.random,
    sleep: options.sleep ?? ((ms, signal) => sleepFor(ms, undefined, { signal })),
    onWait: options.onWait,
    nowMicros: options.nowMicros,
  };
}

function checkOverridePart(name: string, value: string): void {
  try {
    checkKeyPart(name, value);
  } catch (err) {
    throw new AwsRateLimiterOptionsError((err as Error).message);
  }
}

/**
 * The class of an ELBv2 action (`RegisterTargets`, or its SDK command name
 * `RegisterTargetsCommand`). Actions of no known family count as `modify`, the smallest limit.
 */
export function operationClassOf(action: string): AwsOperationClass {
  const name = action.endsWith('Command') ? action.slice(0, -'Command'.length) : action;
  if (name === 'RegisterTargets' || name === 'DeregisterTargets') return 'mutate';
  if (name.startsWith('Describe')) return 'describe';
  return 'modify';
}

// The bucket, refilled to `now`. A clock that went back (a failover to a master whose clock is
// behind) refills nothing and restarts from the new clock instead of stalling until it catches
// up. Tokens may be negative after a penalty: that is the debt to repay before the next call.
const refillLua = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
elseif now > updated then
  tokens = tokens + (now - updated) * rate / 1000000
end
if tokens > burst then tokens = burst end
local function store()
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.0f', now))
  local ttl = math.ceil(2000 * (burst - tokens) / rate)
  if ttl < tonumber(ARGV[5]) then ttl = tonumber(ARGV[5]) end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
`;

// ARGV: rate, burst, now µs or '', tokens wanted, min TTL ms. Takes the tokens and returns 0, or
// takes nothing and returns the ms until the bucket holds them (at least 1).
const takeLua = `${refillLua}
local want = tonumber(ARGV[4])
if tokens >= want then
  tokens = tokens - want
  store()
  return 0
end
store()
local waitMs = math.ceil((want - tokens) * 1000 / rate)
if waitMs < 1 then waitMs = 1 end
return waitMs
`;

// ARGV: rate, burst, now µs or '', penalty ms, min TTL ms, longest penalty ms or '', ms since
// the throttled call took its token or ''. Lowers the bucket to the debt of the penalty's ms of
// refill and returns them; penalties do not add up (many workers throttled at once are one
// penalty), and a longer one already in force is kept. With the last two: a call that took its
// token after the last penalty (within PENALTY_STREAK_MS of it) and was throttled all the same
// doubles it, up to the longest; one that took it before is of the throttling already paid for
// and changes nothing.
// The last penalty's length and time live in the bucket's hash (gone with it when idle).
const penalizeLua = `${refillLua}
local ms = tonumber(ARGV[4])
local fresh = true
if ARGV[6] ~= '' and ARGV[7] ~= '' then
  local last = redis.call('HMGET', KEYS[1], 'penaltyMs', 'penaltyAt')
  local lastMs = tonumber(last[1])
  local lastAt = tonumber(last[2])
  if lastMs ~= nil and lastAt ~= nil and now >= lastAt and now - lastAt <= ${PENALTY_STREAK_MS} * 1000 then
    if now - tonumber(ARGV[7]) * 1000 < lastAt then
      ms = lastMs
      fresh = false
    else
      ms = math.min(tonumber(ARGV[6]), math.max(ms, lastMs * 2))
    end
  end
end
if fresh then
  local debt = -(ms * rate / 1000)
  if tokens > debt then tokens = debt end
  store()
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[1], 'penaltyMs', string.format('%.0f', ms), 'penaltyAt', string.format('%.0f', now))
  end
end
return math.floor(ms)
`;

// ARGV: rate, burst, now µs or '', min TTL ms. Takes nothing; returns 0 when the bucket holds a
// token, else the ms until it will (at least 1).
const peekLua = `${refillLua}
if tokens >= 1 then return 0 end
local waitMs = math.ceil((1 - tokens) * 1000 / rate)
if waitMs < 1 then waitMs = 1 end
return waitMs
`;

type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;
const defined = new WeakSet<RedisClient>();

/** Options of one {@link AwsRateLimiter.acquire}. */
export interface AcquireOptions {
  /** Cancels the wait; the acquire rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Tokens to take: one per AWS call. At most the bucket's burst.
   * @default 1
   */
  tokens?: number;
}

/** Outcome of a {@link AwsRateLimiter.tryAcquire}. */
export type TryAcquireResult =
  | { readonly acquired: true }
  | {
      readonly acquired: false;
      /** When the bucket will hold the tokens, unless others take them first. */
      readonly retryAfterMs: number;
    };

/**
 * Rate limits AWS calls of all workers together, by a token bucket per account, region and
 * {@link AwsOperationClass} in Redis (see the key schema at the top of this file). Refill uses
 * Redis `TIME`, so the workers' clock skew does not matter. Works on a single Redis, Sentinel and
 * Redis Cluster alike.
 */
export class AwsRateLimiter {
  readonly #redis: RedisClient;
  readonly #options: CompiledAwsRateLimiterOptions;

  constructor(redis: RedisClient, options?: AwsRateLimiterOptions) {
    this.#redis = redis;
    this.#options = compileAwsRateLimiterOptions(options);
    if (!defined.has(redis)) {
      // defineCommand runs EVALSHA and falls back to EVAL, on a Cluster client too.
      redis.defineCommand('tgfedAwsBucketTake', { lua: takeLua, numberOfKeys: 1 });
      redis.defineCommand('tgfedAwsBucketPenalize', { lua: penalizeLua, numberOfKeys: 1 });
      redis.defineCommand('tgfedAwsBucketPeek', { lua: peekLua, numberOfKeys: 1 });
      defined.add(redis);
    }
  }

  /** The compiled options. */
  get options(): CompiledAwsRateLimiterOptions {
    return this.#options;
  }

  /** The Redis key of a bucket. */
  bucketKey(account: string, region: string, cls: AwsOperationClass): string {
    checkKeyPart('account', account);
    checkKeyPart('region', region);
    if (!isOperationClass(cls)) throw new RangeError(`unknown operation class ${String(cls)}`);
    return `${this.#options.keyPrefix}:{aws:${account}:${region}}:bucket:${cls}`;
  }

  /** The limit of a bucket: the most specific override, else the class's limit. */
  limitFor(account: string, region: string, cls: AwsOperationClass): AwsRateLimit {
    const match = this.#options.overrides.find(
      (o) =>
        (o.account === undefined || o.account === account) &&
        (o.region === undefined || o.region === region) &&
        (o.class === undefined || o.class === cls),
    );
    if (match !== undefined) return { ratePerSecond: match.ratePerSecond, burst: match.burst };
    return this.#options.limits[cls];
  }

  /** The bucket the limiter keeps for a limit: its burst less the reserve, at least one token. */
  #bucketFor(account: string, region: string, cls: AwsOperationClass): AwsRateLimit {
    const limit = this.limitFor(account, region, cls);
    const burst = Math.max(1, limit.burst - this.#options.reserveTokens);
    return { ratePerSecond: limit.ratePerSecond, burst };
  }

  /** Takes tokens if the bucket has them now; never waits. */
  async tryAcquire(
    account: string,
    region: string,
    cls: AwsOperationClass,
    tokens = 1,
  ): Promise<TryAcquireResult> {
    const key = this.bucketKey(account, region, cls);
    const limit = this.#bucketFor(account, region, cls);
    if (!Number.isInteger(tokens) || tokens < 1 || tokens > limit.burst) {
      throw new RangeError(`tokens must be an integer from 1 to the burst ${limit.burst}`);
    }
    const waitMs = Number(
      await this.#command('tgfedAwsBucketTake')(
        key,
        limit.ratePerSecond,
        limit.burst,
        this.#now(),
        tokens,
        BUCKET_MIN_TTL_MS,
      ),
    );
    return waitMs === 0 ? { acquired: true } : { acquired: false, retryAfterMs: waitMs };
  }

  /**
   * Takes tokens (one per AWS call), sleeping until the bucket has them. Rejects with the
   * signal's reason when aborted, and with {@link RateLimitTimeoutError} when the tokens would
   * come later than `maxWaitMs` (time spent sleeping; Redis round trips do not count). Waiters
   * are not queued: each one retries when the bucket should have refilled, plus jitter.
   */
  async acquire(
    account: string,
    region: string,
    cls: AwsOperationClass,
    options: AcquireOptions = {},
  ): Promise<{ waitedMs: number }> {
    const { signal, tokens = 1 } = options;
    const { maxWaitMs, random, sleep } = this.#options;
    let waitedMs = 0;
    for (;;) {
      if (signal?.aborted === true) {
        this.#reportWait(account, region, cls, waitedMs, 'aborted');
        signal.throwIfAborted();
      }
      const attempt = await this.tryAcquire(account, region, cls, tokens);
      if (attempt.acquired) {
        this.#reportWait(account, region, cls, waitedMs, 'acquired');
        return { waitedMs };
      }
      const budgetMs = maxWaitMs - waitedMs;
      if (attempt.retryAfterMs > budgetMs) {
        this.#reportWait(account, region, cls, waitedMs, 'timeout');
        throw new RateLimitTimeoutError({
          account,
          region,
          cls,
          waitedMs,
          retryAfterMs: attempt.retryAfterMs,
          maxWaitMs,
        });
      }
      const jitterMs = Math.floor(
        random() * (attempt.retryAfterMs * JITTER_FRACTION + JITTER_MIN_MS),
      );
      const sleepMs = Math.min(attempt.retryAfterMs + jitterMs, budgetMs);
      try {
        await sleep(sleepMs, signal);
      } catch (err) {
        if (signal?.aborted === true) {
          this.#reportWait(account, region, cls, waitedMs, 'aborted');
          signal.throwIfAborted();
        }
        throw err;
      }
      waitedMs += sleepMs;
    }
  }

  /**
   * Waits until the bucket holds a token, without taking it; gives up (and resolves) after
   * `maxWaitMs`. A reconcile calls this before it reads the desired state, so that when an
   * account's calls are scarce, the changes arriving while it waits join its plan instead of
   * needing calls of their own: fewer, fuller calls exactly when calls are the bottleneck.
   */
  async whenAvailable(
    account: string,
    region: string,
    cls: AwsOperationClass,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ waitedMs: number }> {
    const { signal } = options;
    const { maxWaitMs, random, sleep } = this.#options;
    const key = this.bucketKey(account, region, cls);
    const limit = this.#bucketFor(account, region, cls);
    let waitedMs = 0;
    for (;;) {
      signal?.throwIfAborted();
      const retryAfterMs = Number(
        await this.#command('tgfedAwsBucketPeek')(
          key,
          limit.ratePerSecond,
          limit.burst,
          this.#now(),
          BUCKET_MIN_TTL_MS,
        ),
      );
      const budgetMs = maxWaitMs - waitedMs;
      if (retryAfterMs === 0 || budgetMs <= 0) return { waitedMs };
      const jitterMs = Math.floor(random() * (retryAfterMs * JITTER_FRACTION + JITTER_MIN_MS));
      const sleepMs = Math.min(retryAfterMs + jitterMs, budgetMs);
      await sleep(sleepMs, signal);
      waitedMs += sleepMs;
    }
  }

  /**
   * Reports that AWS throttled a call of this bucket anyway (another client uses the account, or
   * its real limit is lower): empties the bucket so that no worker gets a token for about `ms`.
   * Every worker backs off together. Penalties do not add up: many workers throttled at once
   * cost one penalty, and a longer one already in force is kept.
   *
   * With `streak`, a lone throttle costs `ms` and a throttling that goes on costs more: a call
   * that took its token after the last penalty (within {@link PENALTY_STREAK_MS} of it) and was
   * throttled all the same doubles the penalty, up to `streak.maxMs`; a call that took its
   * token before the last penalty was throttled by what that penalty answered, and adds
   * nothing. Resolves to the penalty's length in ms.
   */
  async penalize(
    account: string,
    region: string,
    cls: AwsOperationClass,
    ms: number,
    streak?: { readonly maxMs: number; readonly tokenTakenMsAgo: number },
  ): Promise<number> {
    checkPenalty('ms', ms);
    if (streak !== undefined) {
      checkPenalty('streak.maxMs', streak.maxMs);
      checkPenalty('streak.tokenTakenMsAgo', streak.tokenTakenMsAgo);
    }
    const limit = this.#bucketFor(account, region, cls);
    const applied = await this.#command('tgfedAwsBucketPenalize')(
      this.bucketKey(account, region, cls),
      limit.ratePerSecond,
      limit.burst,
      this.#now(),
      ms,
      BUCKET_MIN_TTL_MS,
      streak === undefined ? '' : Math.max(ms, streak.maxMs),
      streak === undefined ? '' : Math.floor(streak.tokenTakenMsAgo),
    );
    return Number(applied);
  }

  #now(): string {
    const nowMicros = this.#options.nowMicros;
    return nowMicros === undefined ? '' : String(Math.floor(nowMicros()));
  }

  #reportWait(
    account: string,
    region: string,
    cls: AwsOperationClass,
    waitedMs: number,
    outcome: AwsRateLimitWait['outcome'],
  ): void {
    const onWait = this.#options.onWait;
    if (onWait === undefined || (waitedMs === 0 && outcome === 'acquired')) return;
    try {
      onWait({ account, region, cls, waitedMs, outcome });
    } catch {
      // Metrics must not fail an AWS call.
    }
  }

  #command(name: string): ScriptCommand {
    const run = (this.#redis as unknown as Record<string, ScriptCommand>)[name];
    if (run === undefined) throw new Error(`${name} is not defined on this client`);
    return run.bind(this.#redis);
  }
}

import { trace } from '@opentelemetry/api';
import type { Logger, TargetGroup } from '../../shared/index.js';
import { SpanAttribute, jitteredBackoff, silentLogger } from '../../shared/index.js';
import { AwsCallError, PERSISTENT_AWS_ERRORS } from '../aws/aws-errors.js';
import {
  DEFAULT_THROTTLE_PENALTY_MAX_MS,
  DEFAULT_THROTTLE_PENALTY_MS,
  type AwsOperationClass,
} from '../aws/aws-rate-limiter.js';
import {
  isPresent,
  type TargetGroupApi,
  type TargetGroupApiFactory,
  type TargetHealthState,
} from '../aws/target-group-api.js';
import { targetKey } from '../federation/desired-targets.js';
import type { GroupDesiredState } from '../federation/target-group-desired-state.js';
import { chunk, planReconcile, type GuardBypass, type PlannedTarget } from './reconcile-plan.js';
import {
  newHeldOperationId,
  type HeldDeregistration,
  type ReconcileCalls,
  type ReconcileOutcomeKind,
  type ReconcileRecord,
  type TargetGroupRecord,
  type TargetGroupRecords,
} from './target-group-records.js';

/** The operation classes of AWS's ELBv2 throttling buckets. */
export type AwsCallClass = AwsOperationClass;

/** The shared AWS rate limit as the reconcile uses it (an `AwsRateLimiter`). */
export interface AwsCallLimiter {
  /** Waits for a token of the account's and region's bucket of this class. */
  acquire(
    account: string,
    region: string,
    cls: AwsCallClass,
    options?: { signal?: AbortSignal },
  ): Promise<unknown>;
  /**
   * Empties the bucket for `ms` after AWS throttled a call anyway; with `streak`, for longer
   * while throttles go on (see `AwsRateLimiter.penalize`). Resolves to the penalty's length in
   * ms, when known.
   */
  penalize(
    account: string,
    region: string,
    cls: AwsCallClass,
    ms: number,
    streak?: { readonly maxMs: number; readonly tokenTakenMsAgo: number },
  ): Promise<unknown>;
  /** Waits until the bucket holds a token without taking it (bounded); optional. */
  whenAvailable?(
    account: string,
    region: string,
    cls: AwsCallClass,
    options?: { signal?: AbortSignal },
  ): Promise<unknown>;
}

/** Resolves a group's desired state (a `TargetGroupDesiredState`). */
export interface DesiredGroupSource {
  /**
   * @param since a {@link mark} taken when the reconcile started: reads begun after it may be
   *   shared with other groups (see `TargetGroupDesiredState.resolve`)
   */
  resolve(targetGroupArn: string, since?: number): Promise<GroupDesiredState>;
  mark?(): number;
  /**
   * The feeding clusters still streaming their initial sync, found without resolving (see
   * `TargetGroupDesiredState.initialSyncClusters`).
   */
  initialSyncClusters?(targetGroupArn: string): Promise<string[]>;
  /**
   * The group's definition from the bindings alone, without resolving (see
   * `TargetGroupDesiredState.definition`): what a describe begun during the resolution needs.
   */
  definition?(targetGroupArn: string): Promise<TargetGroup | undefined>;
  /**
   * The feeding clusters in their initial sync or awaiting a resync, from fresh statuses (see
   * `TargetGroupDesiredState.holdingClusters`).
   */
  holdingClusters?(targetGroupArn: string): Promise<string[]>;
  /**
   * Of a resolution's unsettled pool groups, those whose stored shares still lack what it placed
   * there (see `TargetGroupDesiredState.stillUnsettled`). Without it, all of them.
   */
  stillUnsettled?(
    groups: readonly string[],
    probes: ReadonlyMap<string, string>,
  ): Promise<string[]>;
}

/**
 * A nudge made up to this long after the reads a reconcile rests on began is not settled by it
 * (`TargetGroupRecords.settleNudge`): nudges and reconciles are timed by different workers'
 * clocks, which must agree within this. A clock further off can only settle a nudge early, whose
 * group then waits for its next change or drift check.
 */
const NUDGE_CLOCK_MARGIN_MS = 250;

/**
 * A group whose waiting targets stop settling at some moment comes back this long after it: the
 * resolution then sees them settled (the claims' times are Redis's, converted to this clock).
 */
const SETTLED_MARGIN_MS = 100;

/** Options of {@link TargetGroupReconciler}. */
export interface TargetGroupReconcilerOptions {
  /**
   * Targets per RegisterTargets / DeregisterTargets call. ELBv2 documents no maximum. Calls are
   * the scarce resource (~4 mutating calls/s per account and region, shared by every group), so
   * chunks are large: a 1,000-target group (the default quota) takes two calls. 500 targets
   * keep a request near 50 KB of query string, and a refused target costs a bisection of at
   * most 9 extra calls.
   * @default 500
   */
  chunkSize?: number;
  /**
   * The mass-deregistration guard: a reconcile that would remove more than this share of
   * tgfed's targets in a group is held until an operator releases it or its binding is deleted.
   * @default 0.5
   */
  guardMaxShare?: number;
  /**
   * Removals of fewer targets than this are never held (scaling a small service down is
   * normal); 1 holds every removal above the share.
   * @default 5
   */
  guardMinTargets?: number;
  /**
   * How often each group is described to find and repair drift (changes made outside tgfed,
   * lost calls). The only Describe calls in steady state.
   * @default 300000
   */
  driftIntervalMs?: number;
  /**
   * Random spread of drift checks, as a share of the interval, so groups do not describe in
   * lockstep.
   * @default 0.2
   */
  driftJitter?: number;
  /**
   * Whether draining targets count toward the group's capacity. AWS does not document it, so
   * tgfed assumes they do: a full group takes new targets only as old ones finish draining.
   * @default true
   */
  drainingCountsTowardCapacity?: boolean;
  /**
   * How soon a group comes back while something waits on time rather than on a change: targets
   * waiting for room, deregistrations blocked until clusters resync, or a stale cluster's targets
   * whose health decides whether they stay.
   * @default 15000
   */
  followUpMs?: number;
  /**
   * While targets wait for room in a full group, how long a describe (which finds the draining
   * targets gone) is trusted: reconciles within it plan from the group's records. A busy full
   * group (a rolling restart of a full pool) is reconciled every debounce window, and a describe
   * of a thousand targets at each was a visible share of the workers' CPU; what waits for room
   * waits for draining to end, which takes the target group's deregistration delay.
   * @default 5000
   */
  capacityDescribeIntervalMs?: number;
  /** First retry delay after a failed reconcile (full jitter, doubling). @default 1000 */
  retryInitialMs?: number;
  /**
   * Ceiling of the retry delay after throttling, a 5xx, a network error or an unknown error.
   * These pass on their own, so the ceiling is short: a group whose clusters have stopped
   * changing is not left waiting long after AWS recovers. The account's shared bucket, emptied
   * on every throttle, is what spaces the calls during a storm.
   * @default 30000
   */
  transientRetryMaxMs?: number;
  /** Delay after a persistent error (not found, access denied, group full). @default 300000 */
  retryMaxMs?: number;
  /**
   * How long the account's bucket stays empty after AWS throttled a call anyway; doubled for
   * each throttle of a call that took its token after the last penalty, up to
   * `throttlePenaltyMaxMs` (see `AwsRateLimiter.penalize`). @default 250
   */
  throttlePenaltyMs?: number;
  /** The longest penalty a throttling that goes on reaches. @default 8000 */
  throttlePenaltyMaxMs?: number;
  /** @default Date.now */
  clock?: () => number;
  /** @default Math.random */
  random?: () => number;
  /** @default silentLogger() */
  logger?: Logger;
}

/** {@link TargetGroupReconcilerOptions} with every value present and checked. */
export type CompiledTargetGroupReconcilerOptions = Required<
  Omit<TargetGroupReconcilerOptions, 'logger'>
> & { logger: Logger };

/** A reconciler option is out of range. */
export class ReconcilerOptionsError extends Error {
  override readonly name = 'ReconcilerOptionsError';
}

function inRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new ReconcilerOptionsError(`${name} must be from ${min} to ${max}, got ${value}`);
  }
  return value;
}

/** Fills defaults and checks ranges; throws {@link ReconcilerOptionsError} naming the setting. */
export function compileTargetGroupReconcilerOptions(
  o: TargetGroupReconcilerOptions = {},
): CompiledTargetGroupReconcilerOptions {
  const retryInitialMs = inRange('retryInitialMs', o.retryInitialMs ?? 1000, 1, 3_600_000);
  return {
    chunkSize: Math.floor(inRange('chunkSize', o.chunkSize ?? 500, 1, 1000)),
    guardMaxShare: inRange('guardMaxShare', o.guardMaxShare ?? 0.5, 0, 1),
    guardMinTargets: Math.floor(inRange('guardMinTargets', o.guardMinTargets ?? 5, 1, 1e9)),
    driftIntervalMs: inRange('driftIntervalMs', o.driftIntervalMs ?? 300_000, 1000, 86_400_000),
    driftJitter: inRange('driftJitter', o.driftJitter ?? 0.2, 0, 1),
    drainingCountsTowardCapacity: o.drainingCountsTowardCapacity ?? true,
    followUpMs: inRange('followUpMs', o.followUpMs ?? 15_000, 100, 3_600_000),
    capacityDescribeIntervalMs: inRange(
      'capacityDescribeIntervalMs',
      o.capacityDescribeIntervalMs ?? 5_000,
      0,
      3_600_000,
    ),
    retryInitialMs,
    transientRetryMaxMs: inRange(
      'transientRetryMaxMs',
      o.transientRetryMaxMs ?? 30_000,
      retryInitialMs,
      86_400_000,
    ),
    retryMaxMs: inRange('retryMaxMs', o.retryMaxMs ?? 300_000, retryInitialMs, 86_400_000),
    throttlePenaltyMs: inRange(
      'throttlePenaltyMs',
      o.throttlePenaltyMs ?? DEFAULT_THROTTLE_PENALTY_MS,
      0,
      600_000,
    ),
    throttlePenaltyMaxMs: inRange(
      'throttlePenaltyMaxMs',
      o.throttlePenaltyMaxMs ?? DEFAULT_THROTTLE_PENALTY_MAX_MS,
      o.throttlePenaltyMs ?? DEFAULT_THROTTLE_PENALTY_MS,
      600_000,
    ),
    clock: o.clock ?? Date.now,
    random: o.random ?? Math.random,
    logger: o.logger ?? silentLogger(),
  };
}

/** What started a reconcile. */
export interface ReconcileContext {
  readonly reason: string;
  /** W3C `traceparent`s of the batches this reconcile applies (for span links). */
  readonly traceLinks?: readonly string[];
  readonly signal?: AbortSignal;
}

/** The result of one reconcile: its record, and the held operation if any. */
export interface ReconcileResult {
  readonly targetGroupArn: string;
  readonly record: ReconcileRecord;
  readonly held: HeldDeregistration | undefined;
  /** Targets found different from the cache by this reconcile's describe (drift). */
  readonly driftFound: number;
  /** When the group is next due without a change. */
  readonly nextDueAtMs: number;
}

/** Stops a reconcile at the first AWS call that failed for a reason other than a bad target. */
class StopReconcile extends Error {
  override readonly name = 'StopReconcile';
  constructor(readonly failure: AwsCallError) {
    super(failure.message, { cause: failure });
  }
}

interface Progress {
  readonly calls: ReconcileCalls;
  registered: number;
  deregistered: number;
  readonly invalid: string[];
}

/** What the steps of one reconcile share. */
interface ReconcileRun {
  readonly arn: string;
  readonly api: TargetGroupApi;
  readonly definition: TargetGroup;
  /** The group's targets as they are now, updated after every call. */
  readonly live: Map<string, TargetHealthState>;
  readonly owned: Set<string>;
  readonly progress: Progress;
  readonly context: ReconcileContext;
  /**
   * The record of the last call's outcome (before the first call, the reconcile's begin), still
   * being written: the next call waits for it with its token, not before asking for the token.
   * Awaited before the reconcile finishes.
   */
  recording: Promise<void>;
}

const MAX_LISTED_INVALID = 20;
/** Region and account of a target group ARN. */
const ARN_SCOPE = /^arn:[^:]+:elasticloadbalancing:([^:]+):(\d{12}):/;

/** A describe begun before the resolution ended (see `TargetGroupReconciler#describeEarly`). */
interface EarlyDescribe {
  /** How it reached the group ({@link locationKey}). */
  readonly location: string;
  readonly described: Promise<Map<string, TargetHealthState>>;
}

/** The account, region and role a group is reached with. */
function locationKey(definition: TargetGroup): string {
  return JSON.stringify([
    definition.accountId,
    definition.region,
    definition.roleArn,
    definition.externalId,
  ]);
}

/**
 * Whether the group's records call for a describe, whatever the resolution says: the cache is
 * not trusted, an operator asked, targets wait for room (only a describe tells whether the
 * draining ones are gone), or the drift check is due. (A stale cluster's health watched is the
 * resolution's reason.)
 */
function describeDue(
  stored: TargetGroupRecord,
  startedAtMs: number,
  capacityDescribeIntervalMs: number,
): boolean {
  return (
    !stored.actualValid ||
    stored.refreshRequested ||
    ((stored.last?.waitingForCapacity ?? 0) > 0 &&
      startedAtMs - stored.describedAtMs >= capacityDescribeIntervalMs) ||
    startedAtMs >= stored.nextDriftAtMs
  );
}

/** Attempts of one AWS call that AWS keeps throttling, before the reconcile fails. */
const THROTTLED_CALL_ATTEMPTS = 3;

/**
 * The longest penalty a reconcile waits out to make a throttled call again. A longer one means
 * the throttling goes on (it doubled): the reconcile ends `throttled`, leaving its worker slot
 * to other groups, and its group backs off (`transientRetryMaxMs`).
 */
const IN_RECONCILE_PENALTY_MAX_MS = 1_000;

/**
 * One reconcile of one target group (DESIGN.md, Reconcile and Safety): resolve the desired
 * targets, take the actual ones from the cache (or describe the group when the cache is not
 * trusted, a drift check is due, an operator asked, or a stale cluster's health matters), plan
 * with {@link planReconcile}, record ownership, register, deregister, and record the outcome.
 *
 * Every AWS call waits for a token of the account's shared bucket. A throttled call empties
 * the bucket for everyone and is made again with the next token; after
 * {@link THROTTLED_CALL_ATTEMPTS} attempts it ends the reconcile (`throttled`); a persistent error (not found,
 * access denied, quota) ends it as `failed` and brings the group back only after `retryMaxMs`;
 * a throttle, a 5xx or an unknown error brings it back after a full-jitter doubling delay of at
 * most `transientRetryMaxMs` (any change brings it back sooner); a refused target is isolated by bisecting its chunk and reported, and the rest is applied.
 * The reconcile itself throws only when Redis fails, so the queue retries it.
 */
export class TargetGroupReconciler {
  readonly options: CompiledTargetGroupReconcilerOptions;
  readonly #desired: DesiredGroupSource;
  readonly #records: TargetGroupRecords;
  /**
   * Pool groups this process nudged due now for a moved target (see {@link nudgeUnsettled}),
   * with the `basisAtMs` of the desired state that did: every group reconciled from one shared
   * resolution would nudge the same group again.
   */
  readonly #nudgedNow = new Map<string, number>();
  readonly #aws: TargetGroupApiFactory;
  readonly #limiter: AwsCallLimiter;
  readonly #log: Logger;

  constructor(
    deps: {
      desired: DesiredGroupSource;
      records: TargetGroupRecords;
      aws: TargetGroupApiFactory;
      limiter: AwsCallLimiter;
    },
    options: TargetGroupReconcilerOptions = {},
  ) {
    this.options = compileTargetGroupReconcilerOptions(options);
    this.#desired = deps.desired;
    this.#records = deps.records;
    this.#aws = deps.aws;
    this.#limiter = deps.limiter;
    this.#log = this.options.logger.child({ component: 'reconciler' });
  }

  async reconcile(arn: string, context: ReconcileContext): Promise<ReconcileResult> {
    const o = this.options;
    // Every change this reconcile must apply was written before it started.
    const since = this.#desired.mark?.();
    const stillHeld = await this.#stillWaitingForSync(arn, context);
    if (stillHeld !== undefined) return stillHeld;
    // Plan as late as the account's mutate bucket allows (see AwsRateLimiter.whenAvailable):
    // while it is empty, changes keep arriving and this reconcile's calls carry them all.
    const scope = ARN_SCOPE.exec(arn);
    if (scope !== null && this.#limiter.whenAvailable !== undefined) {
      await this.#limiter.whenAvailable(scope[2]!, scope[1]!, 'mutate', {
        signal: context.signal,
      });
    }
    const startedAtMs = o.clock();
    // The group's records are read while its desired state is resolved: nothing else writes
    // them meanwhile (a group has one reconcile at a time), and a reconcile is a round trip
    // shorter. Every round trip counts: a busy group's changes wait for the reconcile before.
    const reading = this.#records.read(arn);
    reading.catch(() => undefined);
    const progress: Progress = {
      calls: { describe: 0, register: 0, deregister: 0 },
      registered: 0,
      deregistered: 0,
      invalid: [],
    };
    // A describe the records call for does not wait for the resolution (which may wait for
    // its turn behind other pools': seconds after a cold start's sync).
    const early = this.#describeEarly(arn, reading, startedAtMs, progress, context.signal);
    early.catch(() => undefined);
    const desired = await this.#desired.resolve(arn, since);
    const stored = await reading;
    // A nudge made before the reads this reconcile rests on began asked for nothing it does not
    // do: it is taken off as the reconcile finishes (after a cold start, every group was nudged
    // for a safety net and by its pool's other groups, and reconciled again for nothing).
    const nudgesMadeBeforeMs = desired.basisAtMs - NUDGE_CLOCK_MARGIN_MS;
    const definition = desired.targetGroup ?? stored.definition;
    if (definition === undefined) {
      // Never targeted by a binding that a worker saw: nothing is known to be ours.
      const record = this.#record('in-sync', context, startedAtMs, progress, {
        desired: 0,
        actual: 0,
        owned: stored.owned.size,
      });
      const nextDueAtMs = startedAtMs + this.#driftDelay();
      await this.#records.finish(arn, {
        record,
        actualValid: false,
        held: undefined,
        nextDueAtMs,
        nudgesMadeBeforeMs,
      });
      return { targetGroupArn: arn, record, held: undefined, driftFound: 0, nextDueAtMs };
    }

    // The records say a reconcile is under way (their actual cache is not to be trusted until
    // it finishes) before any AWS call changes the group: the first call waits for this write
    // with its token, instead of the reconcile waiting for it before planning (a round trip less
    // for every change that waits for this reconcile).
    const begun = this.#records.begin(arn, desired.targetGroup);
    begun.catch(() => undefined);
    /** The records' writes the first call waits for with its token: the begin, the describe. */
    let recording: Promise<void> = begun;
    // The consumer's reconcile span: where this group lives, for searching traces by account.
    trace.getActiveSpan()?.setAttributes({
      [SpanAttribute.CLOUD_PROVIDER]: 'aws',
      [SpanAttribute.CLOUD_ACCOUNT_ID]: definition.accountId,
      [SpanAttribute.CLOUD_REGION]: definition.region,
    });
    const api = this.#api(arn, definition);
    const watchesHealth = [...desired.targets.values()].some((t) => t.withdrawIfUnhealthy);
    let actual = stored.actual;
    let nextDriftAtMs = stored.nextDriftAtMs;
    let driftFound = 0;
    let failure: AwsCallError | undefined;
    let held: HeldDeregistration | undefined;
    let plan: ReturnType<typeof planReconcile> | undefined;
    let waitingForSync = 0;
    const owned = new Set(stored.owned);

    try {
      if (watchesHealth || describeDue(stored, startedAtMs, o.capacityDescribeIntervalMs)) {
        const ahead = await early;
        const described =
          ahead !== undefined && ahead.location === locationKey(definition)
            ? await ahead.described
            : await this.#describe(api, definition, progress, context.signal);
        if (stored.actualValid) driftFound = countDifferences(stored.actual, described);
        actual = described;
        nextDriftAtMs = o.clock() + this.#driftDelay();
        // Written while the plan is made and the first call takes its token, like the begin:
        // a round trip less before every first call after a cold start's sync.
        const describedWrite = this.#records.described(arn, described, o.clock(), nextDriftAtMs);
        recording = Promise.all([begun, describedWrite]).then(() => undefined);
        recording.catch(() => undefined);
      }

      const released = stored.held?.releasedBy !== undefined;
      const bindingDeleted = desired.bindings.length === 0 && !desired.deregistrationsBlocked;
      const bypass: GuardBypass | undefined = bindingDeleted
        ? 'binding-deleted'
        : released
          ? 'released'
          : undefined;
      const planned = planReconcile({
        desired: desired.targets,
        actual,
        owned,
        capacity: definition.capacity > 0 ? definition.capacity : 1000,
        availabilityZone: definition.availabilityZone,
        deregistrationsBlocked: desired.deregistrationsBlocked,
        drainingCountsTowardCapacity: o.drainingCountsTowardCapacity,
        guard: { maxShare: o.guardMaxShare, minTargets: o.guardMinTargets },
        bypass,
      });
      // While a feeding cluster streams its initial sync, its endpoints are still arriving:
      // registering now would take a call per batch. They wait and go in one call once it is done
      // (its status change brings the group back). Deregistrations are blocked then anyway.
      waitingForSync =
        desired.initialSyncClusters.length > 0
          ? planned.registerFirst.length + planned.registerAfter.length
          : 0;
      plan = waitingForSync > 0 ? { ...planned, registerFirst: [], registerAfter: [] } : planned;
      if (plan.held !== undefined) {
        held =
          stored.held !== undefined && stored.held.releasedBy === undefined
            ? {
                ...stored.held,
                deregistrations: plan.held.deregistrations,
                targetsBefore: plan.held.targetsBefore,
              }
            : {
                id: newHeldOperationId(),
                targetGroupArn: arn,
                deregistrations: plan.held.deregistrations,
                targetsBefore: plan.held.targetsBefore,
                reason: `would remove ${plan.held.deregistrations} of ${plan.held.targetsBefore} targets (more than ${Math.round(o.guardMaxShare * 100)}%)`,
                heldSinceMs: o.clock(),
              };
        this.#log.warn(
          { targetGroupArn: arn, held: held.id, deregistrations: held.deregistrations },
          'mass deregistration held by the guard',
        );
      }

      if (plan.adopt.length > 0) {
        await this.#records.claim(arn, plan.adopt);
        for (const key of plan.adopt) owned.add(key);
      }
      const live = new Map(actual);
      const run: ReconcileRun = {
        arn,
        api,
        definition,
        live,
        owned,
        progress,
        context,
        recording,
      };
      try {
        await this.#register(run, plan.registerFirst);
        await this.#deregister(run, plan.deregister);
        await this.#register(run, plan.registerAfter);
      } finally {
        await run.recording;
      }
      if (plan.disown.length > 0) {
        await this.#records.disown(arn, plan.disown);
        for (const key of plan.disown) owned.delete(key);
      }
      actual = live;
    } catch (err) {
      if (!(err instanceof StopReconcile)) throw err;
      failure = err.failure;
    }
    // Awaited by the first call, if any.
    await recording;
    if (
      failure?.errorClass === 'not-found' &&
      desired.bindings.length === 0 &&
      !desired.deregistrationsBlocked
    ) {
      // No binding uses the group any more and it is gone: nothing is left to withdraw, so
      // the reconcile is done (else TgfedTargetGroupNotFound would fire for it forever).
      await this.#records.disown(arn, [...owned]);
      owned.clear();
      actual = new Map();
      failure = undefined;
    }

    const consecutiveFailures =
      failure === undefined ? 0 : (stored.last?.consecutiveFailures ?? 0) + 1;
    const mutated = progress.calls.register + progress.calls.deregister > 0;
    const outcome: ReconcileOutcomeKind =
      failure !== undefined
        ? failure.errorClass === 'throttling'
          ? 'throttled'
          : 'failed'
        : held !== undefined
          ? 'held'
          : mutated
            ? 'applied'
            : 'in-sync';
    const record = this.#record(
      outcome,
      context,
      startedAtMs,
      progress,
      { desired: desired.targets.size, actual: countPresent(actual), owned: owned.size },
      {
        waitingForCapacity: plan?.waitingForCapacity ?? 0,
        waitingForSync,
        deregistrationsBlocked: plan?.blockedDeregistrations ?? 0,
        consecutiveFailures,
        ...(failure === undefined
          ? {}
          : { errorClass: failure.errorClass, error: failure.message }),
      },
    );

    const now = o.clock();
    let nextDueAtMs = Math.max(nextDriftAtMs, now);
    if (failure !== undefined) {
      nextDueAtMs = now + this.#retryDelay(failure, consecutiveFailures);
    } else if (
      plan !== undefined &&
      (plan.waitingForCapacity > 0 ||
        waitingForSync > 0 ||
        plan.blockedDeregistrations > 0 ||
        plan.watchedForHealth > 0)
    ) {
      nextDueAtMs = Math.min(nextDueAtMs, now + o.followUpMs);
    }
    // Targets waiting for room that a pool placement keeps here only while they settle: back as
    // they stop, when the next resolution may place them where there is room.
    if (
      failure === undefined &&
      (plan?.waitingForCapacity ?? 0) > 0 &&
      desired.settlesAtMs !== undefined &&
      desired.settlesAtMs >= now
    ) {
      nextDueAtMs = Math.min(nextDueAtMs, desired.settlesAtMs + SETTLED_MARGIN_MS);
    }
    // The pool's other groups are looked at while the record is written: neither waits for the
    // other, and a busy group's next reconcile waits for both.
    await Promise.all([
      this.#records.finish(arn, {
        record,
        // A persistent error or an unknown one may mean the group changed: describe next time.
        actualValid: failure === undefined || failure.errorClass === 'throttling',
        held,
        nextDueAtMs,
        nudgesMadeBeforeMs,
      }),
      this.#nudgeUnsettled(desired),
    ]);
    if (waitingForSync > 0 || (plan?.blockedDeregistrations ?? 0) > 0) {
      await this.#nudgeIfHoldEnded(arn);
    }
    const log =
      failure === undefined ? this.#log.debug.bind(this.#log) : this.#log.warn.bind(this.#log);
    log(
      {
        targetGroupArn: arn,
        outcome,
        reason: context.reason,
        registered: progress.registered,
        deregistered: progress.deregistered,
        calls: progress.calls,
        ...(failure === undefined ? {} : { err: failure }),
      },
      'target group reconciled',
    );
    return { targetGroupArn: arn, record, held, driftFound, nextDueAtMs };
  }

  /**
   * While the last reconcile held its registrations for a cluster's initial sync and that
   * cluster is still syncing, the reconcile can do nothing: registrations wait, and
   * deregistrations are blocked until the cluster has resynced. It is recorded as such, with
   * the last resolution's counts, without resolving the pool again (at fleet scale, resolving
   * 225 groups' pools every debounce window of the sync took the workers' CPU from the sync
   * itself). The cluster's status change when it is done brings the group back.
   */
  async #stillWaitingForSync(
    arn: string,
    context: ReconcileContext,
  ): Promise<ReconcileResult | undefined> {
    // The syncing clusters first: outside a sync that costs no read at all.
    const syncing = (await this.#desired.initialSyncClusters?.(arn)) ?? [];
    if (syncing.length === 0) return undefined;
    const summary = await this.#records.summary(arn);
    const last = summary.last;
    if (last === undefined || (last.waitingForSync ?? 0) === 0) return undefined;
    const o = this.options;
    const startedAtMs = o.clock();
    const none: Progress = {
      calls: { describe: 0, register: 0, deregister: 0 },
      registered: 0,
      deregistered: 0,
      invalid: [],
    };
    const record = this.#record(
      'in-sync',
      context,
      startedAtMs,
      none,
      { desired: last.desired, actual: last.actual, owned: last.owned },
      {
        waitingForCapacity: last.waitingForCapacity,
        waitingForSync: last.waitingForSync,
        deregistrationsBlocked: last.deregistrationsBlocked,
        consecutiveFailures: last.consecutiveFailures,
      },
    );
    const nextDueAtMs = startedAtMs + o.followUpMs;
    await this.#records.noteUnchanged(arn, record, nextDueAtMs);
    return { targetGroupArn: arn, record, held: summary.held, driftFound: 0, nextDueAtMs };
  }

  #record(
    outcome: ReconcileOutcomeKind,
    context: ReconcileContext,
    startedAtMs: number,
    progress: Progress,
    counts: { desired: number; actual: number; owned: number },
    extra: Partial<ReconcileRecord> = {},
  ): ReconcileRecord {
    return {
      outcome,
      reason: context.reason,
      startedAtMs,
      durationMs: this.options.clock() - startedAtMs,
      calls: progress.calls,
      registered: progress.registered,
      deregistered: progress.deregistered,
      ...counts,
      waitingForCapacity: 0,
      deregistrationsBlocked: 0,
      invalidTargets: progress.invalid.slice(0, MAX_LISTED_INVALID),
      consecutiveFailures: 0,
      ...extra,
    };
  }

  #driftDelay(): number {
    const o = this.options;
    return Math.round(o.driftIntervalMs * (1 - o.driftJitter * o.random()));
  }

  #retryDelay(failure: AwsCallError, consecutiveFailures: number): number {
    const o = this.options;
    if (PERSISTENT_AWS_ERRORS.has(failure.errorClass)) return o.retryMaxMs;
    return Math.max(
      100,
      jitteredBackoff(Math.max(0, consecutiveFailures - 1), {
        initialMs: o.retryInitialMs,
        maxMs: o.transientRetryMaxMs,
        random: o.random,
      }),
    );
  }

  /**
   * One AWS call under the account's bucket. A call AWS throttles anyway empties the bucket for
   * every worker (the penalty) and is made again with the next token, up to
   * {@link THROTTLED_CALL_ATTEMPTS} times, within this reconcile: tokens granted at the bucket's
   * pace can still reach AWS closer together than it refills (a busy event loop delays one
   * call and not the next), and failing the reconcile for that cost its group a retry backoff
   * and a resolution. Once the penalty has grown past {@link IN_RECONCILE_PENALTY_MAX_MS}, the
   * throttling goes on and the reconcile ends instead. `count` is called for every attempt (the
   * record counts calls made).
   */
  async #call<T>(
    definition: TargetGroup,
    cls: AwsCallClass,
    operation: string,
    signal: AbortSignal | undefined,
    count: () => void,
    call: () => Promise<T>,
    /** Writes that must be done before the call; awaited with the token. */
    before?: Promise<unknown>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      await Promise.all([
        this.#limiter.acquire(definition.accountId, definition.region, cls, { signal }),
        before,
      ]);
      const tokenAtMs = this.options.clock();
      count();
      try {
        return await call();
      } catch (err) {
        if (signal?.aborted === true) throw err;
        const failure = new AwsCallError(operation, err);
        if (failure.errorClass !== 'throttling') throw failure;
        const penaltyMs = await this.#limiter.penalize(
          definition.accountId,
          definition.region,
          cls,
          this.options.throttlePenaltyMs,
          {
            maxMs: this.options.throttlePenaltyMaxMs,
            tokenTakenMsAgo: Math.max(0, this.options.clock() - tokenAtMs),
          },
        );
        if (attempt >= THROTTLED_CALL_ATTEMPTS) throw failure;
        if (typeof penaltyMs === 'number' && penaltyMs > IN_RECONCILE_PENALTY_MAX_MS) {
          throw failure;
        }
        this.#log.debug({ operation, attempt, account: definition.accountId }, 'call throttled');
      }
    }
  }

  /**
   * The resolution gave other groups of the pool targets their shares lacked; each writes its
   * share when it is resolved. The change that brought new targets requests those groups too;
   * the nudge covers a move that no request of theirs follows (two resolutions at once that saw
   * different room, say), which would otherwise wait for their drift check. Asked once this
   * reconcile is done, only for the groups still unsettled then: the pool's other groups,
   * reconciled at the same time from the same or an equal placement, mostly are not any more.
   * Due after `followUpMs`, except the groups given a target another group's share holds
   * (`movedIntoPoolGroups`): moved for room or off a group where it waited, it has no request
   * coming, and waits for that group's reconcile (a rolling restart of a full pool, measured:
   * 10 s of settling plus the 15 s follow-up). Once per resolution: the other groups reconciled
   * from it nudge that group within `followUpMs`.
   */
  async #nudgeUnsettled(desired: GroupDesiredState): Promise<void> {
    const groups = desired.unsettledPoolGroups;
    if (groups.length === 0) return;
    const still =
      this.#desired.stillUnsettled === undefined
        ? groups
        : await this.#desired.stillUnsettled(groups, desired.unsettledProbes);
    const now = this.options.clock();
    const moved = new Set(desired.movedIntoPoolGroups);
    // Once per resolution: a group nudged now from a state as new as this one is not again.
    const dueNow = (arn: string): boolean =>
      moved.has(arn) && (this.#nudgedNow.get(arn) ?? -Infinity) < desired.basisAtMs;
    const due = still.filter(dueNow);
    const later = still.filter((arn) => !due.includes(arn));
    if (this.#nudgedNow.size > 10_000) this.#nudgedNow.clear();
    for (const arn of due) this.#nudgedNow.set(arn, desired.basisAtMs);
    if (due.length > 0) await this.#records.nudge(due, now, now);
    if (later.length > 0) await this.#records.nudge(later, now + this.options.followUpMs, now);
  }

  /**
   * A reconcile that held registrations for a cluster's initial sync, or found deregistrations
   * blocked until a resync, looks again once its record is written: the worker that handles the
   * sync's end enqueues at once only the groups whose records hold something
   * (`ReconcileWorker`), and may have read this one's before it was written. If nothing holds
   * the group any longer, it is nudged: the scheduler brings it back within its interval, not
   * after `followUpMs`.
   */
  async #nudgeIfHoldEnded(arn: string): Promise<void> {
    const holding = await this.#desired.holdingClusters?.(arn);
    if (holding !== undefined && holding.length === 0) {
      const now = this.options.clock();
      await this.#records.nudge([arn], now, now);
    }
  }

  #api(arn: string, definition: TargetGroup): TargetGroupApi {
    return this.#aws.forGroup({
      arn,
      accountId: definition.accountId,
      region: definition.region,
      roleArn: definition.roleArn,
      externalId: definition.externalId,
    });
  }

  /**
   * The describe a reconcile makes whatever the resolution says (see {@link describeDue}),
   * begun as soon as the group's records are read, with its definition from the bindings (or
   * the records). The reconcile uses it if the resolution's definition reaches the group the
   * same way (`locationKey`); else it describes again.
   */
  async #describeEarly(
    arn: string,
    reading: Promise<TargetGroupRecord>,
    startedAtMs: number,
    progress: Progress,
    signal: AbortSignal | undefined,
  ): Promise<EarlyDescribe | undefined> {
    const stored = await reading;
    if (!describeDue(stored, startedAtMs, this.options.capacityDescribeIntervalMs))
      return undefined;
    const definition = (await this.#desired.definition?.(arn)) ?? stored.definition;
    if (definition === undefined) return undefined;
    const described = this.#describe(this.#api(arn, definition), definition, progress, signal);
    described.catch(() => undefined);
    return { location: locationKey(definition), described };
  }

  async #describe(
    api: TargetGroupApi,
    definition: TargetGroup,
    progress: Progress,
    signal: AbortSignal | undefined,
  ): Promise<Map<string, TargetHealthState>> {
    let observed;
    try {
      observed = await this.#call(
        definition,
        'describe',
        'DescribeTargetHealth',
        signal,
        () => progress.calls.describe++,
        () => api.describeTargetHealth(signal),
      );
    } catch (err) {
      if (err instanceof AwsCallError) throw new StopReconcile(err);
      throw err;
    }
    return new Map(observed.map((t) => [targetKey(t.id, t.port), t.state]));
  }

  async #register(run: ReconcileRun, targets: readonly PlannedTarget[]): Promise<void> {
    const { arn, api, definition, live, owned, progress, context } = run;
    for (const part of chunk(targets, this.options.chunkSize)) {
      const keys = part.map((t) => t.key);
      // Ownership first: a worker killed after the call still knows the targets are its own.
      // The call waits for the claim (and the last call's record) with its token.
      const claimed = Promise.all([run.recording, this.#records.claim(arn, keys)]);
      claimed.catch(() => undefined);
      for (const key of keys) owned.add(key);
      const applied = await this.#apply(part, progress, context, 'RegisterTargets', (targets) => {
        return this.#call(
          definition,
          'mutate',
          'RegisterTargets',
          context.signal,
          () => progress.calls.register++,
          () => api.registerTargets(targets, context.signal),
          claimed,
        );
      });
      await claimed;
      const appliedKeys = applied.map((t) => t.key);
      run.recording = this.#records.registered(arn, appliedKeys);
      run.recording.catch(() => undefined);
      for (const key of appliedKeys) live.set(key, 'initial');
      progress.registered += applied.length;
      const appliedSet = new Set(appliedKeys);
      const refused = keys.filter((k) => !appliedSet.has(k));
      if (refused.length > 0) {
        // Refused targets were never registered: they are not tgfed's.
        await run.recording;
        await this.#records.disown(arn, refused);
        for (const key of refused) owned.delete(key);
      }
    }
  }

  async #deregister(run: ReconcileRun, targets: readonly PlannedTarget[]): Promise<void> {
    const { arn, api, definition, live, owned, progress, context } = run;
    for (const part of chunk(targets, this.options.chunkSize)) {
      const recorded = run.recording;
      const applied = await this.#apply(part, progress, context, 'DeregisterTargets', (targets) => {
        return this.#call(
          definition,
          'mutate',
          'DeregisterTargets',
          context.signal,
          () => progress.calls.deregister++,
          () => api.deregisterTargets(targets, context.signal),
          recorded,
        );
      });
      await recorded;
      const keys = applied.map((t) => t.key);
      await this.#records.deregistered(arn, keys);
      for (const key of keys) {
        live.set(key, 'draining');
        owned.delete(key);
      }
      progress.deregistered += applied.length;
    }
  }

  /**
   * Makes one call for `targets`; when ELB refuses a target (the whole call fails), bisects to
   * apply every other target and reports the refused ones. Returns the targets applied; any
   * other failure stops the reconcile.
   */
  async #apply(
    targets: readonly PlannedTarget[],
    progress: Progress,
    context: ReconcileContext,
    operation: string,
    call: (targets: readonly PlannedTarget[]) => Promise<void>,
  ): Promise<PlannedTarget[]> {
    try {
      await call(targets);
      return [...targets];
    } catch (err) {
      if (!(err instanceof AwsCallError)) throw err;
      if (err.errorClass !== 'invalid-target') throw new StopReconcile(err);
      if (targets.length === 1) {
        const key = (targets[0] as PlannedTarget).key;
        progress.invalid.push(key);
        this.#log.warn({ target: key, operation, err }, 'ELB refused a target');
        return [];
      }
      const half = Math.ceil(targets.length / 2);
      const left = await this.#apply(targets.slice(0, half), progress, context, operation, call);
      const right = await this.#apply(targets.slice(half), progress, context, operation, call);
      return [...left, ...right];
    }
  }
}

function countPresent(actual: ReadonlyMap<string, TargetHealthState>): number {
  let n = 0;
  for (const state of actual.values()) if (isPresent(state)) n++;
  return n;
}

/** Targets whose presence differs between the cache and a fresh describe. */
function countDifferences(
  cached: ReadonlyMap<string, TargetHealthState>,
  described: ReadonlyMap<string, TargetHealthState>,
): number {
  let n = 0;
  for (const [key, state] of cached) {
    if (!isPresent(state)) continue;
    const now = described.get(key);
    if (now === undefined || !isPresent(now)) n++;
  }
  for (const [key, state] of described) {
    const before = cached.get(key);
    if (isPresent(state) && (before === undefined || !isPresent(before))) n++;
  }
  return n;
}

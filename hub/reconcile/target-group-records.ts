import { randomBytes } from 'node:crypto';
import type { TargetGroup } from '../../shared/index.js';
import {
  StoredValueError,
  hashEntries,
  hashFieldChunks,
  sameValueFieldChunks,
  type RedisClient,
} from '../state/index.js';
import type { TargetHealthState } from '../aws/target-group-api.js';
import { targetHealthState } from '../aws/target-group-api.js';
import type { AwsErrorClass } from '../aws/aws-errors.js';
import type { GroupListenerWeight } from './listener-weight-records.js';

/** How a reconcile ended. */
export type ReconcileOutcomeKind = 'in-sync' | 'applied' | 'held' | 'throttled' | 'failed';

/** AWS calls one reconcile made, by operation. */
export interface ReconcileCalls {
  describe: number;
  register: number;
  deregister: number;
}

/** What one reconcile did, for the admin API and metrics. */
export interface ReconcileRecord {
  readonly outcome: ReconcileOutcomeKind;
  readonly reason: string;
  readonly startedAtMs: number;
  readonly durationMs: number;
  readonly calls: ReconcileCalls;
  readonly registered: number;
  readonly deregistered: number;
  readonly desired: number;
  readonly actual: number;
  readonly owned: number;
  /** Desired targets not registered because the group is full (they wait for room). */
  readonly waitingForCapacity: number;
  /**
   * Registrations not made yet because a feeding cluster is still streaming its initial sync
   * (they go in one call once it is done). Absent in records written before it existed.
   */
  readonly waitingForSync?: number;
  /** Deregistrations not made because a feeding cluster has not resynced (DESIGN.md, Safety). */
  readonly deregistrationsBlocked: number;
  /** Targets ELB refused (`InvalidTarget`), `ip:port`; at most 20 listed. */
  readonly invalidTargets: string[];
  readonly errorClass?: AwsErrorClass;
  readonly error?: string;
  /** Consecutive reconciles that ended in an AWS error (0 after a success). */
  readonly consecutiveFailures: number;
}

/** A reconcile step held by the mass-deregistration guard. */
export interface HeldDeregistration {
  readonly id: string;
  readonly targetGroupArn: string;
  readonly deregistrations: number;
  readonly targetsBefore: number;
  readonly reason: string;
  readonly heldSinceMs: number;
  /** Who released it, once released (the next reconcile applies it, then it is gone). */
  readonly releasedBy?: string;
}

/** What {@link TargetGroupRecords.summary} reads of one target group. */
export interface TargetGroupSummary {
  readonly last: ReconcileRecord | undefined;
  readonly held: HeldDeregistration | undefined;
  readonly definition: TargetGroup | undefined;
}

/** Everything stored of one target group. */
export interface TargetGroupRecord {
  /** The group's definition when a binding last targeted it (a group without binding keeps it). */
  readonly definition: TargetGroup | undefined;
  /** `ip:port` → state, as last described plus what was applied since. */
  readonly actual: Map<string, TargetHealthState>;
  /** False when the cache cannot be trusted: never described, an error, an interrupted reconcile. */
  readonly actualValid: boolean;
  readonly describedAtMs: number;
  /** When the next drift check (a describe) is due. */
  readonly nextDriftAtMs: number;
  /** An operator asked for a describe before the next reconcile. */
  readonly refreshRequested: boolean;
  /** `ip:port` of every target tgfed registered and has not deregistered. */
  readonly owned: Set<string>;
  readonly last: ReconcileRecord | undefined;
  readonly held: HeldDeregistration | undefined;
  /** The group's weight in its pool's listener rule (written by the weights updates). */
  readonly listenerWeight?: GroupListenerWeight | undefined;
}

function parseJson<T>(key: string, text: string | undefined): T | undefined {
  if (text === undefined || text === '') return undefined;
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new StoredValueError(`${key} holds invalid JSON`, { cause: err });
  }
}

function number(text: string | undefined): number {
  const n = Number(text);
  return Number.isFinite(n) ? n : 0;
}

// Nudges (see TargetGroupRecords.nudge): KEYS are the due and the made zsets (one slot).
// ARGV: when due, when made, then the groups. A group keeps its earliest due time and its
// latest made time.
const nudgeLua = `
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], 'LT', ARGV[1], ARGV[i])
  redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[i])
end
return 1
`;
// ARGV: the group, and the time before which a nudge is settled. Returns 1 when it was.
const settleNudgeLua = `
local made = redis.call('ZSCORE', KEYS[2], ARGV[1])
if made and tonumber(made) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`;
const nudgeCommand = 'tgfedNudge';
const settleNudgeCommand = 'tgfedSettleNudge';
type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;
const scriptsDefined = new WeakSet<RedisClient>();

/**
 * The workers' state of each target group in Redis (DESIGN.md, State): the actual targets, the
 * targets tgfed owns, the last reconcile and held operations. Every key of a group carries its
 * hash tag, like its pool assignment, so each write is one slot:
 *
 * ```
 * <prefix>:{tg:<arn>}:meta    hash  definition, describedAtMs, actualValid, nextDriftAtMs,
 *                                   refresh, last (JSON), held (JSON)
 * <prefix>:{tg:<arn>}:actual  hash  ip:port → ELB health state
 * <prefix>:{tg:<arn>}:owned   set   ip:port tgfed registered (written *before* RegisterTargets)
 * <prefix>:tg-schedule        zset  arn → when the group next needs a reconcile without a change
 *                                   (drift check, retry, follow-up); also the index of groups
 * <prefix>:tg-held            hash  held operation id → arn
 * <prefix>:{tg-nudge}         zset  arn → when its reconcile was asked for (another group's
 *                                   resolution gave it a target its share lacks; a sync ended)
 * <prefix>:{tg-nudge}:made    zset  arn → when that was last asked (the same slot)
 * ```
 *
 * (Workers before the made times kept nudges in `<prefix>:tg-nudge`; they are still looked up
 * and settled there, and nothing writes it any more.)
 *
 * The index keys are small (one entry per group) and are never in a multi-key operation
 * with the per-group keys.
 */
export class TargetGroupRecords {
  readonly #redis: RedisClient;
  readonly prefix: string;

  constructor(redis: RedisClient, prefix = 'tgfed') {
    this.#redis = redis;
    this.prefix = prefix;
    if (!scriptsDefined.has(redis)) {
      redis.defineCommand(nudgeCommand, { lua: nudgeLua, numberOfKeys: 2 });
      redis.defineCommand(settleNudgeCommand, { lua: settleNudgeLua, numberOfKeys: 2 });
      scriptsDefined.add(redis);
    }
  }

  metaKey(arn: string): string {
    return `${this.prefix}:{tg:${arn}}:meta`;
  }

  actualKey(arn: string): string {
    return `${this.prefix}:{tg:${arn}}:actual`;
  }

  ownedKey(arn: string): string {
    return `${this.prefix}:{tg:${arn}}:owned`;
  }

  scheduleKey(): string {
    return `${this.prefix}:tg-schedule`;
  }

  nudgeKey(): string {
    return `${this.prefix}:{tg-nudge}`;
  }

  /** When each group's nudge was last made (the nudge key's slot). */
  nudgeMadeKey(): string {
    return `${this.prefix}:{tg-nudge}:made`;
  }

  /** Where workers before the made times kept nudges: read and settled, never written. */
  legacyNudgeKey(): string {
    return `${this.prefix}:tg-nudge`;
  }

  heldKey(): string {
    return `${this.prefix}:tg-held`;
  }

  /** Reads everything stored of a group (empty values for a group never reconciled). */
  async read(arn: string): Promise<TargetGroupRecord> {
    const [meta, actual, owned] = await Promise.all([
      this.#redis.hgetall(this.metaKey(arn)),
      hashEntries(this.#redis, this.actualKey(arn)),
      this.#redis.smembers(this.ownedKey(arn)),
    ]);
    const actualStates = new Map<string, TargetHealthState>();
    for (const [key, state] of actual) actualStates.set(key, targetHealthState(state));
    return {
      definition: parseJson<TargetGroup>(this.metaKey(arn), meta.definition),
      actual: actualStates,
      actualValid: meta.actualValid === '1',
      describedAtMs: number(meta.describedAtMs),
      nextDriftAtMs: number(meta.nextDriftAtMs),
      refreshRequested: meta.refresh === '1',
      owned: new Set(owned),
      last: parseJson<ReconcileRecord>(this.metaKey(arn), meta.last),
      held: parseJson<HeldDeregistration>(this.metaKey(arn), meta.held),
      listenerWeight: parseJson<GroupListenerWeight>(this.metaKey(arn), meta.listenerWeight),
    };
  }

  /**
   * What the per-group gauges show, in one HMGET and without the group's targets: the last
   * reconcile's record, the held operation and the definition (for the capacity).
   */
  /** How many targets AWS holds in each group (registered or draining), as last known. */
  async heldCounts(arns: readonly string[]): Promise<number[]> {
    return Promise.all(arns.map((arn) => this.#redis.hlen(this.actualKey(arn))));
  }

  /**
   * Per group, in the order given, the places it needs in AWS as last known: the targets AWS
   * holds (registered or draining) plus those its last reconcile left waiting for room. A group
   * whose kept targets wait there for a drain is full even while its count is not.
   */
  async neededCounts(arns: readonly string[]): Promise<number[]> {
    const [held, lasts] = await Promise.all([this.heldCounts(arns), this.#lastRecords(arns)]);
    // A record that is not JSON fails the group's own reconcile and the admin API, which report
    // it; here it only decides whether a pool's occupants are read.
    return held.map((n, i) => {
      const last = lasts[i];
      return n + (last instanceof StoredValueError ? 0 : (last?.waitingForCapacity ?? 0));
    });
  }

  /**
   * Per group, in the order given, whether its last reconcile held something for a cluster's
   * sync: registrations waiting for an initial sync, or deregistrations blocked until a resync.
   */
  async heldForSync(arns: readonly string[]): Promise<boolean[]> {
    return (await this.#lastRecords(arns)).map((record) => {
      if (record instanceof StoredValueError) throw record;
      return (record?.waitingForSync ?? 0) > 0 || (record?.deregistrationsBlocked ?? 0) > 0;
    });
  }

  /** Each group's last reconcile record, in the order given; the error when it is not JSON. */
  async #lastRecords(
    arns: readonly string[],
  ): Promise<(ReconcileRecord | StoredValueError | undefined)[]> {
    const lasts = await Promise.all(arns.map((arn) => this.#redis.hget(this.metaKey(arn), 'last')));
    return lasts.map((last, i) => {
      try {
        return parseJson<ReconcileRecord>(this.metaKey(arns[i] as string), last ?? undefined);
      } catch (err) {
        if (err instanceof StoredValueError) return err;
        throw err;
      }
    });
  }

  /** The targets (`ip:port`) AWS holds in each group (registered or draining), as last known. */
  async heldTargets(arns: readonly string[]): Promise<Set<string>[]> {
    const keys = await Promise.all(arns.map((arn) => this.#redis.hkeys(this.actualKey(arn))));
    return keys.map((k) => new Set(k));
  }

  async summary(arn: string): Promise<TargetGroupSummary> {
    const key = this.metaKey(arn);
    const [last, held, definition] = await this.#redis.hmget(key, 'last', 'held', 'definition');
    return {
      last: parseJson<ReconcileRecord>(key, last ?? undefined),
      held: parseJson<HeldDeregistration>(key, held ?? undefined),
      definition: parseJson<TargetGroup>(key, definition ?? undefined),
    };
  }

  /** Every group ever reconciled or scheduled, sorted. */
  async groups(): Promise<string[]> {
    return (await this.#redis.zrange(this.scheduleKey(), 0, -1)).sort();
  }

  /**
   * Starts a reconcile: the definition is kept and the actual cache is marked untrusted until
   * {@link finish}, so a worker killed in between leaves the next one a describe to do.
   */
  async begin(arn: string, definition: TargetGroup | undefined): Promise<void> {
    const fields: Record<string, string> = { actualValid: '0' };
    if (definition !== undefined) fields.definition = JSON.stringify(definition);
    await this.#redis.hset(this.metaKey(arn), fields);
  }

  /** Replaces the actual cache with what DescribeTargetHealth returned. */
  async described(
    arn: string,
    actual: ReadonlyMap<string, TargetHealthState>,
    atMs: number,
    nextDriftAtMs: number,
  ): Promise<void> {
    const multi = this.#redis.multi().del(this.actualKey(arn));
    for (const fields of hashFieldChunks(actual)) multi.hset(this.actualKey(arn), ...fields);
    multi.hset(this.metaKey(arn), {
      describedAtMs: String(atMs),
      nextDriftAtMs: String(nextDriftAtMs),
      refresh: '0',
    });
    execOrThrow(await multi.exec());
  }

  /** Records ownership of targets about to be registered (before RegisterTargets). */
  async claim(arn: string, keys: readonly string[]): Promise<void> {
    if (keys.length > 0) await this.#redis.sadd(this.ownedKey(arn), ...keys);
  }

  /** Records targets just registered: `initial` until the next describe. */
  async registered(arn: string, keys: readonly string[]): Promise<void> {
    const [first, ...more] = sameValueFieldChunks(keys, 'initial');
    if (first === undefined) return;
    if (more.length === 0) {
      await this.#redis.hset(this.actualKey(arn), ...first);
      return;
    }
    const multi = this.#redis.multi();
    for (const fields of [first, ...more]) multi.hset(this.actualKey(arn), ...fields);
    execOrThrow(await multi.exec());
  }

  /** Records targets just deregistered: draining, and no longer owned. */
  async deregistered(arn: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    const multi = this.#redis.multi();
    for (const fields of sameValueFieldChunks(keys, 'draining')) {
      multi.hset(this.actualKey(arn), ...fields);
    }
    multi.srem(this.ownedKey(arn), ...keys);
    execOrThrow(await multi.exec());
  }

  /** Forgets owned targets that are neither registered nor desired (gone behind tgfed's back). */
  async disown(arn: string, keys: readonly string[]): Promise<void> {
    if (keys.length > 0) await this.#redis.srem(this.ownedKey(arn), ...keys);
  }

  /** Ends a reconcile: its record, the held operation, and when the group is next due. */
  async finish(
    arn: string,
    result: {
      record: ReconcileRecord;
      actualValid: boolean;
      held: HeldDeregistration | undefined;
      nextDueAtMs: number;
      /** Nudges made before this are settled ({@link settleNudge}): the reconcile covers them. */
      nudgesMadeBeforeMs?: number;
    },
  ): Promise<void> {
    const before = await this.#redis.hget(this.metaKey(arn), 'held');
    const previous = parseJson<HeldDeregistration>(this.metaKey(arn), before ?? undefined);
    const fields: Record<string, string> = {
      last: JSON.stringify(result.record),
      actualValid: result.actualValid ? '1' : '0',
    };
    if (result.held !== undefined) fields.held = JSON.stringify(result.held);
    if (result.held === undefined && before !== null) {
      execOrThrow(
        await this.#redis
          .multi()
          .hset(this.metaKey(arn), fields)
          .hdel(this.metaKey(arn), 'held')
          .exec(),
      );
    } else {
      // Mostly no operation is held before or after: one HSET, not a MULTI (which ioredis builds
      // as a pipeline copying every script defined on the connection, at every reconcile).
      await this.#redis.hset(this.metaKey(arn), fields);
    }
    if (previous !== undefined && previous.id !== result.held?.id) {
      await this.#redis.hdel(this.heldKey(), previous.id);
    }
    if (result.held !== undefined) await this.#redis.hset(this.heldKey(), result.held.id, arn);
    const settles = result.nudgesMadeBeforeMs;
    await Promise.all([
      this.schedule(arn, result.nextDueAtMs),
      settles === undefined ? undefined : this.settleNudge(arn, settles),
    ]);
  }

  /**
   * Records a reconcile that read and changed nothing (its registrations still wait for a
   * cluster's initial sync): its record and when it is next due; the cache's validity and any
   * held operation stay as they are.
   */
  async noteUnchanged(arn: string, record: ReconcileRecord, nextDueAtMs: number): Promise<void> {
    await this.#redis.hset(this.metaKey(arn), 'last', JSON.stringify(record));
    await this.schedule(arn, nextDueAtMs);
  }

  /** Sets when the group next needs a reconcile without a change (drift check, retry). */
  async schedule(arn: string, dueAtMs: number): Promise<void> {
    await this.#redis.zadd(this.scheduleKey(), dueAtMs, arn);
  }

  /**
   * Asks for the groups' reconcile by `atMs` (never later than already asked), for what was
   * written by `madeAtMs`. Apart from the schedule, which each reconcile rewrites as it
   * finishes: a reconcile that began before the nudge was made does not settle it, one that
   * began after does ({@link settleNudge}).
   */
  async nudge(arns: readonly string[], atMs: number, madeAtMs: number): Promise<void> {
    if (arns.length === 0) return;
    await this.#script(nudgeCommand)(this.nudgeKey(), this.nudgeMadeKey(), atMs, madeAtMs, ...arns);
  }

  /**
   * Takes the group's nudge off when it was made before `beforeMs`: a reconcile that began then
   * (or a request the scheduler made then) covers it. A nudge made since stays. Returns true
   * when no nudge is left.
   */
  async settleNudge(arn: string, beforeMs: number): Promise<boolean> {
    const [settled] = await Promise.all([
      this.#script(settleNudgeCommand)(this.nudgeKey(), this.nudgeMadeKey(), arn, beforeMs),
      this.#redis.zrem(this.legacyNudgeKey(), arn),
    ]);
    return settled === 1;
  }

  #script(name: string): ScriptCommand {
    const run = (this.#redis as unknown as Record<string, ScriptCommand>)[name];
    if (run === undefined) throw new Error(`${name} is not defined on this client`);
    return run.bind(this.#redis);
  }

  /** Groups nudged for `nowMs` or earlier, oldest first, at most `limit`. */
  async nudged(nowMs: number, limit: number): Promise<string[]> {
    const [nudged, legacy] = await Promise.all(
      [this.nudgeKey(), this.legacyNudgeKey()].map((key) =>
        this.#redis.zrangebyscore(key, '-inf', nowMs, 'LIMIT', 0, limit),
      ),
    );
    return [...new Set([...(nudged ?? []), ...(legacy ?? [])])].slice(0, limit);
  }

  /** Groups due by `nowMs`, oldest first, at most `limit`. */
  async due(nowMs: number, limit: number): Promise<string[]> {
    return this.#redis.zrangebyscore(this.scheduleKey(), '-inf', nowMs, 'LIMIT', 0, limit);
  }

  /** Asks the next reconcile to describe the group first (TriggerReconcile `refresh`). */
  async requestRefresh(arn: string): Promise<void> {
    await this.#redis.hset(this.metaKey(arn), 'refresh', '1');
  }

  /** Every held operation, by id. */
  async heldOperations(): Promise<HeldDeregistration[]> {
    const index = await this.#redis.hgetall(this.heldKey());
    const held: HeldDeregistration[] = [];
    for (const arn of new Set(Object.values(index))) {
      const record = await this.read(arn);
      if (record.held !== undefined) held.push(record.held);
    }
    return held.sort((a, b) => a.heldSinceMs - b.heldSinceMs || (a.id < b.id ? -1 : 1));
  }

  /**
   * Marks a held operation released (the operator override); the group's next reconcile applies
   * it once. Undefined when no operation with that id is held.
   */
  async release(id: string, releasedBy: string): Promise<HeldDeregistration | undefined> {
    const arn = await this.#redis.hget(this.heldKey(), id);
    if (arn === null) return undefined;
    const key = this.metaKey(arn);
    const held = parseJson<HeldDeregistration>(key, (await this.#redis.hget(key, 'held')) ?? '');
    if (held?.id !== id) return undefined;
    const released: HeldDeregistration = { ...held, releasedBy };
    await this.#redis.hset(key, 'held', JSON.stringify(released));
    return released;
  }
}

/** A new held-operation id (short, unique, safe in URLs and CLIs). */
export function newHeldOperationId(): string {
  return `held-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

function execOrThrow(results: [Error | null, unknown][] | null): void {
  for (const [err] of results ?? []) if (err !== null) throw err;
}

import { StoredValueError, type RedisClient } from '../state/index.js';
import type { AwsErrorClass } from '../aws/aws-errors.js';

/**
 * How one weights update of a listener rule ended:
 *
 * - `applied`: ModifyRule / ModifyListener wrote new weights.
 * - `unchanged`: the weights are within the threshold of the ready targets (or the ready counts
 *   are the same as at the last check, which is then trusted without a describe).
 * - `all-zero`: no pool group has a ready target; the rule is left alone (never all-zero weights).
 * - `skipped`: no binding names the rule any more.
 * - `throttled`, `failed`: an AWS error (classified) or a configuration error.
 */
export type ListenerWeightOutcome =
  'applied' | 'unchanged' | 'all-zero' | 'skipped' | 'throttled' | 'failed';

/** An error of the binding rather than of AWS: no role reaches the rule, no forward action… */
export type ListenerWeightErrorClass = AwsErrorClass | 'configuration';

/** A pool group's weight in the rule after an update. */
export interface ListenerGroupWeight {
  readonly targetGroupArn: string;
  readonly readyTargets: number;
  /** The weight found in the rule; absent when the rule was not described. */
  readonly weightBefore?: number;
  /** The weight in force after the update (as found when nothing was written). */
  readonly weight?: number;
}

/** What one weights update did, for the admin API, logs and tests. */
export interface ListenerWeightRecord {
  readonly listenerRuleArn: string;
  readonly outcome: ListenerWeightOutcome;
  readonly reason: string;
  readonly startedAtMs: number;
  readonly durationMs: number;
  readonly calls: { describe: number; modify: number };
  readonly groups: ListenerGroupWeight[];
  /** Pool groups the forward action does not name (they get no traffic from the rule). */
  readonly missingGroups: string[];
  readonly errorClass?: ListenerWeightErrorClass;
  readonly error?: string;
  /** Consecutive updates that ended in an error (0 after a success). */
  readonly consecutiveFailures: number;
}

/** A group's share of its rule's last record, as stored with the group. */
export interface GroupListenerWeight extends ListenerGroupWeight {
  readonly listenerRuleArn: string;
  readonly outcome: ListenerWeightOutcome;
  readonly error?: string;
  /** When the update ended. */
  readonly atMs: number;
}

/** What is stored of one rule. */
export interface ListenerRuleState {
  readonly last: ListenerWeightRecord | undefined;
  /** The ready counts of the last described update, as `arn=count` lines. */
  readonly readyKey: string;
  /** When the rule was last described successfully. */
  readonly checkedAtMs: number;
}

function parseRecord(key: string, text: string | undefined): ListenerWeightRecord | undefined {
  if (text === undefined || text === '') return undefined;
  try {
    return JSON.parse(text) as ListenerWeightRecord;
  } catch (err) {
    throw new StoredValueError(`${key} holds invalid JSON`, { cause: err });
  }
}

/**
 * The weights updates' state in Redis, one hash per listener rule under its own hash tag:
 *
 * ```
 * <prefix>:{lw:<rule arn>}   hash  last (JSON), readyKey, checkedAtMs
 * ```
 *
 * Each pool group's share of the last record is also written to the group's own meta hash
 * (`<prefix>:{tg:<arn>}:meta`, field `listenerWeight`), next to its reconcile record.
 */
export class ListenerWeightRecords {
  readonly #redis: RedisClient;
  readonly prefix: string;

  constructor(redis: RedisClient, prefix = 'tgfed') {
    this.#redis = redis;
    this.prefix = prefix;
  }

  key(ruleArn: string): string {
    return `${this.prefix}:{lw:${ruleArn}}`;
  }

  groupMetaKey(targetGroupArn: string): string {
    return `${this.prefix}:{tg:${targetGroupArn}}:meta`;
  }

  async read(ruleArn: string): Promise<ListenerRuleState> {
    const key = this.key(ruleArn);
    const [last, readyKey, checkedAtMs] = await this.#redis.hmget(
      key,
      'last',
      'readyKey',
      'checkedAtMs',
    );
    return {
      last: parseRecord(key, last ?? undefined),
      readyKey: readyKey ?? '',
      checkedAtMs: Number(checkedAtMs ?? 0) || 0,
    };
  }

  /** The last record of the rule a group's weight is kept in, as written with the group. */
  async ofGroup(targetGroupArn: string): Promise<GroupListenerWeight | undefined> {
    const key = this.groupMetaKey(targetGroupArn);
    const text = await this.#redis.hget(key, 'listenerWeight');
    if (text === null || text === '') return undefined;
    try {
      return JSON.parse(text) as GroupListenerWeight;
    } catch (err) {
      throw new StoredValueError(`${key} field listenerWeight holds invalid JSON`, { cause: err });
    }
  }

  /** Removes the weight shown with groups no weighted pool holds any more. */
  async forgetGroups(targetGroupArns: readonly string[]): Promise<void> {
    for (const arn of targetGroupArns)
      await this.#redis.hdel(this.groupMetaKey(arn), 'listenerWeight');
  }

  /** Stores an update's record; `described` also moves the trusted ready counts and time. */
  async write(
    record: ListenerWeightRecord,
    described: { readyKey: string; atMs: number } | undefined,
  ): Promise<void> {
    const fields: Record<string, string> = { last: JSON.stringify(record) };
    if (described !== undefined) {
      fields.readyKey = described.readyKey;
      fields.checkedAtMs = String(described.atMs);
    }
    await this.#redis.hset(this.key(record.listenerRuleArn), fields);
    for (const group of record.groups) {
      await this.#redis.hset(
        this.groupMetaKey(group.targetGroupArn),
        'listenerWeight',
        JSON.stringify({
          ...group,
          listenerRuleArn: record.listenerRuleArn,
          outcome: record.outcome,
          atMs: record.startedAtMs + record.durationMs,
          ...(record.error === undefined ? {} : { error: record.error }),
        } satisfies GroupListenerWeight),
      );
    }
  }
}

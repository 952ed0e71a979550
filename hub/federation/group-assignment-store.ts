import { hashEntries, hashFieldChunks, type RedisClient } from '../state/index.js';

/**
 * The targets each target group was last given, persisted so that the next resolution of its
 * pool keeps them in place (`assignToPool`'s `previous`).
 *
 * One hash per group under the group's own hash tag, `<prefix>:{tg:<arn>}:assignment`
 * (`ip:port` → the binding that placed it): every write touches one slot, groups spread over
 * the masters, and the key sits with the group's other state (owned and actual targets). A
 * resolution of one group writes only that group's hash; the other groups of its pool are
 * written when they are resolved. That stays consistent because the assignment is sticky: a
 * group resolved later reads the earlier group's new placements and keeps them.
 */
export class GroupAssignmentStore {
  readonly #redis: RedisClient;
  readonly #prefix: string;

  constructor(redis: RedisClient, prefix = 'tgfed') {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  /** The key of a group's assignment. ARNs contain no braces, so the tag is exact. */
  key(targetGroupArn: string): string {
    return `${this.#prefix}:{tg:${targetGroupArn}}:assignment`;
  }

  /** `ip:port` → binding name, as last written for the group (empty when never written). */
  async read(targetGroupArn: string): Promise<Map<string, string>> {
    return hashEntries(this.#redis, this.key(targetGroupArn));
  }

  /** True when the group's stored share holds `target` (`ip:port`). */
  async holds(targetGroupArn: string, target: string): Promise<boolean> {
    return (await this.#redis.hexists(this.key(targetGroupArn), target)) === 1;
  }

  /**
   * The previous assignment of a pool: `ip:port` → group ARN, over every group given. A target
   * found in two groups (possible between two resolutions of one pool) counts for the first
   * group in `groupArns` order. With each group's share as stored.
   */
  async readPool(groupArns: readonly string[]): Promise<{
    previous: Map<string, string>;
    /** Each group's stored share as read (`ip:port` → binding name). */
    shares: Map<string, Map<string, string>>;
  }> {
    const unique = [...new Set(groupArns)];
    const stored = await Promise.all(unique.map((arn) => this.read(arn)));
    const previous = new Map<string, string>();
    const shares = new Map<string, Map<string, string>>();
    unique.forEach((arn, i) => {
      const share = stored[i] ?? new Map<string, string>();
      shares.set(arn, share);
      for (const target of share.keys()) {
        if (!previous.has(target)) previous.set(target, arn);
      }
    });
    return { previous, shares };
  }

  /**
   * Replaces a group's assignment; skipped when `before` (what {@link read} returned) is equal.
   * With `before`, only the difference is written (a rolling restart moves a few targets of a
   * group at a time); without it, the hash is rewritten whole. Returns true when something was
   * written.
   */
  async write(
    targetGroupArn: string,
    assignment: ReadonlyMap<string, string>,
    before?: ReadonlyMap<string, string>,
  ): Promise<boolean> {
    const key = this.key(targetGroupArn);
    const removed =
      before === undefined ? [] : [...before.keys()].filter((k) => !assignment.has(k));
    const changed =
      before === undefined
        ? [...assignment]
        : [...assignment].filter(([k, v]) => before.get(k) !== v);
    if (before !== undefined && removed.length === 0 && changed.length === 0) return false;
    const tx = this.#redis.multi();
    if (before === undefined) tx.del(key);
    // HSET / HDEL with many fields in one command; chunked to keep each argument list small.
    for (let i = 0; i < removed.length; i += 1000) tx.hdel(key, ...removed.slice(i, i + 1000));
    for (const fields of hashFieldChunks(changed)) tx.hset(key, ...fields);
    const results = await tx.exec();
    for (const [err] of results ?? []) if (err !== null) throw err;
    return true;
  }
}

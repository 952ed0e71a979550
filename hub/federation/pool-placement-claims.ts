import { createHash } from 'node:crypto';
import type { Conflict } from '../../shared/index.js';
import type { RedisClient } from '../state/index.js';
import type { DesiredGroup, DesiredTarget, DesiredTargets } from './desired-targets.js';

/** Targets per script call of {@link PoolPlacementClaims.claim} and `.release`. */
const CLAIM_CHUNK_TARGETS = 1_000;

/** The server's clock in ms, in a script (TIME is allowed before writes since Redis 5). */
const nowLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/** A pool's claims with the server's time: `now, field, value, field, value...`. */
const readLua = `${nowLua}
local reply = redis.call('HGETALL', KEYS[1])
table.insert(reply, 1, tostring(now))
return reply
`;

/**
 * Claims a pool's placements, first writer wins per target. KEYS[1]: the claims hash; ARGV[1]:
 * the hash's expiry (ms); ARGV[2]: when the claims were read (server ms); ARGV[3]: `keepMs`; then
 * per target its field, the claim the resolution read ('' for none) and the group it wants.
 *
 * Read `keepMs` ago or more, nothing is claimed and the reply is `{'stale'}`: a claim made after
 * that read may have been released since (see `release`), and a missing claim no longer means
 * that none was made. Otherwise a target whose stored claim is still the one read (or gone, or
 * not a claim at all) is claimed for the group wanted; one claimed meanwhile for another group
 * is lost, and the reply names that group. Reply: the server's time (ms), then `field, claim`
 * for each target lost.
 */
const claimLua = `${nowLua}
if now - tonumber(ARGV[2]) >= tonumber(ARGV[3]) then return { 'stale' } end
local reply = { tostring(now) }
local wrote = false
for i = 4, #ARGV, 3 do
  local field, expected, group = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local current = redis.call('HGET', KEYS[1], field)
  if current == false or current == expected or not string.match(current, '^%d+|%d+$') then
    redis.call('HSET', KEYS[1], field, group .. '|' .. now)
    wrote = true
  elseif string.match(current, '^%d+') ~= group then
    reply[#reply + 1] = field
    reply[#reply + 1] = current
  end
end
if wrote then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return reply
`;

/**
 * Deletes claims that are still as read and older than ARGV[1] ms by the server's clock; then
 * `field, claim` pairs. Returns how many were deleted.
 */
const releaseLua = `${nowLua}
local keep = tonumber(ARGV[1])
local deleted = 0
for i = 2, #ARGV, 2 do
  local field, expected = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], field)
  if current == expected then
    local at = tonumber(string.match(current, '|(%d+)$') or '0')
    if now - at >= keep then
      redis.call('HDEL', KEYS[1], field)
      deleted = deleted + 1
    end
  end
end
return deleted
`;

const claimCommand = 'tgfedPoolClaim';
const releaseCommand = 'tgfedPoolClaimRelease';
const readCommand = 'tgfedPoolClaimRead';
type ScriptCommand = (key: string, ...args: string[]) => Promise<unknown>;
const defined = new WeakSet<RedisClient>();

/** One target's claim as read. */
export interface PlacementClaim {
  /** The claimed group. */
  readonly arn: string;
  /** The stored value, as the claim script compares it. */
  readonly value: string;
  /** When it was claimed, by the Redis server's clock. */
  readonly atMs: number;
}

/** A pool's claims as read. */
export interface PoolClaims {
  /** `ip:port` → claim (values that are no claim of a group of the pool left out). */
  readonly byTarget: ReadonlyMap<string, PlacementClaim>;
  /** When they were read, by the Redis server's clock. */
  readonly readAtMs: number;
}

/** No claims, for a pool that needs none (a single group). */
export const NO_CLAIMS: PoolClaims = { byTarget: new Map(), readAtMs: 0 };

/**
 * The claims were read `keepMs` or longer before the resolution claimed its placements (a stalled
 * process): the resolution must be made again.
 */
export class StaleClaimsError extends Error {
  constructor(readonly bindingName: string) {
    super(
      `the placement claims of pool ${bindingName} were read too long ago to claim against; resolve again`,
    );
    this.name = 'StaleClaimsError';
  }
}

/** A placement a resolution claims: the target, the claim it read (if any) and its new group. */
export interface WantedPlacement {
  readonly target: string;
  readonly read: PlacementClaim | undefined;
  readonly arn: string;
}

/** Options of {@link PoolPlacementClaims}. */
export interface PoolPlacementClaimsOptions {
  /**
   * How long a claim lives at least. A resolution that read the claims this long before it
   * claims is refused ({@link StaleClaimsError}): a claim made after its read may have been
   * released.
   * @default 10_000
   */
  readonly keepMs?: number;
  /**
   * How long a claimed target stays in its group even when that group has no room for it by
   * AWS's occupants as a resolution reads them (see `assignToPool`'s `settling`): its group may
   * be registering it, having found room a describe showed (a drain ended) that the occupants
   * read elsewhere do not show yet. Long enough for the group's reconcile to plan and make its
   * calls; short, because a target placed where there really is no room waits this long.
   * At most `keepMs`.
   * @default 10_000
   */
  readonly settleMs?: number;
  /**
   * The claims hash of a pool expires this long after its last claim (a pool whose binding
   * changed its groups gets a new hash; the old one goes this way).
   * @default 3_600_000
   */
  readonly expireMs?: number;
}

/**
 * Where a pool's resolutions last placed targets that moved or were new, first writer wins.
 *
 * A pool is resolved by each worker on its own, and each reconcile writes only its own group's
 * share (`GroupAssignmentStore`). A target in no share yet is placed by where there is room,
 * which moves as AWS registers and drains targets: two resolutions a moment apart (in two
 * workers, or in one before the first's group wrote its share) could put the same new target
 * in two groups, which would both register it, and one would deregister it again. So every
 * placement that differs from the pool's stored shares is claimed here before the resolution
 * is used: a target already claimed for another group by a resolution since is given to that
 * group instead, and later resolutions read the claims beside the shares and keep them.
 *
 * One hash per pool under the pool's own hash tag, `<prefix>:{pool:<binding>}:claims:<groups>`
 * (`ip:port` → `<group index>|<server ms>`, the index in the pool's sorted group ARNs, which the
 * key's last part fingerprints). A claim is released once its group's share alone holds the
 * target and it is older than `keepMs`, or once the target left the pool, by the pool's next
 * resolution computed after that. Every time compared is the Redis server's.
 */
export class PoolPlacementClaims {
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #keepMs: number;
  readonly #settleMs: number;
  readonly #expireMs: number;
  /** Sorted ARNs joined → fingerprint. */
  readonly #fingerprints = new Map<string, string>();
  /** Claims keys with a release in flight from this process. */
  readonly #releasing = new Set<string>();

  constructor(redis: RedisClient, prefix = 'tgfed', options: PoolPlacementClaimsOptions = {}) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#keepMs = options.keepMs ?? 10_000;
    this.#expireMs = options.expireMs ?? 3_600_000;
    this.#settleMs = options.settleMs ?? Math.min(10_000, this.#keepMs);
    for (const [name, value] of [
      ['keepMs', this.#keepMs],
      ['settleMs', this.#settleMs],
      ['expireMs', this.#expireMs],
    ] as const) {
      if (!Number.isInteger(value) || value < 1) {
        throw new RangeError(`${name} must be a positive integer, got ${value}`);
      }
    }
    if (this.#settleMs > this.#keepMs) {
      throw new RangeError(`settleMs (${this.#settleMs}) must not exceed keepMs (${this.#keepMs})`);
    }
    if (!defined.has(redis)) {
      redis.defineCommand(claimCommand, { lua: claimLua, numberOfKeys: 1 });
      redis.defineCommand(releaseCommand, { lua: releaseLua, numberOfKeys: 1 });
      redis.defineCommand(readCommand, { lua: readLua, numberOfKeys: 1 });
      defined.add(redis);
    }
  }

  /** The claims key of a pool: binding names are DNS labels and ARNs hold no braces. */
  key(bindingName: string, groupArns: readonly string[]): string {
    const joined = sortedUnique(groupArns).join('\n');
    let fingerprint = this.#fingerprints.get(joined);
    if (fingerprint === undefined) {
      fingerprint = createHash('sha256').update(joined).digest('hex').slice(0, 16);
      if (this.#fingerprints.size >= 1_024) this.#fingerprints.clear();
      this.#fingerprints.set(joined, fingerprint);
    }
    return `${this.#prefix}:{pool:${bindingName}}:claims:${fingerprint}`;
  }

  /** The pool's claims, with the server's time. */
  async read(bindingName: string, groupArns: readonly string[]): Promise<PoolClaims> {
    const arns = sortedUnique(groupArns);
    const command = this.#command(readCommand);
    const flat = (await command.call(this.#redis, this.key(bindingName, arns))) as string[];
    const byTarget = new Map<string, PlacementClaim>();
    for (let i = 1; i + 1 < flat.length; i += 2) {
      const claim = parseClaim(flat[i + 1] as string, arns);
      if (claim !== undefined) byTarget.set(flat[i] as string, claim);
    }
    return { byTarget, readAtMs: Number(flat[0]) };
  }

  /**
   * Claims `wanted` against the claims `read` (see the class). Returns the targets lost to a
   * claim made since they were read, with the group that holds each.
   * @throws StaleClaimsError when `read` is `keepMs` old or older by the server's clock; some of
   *   the targets (in other chunks) may be claimed then.
   */
  async claim(
    bindingName: string,
    groupArns: readonly string[],
    read: PoolClaims,
    wanted: readonly WantedPlacement[],
  ): Promise<Map<string, string>> {
    const arns = sortedUnique(groupArns);
    const index = new Map(arns.map((arn, i) => [arn, String(i)]));
    const key = this.key(bindingName, arns);
    const command = this.#command(claimCommand);
    const replies = await Promise.all(
      chunks(wanted, CLAIM_CHUNK_TARGETS).map((chunk) => {
        const args = [String(this.#expireMs), String(read.readAtMs), String(this.#keepMs)];
        for (const w of chunk) {
          const group = index.get(w.arn);
          if (group === undefined) throw new RangeError(`${w.arn} is not a group of the pool`);
          args.push(w.target, w.read?.value ?? '', group);
        }
        return command.call(this.#redis, key, ...args) as Promise<string[]>;
      }),
    );
    const lost = new Map<string, string>();
    for (const reply of replies) {
      if (reply[0] === 'stale') throw new StaleClaimsError(bindingName);
      for (let i = 1; i + 1 < reply.length; i += 2) {
        const claim = parseClaim(reply[i + 1] as string, arns);
        if (claim !== undefined) lost.set(reply[i] as string, claim.arn);
      }
    }
    return lost;
  }

  /**
   * The targets of `claims` claimed less than `settleMs` before they were read: their groups may
   * be registering them now.
   */
  settling(claims: PoolClaims): Set<string> {
    const oldest = claims.readAtMs - this.#settleMs;
    const young = new Set<string>();
    for (const [target, claim] of claims.byTarget) if (claim.atMs > oldest) young.add(target);
    return young;
  }

  /**
   * When the first of `targets` that is settling in `claims` stops settling, by the server's
   * clock; undefined when none is.
   */
  settlesAt(claims: PoolClaims, targets: Iterable<string>): number | undefined {
    let first: number | undefined;
    for (const target of targets) {
      const claim = claims.byTarget.get(target);
      if (claim === undefined || claim.atMs <= claims.readAtMs - this.#settleMs) continue;
      const end = claim.atMs + this.#settleMs;
      if (first === undefined || end < first) first = end;
    }
    return first;
  }

  /**
   * Releases the claims of `claims` that no longer matter: the target is in no desired group of
   * the pool (`placed` lacks it) or in its claimed group's stored share and no other
   * (`sharesHolding`); and, by the server's clock, the claim is older than `keepMs`. The claims
   * too young by this process's estimate of the server's clock are not sent. While a release of
   * the pool's claims is in flight from this process, nothing is sent: resolutions a moment
   * apart read the same claims, and would send the same fields again (a cold start's claims are
   * thousands per pool). Returns how many were deleted.
   */
  async release(
    bindingName: string,
    groupArns: readonly string[],
    claims: PoolClaims,
    settled: (target: string, claim: PlacementClaim) => boolean,
  ): Promise<number> {
    const key = this.key(bindingName, groupArns);
    if (this.#releasing.has(key)) return 0;
    const oldest = claims.readAtMs - this.#keepMs;
    const done: [string, string][] = [];
    for (const [target, claim] of claims.byTarget) {
      if (claim.atMs <= oldest && settled(target, claim)) done.push([target, claim.value]);
    }
    if (done.length === 0) return 0;
    this.#releasing.add(key);
    try {
      const command = this.#command(releaseCommand);
      const deleted = await Promise.all(
        chunks(done, CLAIM_CHUNK_TARGETS).map(
          (chunk) =>
            command.call(
              this.#redis,
              key,
              String(this.#keepMs),
              ...chunk.flat(),
            ) as Promise<number>,
        ),
      );
      return deleted.reduce((a, b) => a + b, 0);
    } finally {
      this.#releasing.delete(key);
    }
  }

  #command(name: string): ScriptCommand {
    return (this.#redis as unknown as Record<string, ScriptCommand>)[name] as ScriptCommand;
  }
}

/** What a resolution's claims changed: the placement, and the targets it could not give up. */
export interface AdoptedPlacement {
  readonly desired: DesiredTargets;
  /** Targets lost to another group's claim that the resolution kept: that group had no room. */
  readonly kept: string[];
}

/**
 * `desired` with each target of `lost` moved to the group claimed for it, where that group has
 * room by its capacity. A target another resolution claimed is registered there by that
 * resolution's reconciles: placing it elsewhere too would register it twice until one group
 * gave it up. Without room (the claim came from a view of the pool this one does not share),
 * the target stays where this resolution put it.
 */
export function adoptClaims(
  desired: DesiredTargets,
  lost: ReadonlyMap<string, string>,
): AdoptedPlacement {
  if (lost.size === 0) return { desired, kept: [] };
  // Only the groups a target leaves or joins are copied (a pool's groups hold thousands).
  const copies = new Map<string, DesiredGroup>();
  const copy = (arn: string): DesiredGroup => {
    let group = copies.get(arn);
    if (group === undefined) {
      const original = desired.groups.get(arn) as DesiredGroup;
      group = { ...original, targets: new Map(original.targets) };
      copies.set(arn, group);
    }
    return group;
  };
  const current = (arn: string): DesiredGroup =>
    copies.get(arn) ?? (desired.groups.get(arn) as DesiredGroup);
  // First every lost target out of its group, then into the claimed ones in key order: the room
  // one leaves is there for another, whatever order they come in.
  const moving: { target: string; value: DesiredTarget; from: string; to: string }[] = [];
  for (const [target, to] of [...lost].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!desired.groups.has(to)) continue;
    for (const [from, group] of desired.groups) {
      const value = group.targets.get(target);
      if (value === undefined) continue;
      if (from !== to) {
        copy(from).targets.delete(target);
        moving.push({ target, value, from, to });
      }
      break;
    }
  }
  const kept: string[] = [];
  const stays: typeof moving = [];
  const changed = new Set<string>();
  for (const move of moving) {
    const into = current(move.to);
    if (into.targets.size < into.targetGroup.capacity) {
      copy(move.to).targets.set(move.target, move.value);
      changed.add(move.to).add(move.from);
    } else {
      kept.push(move.target);
      stays.push(move);
    }
  }
  // What did not fit goes back (it left room behind, so it fits there again).
  for (const { target, value, from } of stays) copy(from).targets.set(target, value);
  if (changed.size === 0) return { desired, kept };
  const conflicts = new Map<string, Conflict>();
  for (const group of desired.groups.values()) {
    for (const conflict of group.conflicts) conflicts.set(conflict.target, conflict);
  }
  const groups = new Map<string, DesiredGroup>();
  for (const [arn, group] of desired.groups) {
    groups.set(arn, changed.has(arn) ? sortedGroup(copy(arn), conflicts) : group);
  }
  return { desired: { ...desired, groups }, kept };
}

/** A group with its targets in key order again, and the conflicts among them (in that order). */
function sortedGroup(group: DesiredGroup, conflicts: ReadonlyMap<string, Conflict>): DesiredGroup {
  const keys = [...group.targets.keys()].sort();
  const targets = new Map(keys.map((k) => [k, group.targets.get(k) as DesiredTarget]));
  return { ...group, targets, conflicts: keys.flatMap((k) => conflicts.get(k) ?? []) };
}

const CLAIM_VALUE = /^(\d+)\|(\d+)$/;

function parseClaim(value: string, arns: readonly string[]): PlacementClaim | undefined {
  const match = CLAIM_VALUE.exec(value);
  const index = match?.[1];
  const arn = index === undefined ? undefined : arns[Number(index)];
  // The script compares indexes as text: '01' is no claim of group 1.
  if (match === null || arn === undefined || String(Number(index)) !== index) return undefined;
  return { arn, value, atMs: Number(match[2]) };
}

function sortedUnique(arns: readonly string[]): string[] {
  return [...new Set(arns)].sort();
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

import { runSteps, type Steps } from '../state/cooperative.js';

/** One group of a pool as the assignment sees it. */
export interface PoolGroupCapacity {
  readonly arn: string;
  /** Most targets the group may hold (its quota); 0 takes none. */
  readonly capacity: number;
}

/**
 * Where a pool last placed each target: `get` gives its group's ARN. A `Map` is one; so is a view
 * of the stored shares with the placement claims laid over them, without copying either.
 */
export type PreviousAssignment = Pick<ReadonlyMap<string, string>, 'get' | 'has'>;

/** Outcome of {@link assignToPool}. */
export interface PoolAssignment {
  /** Target → group ARN, for every target that fits. */
  readonly assignment: Map<string, string>;
  /** Targets beyond the pool's total capacity, sorted: reported, never silently dropped. */
  readonly overflow: string[];
  /** Targets per group ARN (every group present, 0 when empty). */
  readonly counts: Map<string, number>;
  /** Targets whose group differs from `previous` (new targets do not count). */
  readonly moved: number;
  /**
   * Settling targets kept in a group that has no room for them counting AWS's targets: only
   * settling keeps them there (empty without `occupied`).
   */
  readonly heldForSettling: string[];
}

// 32-bit FNV-1a, then murmur3's finalizer: cheap, deterministic across processes and versions
// (a pool of 100 groups and 100,000 targets costs 10 million scores per resolution, so no crypto).
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

function fmix32(value: number): number {
  let h = value;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Weighted rendezvous score of a target for a group: `capacity / -ln(u)` with `u` uniform in
 * (0, 1) from the pair's hash (Schindelhauer and Schomaker's weighted HRW), so that with no caps
 * reached each group receives a share of targets proportional to its capacity.
 */
function score(targetHash: number, groupHash: number, capacity: number): number {
  const mixed = fmix32((targetHash ^ Math.imul(groupHash, 0x9e3779b1)) >>> 0);
  const u = (mixed + 0.5) / 4294967296;
  return capacity / -Math.log(u);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Assigns every target to one group of a pool: weighted rendezvous hashing with capacity caps,
 * made sticky by `previous`, and aware of the targets each group still holds in AWS when
 * `occupied` is given.
 *
 * 1. A target keeps its previous group while that group exists and is within capacity (a group
 *    whose capacity shrank keeps the targets that score highest for it), so churn moves only the
 *    targets that must move: a new target moves nobody, a removed one moves nobody, a removed
 *    group moves only its own targets.
 * 2. Every other target, in sorted order, goes to the group that scores highest for it among
 *    those with room; when no group has room it is reported in `overflow`.
 *
 * With `occupied` (per group, every target AWS holds in it: registered or draining), room counts
 * what AWS counts. A deregistered target drains for the group's deregistration delay and keeps
 * its place in the quota meanwhile, so a group whose old targets drain has less room than its
 * desired count says:
 * - a target already held by a group with room stays there (no call needed);
 * - a target kept from `previous` but not registered yet leaves a group that has no room counting
 *   its draining targets (it would wait for the drain; elsewhere it need not), unless it is
 *   `settling`: placed there a moment ago, its group may be registering it now (and AWS's
 *   occupants, read earlier, would not show it), so moving it would register it twice;
 * - new targets go first to groups with room counting draining ones, and only when none has any
 *   to a group with room by capacity alone, where they wait for the drain; targets that left a
 *   group are placed before new ones, and go back when room is nowhere. So draining decides
 *   where targets go, never which overflow: `overflow` is what it is without `occupied`.
 *
 * Deterministic: the same inputs give the same assignment in every process.
 */
export function assignToPool(
  targets: Iterable<string>,
  groups: readonly PoolGroupCapacity[],
  previous?: PreviousAssignment,
  occupied?: ReadonlyMap<string, ReadonlySet<string>>,
  settling?: ReadonlySet<string>,
): PoolAssignment {
  return runSteps(assignToPoolSteps(targets, groups, previous, occupied, settling));
}

/** {@link assignToPool} as steps (see `cooperative.ts`): it may pause every thousand targets. */
export function* assignToPoolSteps(
  targets: Iterable<string>,
  groups: readonly PoolGroupCapacity[],
  previous?: PreviousAssignment,
  occupied?: ReadonlyMap<string, ReadonlySet<string>>,
  settling?: ReadonlySet<string>,
): Steps<PoolAssignment> {
  // No order is needed until step 2 sorts what it places (and step 1 what it must cut): a
  // rolling restart keeps nearly every target, and sorting them all was most of this function.
  const uniqueTargets = new Set(targets);
  // A duplicated ARN counts once, with its first capacity (validation rejects duplicates anyway).
  const capacityByArn = new Map<string, number>();
  for (const g of groups) {
    if (!capacityByArn.has(g.arn)) capacityByArn.set(g.arn, Math.max(0, Math.floor(g.capacity)));
  }
  const groupList = [...capacityByArn.entries()]
    .sort(([a], [b]) => compareText(a, b))
    .map(([arn, capacity]) => ({ arn, capacity, hash: hash32(arn) }));
  const groupByArn = new Map(groupList.map((g) => [g.arn, g]));
  const targetHash = new Map<string, number>();
  const hashOf = (target: string): number => {
    let h = targetHash.get(target);
    if (h === undefined) {
      h = hash32(target);
      targetHash.set(target, h);
    }
    return h;
  };

  const assignment = new Map<string, string>();
  const counts = new Map<string, number>(groupList.map((g) => [g.arn, 0]));
  const unplaced: string[] = [];
  /** Kept targets not registered yet that leave a group without room counting AWS's targets. */
  const leaving: string[] = [];
  const heldForSettling: string[] = [];

  // Step 1: keep previous placements, trimmed to each group's capacity.
  const keptByGroup = new Map<string, string[]>();
  let visited = 0;
  yield;
  for (const target of uniqueTargets) {
    if (++visited % 1_000 === 0) yield;
    const arn = previous?.get(target);
    if (arn === undefined || !groupByArn.has(arn)) {
      unplaced.push(target);
      continue;
    }
    const list = keptByGroup.get(arn);
    if (list === undefined) keptByGroup.set(arn, [target]);
    else list.push(target);
  }
  for (const [arn, kept] of keptByGroup) {
    const group = groupByArn.get(arn);
    if (group === undefined) continue;
    const trimmed = kept.length > group.capacity;
    if (trimmed) {
      kept.sort(
        (a, b) =>
          score(hashOf(b), group.hash, 1) - score(hashOf(a), group.hash, 1) || compareText(a, b),
      );
      unplaced.push(...kept.splice(group.capacity));
    }
    const held = occupied?.get(arn);
    if (held !== undefined) {
      // Registered targets first, and settling ones (perhaps being registered); then
      // unregistered ones while the group has room counting what it still holds in AWS (the
      // others would only wait there for a drain).
      const registered = kept.filter((t) => held.has(t));
      const pinned = kept.filter((t) => !held.has(t) && settling?.has(t) === true);
      const waiting = kept.filter((t) => !held.has(t) && settling?.has(t) !== true);
      const others = held.size - registered.length;
      const roomBeforePinned = group.capacity - others - registered.length;
      if (pinned.length > roomBeforePinned) heldForSettling.push(...pinned);
      const room = Math.max(0, roomBeforePinned - pinned.length);
      if (waiting.length > room) {
        // Those that stay: the highest scores when trimmed, else the first in key order.
        if (!trimmed) waiting.sort();
        leaving.push(...waiting.splice(room));
        kept.length = 0;
        kept.push(...registered, ...pinned, ...waiting);
      }
    }
    for (const target of kept) assignment.set(target, arn);
    counts.set(arn, kept.length);
    yield;
  }

  // AWS's occupants of each group that are not (yet) assigned to it: draining or leaving.
  const elsewhere = new Map<string, number>();
  if (occupied !== undefined) {
    for (const group of groupList) {
      let n = 0;
      for (const target of occupied.get(group.arn) ?? []) {
        if (assignment.get(target) !== group.arn) n++;
      }
      elsewhere.set(group.arn, n);
      yield;
    }
  }
  const place = (target: string, arn: string): void => {
    assignment.set(target, arn);
    counts.set(arn, (counts.get(arn) ?? 0) + 1);
    // Placed where AWS already holds it: it no longer occupies a place as a leaving target.
    if (occupied?.get(arn)?.has(target) === true) {
      elsewhere.set(arn, (elsewhere.get(arn) ?? 0) - 1);
    }
  };
  const best = (
    h: number,
    fits: (group: (typeof groupList)[number]) => boolean,
  ): (typeof groupList)[number] | undefined => {
    let chosen: (typeof groupList)[number] | undefined;
    let bestScore = -Infinity;
    for (const group of groupList) {
      if (!fits(group)) continue;
      const s = score(h, group.hash, group.capacity);
      if (s > bestScore) {
        bestScore = s;
        chosen = group;
      }
    }
    return chosen;
  };
  const hasRoom = (group: (typeof groupList)[number]): boolean =>
    (counts.get(group.arn) ?? 0) < group.capacity;
  const hasRoomCountingAws = (group: (typeof groupList)[number]): boolean =>
    (counts.get(group.arn) ?? 0) + (elsewhere.get(group.arn) ?? 0) < group.capacity;

  // Step 2: place the rest by rendezvous score among groups with room.
  // Targets that left a group to look for room go first: they were placed before any new
  // target, and going back must find their place still free.
  // Strings: the default order is compareText's, without a call per comparison.
  unplaced.sort();
  unplaced.unshift(...leaving.sort());
  const overflow: string[] = [];
  yield;
  for (const target of unplaced) {
    if (++visited % 500 === 0) yield;
    const h = hashOf(target);
    let chosen: (typeof groupList)[number] | undefined;
    if (occupied !== undefined) {
      chosen =
        groupList.find((g) => occupied.get(g.arn)?.has(target) === true && hasRoom(g)) ??
        best(h, hasRoomCountingAws);
      // Room nowhere: a target that left its group to look for room goes back and waits there,
      // rather than to whichever group scores highest (it would only wait there instead).
      const before = previous?.get(target);
      const back = before === undefined ? undefined : groupByArn.get(before);
      if (chosen === undefined && back !== undefined && hasRoom(back)) chosen = back;
    }
    chosen ??= best(h, hasRoom);
    if (chosen === undefined) {
      overflow.push(target);
      continue;
    }
    place(target, chosen.arn);
  }

  let moved = 0;
  yield;
  if (previous !== undefined) {
    for (const [target, arn] of assignment) {
      const before = previous.get(target);
      if (before !== undefined && before !== arn) moved++;
    }
    for (const target of overflow) if (previous.has(target)) moved++;
  }
  return { assignment, overflow: overflow.sort(), counts, moved, heldForSettling };
}

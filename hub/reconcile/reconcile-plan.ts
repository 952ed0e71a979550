import { canonicalAddress } from '../../shared/index.js';
import type { DesiredTarget } from '../federation/desired-targets.js';
import { isPresent, type TargetHealthState, type TargetRef } from '../aws/target-group-api.js';

/** The mass-deregistration guard's settings (DESIGN.md, Safety). */
export interface DeregistrationGuard {
  /** A reconcile removing more than this share of tgfed's targets in a group is held (0–1). */
  readonly maxShare: number;
  /** Removals of fewer targets than this are never held, whatever the share. */
  readonly minTargets: number;
}

/** Why the guard lets a large removal through. */
export type GuardBypass = 'binding-deleted' | 'released';

/** What one reconcile starts from. */
export interface ReconcilePlanInput {
  /** `ip:port` → target, from the hub's resolution. */
  readonly desired: ReadonlyMap<string, DesiredTarget>;
  /** `ip:port` → ELB state, from the cache or a fresh describe. */
  readonly actual: ReadonlyMap<string, TargetHealthState>;
  /** `ip:port` tgfed registered: the only targets it may deregister. */
  readonly owned: ReadonlySet<string>;
  /** Most targets the group may hold (its AWS quota or tgfed's budget). */
  readonly capacity: number;
  /** The group's AvailabilityZone setting for registered targets ('' to let ELB pick). */
  readonly availabilityZone: string;
  /** A feeding cluster has not resynced: nothing may be deregistered. */
  readonly deregistrationsBlocked: boolean;
  /** Whether draining targets still count toward the group's quota (assumed so by default). */
  readonly drainingCountsTowardCapacity: boolean;
  readonly guard: DeregistrationGuard;
  readonly bypass?: GuardBypass | undefined;
}

/** A target of the plan with its `ip:port` key. */
export interface PlannedTarget extends TargetRef {
  readonly key: string;
}

/** What one reconcile will do, in order. */
export interface ReconcilePlan {
  /** Registered first (make before break): desired targets that fit in the group now. */
  readonly registerFirst: PlannedTarget[];
  /** Owned targets to remove: not desired, or stale and reported unhealthy. */
  readonly deregister: PlannedTarget[];
  /** Registered after the deregistrations, into the room they free. */
  readonly registerAfter: PlannedTarget[];
  /** Desired targets that do not fit yet (the group is full); they wait for room. */
  readonly waitingForCapacity: number;
  /** Removals the guard holds (none planned in `deregister` then). */
  readonly held: { readonly deregistrations: number; readonly targetsBefore: number } | undefined;
  /** Removals not planned because deregistrations are blocked until clusters resync. */
  readonly blockedDeregistrations: number;
  /** Stale clusters' targets ELB reports unhealthy, withdrawn (the default disconnected policy). */
  readonly withdrawnUnhealthy: string[];
  /** Owned targets that are neither in the group nor desired: only the ownership is dropped. */
  readonly disown: string[];
  /**
   * Desired targets already present in the group that tgfed does not own: claimed, so that
   * tgfed deregisters them once they are no longer desired. They are the ones it registered
   * before Redis lost its ownership records (or that someone registered for the same pod).
   */
  readonly adopt: string[];
  /** Stale clusters' desired targets whose health decides whether they stay. */
  readonly watchedForHealth: number;
}

/** The IP and port of an `ip:port` / `[ipv6]:port` key. */
export function parseTargetKey(key: string): { id: string; port: number } {
  const colon = key.lastIndexOf(':');
  const host = key.slice(0, colon);
  const port = Number(key.slice(colon + 1));
  const id = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return { id: canonicalAddress(id), port };
}

function planned(key: string, availabilityZone: string): PlannedTarget {
  const { id, port } = parseTargetKey(key);
  return availabilityZone === '' ? { key, id, port } : { key, id, port, availabilityZone };
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Plans one reconcile of one target group (DESIGN.md, Reconcile and Safety):
 *
 * - Desired targets not present (absent, or draining) are registered; present ones are left.
 * - Only owned targets are ever deregistered, so foreign targets in a shared group stay.
 *   A desired target found present without being owned is adopted (after a Redis loss the
 *   ownership of every target tgfed registered is gone; without this they would stay forever).
 * - Make before break: registrations that fit come first; if the group is full, the rest go in
 *   after the deregistrations, into the room they free — never over `capacity`.
 * - A stale cluster's target (`withdrawIfUnhealthy`) goes only when ELB reports it unhealthy,
 *   and is not registered again.
 * - The guard holds every deregistration of a reconcile that would shrink the group by more
 *   than `guard.maxShare` of tgfed's present targets (and remove at least `guard.minTargets`),
 *   unless the removal follows a binding deletion or an operator released it. The shrink is
 *   net of the registrations this reconcile makes: a rolling restart replaces targets (new
 *   addresses registered first, old ones removed) and leaves the group as large as before, so
 *   it is never held; an agent reporting its endpoints gone is.
 * - While deregistrations are blocked (clusters awaiting resync) none is planned.
 */
export function planReconcile(input: ReconcilePlanInput): ReconcilePlan {
  const { desired, actual, owned } = input;
  const az = input.availabilityZone;

  const toRegister: string[] = [];
  const adopt: string[] = [];
  for (const [key, target] of desired) {
    const state = actual.get(key);
    if (state !== undefined && isPresent(state) && !owned.has(key)) adopt.push(key);
    // A stale cluster's target is kept while present, never added back: once withdrawn for
    // being unhealthy it would otherwise flap in and out.
    if ((state === undefined || !isPresent(state)) && !target.withdrawIfUnhealthy) {
      toRegister.push(key);
    }
  }

  const remove: string[] = [];
  const withdrawnUnhealthy: string[] = [];
  const disown: string[] = [];
  let targetsBefore = 0;
  let watchedForHealth = 0;
  for (const key of owned) {
    const state = actual.get(key);
    if (state === undefined) {
      if (!desired.has(key)) disown.push(key);
      continue;
    }
    if (!isPresent(state)) continue;
    targetsBefore++;
    const target = desired.get(key);
    if (target === undefined) {
      remove.push(key);
    } else if (target.withdrawIfUnhealthy) {
      watchedForHealth++;
      if (state === 'unhealthy') {
        remove.push(key);
        withdrawnUnhealthy.push(key);
      }
    }
  }
  remove.sort(compareText);
  toRegister.sort(compareText);

  let occupied = 0;
  for (const state of actual.values()) {
    if (isPresent(state) || input.drainingCountsTowardCapacity) occupied++;
  }
  const roomNow = Math.max(0, input.capacity - occupied);
  // Registrations this reconcile can make if the removals go ahead (they free room only when
  // draining targets do not count), so the guard weighs what the group loses, net.
  const replacing = Math.min(
    toRegister.length,
    roomNow + (input.drainingCountsTowardCapacity ? 0 : remove.length),
  );

  let deregister: string[] = [];
  let held: ReconcilePlan['held'];
  let blockedDeregistrations = 0;
  if (input.deregistrationsBlocked) {
    blockedDeregistrations = remove.length;
  } else if (
    input.bypass === undefined &&
    remove.length >= input.guard.minTargets &&
    remove.length - replacing > input.guard.maxShare * targetsBefore
  ) {
    held = { deregistrations: remove.length, targetsBefore };
  } else {
    deregister = remove;
  }
  const removing = new Set(deregister);
  const first = toRegister.slice(0, roomNow);
  const freed = input.drainingCountsTowardCapacity ? 0 : removing.size;
  const after = toRegister.slice(first.length, first.length + freed);

  return {
    registerFirst: first.map((k) => planned(k, az)),
    deregister: deregister.map((k) => planned(k, az)),
    registerAfter: after.map((k) => planned(k, az)),
    waitingForCapacity: toRegister.length - first.length - after.length,
    held,
    blockedDeregistrations,
    withdrawnUnhealthy: withdrawnUnhealthy.filter((k) => removing.has(k)),
    disown: disown.sort(compareText),
    adopt: adopt.sort(compareText),
    watchedForHealth,
  };
}

/**
 * Splits targets into calls. ELBv2 documents no maximum per RegisterTargets /
 * DeregisterTargets call; the chunk size trades calls against the shared per-account budget
 * (~4 mutating calls/s) for request size and blast radius: one refused target fails the whole
 * call, and the reconcile then bisects the chunk to find it.
 */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

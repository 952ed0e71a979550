import type { Conflict, TargetGroup } from '../../shared/index.js';
import { runSliced, type ClusterEndpointStore, type RedisClient } from '../state/index.js';
import type { BindingSnapshot, BindingStore } from './binding-store.js';
import type { NormalizedBinding } from './binding-validation.js';
import {
  collectDesiredTargetSteps,
  placeDesiredTargetSteps,
  type ClusterDirectory,
  type ClusterEndpointState,
  type ClusterStatus,
  type ClusterStatusSource,
  type DesiredTarget,
  type DesiredTargets,
  type StaleClusterPolicy,
  type TargetSource,
} from './desired-targets.js';
import { GroupAssignmentStore } from './group-assignment-store.js';
import type { PreviousAssignment } from './pool-assignment.js';
import {
  PoolPlacementClaims,
  adoptClaims,
  NO_CLAIMS,
  type PoolClaims,
  type PoolPlacementClaimsOptions,
  type WantedPlacement,
} from './pool-placement-claims.js';
import { StoredClusterStates } from './stored-cluster-states.js';
import { selectsCluster } from './subscription-resolver.js';

/** Options of {@link TargetGroupDesiredState}. */
export interface TargetGroupDesiredStateOptions {
  /** Cluster labels, for the bindings' cluster selectors. */
  readonly directory: ClusterDirectory;
  /** Connection and resync status per cluster. */
  readonly status: ClusterStatusSource;
  /**
   * Clusters to consider besides those found in Redis (e.g. the clusters file's list).
   * @default none
   */
  readonly listedClusters?: () => Iterable<string>;
  /**
   * Find the clusters that hold endpoint state in Redis (SCAN; see `StoredClusterStates`).
   * @default true
   */
  readonly discoverStoredClusters?: boolean;
  /** @default 'withdraw-if-unhealthy' */
  readonly staleClusterPolicy?: StaleClusterPolicy;
  /** @default Date.now */
  readonly clock?: () => number;
  /**
   * Detects a Redis loss during a resolution (DESIGN.md, Safety). Without it, `status` alone
   * decides, and a status read before a FLUSHALL could vouch for the empty state read after it.
   * @default none
   */
  readonly storageEpoch?: StorageEpochGuard;
  /**
   * What AWS holds in each group, for pools whose groups run short of room (see
   * {@link GroupOccupancySource}). Without it, pools are placed by desired targets alone.
   * @default none
   */
  readonly occupancy?: GroupOccupancySource;
  /**
   * Binding resolutions computed at once; others wait their turn. A resolution is mostly CPU
   * (decoding and placing every endpoint of the pool), so running many at once only makes all
   * of them finish late: after a cold start's sync, 21 pools resolved together took two seconds
   * before any group could register, where one after another the first pool's groups register
   * within a tenth of a second while the rest are resolved.
   * @default 2
   */
  readonly maxConcurrentResolutions?: number;
  /**
   * The claims of pool placements (see `PoolPlacementClaims`); for tests.
   * @default its defaults
   */
  readonly claims?: PoolPlacementClaimsOptions;
  /**
   * Called when a pool resolution lost placements to claims made meanwhile (see
   * `PoolPlacementClaims`): `adopted` went to the claimed group, `kept` stayed (no room there).
   * @default none
   */
  readonly onClaimsLost?: (lost: { binding: string; adopted: number; kept: string[] }) => void;
  /**
   * Whether resolutions write placements: each group's share of its pools when it is resolved,
   * and the pools' claims. Off for a reader that only reports (the hub's admin API and
   * metrics): it reads the shares and claims as workers leave them and places by them, but a
   * placement of its own (made without AWS's occupants) must not become where a worker puts a
   * target.
   * @default true
   */
  readonly writesPlacements?: boolean;
}

/**
 * The targets AWS holds in each target group (registered or draining), as the workers last knew
 * them. A pool resolution reads the counts every time and the targets only when some group might
 * not fit its desired targets beside them, and then places new targets where they fit counting
 * the draining ones: a full rolling restart of a half-full pool then waits for no drain.
 */
export interface GroupOccupancySource {
  /**
   * How many places each group needs, in the order given: the targets it holds, plus those its
   * last reconcile left waiting for room (they are kept there, and need a place too).
   */
  counts(targetGroupArns: readonly string[]): Promise<number[]>;
  /** The targets (`ip:port`) each group holds, in the order given. */
  targets(targetGroupArns: readonly string[]): Promise<Set<string>[]>;
}

/**
 * The storage epoch as {@link TargetGroupDesiredState} checks it: the epoch the status source
 * answers for is taken before the cluster states are read and compared with the stored one
 * afterwards. If they differ (or none is stored), Redis was lost in between: every selected
 * cluster is treated as awaiting resync, whatever its cached status says. A group no binding
 * targets (Redis may have lost the bindings) is blocked while any known cluster awaits resync.
 */
export interface StorageEpochGuard {
  /** The epoch the status source last read; undefined before its first read. */
  known(): string | undefined;
  /** The epoch stored now ('' when Redis holds none). */
  stored(): Promise<string>;
  /**
   * The key of the stored epoch on the desired state's own Redis client: a resolution then reads
   * it in the same round trip as its last state reads, behind them, instead of calling
   * {@link stored}.
   * @default none
   */
  readonly key?: string;
  /** Called once per resolution that found a mismatch (e.g. to refresh the status source). */
  onMismatch?: () => void;
}

/** Everything one target group should hold, as a worker needs it. */
export interface GroupDesiredState {
  readonly targetGroupArn: string;
  /** The group's definition from the first binding (by name) that targets it; undefined if none. */
  readonly targetGroup: TargetGroup | undefined;
  /** Names of the bindings that target the group, sorted; empty when none does. */
  readonly bindings: string[];
  /** The bindings revision this state was resolved at. */
  readonly bindingsRevision: number;
  /** Keyed by `ip:port` (`[ip]:port` for IPv6), sorted by key. */
  readonly targets: Map<string, DesiredTarget>;
  /** IP:port announced by more than one cluster, within or across bindings; sorted by target. */
  readonly conflicts: Conflict[];
  /** A selected cluster has not resynced: the worker must not deregister anything. */
  readonly deregistrationsBlocked: boolean;
  /** The clusters that block deregistrations, sorted. */
  readonly awaitingResyncClusters: string[];
  /**
   * Feeding clusters still streaming their initial sync: the worker holds registrations until
   * they are done (or their hold runs out), so that the group fills in one call. Sorted.
   */
  readonly initialSyncClusters: string[];
  /**
   * Targets (`ip:port`) that fit in no group: the overflow of every pool the group belongs to,
   * plus targets beyond this group's capacity when several bindings fill it. Sorted.
   */
  readonly overflow: string[];
  /**
   * Other groups of its pools that the resolution gave targets their stored shares lack: they
   * should be reconciled soon, so that each writes its share and such a target does not wait
   * for their next change or drift check. Sorted.
   */
  readonly unsettledPoolGroups: string[];
  /**
   * For each of `unsettledPoolGroups`, one target this resolution placed there that the group's
   * stored share lacked: once the share holds it, the group was resolved since, and the nudge
   * it needed is moot (see {@link TargetGroupDesiredState.stillUnsettled}).
   */
  readonly unsettledProbes: ReadonlyMap<string, string>;
  /**
   * Of `unsettledPoolGroups`, those given a target another group's share holds (see
   * `DesiredTargets.movedInto`): no change request follows the move, so they are due now.
   * Their probe is such a target. Absent: none.
   */
  readonly movedIntoPoolGroups?: string[];
  /**
   * When a target kept in one of the group's pools only because it was settling (claimed a
   * moment ago, unregistered, perhaps where there is no room) stops settling: a group whose
   * targets wait for room should come back then, since the next resolution may place them
   * where there is room. Undefined when none is.
   */
  readonly settlesAtMs?: number;
  readonly resolvedAtMs: number;
  /**
   * When the oldest reads this state rests on began: everything written to Redis before then is
   * in it. A nudge made before then is settled by the reconcile that uses it.
   */
  readonly basisAtMs: number;
}

/**
 * How long a finished binding resolution stays available to reconciles begun before it, and how
 * long after it began it may be reused once its inputs are checked unchanged (see
 * `TargetGroupDesiredState#resolveBinding`). After that a reconcile resolves the pool afresh: with
 * the pool's assignment and its groups' occupancy as they are then.
 */
const SHARED_RESOLUTION_KEEP_MS = 5_000;

/**
 * A reconcile that finds a feeding cluster in its initial sync reads the statuses again when
 * they were read longer ago than this (they are read every second anyway): at most a few extra
 * reads a second per worker while clusters sync.
 */
const STATUS_FRESH_MS = 250;

/** What a binding resolution was computed from, to tell later that it still holds. */
interface ResolutionInputs {
  readonly knownEpoch: string | undefined;
  readonly storageLost: boolean;
  /** The selected clusters with their statuses, as one string. */
  readonly clusters: string;
  /** Each selected cluster's state fingerprint (`StoredClusterStates.load`), in their order. */
  readonly fingerprints: readonly string[];
  /** When its reads began. */
  readonly startedAtMs: number;
}

interface ResolvedBinding {
  readonly desired: DesiredTargets;
  readonly inputs: ResolutionInputs;
  /**
   * Groups of `desired.unsettled` whose shares were written from this resolution since: a
   * reconcile using it later does not nudge them again.
   */
  readonly settled: Set<string>;
}

interface SharedResolution {
  /** Its place in the order resolutions began (see `TargetGroupDesiredState.mark`). */
  readonly seq: number;
  settled: boolean;
  failed?: boolean;
  readonly result: Promise<ResolvedBinding>;
}

interface SharedResolutions {
  latest: SharedResolution | undefined;
  /** The resolution that begins when `latest` settles, shared by everyone waiting for it. */
  next: Promise<ResolvedBinding> | undefined;
}

/** What a pool's placement starts from, read beside its clusters' states. */
interface PoolReads {
  /**
   * The pool's stored assignment, `ip:port` → group ARN: the shares, and over them the claims
   * (see `PoolPlacementClaims`) of pools of several groups.
   */
  readonly previous: PreviousAssignment;
  /** The same from the shares alone: what the groups' reconciles have taken on. */
  readonly sharesPrevious: Map<string, string>;
  /** The pool's placement claims (pools of several groups; empty otherwise). */
  readonly claims: PoolClaims;
  /** This process's clock when the claims were read (their `readAtMs` is the server's). */
  readonly claimsReadAtLocalMs: number;
  /** Each group's stored share. */
  readonly shares: Map<string, Map<string, string>>;
  /**
   * How many places each group needs: AWS's targets and those waiting there for room (pools
   * with an occupancy source only).
   */
  readonly heldCounts: number[] | undefined;
  /**
   * The targets AWS holds in each group, read with the counts when a group is already full by
   * them: the pool is then short of room whatever the placement, so it is placed once, with them.
   */
  readonly occupants: Set<string>[] | undefined;
}

/** Counts of binding resolutions (for tests). */
export interface ResolutionCounts {
  /** Pools (or single groups) resolved from their clusters' stored state. */
  readonly computed: number;
  /** Resolutions used again after their inputs were found unchanged. */
  readonly reused: number;
  /** Targets a resolution placed and gave to the group another resolution had claimed since. */
  readonly claimsAdopted: number;
  /** Targets lost to another group's claim that stayed put: the claimed group had no room. */
  readonly claimsKept: number;
}

/**
 * The placement with the groups it moved a target into (`unsettled`): a target placed in a group
 * whose stored share lacks it is in no share that registers it until that group is resolved.
 * (A target moved out of a group stays in its share meanwhile: registered twice for a moment,
 * never lost; other bindings' targets in a shared group are not this placement's concern.)
 * Groups given a target another group's share holds are `movedInto` as well, with such a target
 * as their probe. `sharesPrevious` is the shares' assignment (target → a group holding it).
 */
function withUnsettled(
  placed: DesiredTargets,
  shares: ReadonlyMap<string, ReadonlyMap<string, string>>,
  sharesPrevious: ReadonlyMap<string, string>,
): DesiredTargets {
  const unsettled: string[] = [];
  const unsettledProbes = new Map<string, string>();
  const movedInto: string[] = [];
  for (const [arn, group] of placed.groups) {
    const share = shares.get(arn);
    let probe: string | undefined;
    for (const key of group.targets.keys()) {
      if (share?.has(key) === true) continue;
      probe ??= key;
      const from = sharesPrevious.get(key);
      if (from !== undefined && from !== arn) {
        probe = key;
        movedInto.push(arn);
        break;
      }
    }
    if (probe === undefined) continue;
    unsettled.push(arn);
    unsettledProbes.set(arn, probe);
  }
  return {
    ...placed,
    unsettled,
    unsettledProbes,
    ...(movedInto.length > 0 ? { movedInto } : {}),
  };
}

/** The first `settlesAtMs` of `placements`, as an optional field. */
function settlesAt(placements: readonly DesiredTargets[]): { settlesAtMs?: number } {
  const times = placements.flatMap((p) => (p.settlesAtMs === undefined ? [] : [p.settlesAtMs]));
  return times.length === 0 ? {} : { settlesAtMs: Math.min(...times) };
}

/** Winner ranking of one target, as in `resolveDesiredTargets`: freshest connection first. */
function connectionRank(target: DesiredTarget): number {
  return target.withdrawIfUnhealthy ? 2 : target.keptFailStatic ? 1 : 0;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function clusterOf(target: DesiredTarget): string {
  return target.sources[0]?.clusterId ?? '';
}

function sourceKey(s: TargetSource): string {
  return `${s.clusterId}\n${s.service}\n${s.podName}`;
}

/** The ARNs a binding targets, in its order. */
function targetGroupsOf(binding: NormalizedBinding): TargetGroup[] {
  return binding.target.$case === 'targetGroup'
    ? [binding.target.targetGroup]
    : binding.target.pool.groups;
}

/**
 * The desired state of one target group: every binding that targets it (alone or in a pool),
 * resolved against the stored state of the clusters each selects, merged.
 *
 * Pool stability: each resolution reads the pool's previous assignment from the groups' own
 * keys (`GroupAssignmentStore`) and writes back this group's share, so repeated resolutions keep
 * targets in place and churn moves only what must move.
 *
 * Shared resolutions: a binding is resolved over all its groups at once (the pool's clusters read
 * and its assignment computed), and the groups of a pool that a worker reconciles at about the
 * same time use one such resolution, as long as it began after their reconcile started (see
 * {@link mark}): every change written before a reconcile started is in what it uses. A
 * resolution that began earlier is used too when its inputs are unchanged: the same clusters
 * with the same statuses, the same stored digests of the services it matched (read again from
 * the services' index, without their endpoints) and the same storage epoch, for at most
 * {@link SHARED_RESOLUTION_KEEP_MS} after it began. So after a cold start's sync, the ten groups
 * of a pool that a worker reconciles one after another, as their accounts' rate limits let
 * them, cost one resolution, not ten.
 *
 * Two bindings feeding one group: their targets are merged; the same `ip:port` from different
 * clusters is a conflict, registered once from the same winner `resolveDesiredTargets` would
 * pick (freshest connection, then lowest cluster id).
 */
export class TargetGroupDesiredState {
  readonly #bindings: BindingStore;
  readonly #clusters: StoredClusterStates;
  readonly #assignments: GroupAssignmentStore;
  readonly #options: TargetGroupDesiredStateOptions;
  readonly #clock: () => number;
  /** Binding (generation, name, version) → its shared resolutions. */
  readonly #shared = new Map<string, SharedResolutions>();
  /** Binding resolutions begun so far; see {@link mark}. */
  #computations = 0;
  #computed = 0;
  #reused = 0;
  #claimsAdopted = 0;
  #claimsKept = 0;
  readonly #claims: PoolPlacementClaims;
  /** Resolutions that may still begin now, and those waiting for a turn (FIFO). */
  #resolutionSlots: number;
  readonly #resolutionQueue: (() => void)[] = [];
  /** The stored cluster ids as last read: the clusters a resolution reads beside the index. */
  #storedIds: readonly string[] | undefined;
  /** The last bindings snapshot read, reused while the store's revision and generation hold. */
  #snapshot: BindingSnapshot | undefined;

  constructor(
    deps: { redis: RedisClient; store: ClusterEndpointStore; bindings: BindingStore },
    options: TargetGroupDesiredStateOptions,
  ) {
    this.#bindings = deps.bindings;
    this.#clusters = new StoredClusterStates(deps.redis, deps.store);
    this.#assignments = new GroupAssignmentStore(deps.redis, deps.store.keys.prefix);
    this.#claims = new PoolPlacementClaims(deps.redis, deps.store.keys.prefix, options.claims);
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
    const slots = options.maxConcurrentResolutions ?? 2;
    if (!Number.isInteger(slots) || slots < 1) {
      throw new RangeError(`maxConcurrentResolutions must be a positive integer, got ${slots}`);
    }
    this.#resolutionSlots = slots;
  }

  /**
   * Does now what the first resolution would otherwise do first: the SCAN that indexes the
   * clusters found in Redis (see `StoredClusterStates.storedClusterIds`) and the bindings' read.
   * A worker calls it as it starts, so that after a cold start's sync the first pool resolved,
   * which every group's first registration waits for, does not also pay for them.
   */
  async prepare(): Promise<void> {
    await Promise.all([this.#knownClusters(), this.#bindingsSnapshot()]);
  }

  /** Where a group's assignment is persisted (for tests and the admin API). */
  assignmentKey(targetGroupArn: string): string {
    return this.#assignments.key(targetGroupArn);
  }

  /** How many binding resolutions were computed and how many reused since this was made. */
  get resolutions(): ResolutionCounts {
    return {
      computed: this.#computed,
      reused: this.#reused,
      claimsAdopted: this.#claimsAdopted,
      claimsKept: this.#claimsKept,
    };
  }

  /**
   * A mark for {@link resolve}'s `since`: a resolution that passes it only uses reads begun after
   * this call. A reconcile takes one as it starts, so that every change written before it started
   * is seen while the reads of other groups of the same pool begun since then can be shared.
   */
  mark(): number {
    return this.#computations;
  }

  /**
   * Resolves the group's desired state and persists its share of its pools' assignment.
   *
   * @param since a {@link mark}: the binding resolutions used began after it (the groups of a
   *   pool reconciled at about the same time share one resolution of the pool). Without it,
   *   only resolutions begun after this call are used.
   */
  async resolve(targetGroupArn: string, since: number = this.mark()): Promise<GroupDesiredState> {
    const startedAtMs = this.#clock();
    const snapshot = await this.#bindingsSnapshot();
    const feeding = snapshot.bindings.filter((b) =>
      targetGroupsOf(b).some((g) => g.arn === targetGroupArn),
    );
    const empty = {
      targetGroupArn,
      bindingsRevision: snapshot.revision,
      targets: new Map<string, DesiredTarget>(),
      conflicts: [],
      deregistrationsBlocked: false,
      awaitingResyncClusters: [],
      initialSyncClusters: [],
      overflow: [],
      unsettledPoolGroups: [],
      unsettledProbes: new Map<string, string>(),
      resolvedAtMs: startedAtMs,
      basisAtMs: startedAtMs,
    };
    if (feeding.length === 0) return { ...empty, ...(await this.#unbound()) };
    // The group's stored share (what its last resolution wrote) is read while the bindings are
    // resolved: a round trip shorter, and a busy group's changes wait for the reconcile before.
    const [ownBefore, used] = await Promise.all([
      this.#assignments.read(targetGroupArn),
      Promise.all(
        feeding.map((binding) => this.#bindingResolution(binding, snapshot.generation, since)),
      ),
    ]);
    const resolutions = used.map((r) => r.desired);

    const targets = new Map<string, DesiredTarget>();
    const placedBy = new Map<string, string>();
    const conflictClusters = new Map<string, Set<string>>();
    const awaiting = new Set<string>();
    const syncing = new Set<string>();
    const overflow = new Set<string>();
    const unsettled = new Set<string>();
    const addConflict = (key: string, clusters: Iterable<string>): void => {
      let set = conflictClusters.get(key);
      if (set === undefined) conflictClusters.set(key, (set = new Set()));
      for (const c of clusters) set.add(c);
    };

    const settledBy = (arn: string, i: number): boolean => used[i]?.settled.has(arn) === true;
    const unsettledProbes = new Map<string, string>();
    const movedInto = new Set<string>();
    feeding.forEach((binding, i) => {
      const resolved = resolutions[i] as DesiredTargets;
      for (const key of resolved.overflow) overflow.add(key);
      const moved = new Set(resolved.movedInto);
      for (const arn of resolved.unsettled ?? []) {
        if (arn === targetGroupArn || settledBy(arn, i)) continue;
        unsettled.add(arn);
        const probe = resolved.unsettledProbes?.get(arn);
        if (probe === undefined) continue;
        // A moved target's probe wins: that group is due now.
        if (moved.has(arn) && !movedInto.has(arn)) {
          movedInto.add(arn);
          unsettledProbes.set(arn, probe);
        } else if (!unsettledProbes.has(arn)) {
          unsettledProbes.set(arn, probe);
        }
      }
      const group = resolved.groups.get(targetGroupArn);
      if (group === undefined) return;
      for (const c of group.awaitingResyncClusters) awaiting.add(c);
      for (const c of group.initialSyncClusters) syncing.add(c);
      for (const conflict of group.conflicts) addConflict(conflict.target, conflict.clusters);
      for (const [key, target] of group.targets) {
        const existing = targets.get(key);
        if (existing === undefined) {
          targets.set(key, target);
          placedBy.set(key, binding.name);
          continue;
        }
        if (clusterOf(existing) === clusterOf(target)) {
          // The same cluster's pod through two bindings: one target, every source.
          const sources = new Map<string, TargetSource>();
          for (const s of [...existing.sources, ...target.sources]) sources.set(sourceKey(s), s);
          targets.set(key, {
            ...existing,
            sources: [...sources.values()].sort((a, b) => compareText(sourceKey(a), sourceKey(b))),
          });
          continue;
        }
        addConflict(key, [clusterOf(existing), clusterOf(target)]);
        const better =
          connectionRank(target) - connectionRank(existing) ||
          compareText(clusterOf(target), clusterOf(existing));
        if (better < 0) {
          targets.set(key, target);
          placedBy.set(key, binding.name);
        }
      }
    });

    // Each binding caps the group at its capacity; together they could exceed it. Keep what the
    // group already held, then the rest in key order, so a full group does not churn.
    const definition = targetGroupsOf(feeding[0] as NormalizedBinding).find(
      (g) => g.arn === targetGroupArn,
    ) as TargetGroup;
    const sortedKeys = [...targets.keys()].sort(compareText);
    if (feeding.length > 1 && sortedKeys.length > definition.capacity) {
      const keep = [
        ...sortedKeys.filter((k) => ownBefore.has(k)),
        ...sortedKeys.filter((k) => !ownBefore.has(k)),
      ];
      for (const key of keep.slice(definition.capacity)) overflow.add(key);
      const kept = new Set(keep.slice(0, definition.capacity));
      for (let i = sortedKeys.length - 1; i >= 0; i--) {
        const key = sortedKeys[i] as string;
        if (!kept.has(key)) {
          sortedKeys.splice(i, 1);
          conflictClusters.delete(key);
        }
      }
    }

    const sortedTargets = new Map<string, DesiredTarget>();
    const assignment = new Map<string, string>();
    for (const key of sortedKeys) {
      const target = targets.get(key);
      if (target === undefined) continue;
      sortedTargets.set(key, target);
      assignment.set(key, placedBy.get(key) ?? '');
    }
    if (this.#options.writesPlacements !== false) {
      await this.#assignments.write(targetGroupArn, assignment, ownBefore);
      for (const r of used) {
        const share = r.desired.groups.get(targetGroupArn);
        if (share !== undefined && [...share.targets.keys()].every((key) => assignment.has(key))) {
          r.settled.add(targetGroupArn);
        }
      }
    }

    const conflicts = [...conflictClusters]
      .filter(([key, clusters]) => clusters.size > 1 && sortedTargets.has(key))
      .sort(([a], [b]) => compareText(a, b))
      .map(([target, clusters]) => ({ target, clusters: [...clusters].sort(compareText) }));
    const awaitingResyncClusters = [...awaiting].sort(compareText);
    return {
      ...empty,
      targetGroup: definition,
      bindings: feeding.map((b) => b.name),
      targets: sortedTargets,
      conflicts,
      deregistrationsBlocked: awaitingResyncClusters.length > 0,
      awaitingResyncClusters,
      initialSyncClusters: [...syncing].sort(compareText),
      overflow: [...overflow].sort(compareText),
      unsettledPoolGroups: [...unsettled].sort(compareText),
      unsettledProbes,
      ...(movedInto.size > 0 ? { movedIntoPoolGroups: [...movedInto].sort(compareText) } : {}),
      ...settlesAt(used.map((r) => r.desired)),
      basisAtMs: Math.min(startedAtMs, ...used.map((r) => r.inputs.startedAtMs)),
    };
  }

  /**
   * Of the groups a resolution found unsettled, those still so: whose stored share lacks the
   * probe target it placed there ({@link GroupDesiredState.unsettledProbes}). A share that holds
   * it was written by a resolution that read the shares after that one did (the target was in
   * no share then), so the group applied a placement at least as new, and needs no nudge. A
   * group without a probe counts as unsettled.
   */
  async stillUnsettled(
    groups: readonly string[],
    probes: ReadonlyMap<string, string>,
  ): Promise<string[]> {
    const held = await Promise.all(
      groups.map((arn) => {
        const probe = probes.get(arn);
        return probe === undefined ? Promise.resolve(false) : this.#assignments.holds(arn, probe);
      }),
    );
    return groups.filter((_, i) => held[i] !== true);
  }

  /**
   * The group's definition as {@link resolve} would give it (from the first binding that targets
   * it), from the bindings alone: no endpoint state is read. Undefined when no binding targets it.
   */
  async definition(targetGroupArn: string): Promise<TargetGroup | undefined> {
    const snapshot = await this.#bindingsSnapshot();
    for (const binding of snapshot.bindings) {
      const group = targetGroupsOf(binding).find((g) => g.arn === targetGroupArn);
      if (group !== undefined) return group;
    }
    return undefined;
  }

  /**
   * The clusters feeding the group that are streaming their initial sync (see
   * `ClusterStatus.initialSync`), sorted, from the bindings, the listed clusters and the status
   * source alone: no endpoint state is read, so a reconcile whose registrations were held can
   * tell cheaply that they still are.
   */
  async initialSyncClusters(targetGroupArn: string): Promise<string[]> {
    const syncing = await this.#initialSyncClusters(targetGroupArn);
    const status = this.#options.status;
    if (syncing.length === 0 || status.refreshOlderThan === undefined) return syncing;
    // The statuses are read every second: a sync may have ended since, and the reconcile this
    // asks for (often the one its SYNCED caused) would hold for nothing. Read them again.
    try {
      await status.refreshOlderThan(STATUS_FRESH_MS);
    } catch {
      return syncing;
    }
    return this.#initialSyncClusters(targetGroupArn);
  }

  /**
   * The clusters feeding the group that hold something of it back: streaming their initial sync
   * (its registrations wait) or awaiting a resync (its deregistrations are blocked), sorted,
   * from the statuses read again when older than {@link STATUS_FRESH_MS}. Like
   * {@link initialSyncClusters}, no endpoint state is read.
   */
  async holdingClusters(targetGroupArn: string): Promise<string[]> {
    try {
      await this.#options.status.refreshOlderThan?.(STATUS_FRESH_MS);
    } catch {
      // The statuses as last read.
    }
    return this.#feedingClusters(
      targetGroupArn,
      (status) => status.initialSync === true || status.awaitingResync,
    );
  }

  #initialSyncClusters(targetGroupArn: string): Promise<string[]> {
    return this.#feedingClusters(targetGroupArn, (status) => status.initialSync === true);
  }

  /** The listed clusters feeding the group whose status `holds`, sorted. */
  async #feedingClusters(
    targetGroupArn: string,
    holds: (status: ClusterStatus) => boolean,
  ): Promise<string[]> {
    // Mostly none holds anything: then no read at all.
    const candidates = [...(this.#options.listedClusters?.() ?? [])].filter((id) =>
      holds(this.#options.status.status(id)),
    );
    if (candidates.length === 0) return [];
    const snapshot = await this.#bindingsSnapshot();
    const syncing = new Set<string>();
    for (const binding of snapshot.bindings) {
      if (!targetGroupsOf(binding).some((g) => g.arn === targetGroupArn)) continue;
      for (const id of candidates) {
        if (selectsCluster(binding.clusters, id, this.#options.directory.labels(id) ?? {})) {
          syncing.add(id);
        }
      }
    }
    return [...syncing].sort(compareText);
  }

  /**
   * The bindings, read again only when the store's revision or generation moved: every reconcile
   * resolves against them, and they rarely change (at fleet scale, parsing every binding at every
   * reconcile was a visible share of the workers' CPU).
   */
  async #bindingsSnapshot(): Promise<BindingSnapshot> {
    const { revision, generation } = await this.#bindings.position();
    const cached = this.#snapshot;
    if (cached !== undefined && cached.revision === revision && cached.generation === generation) {
      return cached;
    }
    const snapshot = await this.#bindings.snapshot();
    this.#snapshot = snapshot;
    return snapshot;
  }

  /**
   * A group no binding targets, perhaps because Redis lost the bindings: while any cluster has
   * not resynced, nothing may be withdrawn from it either.
   */
  async #unbound(): Promise<
    Pick<
      GroupDesiredState,
      'targetGroup' | 'bindings' | 'deregistrationsBlocked' | 'awaitingResyncClusters'
    >
  > {
    const guard = this.#options.storageEpoch;
    const knownEpoch = guard?.known();
    const known = await this.#knownClusters();
    const statuses = new Map(known.map((id) => [id, this.#options.status.status(id)]));
    const storageLost = await this.#storageLost(knownEpoch);
    const awaitingResyncClusters = known.filter(
      (id) => storageLost || statuses.get(id)?.awaitingResync === true,
    );
    return {
      targetGroup: undefined,
      bindings: [],
      deregistrationsBlocked: awaitingResyncClusters.length > 0,
      awaitingResyncClusters,
    };
  }

  /**
   * The resolution of one binding over all its groups, shared by the groups it feeds: the one
   * begun last is used when it began after `since`; otherwise a new one begins (or, while one is
   * under way, the next one, which every group asking meanwhile shares), and that new one is the
   * last one again if its inputs are found unchanged. So the groups of a pool reconciled together
   * or one after another cost one read of the pool's clusters and one assignment, not one each.
   */
  #bindingResolution(
    binding: NormalizedBinding,
    generation: string | undefined,
    since: number,
  ): Promise<ResolvedBinding> {
    // The binding's store version changes with every write of it; the generation with a loss.
    const key = `${generation ?? ''}\n${binding.name}\n${binding.version}`;
    const shared = this.#shared.get(key) ?? { latest: undefined, next: undefined };
    this.#shared.set(key, shared);
    const latest = shared.latest;
    if (latest !== undefined && latest.seq > since) return latest.result;
    if (latest === undefined || latest.settled) {
      return this.#begin(key, shared, binding, latest).result;
    }
    shared.next ??= latest.result
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() => {
        shared.next = undefined;
        return this.#begin(key, shared, binding, latest).result;
      });
    return shared.next;
  }

  /** Begins a resolution: `before` again if its inputs still hold, otherwise a new one. */
  #begin(
    key: string,
    shared: SharedResolutions,
    binding: NormalizedBinding,
    before: SharedResolution | undefined,
  ): SharedResolution {
    const resolution: SharedResolution = {
      seq: ++this.#computations,
      settled: false,
      result: this.#resolveBinding(binding, before),
    };
    shared.latest = resolution;
    const settle = (): void => {
      resolution.settled = true;
      // A failed resolution is not shared any longer: the next group asking begins another.
      if (resolution.failed && shared.latest === resolution) shared.latest = undefined;
      // Kept only while reconciles begun before it may still ask for it.
      setTimeout(() => {
        if (this.#shared.get(key)?.latest === resolution && shared.next === undefined) {
          this.#shared.delete(key);
        }
      }, SHARED_RESOLUTION_KEEP_MS).unref();
    };
    resolution.result.then(settle, () => {
      resolution.failed = true;
      settle();
    });
    return resolution;
  }

  /**
   * One binding against the stored state of the clusters it selects, with its pool's assignment;
   * or `before`'s resolution again when resolving now would compute the same: not older than
   * {@link SHARED_RESOLUTION_KEEP_MS}, the same clusters selected with the same statuses, the
   * same digests of the services matched, the same storage epoch. The reads are the same either
   * way, two round trips: the clusters index with the services' digests, then the services that
   * changed and the stored epoch. Only a resolution computed anew waits for a turn (see
   * `maxConcurrentResolutions`) and reads the pool's assignment and occupancy. Those two are not
   * compared: they are the resolution's own placement being written, and registrations moving
   * (the age bound covers the rest).
   */
  async #resolveBinding(
    binding: NormalizedBinding,
    before: SharedResolution | undefined,
  ): Promise<ResolvedBinding> {
    const previous =
      before?.settled === true && before.failed !== true ? await before.result : undefined;
    // Not once a target it kept only for settling has settled (see `DesiredTargets.settlesAtMs`).
    const reusable =
      previous !== undefined &&
      this.#clock() - previous.inputs.startedAtMs <= SHARED_RESOLUTION_KEEP_MS &&
      (previous.desired.settlesAtMs === undefined || previous.desired.settlesAtMs > this.#clock())
        ? previous
        : undefined;
    let release = reusable === undefined ? await this.#turn() : undefined;
    try {
      const startedAtMs = this.#clock();
      // The epoch first, then statuses and states, then the stored epoch: a status can only
      // vouch for what was read after it if no Redis loss happened in between. The pool's stored
      // assignment and its groups' occupancy counts are read meanwhile: they are what the
      // placement starts from, not what it must be newer than (the states and statuses).
      const guard = this.#options.storageEpoch;
      const knownEpoch = guard?.known();
      let pool = reusable === undefined ? this.#poolReads(binding) : undefined;
      pool?.catch(() => undefined);
      const indexed = await this.#clusters.readIndexes({
        likely: this.#selected(binding, this.#storedIds ?? []),
        choose: (stored) => this.#selected(binding, stored),
        selectors: [binding.services],
      });
      this.#storedIds = indexed.storedIds;
      const statuses = new Map(
        indexed.clusterIds.map((id) => [id, this.#options.status.status(id)] as const),
      );
      const clusters = JSON.stringify([...statuses]);
      const unchanged =
        reusable !== undefined &&
        knownEpoch === reusable.inputs.knownEpoch &&
        clusters === reusable.inputs.clusters &&
        indexed.fingerprints.length === reusable.inputs.fingerprints.length &&
        indexed.fingerprints.every((f, i) => f === reusable.inputs.fingerprints[i]);
      // Computed anew: a turn, and the pool's reads beside the states' (once).
      const compute = async (): Promise<void> => {
        if (release !== undefined) return;
        release = await this.#turn();
        pool = this.#poolReads(binding);
        pool.catch(() => undefined);
      };
      if (!unchanged) await compute();
      const { states, value } = await this.#clusters.loadIndexed(indexed, guard?.key);
      const storageLost = await this.#storageLost(
        knownEpoch,
        guard?.key === undefined ? undefined : (value ?? ''),
      );
      if (unchanged && storageLost === reusable.inputs.storageLost) {
        this.#reused++;
        return reusable;
      }
      await compute();
      this.#computed++;
      const inputs: ResolutionInputs = {
        knownEpoch,
        storageLost,
        clusters,
        fingerprints: states.map((state) => state.fingerprint),
        startedAtMs,
      };
      const poolRead = await (pool as Promise<PoolReads>);
      const desired = await this.#placeBinding(binding, states, statuses, storageLost, poolRead);
      return { desired, inputs, settled: new Set() };
    } finally {
      release?.();
    }
  }

  /** A turn to compute a resolution (see `maxConcurrentResolutions`): call the release after. */
  async #turn(): Promise<() => void> {
    if (this.#resolutionSlots > 0) this.#resolutionSlots--;
    else await new Promise<void>((resolve) => this.#resolutionQueue.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#resolutionQueue.shift();
      if (next === undefined) this.#resolutionSlots++;
      else next();
    };
  }

  /** The clusters the binding selects of those listed and `stored` (when discovered), sorted. */
  #selected(binding: NormalizedBinding, stored: readonly string[]): string[] {
    return this.#known(stored).filter((id) =>
      selectsCluster(binding.clusters, id, this.#options.directory.labels(id) ?? {}),
    );
  }

  /** Every cluster listed, and of `stored` when stored clusters are discovered, sorted. */
  #known(stored: readonly string[]): string[] {
    const ids = new Set<string>(this.#options.listedClusters?.() ?? []);
    if (this.#options.discoverStoredClusters ?? true) for (const id of stored) ids.add(id);
    return [...ids].sort(compareText);
  }

  /**
   * The pool's stored assignment with its placement claims, and its groups' occupancy counts
   * when they matter; their occupants too when a group is full by its count alone (see
   * {@link placeBinding}).
   */
  async #poolReads(binding: NormalizedBinding): Promise<PoolReads> {
    const groups = targetGroupsOf(binding);
    const arns = groups.map((g) => g.arn);
    const occupancy = groups.length > 1 ? this.#options.occupancy : undefined;
    const readOccupants = async (): Promise<[number[], Set<string>[] | undefined] | undefined> => {
      if (occupancy === undefined) return undefined;
      const counts = await occupancy.counts(arns);
      const full = groups.some((g, i) => (counts[i] ?? 0) >= g.capacity);
      return [counts, full ? await occupancy.targets(arns) : undefined];
    };
    const claimed = new Set(arns).size > 1;
    const [{ previous: sharesPrevious, shares }, held, claims] = await Promise.all([
      this.#assignments.readPool(arns),
      readOccupants(),
      claimed
        ? this.#claims.read(binding.name, arns).then((read) => [read, this.#clock()] as const)
        : ([NO_CLAIMS, 0] as const),
    ]);
    const [claimsRead, claimsReadAtLocalMs] = claims;
    // The claims over the shares, looked up rather than merged into a copy of the shares.
    const byClaim = claimsRead.byTarget;
    const previous: PreviousAssignment =
      byClaim.size === 0
        ? sharesPrevious
        : {
            get: (target) => byClaim.get(target)?.arn ?? sharesPrevious.get(target),
            has: (target) => byClaim.has(target) || sharesPrevious.has(target),
          };
    return {
      previous,
      sharesPrevious,
      claims: claimsRead,
      claimsReadAtLocalMs,
      shares,
      heldCounts: held?.[0],
      occupants: held?.[1],
    };
  }

  /**
   * Collects and places a binding's targets from the states read (see {@link resolveBinding}),
   * and claims what it placed anew (see {@link claimPlacements}).
   */
  async #placeBinding(
    binding: NormalizedBinding,
    states: readonly ClusterEndpointState[],
    statuses: ReadonlyMap<string, ClusterStatus>,
    storageLost: boolean,
    pool: PoolReads,
  ): Promise<DesiredTargets> {
    const groups = targetGroupsOf(binding);
    const arns = groups.map((g) => g.arn);
    const occupancy = groups.length > 1 ? this.#options.occupancy : undefined;
    const { previous: previousAssignment, sharesPrevious, heldCounts, occupants: full } = pool;
    const options = {
      directory: this.#options.directory,
      status: {
        status: (id: string) => {
          const s = statuses.get(id) ?? this.#options.status.status(id);
          return storageLost ? { ...s, awaitingResync: true } : s;
        },
      },
      previousAssignment,
      ...(this.#options.staleClusterPolicy === undefined
        ? {}
        : { staleClusterPolicy: this.#options.staleClusterPolicy }),
    };
    // Thousands of targets: collected and placed in slices, so that the worker's other
    // reconciles go on meanwhile (see `cooperative.ts`).
    const collected = await runSliced(collectDesiredTargetSteps(binding, states, options));
    const placeAmong = async (occupants: readonly Set<string>[]): Promise<DesiredTargets> => {
      const occupied = new Map(arns.map((arn, i) => [arn, occupants[i] ?? new Set<string>()]));
      // Targets claimed a moment ago stay in their group: it may be registering them now.
      const settling = this.#claims.settling(pool.claims);
      const placed = await runSliced(
        placeDesiredTargetSteps(binding, collected, { previousAssignment, occupied, settling }),
      );
      // Held where there is no room only because they settle: the placement is stale once the
      // first of them stops settling.
      const settlesAt = this.#claims.settlesAt(pool.claims, placed.heldForSettling ?? []);
      return settlesAt === undefined
        ? placed
        : {
            ...placed,
            settlesAtMs: pool.claimsReadAtLocalMs + (settlesAt - pool.claims.readAtMs),
          };
    };
    const place = async (): Promise<DesiredTargets> => {
      // A group AWS already fills is short of room whatever goes where (a rolling restart of a
      // full pool, all the time): place once, among the occupants read with the counts.
      if (full !== undefined) return placeAmong(full);
      const placed = await runSliced(placeDesiredTargetSteps(binding, collected, options));
      if (occupancy === undefined) return placed;
      // A group can run short of room only if what it needs (AWS's targets and those waiting
      // for room) plus what it gets new reaches its capacity: targets waiting there for room
      // mean it is full, and so do draining ones in the way. Otherwise the occupants are not
      // read. (New by the shares: a claimed target its group has not taken on yet is still to
      // be registered.)
      const short = groups.some((g, i) => {
        let fresh = 0;
        for (const key of placed.groups.get(g.arn)?.targets.keys() ?? []) {
          if (sharesPrevious.get(key) !== g.arn) fresh++;
        }
        return (heldCounts?.[i] ?? 0) + fresh >= g.capacity;
      });
      if (!short) return placed;
      return placeAmong(await occupancy.targets(arns));
    };
    return withUnsettled(
      await this.#claimPlacements(binding, pool, await place()),
      pool.shares,
      sharesPrevious,
    );
  }

  /**
   * Claims every placement of a pool of several groups that its stored assignment (shares and
   * claims) did not have, and gives each target claimed for another group since it was read to
   * that group (see `PoolPlacementClaims`). Releases, meanwhile, the claims that have done
   * their work.
   */
  async #claimPlacements(
    binding: NormalizedBinding,
    pool: PoolReads,
    placed: DesiredTargets,
  ): Promise<DesiredTargets> {
    const arns = targetGroupsOf(binding).map((g) => g.arn);
    if (new Set(arns).size < 2 || this.#options.writesPlacements === false) return placed;
    const wanted: WantedPlacement[] = [];
    for (const [arn, group] of placed.groups) {
      for (const target of group.targets.keys()) {
        if (pool.previous.get(target) !== arn) {
          wanted.push({ target, read: pool.claims.byTarget.get(target), arn });
        }
      }
    }
    if (pool.claims.byTarget.size > 0) this.#releaseClaims(binding, arns, pool, placed);
    if (wanted.length === 0) return placed;
    const lost = await this.#claims.claim(binding.name, arns, pool.claims, wanted);
    if (lost.size === 0) return placed;
    const { desired, kept } = adoptClaims(placed, lost);
    this.#claimsKept += kept.length;
    this.#claimsAdopted += lost.size - kept.length;
    this.#options.onClaimsLost?.({ binding: binding.name, adopted: lost.size - kept.length, kept });
    return desired;
  }

  /**
   * Releases, in the background, the pool's claims of targets the placement no longer has and
   * of targets that their claimed group's share alone holds: those groups took them on.
   */
  #releaseClaims(
    binding: NormalizedBinding,
    arns: readonly string[],
    pool: PoolReads,
    placed: DesiredTargets,
  ): void {
    const placedIn = (target: string): boolean => {
      for (const group of placed.groups.values()) if (group.targets.has(target)) return true;
      return false;
    };
    const settled = (target: string, claim: { arn: string }): boolean => {
      if (!placedIn(target)) return true;
      if (pool.shares.get(claim.arn)?.has(target) !== true) return false;
      for (const [arn, share] of pool.shares) {
        if (arn !== claim.arn && share.has(target)) return false;
      }
      return true;
    };
    // A claim left in place only makes a later resolution read one more field.
    this.#claims.release(binding.name, arns, pool.claims, settled).catch(() => undefined);
  }

  /**
   * True when Redis was lost since `knownEpoch` was taken (see {@link StorageEpochGuard}), from
   * the stored epoch given (read at the guard's `key`) or read now.
   */
  async #storageLost(knownEpoch: string | undefined, stored?: string): Promise<boolean> {
    const guard = this.#options.storageEpoch;
    if (guard === undefined) return false;
    const storedEpoch = stored ?? (await guard.stored());
    const lost = knownEpoch === undefined || storedEpoch === '' || storedEpoch !== knownEpoch;
    if (lost) guard.onMismatch?.();
    return lost;
  }

  /** Every cluster listed or found in Redis, sorted. */
  async #knownClusters(): Promise<string[]> {
    const discover = this.#options.discoverStoredClusters ?? true;
    return this.#known(discover ? await this.#clusters.storedClusterIds() : []);
  }
}

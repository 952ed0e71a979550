import type { Conflict, TargetGroup } from '../../shared/index.js';
import type { ClusterEndpointStore, RedisClient } from '../state/index.js';
import type { BindingStore } from './binding-store.js';
import type { NormalizedBinding } from './binding-validation.js';
import {
  resolveDesiredTargets,
  type ClusterDirectory,
  type ClusterEndpointState,
  type ClusterStatus,
  type ClusterStatusSource,
  type DesiredTarget,
  type StaleClusterPolicy,
  type TargetSource,
} from './desired-targets.js';
import { GroupAssignmentStore } from './group-assignment-store.js';
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
   * Targets (`ip:port`) that fit in no group: the overflow of every pool the group belongs to,
   * plus targets beyond this group's capacity when several bindings fill it. Sorted.
   */
  readonly overflow: string[];
  readonly resolvedAtMs: number;
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

  constructor(
    deps: { redis: RedisClient; store: ClusterEndpointStore; bindings: BindingStore },
    options: TargetGroupDesiredStateOptions,
  ) {
    this.#bindings = deps.bindings;
    this.#clusters = new StoredClusterStates(deps.redis, deps.store);
    this.#assignments = new GroupAssignmentStore(deps.redis, deps.store.keys.prefix);
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
  }

  /** Where a group's assignment is persisted (for tests and the admin API). */
  assignmentKey(targetGroupArn: string): string {
    return this.#assignments.key(targetGroupArn);
  }

  /** Resolves the group's desired state and persists its share of its pools' assignment. */
  async resolve(targetGroupArn: string): Promise<GroupDesiredState> {
    // The epoch first, then bindings, statuses and states, then the stored epoch: a status can
    // only vouch for what was read after it if no Redis loss happened in between.
    const guard = this.#options.storageEpoch;
    const knownEpoch = guard?.known();
    const snapshot = await this.#bindings.snapshot();
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
      overflow: [],
      resolvedAtMs: this.#clock(),
    };
    const known = await this.#knownClusters();
    const selected =
      feeding.length === 0
        ? known
        : known.filter((id) => {
            const labels = this.#options.directory.labels(id) ?? {};
            return feeding.some((b) => selectsCluster(b.clusters, id, labels));
          });
    const statuses = new Map<string, ClusterStatus>();
    for (const id of selected) statuses.set(id, this.#options.status.status(id));
    const states = feeding.length === 0 ? [] : await this.#loadClusters(selected, feeding);
    let storageLost = false;
    if (guard !== undefined) {
      const storedEpoch = await guard.stored();
      storageLost = knownEpoch === undefined || storedEpoch === '' || storedEpoch !== knownEpoch;
      if (storageLost) guard.onMismatch?.();
    }
    if (feeding.length === 0) {
      // No binding targets the group, perhaps because Redis lost the bindings: while any cluster
      // has not resynced, nothing may be withdrawn from it either.
      const awaitingResyncClusters = selected.filter(
        (id) => storageLost || statuses.get(id)?.awaitingResync === true,
      );
      return {
        ...empty,
        targetGroup: undefined,
        bindings: [],
        deregistrationsBlocked: awaitingResyncClusters.length > 0,
        awaitingResyncClusters,
      };
    }
    const status: ClusterStatusSource = {
      status: (id) => {
        const s = statuses.get(id) ?? this.#options.status.status(id);
        return storageLost ? { ...s, awaitingResync: true } : s;
      },
    };
    const ownBefore = await this.#assignments.read(targetGroupArn);
    const poolReads = new Map<string, Promise<Map<string, string>>>();
    const readPool = (arns: string[]): Promise<Map<string, string>> => {
      const key = arns.join('\n');
      let read = poolReads.get(key);
      if (read === undefined) {
        read = this.#assignments.readPool(arns);
        poolReads.set(key, read);
      }
      return read;
    };

    const targets = new Map<string, DesiredTarget>();
    const placedBy = new Map<string, string>();
    const conflictClusters = new Map<string, Set<string>>();
    const awaiting = new Set<string>();
    const overflow = new Set<string>();
    const addConflict = (key: string, clusters: Iterable<string>): void => {
      let set = conflictClusters.get(key);
      if (set === undefined) conflictClusters.set(key, (set = new Set()));
      for (const c of clusters) set.add(c);
    };

    for (const binding of feeding) {
      const groups = targetGroupsOf(binding);
      const previousAssignment = await readPool(groups.map((g) => g.arn));
      const resolved = resolveDesiredTargets(binding, states, {
        directory: this.#options.directory,
        status,
        previousAssignment,
        ...(this.#options.staleClusterPolicy === undefined
          ? {}
          : { staleClusterPolicy: this.#options.staleClusterPolicy }),
      });
      for (const key of resolved.overflow) overflow.add(key);
      const group = resolved.groups.get(targetGroupArn);
      if (group === undefined) continue;
      for (const c of group.awaitingResyncClusters) awaiting.add(c);
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
    }

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
    await this.#assignments.write(targetGroupArn, assignment, ownBefore);

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
      overflow: [...overflow].sort(compareText),
    };
  }

  /** Every cluster listed or found in Redis, sorted. */
  async #knownClusters(): Promise<string[]> {
    const ids = new Set<string>(this.#options.listedClusters?.() ?? []);
    if (this.#options.discoverStoredClusters ?? true) {
      for (const id of await this.#clusters.storedClusterIds()) ids.add(id);
    }
    return [...ids].sort(compareText);
  }

  /** The stored state of the selected clusters. */
  #loadClusters(
    ids: readonly string[],
    bindings: readonly NormalizedBinding[],
  ): Promise<ClusterEndpointState[]> {
    const selectors = bindings.map((b) => b.services);
    return Promise.all(ids.map((id) => this.#clusters.load(id, selectors)));
  }
}

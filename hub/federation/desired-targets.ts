import type {
  Conflict,
  EndpointPolicy,
  EndpointRecord,
  ServiceKey,
  TargetGroup,
} from '../../shared/index.js';
import { matchesServiceSelector, serviceKeyString } from '../../shared/index.js';
import type { NormalizedBinding } from './binding-validation.js';
import { runSteps, type Steps } from '../state/cooperative.js';
import { assignToPoolSteps, type PreviousAssignment } from './pool-assignment.js';
import { selectsCluster } from './subscription-resolver.js';

/** Labels of the clusters the hub knows (from their registration / hello). */
export interface ClusterDirectory {
  /** The cluster's labels; undefined for a cluster the hub does not know (selected by name only). */
  labels(clusterId: string): Readonly<Record<string, string>> | undefined;
}

/** How fresh a cluster's stored endpoints are (DESIGN.md, Safety). */
export type ClusterConnection = 'connected' | 'disconnected-within-grace' | 'stale';

/** A cluster's status as resolution needs it. */
export interface ClusterStatus {
  readonly connection: ClusterConnection;
  /**
   * True while the cluster has not sent SYNCED since a hub cold start or a detected Redis loss,
   * and the resync timeout has not passed: its stored endpoints may be incomplete.
   */
  readonly awaitingResync: boolean;
  /**
   * True while the cluster, awaiting its resync, streams its first full sync on its current
   * stream (for at most the tracker's `initialSyncHoldMs`): its endpoints are still arriving, so
   * registrations into its groups wait and then go in one call instead of one per batch.
   */
  readonly initialSync?: boolean;
}

/**
 * Whether a cluster's status change can change what a reconcile of a group it feeds does: its
 * targets turned stale or fresh again (the stale policy applies or stops), deregistrations
 * blocked for its resync are imposed or released, or its initial sync began or ended. Going
 * away within the grace period and coming back changes none of them: its targets are kept
 * fail-static meanwhile (the flag only ranks conflicting clusters, and the same `ip:port` is
 * registered whichever wins), and the resync it sends on return carries its changes as batches.
 */
export function statusChangeMatters(status: ClusterStatus, previous: ClusterStatus): boolean {
  return (
    (status.connection === 'stale') !== (previous.connection === 'stale') ||
    status.awaitingResync !== previous.awaitingResync ||
    (status.initialSync === true) !== (previous.initialSync === true)
  );
}

/** Where resolution learns each cluster's status. */
export interface ClusterStatusSource {
  status(clusterId: string): ClusterStatus;
  /**
   * Reads the statuses again unless a read began within `maxAgeMs`; for a reconcile about to
   * hold registrations for a sync that may just have ended. Optional.
   */
  refreshOlderThan?(maxAgeMs: number): Promise<void>;
}

/** One service of one cluster as stored (a `StoredService` of the hub state fits). */
export interface ClusterServiceState {
  readonly service: ServiceKey;
  readonly labels: Readonly<Record<string, string>>;
  /** Canonical address → endpoint. */
  readonly endpoints: ReadonlyMap<string, EndpointRecord>;
  /** When the hub last wrote this service, if known. */
  readonly observedAtMs?: number | undefined;
}

/** Every stored service of one cluster. */
export interface ClusterEndpointState {
  readonly clusterId: string;
  /** Service key (`namespace/name`) → service. */
  readonly services: ReadonlyMap<string, ClusterServiceState>;
}

/** Where one desired target comes from. */
export interface TargetSource {
  readonly clusterId: string;
  /** `namespace/name`. */
  readonly service: string;
  /** '' when the endpoint has no pod reference. */
  readonly podName: string;
}

/** One target a group should hold. */
export interface DesiredTarget {
  /** The IP address (canonical text): the ELBv2 target id of an `ip` group. */
  readonly id: string;
  readonly port: number;
  /** The endpoint's zone; absent when unknown (the worker applies the group's setting). */
  readonly availabilityZone?: string;
  /** The services announcing it, all in the winning cluster; sorted. */
  readonly sources: TargetSource[];
  readonly observedAtMs?: number;
  /** The winning cluster is disconnected within its grace period: kept as last seen. */
  readonly keptFailStatic: boolean;
  /**
   * The winning cluster is past its grace period: kept, but the worker deregisters the target
   * if ELB reports it unhealthy (the default disconnected-cluster policy).
   */
  readonly withdrawIfUnhealthy: boolean;
}

/** What one target group should hold. */
export interface DesiredGroup {
  readonly targetGroup: TargetGroup;
  /** Keyed by `ip:port` (`[ip]:port` for IPv6), sorted by key. */
  readonly targets: Map<string, DesiredTarget>;
  /** IP:port announced by more than one cluster; registered once, from the winner. Sorted. */
  readonly conflicts: Conflict[];
  /**
   * A cluster the binding selects has not resynced since a cold start or Redis loss: the
   * desired set may be missing targets, so the worker must not deregister anything.
   */
  readonly deregistrationsBlocked: boolean;
  /** The clusters that block deregistrations, sorted. */
  readonly awaitingResyncClusters: string[];
  /** Selected clusters still streaming their initial sync (see `ClusterStatus.initialSync`), sorted. */
  readonly initialSyncClusters: string[];
}

/** Outcome of {@link resolveDesiredTargets}. */
export interface DesiredTargets {
  /** Per target group ARN, in the binding's group order. */
  readonly groups: Map<string, DesiredGroup>;
  /** Targets (`ip:port`) beyond the total capacity of the binding's groups, sorted. */
  readonly overflow: string[];
  /** Selected clusters, sorted. */
  readonly clusters: string[];
  /**
   * Groups this placement gave a target their stored share lacks (see `TargetGroupDesiredState`):
   * each writes its own share when it is resolved, so until then that target is registered by
   * no group.
   */
  readonly unsettled?: string[];
  /** For each group of `unsettled`, one target placed there that its stored share lacked. */
  readonly unsettledProbes?: ReadonlyMap<string, string>;
  /**
   * Of `unsettled`, the groups given a target that another group's stored share holds: moved
   * for room, or off a group it waited in. No change of the target's cluster follows such a
   * move, so nothing else brings those groups to reconcile soon.
   */
  readonly movedInto?: string[];
  /**
   * When the first of `heldForSettling` stops settling (the placement's clock): from then on it
   * may be placed where there is room, so the placement is stale.
   */
  readonly settlesAtMs?: number;
  /** Targets kept in their group only because they settle (see `assignToPool`). */
  readonly heldForSettling?: string[];
}

/** What to do with a stale cluster's targets. */
export type StaleClusterPolicy = 'withdraw-if-unhealthy' | 'withdraw';

/** Options of {@link resolveDesiredTargets}. */
export interface ResolveOptions {
  readonly directory: ClusterDirectory;
  readonly status: ClusterStatusSource;
  /**
   * After the grace period: keep a stale cluster's targets and let the worker withdraw the ones
   * ELB reports unhealthy, or withdraw them all at once (opt-in).
   * @default 'withdraw-if-unhealthy'
   */
  readonly staleClusterPolicy?: StaleClusterPolicy;
  /** The pool's last assignment, `ip:port` → group ARN, so that churn moves only what must move. */
  readonly previousAssignment?: PreviousAssignment;
  /**
   * Per group of the pool, every target AWS holds in it (registered or draining), as the workers
   * last knew it: new targets then go where they fit counting draining ones (see `assignToPool`).
   */
  readonly occupied?: ReadonlyMap<string, ReadonlySet<string>>;
  /**
   * Targets placed in their previous group a moment ago (see `assignToPool`): they do not leave
   * it for room.
   */
  readonly settling?: ReadonlySet<string>;
}

/** The `ip:port` key of a target (IPv6 in brackets, as in URLs). */
export function targetKey(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** True when the endpoint policy makes the endpoint a target. */
export function isEligibleEndpoint(endpoint: EndpointRecord, policy: EndpointPolicy): boolean {
  // Terminating endpoints are deregistered at once so ELB drains them while the pod still serves.
  if (endpoint.terminating) return policy.keepTerminating && endpoint.serving;
  if (endpoint.ready) return true;
  return policy.includeNotReady && endpoint.serving;
}

/** The port the binding selects from the endpoint's ports; undefined when it has none. */
export function selectPort(
  endpoint: EndpointRecord,
  selector: NormalizedBinding['port']['port'],
): number | undefined {
  const match =
    selector.$case === 'name'
      ? endpoint.ports.find((p) => p.name === selector.name)
      : endpoint.ports.find((p) => p.port === selector.number);
  return match?.port;
}

const CONNECTION_RANK: Record<ClusterConnection, number> = {
  connected: 0,
  'disconnected-within-grace': 1,
  stale: 2,
};

interface Candidate {
  clusterId: string;
  connection: ClusterConnection;
  ip: string;
  port: number;
  zone: string;
  sources: TargetSource[];
  observedAtMs: number | undefined;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareSource(a: TargetSource, b: TargetSource): number {
  return (
    compareText(a.clusterId, b.clusterId) ||
    compareText(a.service, b.service) ||
    compareText(a.podName, b.podName)
  );
}

/** A binding's targets before they are placed in its groups ({@link collectDesiredTargets}). */
export interface CollectedTargets {
  /** `ip:port` → the target from its winning cluster, sorted by key. */
  readonly winners: Map<string, DesiredTarget>;
  readonly conflicts: Map<string, Conflict>;
  /** Selected clusters, awaiting resync and streaming their initial sync; each sorted. */
  readonly clusters: string[];
  readonly awaitingResync: string[];
  readonly initialSync: string[];
}

/**
 * The desired targets of every target group a binding feeds, from the stored state of the
 * clusters (pass every cluster the hub knows; unselected ones are skipped).
 *
 * Conflicts: the same `ip:port` from two clusters is registered once. The winner is the cluster
 * with the freshest connection, then the lowest cluster id, so the choice depends on the state
 * alone and never alternates between resolutions of the same state.
 */
export function resolveDesiredTargets(
  binding: NormalizedBinding,
  clusterStates: Iterable<ClusterEndpointState>,
  options: ResolveOptions,
): DesiredTargets {
  return placeDesiredTargets(
    binding,
    collectDesiredTargets(binding, clusterStates, options),
    options,
  );
}

/** An endpoint of a stored service as a binding's target: what collecting needs of it. */
interface EligibleEndpoint {
  /** `ip:port`. */
  readonly key: string;
  readonly ip: string;
  readonly port: number;
  readonly zone: string;
  readonly podName: string;
}

/**
 * A stored service's endpoints that a binding's policy and port make targets, per endpoints map
 * and (policy, port) rule. `StoredClusterStates` hands out the same map for as long as the
 * service's digest holds, so a pool resolved again and again (a rolling restart resolves the
 * busy pool several times a second) walks only the services that changed. Maps are never
 * changed once stored (`ClusterServiceState.endpoints` is read-only).
 */
const eligibleByEndpoints = new WeakMap<
  ReadonlyMap<string, EndpointRecord>,
  Map<string, EligibleEndpoint[]>
>();

function eligibleEndpoints(
  endpoints: ReadonlyMap<string, EndpointRecord>,
  binding: NormalizedBinding,
): EligibleEndpoint[] {
  const selector = binding.port.port;
  const rule = `${binding.policy.includeNotReady}\n${binding.policy.keepTerminating}\n${
    selector.$case === 'name' ? `name:${selector.name}` : `number:${selector.number}`
  }`;
  let byRule = eligibleByEndpoints.get(endpoints);
  if (byRule === undefined)
    eligibleByEndpoints.set(endpoints, (byRule = new Map<string, EligibleEndpoint[]>()));
  let eligible = byRule.get(rule);
  if (eligible === undefined) {
    eligible = [];
    for (const endpoint of endpoints.values()) {
      if (!isEligibleEndpoint(endpoint, binding.policy)) continue;
      const port = selectPort(endpoint, selector);
      if (port === undefined) continue;
      eligible.push({
        key: targetKey(endpoint.address, port),
        ip: endpoint.address,
        port,
        zone: endpoint.zone,
        podName: endpoint.pod?.name ?? '',
      });
    }
    byRule.set(rule, eligible);
  }
  return eligible;
}

/** The first half of {@link resolveDesiredTargets}: the winning target of each `ip:port`. */
export function collectDesiredTargets(
  binding: NormalizedBinding,
  clusterStates: Iterable<ClusterEndpointState>,
  options: Pick<ResolveOptions, 'directory' | 'status' | 'staleClusterPolicy'>,
): CollectedTargets {
  return runSteps(collectDesiredTargetSteps(binding, clusterStates, options));
}

/**
 * {@link collectDesiredTargets} as steps (see `cooperative.ts`): it may pause after each cluster
 * and every thousand winners.
 */
export function* collectDesiredTargetSteps(
  binding: NormalizedBinding,
  clusterStates: Iterable<ClusterEndpointState>,
  options: Pick<ResolveOptions, 'directory' | 'status' | 'staleClusterPolicy'>,
): Steps<CollectedTargets> {
  const staleClusterPolicy = options.staleClusterPolicy ?? 'withdraw-if-unhealthy';
  // One candidate per `ip:port`, or one per cluster announcing it (a conflict; rare).
  const candidates = new Map<string, Candidate | Candidate[]>();
  const selectedClusters: string[] = [];
  const awaitingResync: string[] = [];
  const initialSync: string[] = [];

  for (const cluster of clusterStates) {
    const labels = options.directory.labels(cluster.clusterId) ?? {};
    if (!selectsCluster(binding.clusters, cluster.clusterId, labels)) continue;
    selectedClusters.push(cluster.clusterId);
    const status = options.status.status(cluster.clusterId);
    if (status.awaitingResync) awaitingResync.push(cluster.clusterId);
    if (status.initialSync === true) initialSync.push(cluster.clusterId);
    if (status.connection === 'stale' && staleClusterPolicy === 'withdraw') continue;
    for (const state of cluster.services.values()) {
      if (!matchesServiceSelector(binding.services, state.service, state.labels)) continue;
      const service = serviceKeyString(state.service);
      for (const endpoint of eligibleEndpoints(state.endpoints, binding)) {
        const source = { clusterId: cluster.clusterId, service, podName: endpoint.podName };
        const found = candidates.get(endpoint.key);
        const existing = Array.isArray(found)
          ? found.find((c) => c.clusterId === cluster.clusterId)
          : found?.clusterId === cluster.clusterId
            ? found
            : undefined;
        if (existing !== undefined) {
          // Two services of one cluster selecting the same pod: one target, two sources.
          existing.sources.push(source);
          if (existing.zone === '') existing.zone = endpoint.zone;
          if (state.observedAtMs !== undefined) {
            existing.observedAtMs = Math.max(existing.observedAtMs ?? 0, state.observedAtMs);
          }
          continue;
        }
        const candidate: Candidate = {
          clusterId: cluster.clusterId,
          connection: status.connection,
          ip: endpoint.ip,
          port: endpoint.port,
          zone: endpoint.zone,
          sources: [source],
          observedAtMs: state.observedAtMs,
        };
        if (found === undefined) candidates.set(endpoint.key, candidate);
        else if (Array.isArray(found)) found.push(candidate);
        else candidates.set(endpoint.key, [found, candidate]);
      }
    }
    yield;
  }

  const winners = new Map<string, DesiredTarget>();
  const conflictByKey = new Map<string, Conflict>();
  // Keys are strings: the default order is compareText's, without a call per comparison.
  let n = 0;
  for (const key of [...candidates.keys()].sort()) {
    if (++n % 1_000 === 0) yield;
    const found = candidates.get(key) as Candidate | Candidate[];
    let winner: Candidate;
    if (Array.isArray(found)) {
      const byCluster = found.sort(
        (a, b) =>
          CONNECTION_RANK[a.connection] - CONNECTION_RANK[b.connection] ||
          compareText(a.clusterId, b.clusterId),
      );
      winner = byCluster[0] as Candidate;
      conflictByKey.set(key, {
        target: key,
        clusters: byCluster.map((c) => c.clusterId).sort(compareText),
      });
    } else {
      winner = found;
    }
    winners.set(key, {
      id: winner.ip,
      port: winner.port,
      ...(winner.zone === '' ? {} : { availabilityZone: winner.zone }),
      sources: winner.sources.length > 1 ? winner.sources.sort(compareSource) : winner.sources,
      ...(winner.observedAtMs === undefined ? {} : { observedAtMs: winner.observedAtMs }),
      keptFailStatic: winner.connection === 'disconnected-within-grace',
      withdrawIfUnhealthy: winner.connection === 'stale',
    });
  }

  return {
    winners,
    conflicts: conflictByKey,
    clusters: selectedClusters.sort(compareText),
    awaitingResync: awaitingResync.sort(compareText),
    initialSync: initialSync.sort(compareText),
  };
}

/**
 * The second half of {@link resolveDesiredTargets}: the collected targets placed in the
 * binding's groups (see `assignToPool`). Cheap next to collecting, so a resolution may place
 * twice (first without, then with the groups' occupants).
 */
export function placeDesiredTargets(
  binding: NormalizedBinding,
  collected: CollectedTargets,
  options: Pick<ResolveOptions, 'previousAssignment' | 'occupied' | 'settling'>,
): DesiredTargets {
  return runSteps(placeDesiredTargetSteps(binding, collected, options));
}

/**
 * {@link placeDesiredTargets} as steps (see `cooperative.ts`): it may pause every thousand
 * targets.
 */
export function* placeDesiredTargetSteps(
  binding: NormalizedBinding,
  collected: CollectedTargets,
  options: Pick<ResolveOptions, 'previousAssignment' | 'occupied' | 'settling'>,
): Steps<DesiredTargets> {
  const { winners, conflicts: conflictByKey } = collected;
  const blocked = collected.awaitingResync;
  const syncing = collected.initialSync;
  const newGroup = (targetGroup: TargetGroup): DesiredGroup => ({
    targetGroup,
    targets: new Map(),
    conflicts: [],
    deregistrationsBlocked: blocked.length > 0,
    awaitingResyncClusters: [...blocked],
    initialSyncClusters: [...syncing],
  });
  const groups = new Map<string, DesiredGroup>();
  const place = (group: DesiredGroup, key: string, target: DesiredTarget): void => {
    group.targets.set(key, target);
    const conflict = conflictByKey.get(key);
    if (conflict !== undefined) group.conflicts.push(conflict);
  };

  // One group is a pool of one: its capacity caps it the same way, with the same stickiness.
  const targetGroups =
    binding.target.$case === 'targetGroup'
      ? [binding.target.targetGroup]
      : binding.target.pool.groups;
  for (const tg of targetGroups) if (!groups.has(tg.arn)) groups.set(tg.arn, newGroup(tg));
  const result = yield* assignToPoolSteps(
    winners.keys(),
    targetGroups.map((g) => ({ arn: g.arn, capacity: g.capacity })),
    options.previousAssignment,
    options.occupied,
    options.settling,
  );
  let n = 0;
  for (const [key, target] of winners) {
    if (++n % 1_000 === 0) yield;
    const arn = result.assignment.get(key);
    const group = arn === undefined ? undefined : groups.get(arn);
    if (group !== undefined) place(group, key, target);
  }

  return {
    groups,
    overflow: result.overflow,
    clusters: [...collected.clusters],
    ...(result.heldForSettling.length > 0 ? { heldForSettling: result.heldForSettling } : {}),
  };
}

import {
  ClusterState,
  parseServiceKey,
  type Cluster,
  type ServiceDigest,
} from '../../shared/index.js';
import type { ClusterDirectory } from '../config/index.js';
import {
  leaseHolderOf,
  sessionConnection,
  type ClusterEndpointStore,
  type ClusterSessionRecords,
  type RedisClient,
  type SessionConnection,
  type StateKeys,
} from '../state/index.js';

/** The streams this hub replica serves (`SyncService` is one). */
export interface ClusterConnections {
  /** Clusters whose stream on this replica holds the lease. */
  admittedClusters(): string[];
}

/** A cluster with its stored services, for `GetCluster`. */
export interface ClusterDetail {
  cluster: Cluster;
  services: ServiceDigest[];
}

const wireState: Record<SessionConnection, ClusterState> = {
  syncing: ClusterState.CLUSTER_STATE_SYNCING,
  connected: ClusterState.CLUSTER_STATE_CONNECTED,
  disconnected: ClusterState.CLUSTER_STATE_DISCONNECTED,
  stale: ClusterState.CLUSTER_STATE_STALE,
  // Nothing stored to keep or withdraw: reported as disconnected, not as past a grace period.
  'never-connected': ClusterState.CLUSTER_STATE_DISCONNECTED,
};

/**
 * What the admin API reports about clusters, read from the cluster directory (configuration),
 * the cluster lease in Redis (which replica, if any, holds the stream: valid across replicas),
 * the session record (agent, session epoch, synced, last seen) and the stored endpoint state
 * (services, digests, counts).
 */
export class ClusterInventory {
  readonly #directory: ClusterDirectory;
  readonly #store: ClusterEndpointStore;
  readonly #redis: RedisClient;
  readonly #keys: StateKeys;
  readonly #connections: ClusterConnections | undefined;
  readonly #sessions: ClusterSessionRecords;
  readonly #disconnectedGraceMs: number;
  readonly #clock: () => number;

  constructor(deps: {
    directory: ClusterDirectory;
    store: ClusterEndpointStore;
    redis: RedisClient;
    keys: StateKeys;
    sessions: ClusterSessionRecords;
    /** How long a cluster without a stream counts as disconnected before it is stale. */
    disconnectedGraceMs: number;
    connections?: ClusterConnections;
    /** @default Date.now */
    clock?: () => number;
  }) {
    this.#directory = deps.directory;
    this.#store = deps.store;
    this.#redis = deps.redis;
    this.#keys = deps.keys;
    this.#sessions = deps.sessions;
    this.#disconnectedGraceMs = deps.disconnectedGraceMs;
    this.#connections = deps.connections;
    this.#clock = deps.clock ?? Date.now;
  }

  /** Listed clusters plus those streaming to this replica, sorted by id. */
  async list(): Promise<Cluster[]> {
    const ids = new Set(this.#directory.list().map((c) => c.id));
    for (const id of this.#connections?.admittedClusters() ?? []) ids.add(id);
    const sorted = [...ids].sort();
    return Promise.all(sorted.map((id) => this.#cluster(id)));
  }

  /** One cluster with its services, or undefined when the hub knows nothing of it. */
  async get(clusterId: string): Promise<ClusterDetail | undefined> {
    const [cluster, metas] = await Promise.all([
      this.#cluster(clusterId),
      this.#store.serviceMetas(clusterId),
    ]);
    const known =
      this.#directory.get(clusterId) !== undefined ||
      cluster.hubId !== '' ||
      cluster.connectedSinceUnixMs > 0 ||
      metas.size > 0;
    if (!known) return undefined;
    const services = [...metas.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, meta]) => ({ service: parseServiceKey(key), digest: meta.digest }));
    return { cluster, services };
  }

  async #cluster(clusterId: string): Promise<Cluster> {
    const [holder, record, totals] = await Promise.all([
      this.#redis.get(this.#keys.lease(clusterId)),
      this.#sessions.read(clusterId),
      this.#store.totals(clusterId),
    ]);
    const holderHubId = leaseHolderOf(holder);
    const connection = sessionConnection(
      record,
      holderHubId !== '',
      this.#clock(),
      this.#disconnectedGraceMs,
    );
    const entry = this.#directory.get(clusterId);
    return {
      id: clusterId,
      labels: { ...(entry?.labels ?? {}) },
      state: wireState[connection],
      agentVersion: record?.agentVersion ?? '',
      sessionEpoch:
        record === undefined ? new Uint8Array(0) : Buffer.from(record.sessionEpoch, 'hex'),
      // The proto's meaning: the replica holding the stream now ('' when none does).
      hubId: holderHubId,
      connectedSinceUnixMs: record?.connectedSinceMs ?? 0,
      lastSeenUnixMs: record?.lastSeenMs ?? 0,
      serviceCount: totals.services,
      endpointCount: totals.endpoints,
      allowedCidrs: [...(entry?.allowedCidrs ?? [])],
      lastAckedSequence: record?.lastAckedSequence ?? 0,
    };
  }
}

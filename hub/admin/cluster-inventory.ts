import {
  ClusterState,
  parseServiceKey,
  type Cluster,
  type ServiceDigest,
} from '../../shared/index.js';
import type { ClusterDirectory } from '../config/index.js';
import type { ClusterEndpointStore, RedisClient, StateKeys } from '../state/index.js';

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

/**
 * What the admin API reports about clusters, read from the cluster directory (configuration),
 * the cluster lease in Redis (which replica, if any, holds the stream: valid across replicas)
 * and the stored endpoint state (services, digests, counts).
 *
 * The ingest does not record session details (agent version, session epoch, connected since,
 * last seen, last acked sequence) anywhere a reader can see them, so those fields stay zero.
 */
export class ClusterInventory {
  readonly #directory: ClusterDirectory;
  readonly #store: ClusterEndpointStore;
  readonly #redis: RedisClient;
  readonly #keys: StateKeys;
  readonly #connections: ClusterConnections | undefined;

  constructor(deps: {
    directory: ClusterDirectory;
    store: ClusterEndpointStore;
    redis: RedisClient;
    keys: StateKeys;
    connections?: ClusterConnections;
  }) {
    this.#directory = deps.directory;
    this.#store = deps.store;
    this.#redis = deps.redis;
    this.#keys = deps.keys;
    this.#connections = deps.connections;
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
      this.#directory.get(clusterId) !== undefined || cluster.hubId !== '' || metas.size > 0;
    if (!known) return undefined;
    const services = [...metas.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, meta]) => ({ service: parseServiceKey(key), digest: meta.digest }));
    return { cluster, services };
  }

  async #cluster(clusterId: string): Promise<Cluster> {
    const [holder, totals] = await Promise.all([
      this.#redis.get(this.#keys.lease(clusterId)),
      this.#store.totals(clusterId),
    ]);
    // The lease value is `<token>/<hub id>` (ClusterLease).
    const hubId = holder === null ? '' : holder.slice(holder.indexOf('/') + 1);
    const entry = this.#directory.get(clusterId);
    return {
      id: clusterId,
      labels: { ...(entry?.labels ?? {}) },
      // Whether a held stream is still resyncing is known only inside its session; the stale
      // state needs the disconnected-cluster grace period (safety layer, not wired yet).
      state:
        hubId === ''
          ? ClusterState.CLUSTER_STATE_DISCONNECTED
          : ClusterState.CLUSTER_STATE_CONNECTED,
      agentVersion: '',
      sessionEpoch: new Uint8Array(0),
      hubId,
      connectedSinceUnixMs: 0,
      lastSeenUnixMs: 0,
      serviceCount: totals.services,
      endpointCount: totals.endpoints,
      allowedCidrs: [...(entry?.allowedCidrs ?? [])],
      lastAckedSequence: 0,
    };
  }
}

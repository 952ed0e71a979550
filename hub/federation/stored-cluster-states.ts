import type { Cluster } from 'ioredis';
import {
  digestHex,
  matchesServiceSelector,
  parseServiceKey,
  serviceKeyString,
  type ServiceSelector,
} from '../../shared/index.js';
import type { ClusterEndpointStore, RedisClient, ServiceMeta } from '../state/index.js';
import type { ClusterEndpointState, ClusterServiceState } from './desired-targets.js';

/** A service as last read, with the digest it was read at. */
interface CachedService {
  readonly digest: string;
  readonly state: ClusterServiceState;
}

/** One cluster's part of a {@link StoredClusterStates.loadAll}. */
interface ClusterLoad {
  readonly clusterId: string;
  readonly cache: Map<string, CachedService>;
  /** The services the selectors match, in the index's order. */
  readonly wanted: readonly string[];
  /** Service key → digest: the index's, or the one read. */
  readonly digests: Map<string, string>;
  readonly services: Map<string, ClusterServiceState>;
  /** Services not cached at their digest: read. */
  readonly misses: readonly string[];
}

/** SCAN page size: large enough to finish quickly, small enough not to block Redis. */
const SCAN_COUNT = 1000;

/**
 * Reads the endpoint state of clusters as resolution needs it, through the public API of
 * {@link ClusterEndpointStore} and its key schema (`StateKeys`).
 *
 * {@link storedClusterIds} lists the clusters that may hold endpoints from the clusters index,
 * which the ingest writes before it admits a stream: those include clusters not (or no longer)
 * listed in the clusters file, whose endpoints must not vanish from the desired state just
 * because the file changed. The first call in a process also SCANs every master for
 * `<prefix>:{c:*}:services` and indexes what it finds, so that state written without an index
 * entry (by a hub older than the index, or after someone deleted the key) is not missed; after
 * that a resolution costs one SMEMBERS, not a SCAN of the keyspace (at fleet scale, the SCAN
 * was a quarter of a pool's resolution time).
 */
export class StoredClusterStates {
  readonly #redis: RedisClient;
  readonly #store: ClusterEndpointStore;
  /**
   * Cluster → service → the service as last read and the digest it was read at. A service whose
   * stored digest has not moved is not read again: a worker resolves the same services for
   * every group of a pool and at every reconcile, and most of them did not change.
   */
  readonly #cache = new Map<string, Map<string, CachedService>>();
  /** The first call's SCAN (see the class); forgotten when it fails, so the next call retries. */
  #indexed: Promise<void> | undefined;

  constructor(redis: RedisClient, store: ClusterEndpointStore) {
    this.#redis = redis;
    this.#store = store;
  }

  /** Ids of every cluster that may hold endpoint state in Redis, sorted. */
  async storedClusterIds(): Promise<string[]> {
    this.#indexed ??= this.#indexScanned().catch((err: unknown) => {
      this.#indexed = undefined;
      throw err;
    });
    await this.#indexed;
    return this.#store.indexedClusterIds();
  }

  /** Indexes every cluster with a service index in Redis (found with SCAN over every master). */
  async #indexScanned(): Promise<void> {
    const prefix = this.#store.keys.prefix;
    const head = `${prefix}:{c:`;
    const tail = '}:services';
    const pattern = `${escapeGlob(prefix)}:{c:*${tail}`;
    const ids = new Set<string>();
    const nodes = isCluster(this.#redis) ? this.#redis.nodes('master') : [this.#redis];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT);
        cursor = next;
        for (const key of keys) {
          if (!key.startsWith(head) || !key.endsWith(tail)) continue;
          const id = key.slice(head.length, key.length - tail.length);
          // Cluster ids carry no braces, so the tag is exact (StateKeys.clusterTag).
          if (id !== '' && !/[{}]/.test(id)) ids.add(id);
        }
      } while (cursor !== '0');
    }
    await Promise.all([...ids].map((id) => this.#store.index(id)));
  }

  /**
   * The services of each cluster (in the order given) that at least one selector matches, with
   * their endpoints. Services no selector matches are not read (their endpoints can be many).
   * The clusters' indexes are read together (`ClusterEndpointStore.serviceMetasOfClusters`).
   *
   * With each state comes its {@link fingerprints}: the digests of every service the selectors
   * were matched against, the read ones as read. Equal fingerprints read later mean the same
   * state (up to a 64-bit digest collision).
   */
  async loadAll(
    clusterIds: readonly string[],
    selectors: readonly ServiceSelector[],
  ): Promise<(ClusterEndpointState & { readonly fingerprint: string })[]> {
    const named = namedServices(selectors);
    const metas = await this.#store.serviceMetasOfClusters(
      clusterIds.map((clusterId) => ({ clusterId, serviceKeys: named })),
    );
    const loads = clusterIds.map((id, i) =>
      this.#plan(id, selectors, named, metas[i] ?? new Map<string, ServiceMeta>()),
    );
    // Every service not cached at its digest, of every cluster, in one batch of reads.
    const misses = loads.flatMap((load) => load.misses.map((key) => ({ load, key })));
    const read = await this.#store.readServices(
      misses.map(({ load, key }) => ({ clusterId: load.clusterId, service: parseServiceKey(key) })),
    );
    misses.forEach(({ load, key }, i) => {
      const s = read[i];
      // Removed between the index read and the service read: it is gone.
      if (s === undefined) {
        load.cache.delete(key);
        load.digests.set(key, '');
        return;
      }
      const state = { service: s.service, labels: s.labels, endpoints: s.endpoints };
      const digest = digestHex(s.digest);
      load.cache.set(key, { digest, state });
      // What was used: changed since the index read, it is the newer digest.
      load.digests.set(key, digest);
      load.services.set(key, state);
    });
    return loads.map((load) => {
      // In the index's order, as before the cache.
      const ordered = new Map<string, ClusterServiceState>();
      for (const key of load.wanted) {
        const state = load.services.get(key);
        if (state !== undefined) ordered.set(key, state);
      }
      return {
        clusterId: load.clusterId,
        services: ordered,
        fingerprint: fingerprintOf(load.digests),
      };
    });
  }

  /** What a cluster's load takes from the cache, and which services it must read. */
  #plan(
    clusterId: string,
    selectors: readonly ServiceSelector[],
    named: string[] | undefined,
    metas: Map<string, ServiceMeta>,
  ): ClusterLoad {
    let cache = this.#cache.get(clusterId);
    if (cache === undefined) this.#cache.set(clusterId, (cache = new Map<string, CachedService>()));
    for (const service of named ?? [...cache.keys()]) {
      if (!metas.has(service)) cache.delete(service);
    }
    const wanted = [...metas]
      .filter(([key, meta]) => {
        const service = parseServiceKey(key);
        return selectors.some((s) => matchesServiceSelector(s, service, meta.labels));
      })
      .map(([key]) => key);
    const digests = digestsOf(metas);
    const services = new Map<string, ClusterServiceState>();
    const misses: string[] = [];
    for (const key of wanted) {
      const cached = cache.get(key);
      if (cached !== undefined && cached.digest === digests.get(key)) {
        services.set(key, { ...cached.state, labels: (metas.get(key) as ServiceMeta).labels });
      } else {
        misses.push(key);
      }
    }
    return { clusterId, cache, wanted, digests, services, misses };
  }

  /**
   * The fingerprints {@link loadAll} would return now, from the services' indexes alone: no
   * endpoint is read. Equal to an earlier load's fingerprint when none of the services it
   * matched against changed since.
   */
  async fingerprints(
    clusterIds: readonly string[],
    selectors: readonly ServiceSelector[],
  ): Promise<string[]> {
    const named = namedServices(selectors);
    const metas = await this.#store.serviceMetasOfClusters(
      clusterIds.map((clusterId) => ({ clusterId, serviceKeys: named })),
    );
    return metas.map((m) => fingerprintOf(digestsOf(m)));
  }
}

/**
 * Selectors that all name their service read just those services' metas; a selector by labels
 * or a blank name needs the cluster's whole index (undefined).
 */
function namedServices(selectors: readonly ServiceSelector[]): string[] | undefined {
  return selectors.every((s) => s.namespace !== '' && s.name !== '')
    ? [...new Set(selectors.map((s) => serviceKeyString(s)))]
    : undefined;
}

/** Service key → digest (hex), from the services' index. */
function digestsOf(metas: ReadonlyMap<string, ServiceMeta>): Map<string, string> {
  return new Map([...metas].map(([key, meta]) => [key, digestHex(meta.digest)]));
}

/** Service key → digest, in key order, as one string. */
function fingerprintOf(digests: ReadonlyMap<string, string>): string {
  return [...digests]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, digest]) => `${key}=${digest}`)
    .join('\n');
}

function isCluster(redis: RedisClient): redis is Cluster {
  return (redis as Cluster).isCluster === true;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

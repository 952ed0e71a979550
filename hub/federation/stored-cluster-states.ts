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

/** A cluster's state as {@link StoredClusterStates.loadIndexed} reads it. */
export type LoadedState = ClusterEndpointState & { readonly fingerprint: string };

/** What {@link StoredClusterStates.readIndexes} read, for {@link StoredClusterStates.loadIndexed}. */
export interface IndexedClusters {
  /** The stored cluster ids as read (see {@link StoredClusterStates.storedClusterIds}). */
  readonly storedIds: readonly string[];
  /** The clusters chosen, in their order. */
  readonly clusterIds: readonly string[];
  /** Each chosen cluster's fingerprint from its index (see {@link StoredClusterStates.loadIndexed}). */
  readonly fingerprints: readonly string[];
  readonly selectors: readonly ServiceSelector[];
  readonly named: string[] | undefined;
  readonly metas: readonly Map<string, ServiceMeta>[];
}

/** One cluster's part of a {@link StoredClusterStates.loadIndexed}. */
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
    await this.#scanned();
    return this.#store.indexedClusterIds();
  }

  /** The first call's SCAN, once (see the class). */
  #scanned(): Promise<void> {
    this.#indexed ??= this.#indexScanned().catch((err: unknown) => {
      this.#indexed = undefined;
      throw err;
    });
    return this.#indexed;
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
   * Reading the state of clusters, first half: for the clusters `choose` picks from
   * {@link storedClusterIds}, their services' indexes (only services a selector matches are
   * read later: the others' endpoints can be many), with each cluster's fingerprint from the
   * index alone (equal to an earlier load's when none of the services it matched changed). The
   * stored ids are read in one round trip with the indexes of the `likely` clusters (those
   * picked last time); one not among them costs a round trip more. {@link loadIndexed} reads
   * the rest: a resolution's reads take two round trips, and it can tell between them whether
   * anything changed since an earlier one.
   */
  async readIndexes(request: {
    readonly likely: readonly string[];
    readonly choose: (storedIds: readonly string[]) => readonly string[];
    readonly selectors: readonly ServiceSelector[];
  }): Promise<IndexedClusters> {
    await this.#scanned();
    const { selectors } = request;
    const named = namedServices(selectors);
    const { clusterIds: stored, metas: likelyMetas } = await this.#store.indexAndServiceMetas(
      request.likely.map((clusterId) => ({ clusterId, serviceKeys: named })),
    );
    const clusterIds = request.choose(stored);
    const byId = new Map<string, Map<string, ServiceMeta>>();
    request.likely.forEach((id, i) =>
      byId.set(id, likelyMetas[i] ?? new Map<string, ServiceMeta>()),
    );
    const missing = clusterIds.filter((id) => !byId.has(id));
    if (missing.length > 0) {
      const more = await this.#store.serviceMetasOfClusters(
        missing.map((clusterId) => ({ clusterId, serviceKeys: named })),
      );
      missing.forEach((id, i) => byId.set(id, more[i] ?? new Map<string, ServiceMeta>()));
    }
    const metas = clusterIds.map((id) => byId.get(id) ?? new Map<string, ServiceMeta>());
    return {
      storedIds: stored,
      clusterIds,
      fingerprints: metas.map((m) => fingerprintOf(digestsOf(m))),
      selectors,
      named,
      metas,
    };
  }

  /**
   * Reading the state of clusters, second half: the services of `indexed` that are not cached
   * at their digest, then a GET of `thenGet` behind them (see
   * `ClusterEndpointStore.readServicesThenGet`). With each cluster's state comes its
   * fingerprint: the digests of every service the selectors were matched against, the read
   * ones as read. Equal fingerprints read later mean the same state (up to a 64-bit digest
   * collision).
   */
  async loadIndexed(
    indexed: IndexedClusters,
    thenGet: string | undefined,
  ): Promise<{ states: LoadedState[]; value: string | null }> {
    return this.#load(indexed.clusterIds, indexed.selectors, indexed.named, indexed.metas, thenGet);
  }

  async #load(
    clusterIds: readonly string[],
    selectors: readonly ServiceSelector[],
    named: string[] | undefined,
    metas: readonly Map<string, ServiceMeta>[],
    thenGet: string | undefined,
  ): Promise<{ states: LoadedState[]; value: string | null }> {
    const loads = clusterIds.map((id, i) =>
      this.#plan(id, selectors, named, metas[i] ?? new Map<string, ServiceMeta>()),
    );
    // Every service not cached at its digest, of every cluster, in one batch of reads.
    const misses = loads.flatMap((load) => load.misses.map((key) => ({ load, key })));
    const { services: read, value } = await this.#store.readServicesThenGet(
      misses.map(({ load, key }) => ({ clusterId: load.clusterId, service: parseServiceKey(key) })),
      thenGet,
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
    const states = loads.map((load) => {
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
    return { states, value };
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

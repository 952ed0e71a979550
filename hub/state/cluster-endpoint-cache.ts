import {
  digestBytes,
  endpointHash,
  labelsHash,
  sameEndpoint,
  serviceKeyString,
  type EndpointRecord,
  type ServiceKey,
} from '../../shared/index.js';
import type { ClusterTotals, ServiceWrite, StoredService } from './cluster-endpoint-store.js';

const mask64 = (1n << 64n) - 1n;

interface CachedEndpoint {
  readonly record: EndpointRecord;
  readonly hash: bigint;
}

interface CachedService {
  readonly service: ServiceKey;
  labels: Readonly<Record<string, string>>;
  labelsHash: bigint;
  readonly endpoints: Map<string, CachedEndpoint>;
  /** Sum of the endpoint hashes mod 2^64 (the digest without the labels). */
  sum: bigint;
}

/**
 * The in-memory copy of one cluster's endpoint state, kept by the stream that holds the
 * cluster's lease. The holder is the only writer of the cluster, so this copy is exact; it
 * keeps each endpoint's hash so a digest follows every change in O(1) (the digest is a sum of
 * per-endpoint hashes; Redis Lua has no 64-bit integers to do it there). Each change returns
 * the `ServiceWrite` that makes Redis match.
 */
export class ClusterEndpointCache {
  readonly #services = new Map<string, CachedService>();
  #endpoints = 0;

  /** Builds the cache from what Redis holds (digests are recomputed from the records). */
  static fromStored(stored: ReadonlyMap<string, StoredService>): ClusterEndpointCache {
    const cache = new ClusterEndpointCache();
    for (const [key, s] of stored) {
      const cached = cache.#create(key, s.service);
      cache.#setLabels(cached, s.labels);
      for (const record of s.endpoints.values()) cache.#upsert(cached, record);
    }
    return cache;
  }

  get serviceCount(): number {
    return this.#services.size;
  }

  get endpointCount(): number {
    return this.#endpoints;
  }

  totals(): ClusterTotals {
    return { endpoints: this.#endpoints, services: this.#services.size };
  }

  has(serviceKey: string): boolean {
    return this.#services.has(serviceKey);
  }

  serviceKeys(): IterableIterator<string> {
    return this.#services.keys();
  }

  endpointCountOf(serviceKey: string): number {
    return this.#services.get(serviceKey)?.endpoints.size ?? 0;
  }

  /** The service's labels and endpoints (for tests and the admin API). */
  read(
    serviceKey: string,
  ): { labels: Readonly<Record<string, string>>; endpoints: EndpointRecord[] } | undefined {
    const s = this.#services.get(serviceKey);
    if (s === undefined) return undefined;
    return { labels: s.labels, endpoints: [...s.endpoints.values()].map((e) => e.record) };
  }

  /** Current digest of a service (wire form), undefined when not held. */
  digest(serviceKey: string): Uint8Array | undefined {
    const s = this.#services.get(serviceKey);
    return s === undefined ? undefined : digestBytes(s.sum + s.labelsHash);
  }

  /** Every service with its digest. */
  digests(): { service: ServiceKey; digest: Uint8Array }[] {
    return [...this.#services.values()].map((s) => ({
      service: s.service,
      digest: digestBytes(s.sum + s.labelsHash),
    }));
  }

  /** Endpoint count of a service after a delta, without applying it (for limits). */
  countAfterDelta(
    serviceKey: string,
    upserts: readonly EndpointRecord[],
    removals: readonly string[],
  ): number {
    const s = this.#services.get(serviceKey);
    const added = new Set<string>();
    const removed = new Set<string>();
    for (const address of removals) if (s?.endpoints.has(address)) removed.add(address);
    for (const e of upserts) {
      if (removed.delete(e.address)) continue;
      if (!(s?.endpoints.has(e.address) ?? false)) added.add(e.address);
    }
    return (s?.endpoints.size ?? 0) + added.size - removed.size;
  }

  /**
   * Replaces a service's state. An endpoint equal to the one held keeps its hash: an agent
   * sends a service whole when most of it changed, or after a digest mismatch, and hashing is
   * most of a replace's cost.
   */
  replace(
    service: ServiceKey,
    labels: Readonly<Record<string, string>>,
    records: readonly EndpointRecord[],
  ): ServiceWrite {
    const key = serviceKeyString(service);
    const before = this.#services.get(key)?.endpoints;
    this.#drop(key);
    const cached = this.#create(key, service);
    this.#setLabels(cached, labels);
    for (const record of records) {
      const held = before?.get(record.address);
      if (held !== undefined && sameEndpoint(held.record, record)) {
        this.#upsert(cached, record, held.hash);
      } else this.#upsert(cached, record);
    }
    return {
      kind: 'replace',
      service,
      endpoints: [...cached.endpoints.values()].map((e) => e.record),
      meta: this.#meta(cached),
    };
  }

  /** Removals first, then upserts, then labels, as the agent builds a delta. */
  delta(
    service: ServiceKey,
    upserts: readonly EndpointRecord[],
    removals: readonly string[],
    labels: Readonly<Record<string, string>> | undefined,
  ): ServiceWrite {
    const key = serviceKeyString(service);
    const cached = this.#services.get(key) ?? this.#create(key, service);
    const removed: string[] = [];
    for (const address of removals) {
      const old = cached.endpoints.get(address);
      if (old === undefined) continue;
      cached.endpoints.delete(address);
      cached.sum = (cached.sum - old.hash) & mask64;
      this.#endpoints--;
      removed.push(address);
    }
    for (const record of upserts) this.#upsert(cached, record);
    if (labels !== undefined) this.#setLabels(cached, labels);
    const upserted = new Set(upserts.map((e) => e.address));
    return {
      kind: 'delta',
      service,
      upserts,
      removals: removed.filter((a) => !upserted.has(a)),
      meta: this.#meta(cached),
    };
  }

  /** Removes a service; undefined when it was not held. */
  remove(service: ServiceKey): ServiceWrite | undefined {
    const key = serviceKeyString(service);
    if (!this.#drop(key)) return undefined;
    return { kind: 'remove', service };
  }

  #create(key: string, service: ServiceKey): CachedService {
    const cached: CachedService = {
      service,
      labels: {},
      labelsHash: labelsHash({}),
      endpoints: new Map(),
      sum: 0n,
    };
    this.#services.set(key, cached);
    return cached;
  }

  #drop(key: string): boolean {
    const old = this.#services.get(key);
    if (old === undefined) return false;
    this.#endpoints -= old.endpoints.size;
    this.#services.delete(key);
    return true;
  }

  #setLabels(cached: CachedService, labels: Readonly<Record<string, string>>): void {
    cached.labels = { ...labels };
    cached.labelsHash = labelsHash(labels);
  }

  #upsert(cached: CachedService, record: EndpointRecord, hash = endpointHash(record)): void {
    const old = cached.endpoints.get(record.address);
    if (old === undefined) this.#endpoints++;
    else cached.sum = (cached.sum - old.hash) & mask64;
    cached.endpoints.set(record.address, { record, hash });
    cached.sum = (cached.sum + hash) & mask64;
  }

  #meta(cached: CachedService) {
    return {
      digest: digestBytes(cached.sum + cached.labelsHash),
      endpointCount: cached.endpoints.size,
      labels: cached.labels,
    };
  }
}

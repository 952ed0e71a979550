import {
  parseServiceKey,
  serviceKeyString,
  type EndpointRecord,
  type ServiceKey,
} from '../../shared/index.js';
import {
  decodeEndpointRecord,
  decodeServiceMeta,
  encodeEndpointRecord,
  encodeServiceMeta,
  type ServiceMeta,
} from './endpoint-record-codec.js';
import { Slices } from './cooperative.js';
import { LeaseLostError, StateUnavailableError } from './errors.js';
import type { ChainableCommander, Cluster } from 'ioredis';
import type { RedisClient } from './redis-connection.js';
import { StateKeys } from './state-keys.js';

/** One service's change within a batch write. Digests and counts are computed by the caller. */
export type ServiceWrite =
  | {
      readonly kind: 'replace';
      readonly service: ServiceKey;
      readonly endpoints: readonly EndpointRecord[];
      readonly meta: ServiceMeta;
    }
  | {
      readonly kind: 'delta';
      readonly service: ServiceKey;
      readonly upserts: readonly EndpointRecord[];
      /** Canonical addresses. */
      readonly removals: readonly string[];
      readonly meta: ServiceMeta;
    }
  | { readonly kind: 'remove'; readonly service: ServiceKey };

/** Cluster-wide totals after a batch, kept for the admin API and limits. */
export interface ClusterTotals {
  readonly endpoints: number;
  readonly services: number;
}

/** A service as stored. */
export interface StoredService {
  readonly service: ServiceKey;
  readonly labels: Readonly<Record<string, string>>;
  readonly digest: Uint8Array;
  readonly endpoints: Map<string, EndpointRecord>;
}

// One script per batch: the lease check and every service's write are one atomic step, so a
// replica that lost the lease (paused, partitioned, slow) can never write over the new holder.
// HSET/HDEL go in chunks because Lua's unpack() is bounded by the C stack (LUAI_MAXCSTACK 8000).
const applyBatchLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('TGFED_LEASE_LOST')
end
local chunk = 1000
local i = 5
for w = 1, tonumber(ARGV[2]) do
  local key = KEYS[3 + w]
  local op = ARGV[i]
  local service = ARGV[i + 1]
  local meta = ARGV[i + 2]
  i = i + 3
  if op == 'X' then
    redis.call('DEL', key)
    redis.call('HDEL', KEYS[2], service)
  else
    if op == 'R' then redis.call('DEL', key) end
    local n = tonumber(ARGV[i])
    i = i + 1
    local s = 0
    while s < n do
      local m = math.min(chunk, n - s)
      redis.call('HSET', key, unpack(ARGV, i + 2 * s, i + 2 * (s + m) - 1))
      s = s + m
    end
    i = i + 2 * n
    local r = tonumber(ARGV[i])
    i = i + 1
    s = 0
    while s < r do
      local m = math.min(chunk, r - s)
      redis.call('HDEL', key, unpack(ARGV, i + s, i + s + m - 1))
      s = s + m
    end
    i = i + r
    redis.call('HSET', KEYS[2], service, meta)
  end
end
redis.call('HSET', KEYS[3], 'endpoints', ARGV[3], 'services', ARGV[4])
return 1
`;

const applyBatchCommand = 'tgfedApplyBatch';

// KEYS: the cluster's services index, the service's endpoint hash; ARGV: the service key. The
// meta and the endpoints it describes, read at one instant (nil when the service is not held).
const readServiceLua = `
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if not meta then return false end
return {meta, redis.call('HGETALL', KEYS[2])}
`;
const readServiceCommand = 'tgfedReadService';
type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;
type QueuedScript = (...args: (string | number)[]) => unknown;
const defined = new WeakSet<RedisClient>();

/**
 * Endpoint sets and digests per cluster and service in Redis (key schema: `StateKeys`).
 * Writes go through `applyBatch`, fenced by the cluster lease; reads are plain.
 */
export class ClusterEndpointStore {
  readonly #redis: RedisClient;
  readonly keys: StateKeys;

  constructor(redis: RedisClient, keys: StateKeys = new StateKeys()) {
    this.#redis = redis;
    this.keys = keys;
    if (!defined.has(redis)) {
      redis.defineCommand(applyBatchCommand, { lua: applyBatchLua });
      redis.defineCommand(readServiceCommand, { lua: readServiceLua, numberOfKeys: 2 });
      defined.add(redis);
    }
  }

  /**
   * Adds the cluster to the clusters index (`StateKeys.clusters`). A stream is admitted only
   * after this, so every cluster whose endpoints a stream wrote is in the index.
   */
  async index(clusterId: string): Promise<void> {
    await this.#redis.sadd(this.keys.clusters(), clusterId);
  }

  /** The clusters in the index, sorted. */
  async indexedClusterIds(): Promise<string[]> {
    return (await this.#redis.smembers(this.keys.clusters())).sort();
  }

  /** Service key (`namespace/name`) → 8-byte digest, for every service stored for the cluster. */
  async digests(clusterId: string): Promise<Map<string, Uint8Array>> {
    const metas = await this.serviceMetas(clusterId);
    return new Map([...metas].map(([key, meta]) => [key, meta.digest]));
  }

  /** Service key → meta (digest, count, labels). */
  async serviceMetas(clusterId: string): Promise<Map<string, ServiceMeta>> {
    const raw = await this.#redis.hgetall(this.keys.services(clusterId));
    return new Map(Object.entries(raw).map(([key, value]) => [key, decodeServiceMeta(key, value)]));
  }

  /**
   * Service key → meta for the given services only (HMGET: one field each, not the cluster's
   * whole index); services the cluster does not hold are absent.
   */
  async serviceMetasOf(
    clusterId: string,
    serviceKeys: readonly string[],
  ): Promise<Map<string, ServiceMeta>> {
    const metas = new Map<string, ServiceMeta>();
    if (serviceKeys.length === 0) return metas;
    const raw = await this.#redis.hmget(this.keys.services(clusterId), ...serviceKeys);
    serviceKeys.forEach((key, i) => {
      const value = raw[i];
      if (value !== null && value !== undefined) metas.set(key, decodeServiceMeta(key, value));
    });
    return metas;
  }

  /**
   * {@link serviceMetasOf} (or {@link serviceMetas} where `serviceKeys` is undefined) for many
   * clusters at once, in their order. On one server (standalone, Sentinel) the reads go in one
   * pipeline: a pool's resolution reads the index of every cluster it selects, and one socket
   * write per read was a visible share of a worker's CPU. A Redis Cluster spreads the clusters'
   * tags over its masters, and ioredis pipelines only within one, so there each is its own read.
   */
  async serviceMetasOfClusters(
    reads: readonly { clusterId: string; serviceKeys: readonly string[] | undefined }[],
  ): Promise<Map<string, ServiceMeta>[]> {
    if ((this.#redis as Cluster).isCluster === true || reads.length < 2) {
      return Promise.all(reads.map((read) => this.#metasOf(read)));
    }
    const pipeline = this.#redis.pipeline();
    this.#queueMetas(pipeline, reads);
    return this.#decodeMetas(reads, (await pipeline.exec()) ?? [], 0);
  }

  /**
   * {@link indexedClusterIds} and {@link serviceMetasOfClusters} in one round trip on one
   * server (the index first): a resolution reads the clusters it selected last time beside the
   * index, and only a cluster new to it costs a second read. In a Redis Cluster, side by side.
   */
  async indexAndServiceMetas(
    reads: readonly { clusterId: string; serviceKeys: readonly string[] | undefined }[],
  ): Promise<{ clusterIds: string[]; metas: Map<string, ServiceMeta>[] }> {
    if ((this.#redis as Cluster).isCluster === true) {
      const [clusterIds, metas] = await Promise.all([
        this.indexedClusterIds(),
        this.serviceMetasOfClusters(reads),
      ]);
      return { clusterIds, metas };
    }
    const pipeline = this.#redis.pipeline();
    pipeline.smembers(this.keys.clusters());
    this.#queueMetas(pipeline, reads);
    const results = (await pipeline.exec()) ?? [];
    const [err, ids] = results[0] ?? [new Error('missing pipeline reply'), undefined];
    if (err !== null) throw err;
    return { clusterIds: (ids as string[]).sort(), metas: this.#decodeMetas(reads, results, 1) };
  }

  #metasOf(read: {
    clusterId: string;
    serviceKeys: readonly string[] | undefined;
  }): Promise<Map<string, ServiceMeta>> {
    return read.serviceKeys === undefined
      ? this.serviceMetas(read.clusterId)
      : this.serviceMetasOf(read.clusterId, read.serviceKeys);
  }

  #queueMetas(
    pipeline: ChainableCommander,
    reads: readonly { clusterId: string; serviceKeys: readonly string[] | undefined }[],
  ): void {
    for (const read of reads) {
      if (read.serviceKeys === undefined) pipeline.hgetall(this.keys.services(read.clusterId));
      else if (read.serviceKeys.length > 0) {
        pipeline.hmget(this.keys.services(read.clusterId), ...read.serviceKeys);
      }
    }
  }

  /** The replies of {@link queueMetas}'s commands, from `results[offset]` on. */
  #decodeMetas(
    reads: readonly { clusterId: string; serviceKeys: readonly string[] | undefined }[],
    results: [Error | null, unknown][],
    offset: number,
  ): Map<string, ServiceMeta>[] {
    let next = offset;
    return reads.map((read) => {
      const metas = new Map<string, ServiceMeta>();
      if (read.serviceKeys !== undefined && read.serviceKeys.length === 0) return metas;
      const [err, value] = results[next++] ?? [new Error('missing pipeline reply'), undefined];
      if (err !== null) throw err;
      if (read.serviceKeys === undefined) {
        for (const [key, raw] of Object.entries(value as Record<string, string>)) {
          metas.set(key, decodeServiceMeta(key, raw));
        }
      } else {
        const values = value as (string | null)[];
        read.serviceKeys.forEach((key, i) => {
          const raw = values[i];
          if (raw !== null && raw !== undefined) metas.set(key, decodeServiceMeta(key, raw));
        });
      }
      return metas;
    });
  }

  /** Cluster totals as of the last batch (zeros when nothing is stored). */
  async totals(clusterId: string): Promise<ClusterTotals> {
    const [endpoints, services] = await this.#redis.hmget(
      this.keys.totals(clusterId),
      'endpoints',
      'services',
    );
    return { endpoints: Number(endpoints ?? 0), services: Number(services ?? 0) };
  }

  /** One service, or undefined when the cluster does not hold it. */
  async readService(clusterId: string, service: ServiceKey): Promise<StoredService | undefined> {
    const [stored] = await this.readServices([{ clusterId, service }]);
    return stored;
  }

  /**
   * Services of any clusters, in the order asked; undefined where the cluster does not hold it.
   * Each is read by one script (both keys carry the cluster's hash tag), so that its digest
   * always describes the endpoints read with it, which callers caching by digest rely on. Not a
   * MULTI: ioredis builds each as a pipeline copying every script defined on the connection. On
   * one server (standalone, Sentinel) the scripts go in one pipeline: a pool's resolution in a
   * rolling restart reads the changed service of each of its clusters, and one socket write per
   * read was a visible share of a worker's CPU. A Redis Cluster spreads the clusters' tags over
   * its masters, and ioredis pipelines only within one, so there each is its own read.
   */
  async readServices(
    reads: readonly { clusterId: string; service: ServiceKey }[],
  ): Promise<(StoredService | undefined)[]> {
    return (await this.readServicesThenGet(reads, undefined)).services;
  }

  /**
   * {@link readServices}, then a GET of `key` once every service was read: on one server in the
   * same pipeline, behind the reads (Redis runs a connection's commands in order), elsewhere
   * after their replies. A resolution reads the storage epoch so, to tell that no Redis loss
   * happened before its reads, without a round trip of its own.
   */
  async readServicesThenGet(
    reads: readonly { clusterId: string; service: ServiceKey }[],
    key: string | undefined,
  ): Promise<{ services: (StoredService | undefined)[]; value: string | null }> {
    const args = reads.map(({ clusterId, service }) => {
      const key = serviceKeyString(service);
      return [this.keys.services(clusterId), this.keys.service(clusterId, key), key] as const;
    });
    let results: unknown[];
    let value: string | null = null;
    const alone =
      (this.#redis as Cluster).isCluster === true || (reads.length < 2 && key === undefined);
    if (alone) {
      const run = (this.#redis as unknown as Record<string, ScriptCommand>)[readServiceCommand];
      if (run === undefined) throw new Error(`${readServiceCommand} is not defined on this client`);
      results = await Promise.all(args.map((a) => run.call(this.#redis, ...a)));
      if (key !== undefined) value = await this.#redis.get(key);
    } else {
      const pipeline = this.#redis.pipeline();
      // On a pipeline, a script queues its call (the replies come from exec).
      const queue = (pipeline as unknown as Record<string, QueuedScript>)[readServiceCommand];
      if (queue === undefined)
        throw new Error(`${readServiceCommand} is not defined on this client`);
      for (const a of args) queue.call(pipeline, ...a);
      if (key !== undefined) pipeline.get(key);
      const replies = (await pipeline.exec()) ?? [];
      const reply = (i: number): unknown => {
        const [err, value] = replies[i] ?? [new Error('missing pipeline reply'), undefined];
        if (err !== null) throw err;
        return value;
      };
      results = args.map((_, i) => reply(i));
      if (key !== undefined) value = reply(args.length) as string | null;
    }
    // Thousands of endpoints in a pool's resolution: decoded in slices (see `cooperative.ts`).
    const decoded: (StoredService | undefined)[] = [];
    const slices = new Slices();
    for (let i = 0; i < results.length; i++) {
      if (slices.due()) await slices.pause();
      const result = results[i];
      if (result === null) {
        decoded.push(undefined);
        continue;
      }
      const { service } = reads[i] as (typeof reads)[number];
      const key = (args[i] as (typeof args)[number])[2];
      const [metaRaw, fields] = result as [string, string[]];
      const meta = decodeServiceMeta(key, metaRaw);
      const endpoints = new Map<string, EndpointRecord>();
      for (let f = 0; f + 1 < fields.length; f += 2) {
        const address = fields[f]!;
        endpoints.set(address, decodeEndpointRecord(address, fields[f + 1]!, service.namespace));
      }
      decoded.push({ service, labels: meta.labels, digest: meta.digest, endpoints });
    }
    return { services: decoded, value };
  }

  /** Every service of a cluster with its endpoints (one pipelined round trip after the index). */
  async loadCluster(clusterId: string): Promise<Map<string, StoredService>> {
    const metas = await this.serviceMetas(clusterId);
    const keys = [...metas.keys()];
    const out = new Map<string, StoredService>();
    if (keys.length === 0) return out;
    const pipeline = this.#redis.pipeline();
    for (const key of keys) pipeline.hgetall(this.keys.service(clusterId, key));
    let results: [Error | null, unknown][];
    try {
      results = (await pipeline.exec()) ?? [];
    } catch (err) {
      throw new StateUnavailableError(
        `reading cluster ${clusterId} failed: ${(err as Error).message}`,
        { cause: err },
      );
    }
    keys.forEach((key, i) => {
      const [err, fields] = results[i] ?? [new Error('missing pipeline result'), undefined];
      if (err) throw err;
      const meta = metas.get(key);
      if (meta === undefined) return;
      const service = parseServiceKey(key);
      out.set(key, {
        service,
        labels: meta.labels,
        digest: meta.digest,
        endpoints: decodeEndpoints(fields as Record<string, string>, service.namespace),
      });
    });
    return out;
  }

  /**
   * Applies one batch atomically: checks that `leaseToken` still holds the cluster's lease
   * (`LeaseLostError` otherwise; nothing is written), then every write in order.
   */
  async applyBatch(
    clusterId: string,
    leaseToken: string,
    writes: readonly ServiceWrite[],
    totals: ClusterTotals,
  ): Promise<void> {
    const keys = [
      this.keys.lease(clusterId),
      this.keys.services(clusterId),
      this.keys.totals(clusterId),
    ];
    const args: (string | number)[] = [
      leaseToken,
      writes.length,
      totals.endpoints,
      totals.services,
    ];
    for (const write of writes) {
      const key = serviceKeyString(write.service);
      keys.push(this.keys.service(clusterId, key));
      if (write.kind === 'remove') {
        args.push('X', key, '');
        continue;
      }
      args.push(write.kind === 'replace' ? 'R' : 'D', key, encodeServiceMeta(write.meta));
      const upserts = write.kind === 'replace' ? write.endpoints : write.upserts;
      args.push(upserts.length);
      for (const e of upserts)
        args.push(e.address, encodeEndpointRecord(e, write.service.namespace));
      const removals = write.kind === 'replace' ? [] : write.removals;
      args.push(removals.length);
      for (const address of removals) args.push(address);
    }
    const run = (this.#redis as unknown as Record<string, ScriptCommand>)[applyBatchCommand];
    if (run === undefined) throw new Error('applyBatch script is not defined on this client');
    try {
      await run.call(this.#redis, keys.length, ...keys, ...args);
    } catch (err) {
      if (err instanceof Error && err.message.includes('TGFED_LEASE_LOST')) {
        throw new LeaseLostError(clusterId, { cause: err });
      }
      throw new StateUnavailableError(
        `writing a batch of cluster ${clusterId} failed: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
}

function decodeEndpoints(
  fields: Record<string, string>,
  namespace: string,
): Map<string, EndpointRecord> {
  const endpoints = new Map<string, EndpointRecord>();
  for (const [address, value] of Object.entries(fields)) {
    endpoints.set(address, decodeEndpointRecord(address, value, namespace));
  }
  return endpoints;
}

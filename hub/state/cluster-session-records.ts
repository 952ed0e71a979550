import type { RedisClient } from './redis-connection.js';
import { StateKeys } from './state-keys.js';

/** What Redis records about a cluster's latest admitted stream, for any replica to read. */
export interface ClusterSessionRecord {
  /** The hub replica that admitted the stream. */
  readonly hubId: string;
  readonly agentVersion: string;
  /** The agent process's session epoch from its hello (hex): new at every agent start. */
  readonly sessionEpoch: string;
  /** Random id of the admission; fences the updates of older streams. */
  readonly streamId: string;
  readonly connectedSinceMs: number;
  /** When the hub last heard from the agent (updated with the lease renewal). */
  readonly lastSeenMs: number;
  /** True once the agent sent SYNCED on this stream. */
  readonly synced: boolean;
  /** The cluster's last SYNCED, possibly on an earlier stream. */
  readonly syncedAtMs: number | undefined;
  /** The storage epoch of the last SYNCED (a later Redis loss makes it stale). */
  readonly syncedStorageEpoch: string | undefined;
  readonly lastAckedSequence: number;
  /** When the stream ended; undefined while it runs (or when its hub died without a word). */
  readonly disconnectedAtMs: number | undefined;
}

/** How a cluster's stream stands, from its record and its lease. */
export type SessionConnection =
  'syncing' | 'connected' | 'disconnected' | 'stale' | 'never-connected';

// Only the stream that wrote the record (same stream id) may update it.
const updateLua = `
if redis.call('HGET', KEYS[1], 'streamId') == ARGV[1] then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  return 1
end
return 0
`;

type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;
const defined = new WeakSet<RedisClient>();

/**
 * The session record of each cluster in Redis (`<prefix>:{c:<id>}:session`, the cluster's hash
 * tag): written at admission, updated cheaply while the stream runs, marked synced at SYNCED and
 * disconnected when the stream ends. Every update is fenced by the stream id, so a stream
 * that was taken over cannot overwrite its successor's record.
 */
export class ClusterSessionRecords {
  readonly #redis: RedisClient;
  readonly #keys: StateKeys;

  constructor(redis: RedisClient, keys: StateKeys = new StateKeys()) {
    this.#redis = redis;
    this.#keys = keys;
    if (!defined.has(redis)) {
      redis.defineCommand('tgfedSessionUpdate', { lua: updateLua, numberOfKeys: 1 });
      defined.add(redis);
    }
  }

  /**
   * Records a newly admitted stream (not synced yet), replacing the previous stream's fields.
   * Returns the storage epoch of the cluster's last SYNCED (on an earlier stream), if any.
   */
  async admitted(
    clusterId: string,
    session: {
      hubId: string;
      agentVersion: string;
      sessionEpoch: string;
      streamId: string;
      atMs: number;
    },
  ): Promise<{ syncedStorageEpoch: string | undefined }> {
    const key = this.#keys.session(clusterId);
    // The last SYNCED (epoch, time) stays: it is the cluster's, not only this stream's.
    const results = await this.#redis
      .multi()
      .hget(key, 'syncedStorageEpoch')
      .hdel(key, 'disconnectedAtMs')
      .hset(key, {
        hubId: session.hubId,
        agentVersion: session.agentVersion,
        sessionEpoch: session.sessionEpoch,
        streamId: session.streamId,
        connectedSinceMs: session.atMs,
        lastSeenMs: session.atMs,
        synced: 0,
        lastAckedSequence: 0,
      })
      .exec();
    for (const [err] of results ?? []) if (err !== null) throw err;
    const epoch = results?.[0]?.[1];
    return { syncedStorageEpoch: typeof epoch === 'string' ? epoch : undefined };
  }

  /** Records that the agent was heard from; false when another stream owns the record. */
  seen(
    clusterId: string,
    streamId: string,
    progress: { lastSeenMs: number; lastAckedSequence: number },
  ): Promise<boolean> {
    return this.#update(clusterId, streamId, {
      lastSeenMs: progress.lastSeenMs,
      lastAckedSequence: progress.lastAckedSequence,
    });
  }

  /** Records the agent's SYNCED against `storageEpoch`. */
  synced(
    clusterId: string,
    streamId: string,
    sync: { atMs: number; storageEpoch: string; lastAckedSequence: number },
  ): Promise<boolean> {
    return this.#update(clusterId, streamId, {
      synced: 1,
      syncedAtMs: sync.atMs,
      syncedStorageEpoch: sync.storageEpoch,
      lastSeenMs: sync.atMs,
      lastAckedSequence: sync.lastAckedSequence,
    });
  }

  /** Records the end of the stream. */
  ended(clusterId: string, streamId: string, atMs: number): Promise<boolean> {
    return this.#update(clusterId, streamId, { disconnectedAtMs: atMs });
  }

  /** The cluster's record, or undefined when no stream was admitted since Redis last lost it. */
  async read(clusterId: string): Promise<ClusterSessionRecord | undefined> {
    return parseClusterSessionRecord(await this.#redis.hgetall(this.#keys.session(clusterId)));
  }

  async #update(
    clusterId: string,
    streamId: string,
    fields: Record<string, string | number>,
  ): Promise<boolean> {
    const run = (this.#redis as unknown as Record<string, ScriptCommand>)['tgfedSessionUpdate'];
    if (run === undefined) throw new Error('tgfedSessionUpdate is not defined on this client');
    const updated = await run.call(
      this.#redis,
      this.#keys.session(clusterId),
      streamId,
      ...Object.entries(fields).flat(),
    );
    return updated === 1;
  }
}

function numberOr(text: string | undefined, fallback: number): number {
  const value = Number(text);
  return text === undefined || text === '' || !Number.isFinite(value) ? fallback : value;
}

/** A record from its hash fields; undefined for an empty (absent) hash. */
export function parseClusterSessionRecord(
  fields: Record<string, string>,
): ClusterSessionRecord | undefined {
  if (fields['streamId'] === undefined) return undefined;
  const syncedAtMs = fields['syncedAtMs'];
  const disconnectedAtMs = fields['disconnectedAtMs'];
  return {
    hubId: fields['hubId'] ?? '',
    agentVersion: fields['agentVersion'] ?? '',
    sessionEpoch: fields['sessionEpoch'] ?? '',
    streamId: fields['streamId'],
    connectedSinceMs: numberOr(fields['connectedSinceMs'], 0),
    lastSeenMs: numberOr(fields['lastSeenMs'], 0),
    synced: fields['synced'] === '1',
    syncedAtMs: syncedAtMs === undefined ? undefined : numberOr(syncedAtMs, 0),
    syncedStorageEpoch: fields['syncedStorageEpoch'],
    lastAckedSequence: numberOr(fields['lastAckedSequence'], 0),
    disconnectedAtMs: disconnectedAtMs === undefined ? undefined : numberOr(disconnectedAtMs, 0),
  };
}

/** The hub id in a lease value (`<token>/<hub id>`, see `ClusterLease`); '' when not held. */
export function leaseHolderOf(leaseValue: string | null): string {
  return leaseValue === null ? '' : leaseValue.slice(leaseValue.indexOf('/') + 1);
}

/**
 * How a cluster's stream stands: held and synced (`connected`) or not yet (`syncing`); not held
 * and heard from within `graceMs` (`disconnected`) or longer ago (`stale`). A hub that died
 * without recording the end is judged by the last time it heard from the agent.
 */
export function sessionConnection(
  record: ClusterSessionRecord | undefined,
  held: boolean,
  nowMs: number,
  graceMs: number,
): SessionConnection {
  if (held) {
    // A new holder may not have written its record yet: the old one says nothing of it.
    const current = record !== undefined && record.disconnectedAtMs === undefined;
    return current && record.synced ? 'connected' : 'syncing';
  }
  if (record === undefined) return 'never-connected';
  const lastHeardMs = Math.max(record.disconnectedAtMs ?? 0, record.lastSeenMs);
  return nowMs - lastHeardMs <= graceMs ? 'disconnected' : 'stale';
}

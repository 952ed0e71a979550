import { randomBytes } from 'node:crypto';
import type { RedisClient } from './redis-connection.js';
import { StateKeys } from './state-keys.js';

/** A held lease: `token` is the fencing token every write of the holder presents. */
export interface HeldLease {
  readonly clusterId: string;
  readonly token: string;
  readonly hubId: string;
  expiresAtMs: number;
}

/** Outcome of an acquire attempt. */
export type LeaseAttempt =
  | { readonly acquired: true; readonly lease: HeldLease }
  | {
      readonly acquired: false;
      /** The hub replica whose stream holds it ('' when it vanished meanwhile). */
      readonly holderHubId: string;
      readonly expiresAtMs: number;
    };

// Compare-and-set: only the holder's exact token renews or releases.
const renewLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`;
const releaseLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;
const defined = new WeakSet<RedisClient>();

/**
 * The per-cluster lease that keeps one admitted stream per cluster across all hub replicas: a
 * Redis key with a random token and a TTL. The token is `<random hex>/<hub id>`, so a reader
 * sees the holder without a second key, and it is the fencing token of every batch write.
 */
export class ClusterLease {
  readonly #redis: RedisClient;
  readonly #keys: StateKeys;
  readonly #ttlMs: number;

  constructor(redis: RedisClient, options: { keys?: StateKeys; ttlMs: number }) {
    this.#redis = redis;
    this.#keys = options.keys ?? new StateKeys();
    this.#ttlMs = options.ttlMs;
    if (!defined.has(redis)) {
      redis.defineCommand('tgfedLeaseRenew', { lua: renewLua, numberOfKeys: 1 });
      redis.defineCommand('tgfedLeaseRelease', { lua: releaseLua, numberOfKeys: 1 });
      defined.add(redis);
    }
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** Takes the lease when nobody holds it. */
  async acquire(clusterId: string, hubId: string): Promise<LeaseAttempt> {
    const token = `${randomBytes(16).toString('hex')}/${hubId}`;
    const key = this.#keys.lease(clusterId);
    const ok = await this.#redis.set(key, token, 'PX', this.#ttlMs, 'NX');
    if (ok === 'OK') {
      return {
        acquired: true,
        lease: { clusterId, token, hubId, expiresAtMs: Date.now() + this.#ttlMs },
      };
    }
    const [holder, ttl] = await Promise.all([this.#redis.get(key), this.#redis.pttl(key)]);
    return {
      acquired: false,
      holderHubId: holder === null ? '' : holder.slice(holder.indexOf('/') + 1),
      expiresAtMs: Date.now() + Math.max(0, ttl),
    };
  }

  /** Extends the lease; false when it was lost (expired, taken over, or Redis lost it). */
  async renew(lease: HeldLease): Promise<boolean> {
    const renewed = await this.#command('tgfedLeaseRenew')(
      this.#keys.lease(lease.clusterId),
      lease.token,
      this.#ttlMs,
    );
    if (renewed !== 1) return false;
    lease.expiresAtMs = Date.now() + this.#ttlMs;
    return true;
  }

  /** Gives the lease up so a standby stream takes over at once; no-op when not held. */
  async release(lease: HeldLease): Promise<void> {
    await this.#command('tgfedLeaseRelease')(this.#keys.lease(lease.clusterId), lease.token);
  }

  #command(name: string): ScriptCommand {
    const run = (this.#redis as unknown as Record<string, ScriptCommand>)[name];
    if (run === undefined) throw new Error(`${name} is not defined on this client`);
    return run.bind(this.#redis);
  }
}

import { randomBytes } from 'node:crypto';
import type { RedisClient } from './redis-connection.js';
import { StateKeys } from './state-keys.js';

/** Result of {@link StorageEpoch.verify}. */
export type EpochCheck =
  | { readonly intact: true; readonly epoch: string }
  | { readonly intact: false; readonly previous: string; readonly epoch: string };

/**
 * Detects a Redis loss (FLUSHALL, a restart without persistence): a random epoch written once
 * and compared on every check. A missing or different epoch means the stored state is gone or
 * is not the one this hub knew; the hub then treats every cluster as not yet resynced
 * (DESIGN.md, Safety), and a new epoch is written so that the loss is reported once.
 */
export class StorageEpoch {
  readonly #redis: RedisClient;
  readonly #keys: StateKeys;
  #known: string | undefined;

  constructor(redis: RedisClient, keys: StateKeys = new StateKeys()) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** The epoch this hub knows, once established. */
  get current(): string | undefined {
    return this.#known;
  }

  /** Reads the epoch, writing a new one on first start (or after a loss). */
  async establish(): Promise<string> {
    const key = this.#keys.epoch();
    const fresh = randomBytes(8).toString('hex');
    await this.#redis.set(key, fresh, 'NX');
    const epoch = (await this.#redis.get(key)) ?? fresh;
    this.#known = epoch;
    return epoch;
  }

  /** Compares the stored epoch with the known one; on a loss, establishes a new one. */
  async verify(): Promise<EpochCheck> {
    const previous = this.#known ?? (await this.establish());
    const stored = await this.#redis.get(this.#keys.epoch());
    if (stored === previous) return { intact: true, epoch: previous };
    const epoch = await this.establish();
    return { intact: false, previous, epoch };
  }
}

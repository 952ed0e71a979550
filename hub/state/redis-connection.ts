import { Cluster, Redis } from 'ioredis';

/** One Redis server (or a managed endpoint), by URL: `redis://` or `rediss://`. */
export interface StandaloneRedisSettings {
  readonly mode: 'standalone';
  readonly url: string;
}

/** A Redis master found through Sentinel. */
export interface SentinelRedisSettings {
  readonly mode: 'sentinel';
  /** Sentinel addresses, `host:port`. */
  readonly sentinels: readonly string[];
  /** The monitored master's name. */
  readonly masterName: string;
  readonly password?: string;
  readonly sentinelPassword?: string;
  /** @default false */
  readonly tls?: boolean;
}

/** A Redis Cluster, by some of its nodes. */
export interface ClusterRedisSettings {
  readonly mode: 'cluster';
  /** Seed nodes, `host:port`. */
  readonly nodes: readonly string[];
  readonly password?: string;
  /** @default false */
  readonly tls?: boolean;
}

/** How the hub reaches Redis: how users outgrow one server (DESIGN.md, State). */
export type RedisSettings = (
  StandaloneRedisSettings | SentinelRedisSettings | ClusterRedisSettings
) &
  CommonRedisSettings;

/** Settings every mode shares. */
export interface CommonRedisSettings {
  /**
   * A command that gets no reply within this time fails (instead of waiting for a reconnect
   * forever), so a lease holder notices an unreachable Redis before its lease runs out. 0 sets
   * no timeout: for connections that block on purpose (BullMQ workers).
   * @default 5000
   */
  readonly commandTimeoutMs?: number;
}

/** The client type every hub store takes: commands and Lua work the same on both. */
export type RedisClient = Redis | Cluster;

function hostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new Error(`not a host:port address: ${JSON.stringify(address)}`);
  }
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port };
}

/**
 * Connects to Redis in any of the supported modes. Commands queue while (re)connecting (a short
 * Redis restart stalls writes instead of failing them) up to `commandTimeoutMs`.
 */
export function createRedis(settings: RedisSettings): RedisClient {
  // ioredis arms a timer for any number, 0 included.
  const timeoutMs = settings.commandTimeoutMs ?? 5_000;
  const commandTimeout = timeoutMs > 0 ? timeoutMs : undefined;
  switch (settings.mode) {
    case 'standalone':
      return new Redis(settings.url, { maxRetriesPerRequest: null, commandTimeout });
    case 'sentinel':
      return new Redis({
        sentinels: settings.sentinels.map(hostPort),
        name: settings.masterName,
        password: settings.password,
        sentinelPassword: settings.sentinelPassword,
        ...(settings.tls === true ? { tls: {}, enableTLSForSentinelMode: true } : {}),
        // Reconnect on the sentinels' +switch-master at once. Without it the client stays on the
        // deposed master, which keeps accepting writes until a sentinel demotes it (seconds
        // later), and those writes are then dropped by its resync from the new master.
        failoverDetector: true,
        maxRetriesPerRequest: null,
        commandTimeout,
      });
    case 'cluster':
      return new Cluster(settings.nodes.map(hostPort), {
        redisOptions: {
          password: settings.password,
          ...(settings.tls === true ? { tls: {} } : {}),
          maxRetriesPerRequest: null,
          commandTimeout,
        },
        // Scripts touch only keys of one hash tag, so they run on one master.
        scaleReads: 'master',
      });
  }
}

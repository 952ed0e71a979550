import { z } from 'zod';
import type { RedisSettings } from '../state/index.js';

/** `host:port` with a name, IPv4 or bracketed IPv6 host. */
export const hostPort = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/**
 * Settings every process on the hub's Redis shares, hub and workers alike: the Redis
 * connection, the clusters file, the safety timings and the reconcile queues. Both schemas
 * spread these fields, so one config file serves both roles and they cannot disagree.
 */
export const stateOptionFields = {
  redisUrl: z
    .string()
    .regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL')
    .optional()
    .describe('Standalone Redis, redis://[user:password@]host:port[/db] or rediss://'),
  redisSentinels: z
    .array(z.string().regex(hostPort, 'host:port'))
    .default([])
    .describe('Sentinel addresses (comma-separated host:port); needs redisSentinelName'),
  redisSentinelName: z
    .string()
    .min(1)
    .optional()
    .describe('Name of the master the sentinels monitor'),
  redisClusterNodes: z
    .array(z.string().regex(hostPort, 'host:port'))
    .default([])
    .describe('Redis Cluster seed nodes (comma-separated host:port)'),
  redisPassword: z
    .string()
    .min(1)
    .optional()
    .describe('Redis password for Sentinel or Cluster mode (prefer the env variable)'),
  redisTls: z.boolean().default(false).describe('TLS to Redis in Sentinel or Cluster mode'),
  redisKeyPrefix: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" and "-" (no braces or ":")')
    .default('tgfed')
    .describe('Prefix of every Redis key; separates installations sharing one Redis'),
  redisCommandTimeoutMs: z
    .number()
    .int()
    .min(100)
    .default(5_000)
    .describe('A Redis command without a reply within this time fails'),
  clustersFile: z
    .string()
    .min(1)
    .optional()
    .describe('YAML list of clusters: id, labels, allowedCidrs, tokenSha256'),
  disconnectedGraceMs: z
    .number()
    .int()
    .min(0)
    .default(300_000)
    .describe('How long a disconnected cluster keeps its endpoints as they were (fail-static)'),
  resyncTimeoutMs: z
    .number()
    .int()
    .min(0)
    .default(600_000)
    .describe('After a Redis loss or cold start, how long to wait for clusters to resync'),
  initialSyncHoldMs: z
    .number()
    .int()
    .min(0)
    .max(600_000)
    .default(10_000)
    .describe(
      "How long registrations wait for a cluster's initial sync after a cold start or Redis loss (0: off)",
    ),
  reconcileShardCount: z
    .number()
    .int()
    .min(1)
    .max(1_024)
    .default(16)
    .describe('Number of reconcile queues; every hub and worker must use the same'),
  reconcileDebounceMs: z
    .number()
    .int()
    .min(0)
    .max(3_600_000)
    .default(1_000)
    .describe("A target group's changes within this window share one reconcile"),
  staleClusterPolicy: z
    .enum(['withdraw-if-unhealthy', 'withdraw'])
    .default('withdraw-if-unhealthy')
    .describe(
      "After the grace period, a disconnected cluster's targets go only when ELB reports them unhealthy, or all",
    ),
  shutdownGraceMs: z
    .number()
    .int()
    .min(0)
    .default(20_000)
    .describe('On SIGTERM, how long calls and streams may finish before they are cut'),
  logLevel: z
    .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
    .default('info')
    .describe('Log level'),
};

/** The fields {@link checkRedisMode} and {@link redisSettingsOf} read. */
export interface RedisOptionFields {
  readonly redisUrl?: string | undefined;
  readonly redisSentinels: readonly string[];
  readonly redisSentinelName?: string | undefined;
  readonly redisClusterNodes: readonly string[];
  readonly redisPassword?: string | undefined;
  readonly redisTls: boolean;
  readonly redisCommandTimeoutMs: number;
}

/** Exactly one Redis mode, with what it needs; for a schema's `superRefine`. */
export function checkRedisMode(o: RedisOptionFields, ctx: z.RefinementCtx): void {
  const modes = [
    o.redisUrl !== undefined ? 'redisUrl' : undefined,
    o.redisSentinels.length > 0 ? 'redisSentinels' : undefined,
    o.redisClusterNodes.length > 0 ? 'redisClusterNodes' : undefined,
  ].filter((m) => m !== undefined);
  if (modes.length === 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['redisUrl'],
      message:
        'Redis is required: redisUrl, redisSentinels + redisSentinelName, or redisClusterNodes',
    });
  } else if (modes.length > 1) {
    ctx.addIssue({
      code: 'custom',
      path: [modes[1] ?? 'redisUrl'],
      message: `choose one Redis mode; ${modes.join(' and ')} are both set`,
    });
  }
  if (o.redisSentinels.length > 0 && o.redisSentinelName === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['redisSentinelName'],
      message: 'required with redisSentinels (the monitored master name)',
    });
  }
}

/** The Redis connection the settings describe (the schema guarantees exactly one mode). */
export function redisSettingsOf(options: RedisOptionFields): RedisSettings {
  const common = { commandTimeoutMs: options.redisCommandTimeoutMs };
  if (options.redisSentinels.length > 0) {
    return {
      mode: 'sentinel',
      sentinels: options.redisSentinels,
      masterName: options.redisSentinelName ?? '',
      ...(options.redisPassword === undefined ? {} : { password: options.redisPassword }),
      tls: options.redisTls,
      ...common,
    };
  }
  if (options.redisClusterNodes.length > 0) {
    return {
      mode: 'cluster',
      nodes: options.redisClusterNodes,
      ...(options.redisPassword === undefined ? {} : { password: options.redisPassword }),
      tls: options.redisTls,
      ...common,
    };
  }
  return { mode: 'standalone', url: options.redisUrl ?? '', ...common };
}

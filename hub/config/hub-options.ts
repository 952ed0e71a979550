import { hostname } from 'node:os';
import { z } from 'zod';
import type { RedisSettings } from '../state/index.js';

const hostPort = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

function limit(description: string, fallback: number, max: number) {
  return z.number().int().min(1).max(max).default(fallback).describe(description);
}

/**
 * Every setting of the hub process, with its default and meaning. The same schema validates the
 * config file, the environment (`TGFED_*`) and the flags, and documents all three
 * (`shared/config/config-loader.ts`). Files it names (clusters, admin tokens, bindings) are read
 * and validated at start by `Hub`.
 */
export const hubOptionsSchema = z
  .object({
    hubId: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'letters, digits, ".", "_" and "-" (no "/")')
      .default(hostname().replace(/[^A-Za-z0-9._-]/g, '-'))
      .describe('Name of this hub replica in leases, welcomes and logs (default: host name)'),
    agentAddress: z
      .string()
      .regex(hostPort, 'host:port')
      .default('0.0.0.0:7443')
      .describe('Listener of the agent Sync stream, host:port (port 0 picks a free one)'),
    agentTlsCaFile: z
      .string()
      .min(1)
      .optional()
      .describe('PEM CA bundle that verifies agent client certificates'),
    agentTlsCertFile: z.string().min(1).optional().describe('PEM server certificate (agents)'),
    agentTlsKeyFile: z.string().min(1).optional().describe('PEM key of the agent server cert'),
    agentClientCertificates: z
      .enum(['require', 'optional'])
      .default('require')
      .describe('Agent client certificates: "require" (mTLS only) or "optional" (tokens too)'),
    agentTrustDomain: z
      .string()
      .min(1)
      .optional()
      .describe('SPIFFE trust domain: URI SAN spiffe://<domain>/cluster/<id> names the cluster'),
    adminAddress: z
      .string()
      .regex(hostPort, 'host:port')
      .default('0.0.0.0:7444')
      .describe('Listener of the admin API, host:port (its own credentials)'),
    adminTlsCaFile: z
      .string()
      .min(1)
      .optional()
      .describe('PEM CA bundle that verifies admin client certificates'),
    adminTlsCertFile: z.string().min(1).optional().describe('PEM server certificate (admin API)'),
    adminTlsKeyFile: z.string().min(1).optional().describe('PEM key of the admin server cert'),
    adminClientCertificates: z
      .enum(['require', 'optional', 'none'])
      .default('optional')
      .describe('Admin client certificates: "require", "optional" (tokens too) or "none"'),
    insecure: z
      .boolean()
      .default(false)
      .describe('Plaintext listeners (no TLS), for local demos and tests only'),
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
    adminTokensFile: z
      .string()
      .min(1)
      .optional()
      .describe('YAML list of admin credentials: name, role (read-only|admin), tokenSha256'),
    bindingsFile: z
      .string()
      .min(1)
      .optional()
      .describe('YAML bindings applied at start (added or replaced; others are left alone)'),
    heartbeatIntervalMs: z
      .number()
      .int()
      .min(100)
      .max(300_000)
      .default(10_000)
      .describe('Heartbeat interval told to agents; three silent intervals close a stream'),
    leaseTtlMs: z
      .number()
      .int()
      .min(1_000)
      .max(600_000)
      .default(15_000)
      .describe('Cluster lease TTL (a standby stream takes over within it)'),
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
    maxEndpointsPerService: limit('Endpoints one service may have', 20_000, 1_000_000),
    maxEndpointsPerCluster: limit('Endpoints one cluster may have', 200_000, 10_000_000),
    maxServicesPerCluster: limit('Services one cluster may have', 10_000, 1_000_000),
    maxBatchesInFlight: limit('Unacknowledged batches one stream may have', 8, 1_024),
    maxMessageBytes: limit('Largest message an agent may send, in bytes', 4 << 20, 64 << 20),
    healthAddress: z
      .string()
      .regex(hostPort, 'host:port')
      .default('0.0.0.0:8081')
      .describe('Address of the /livez and /readyz endpoints'),
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
  })
  .superRefine((o, ctx) => {
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
    for (const listener of ['agent', 'admin'] as const) {
      const cert = o[`${listener}TlsCertFile`];
      const key = o[`${listener}TlsKeyFile`];
      if ((cert === undefined) !== (key === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: [cert === undefined ? `${listener}TlsCertFile` : `${listener}TlsKeyFile`],
          message: `${listener}TlsCertFile and ${listener}TlsKeyFile go together`,
        });
      }
      if (!o.insecure && cert === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [`${listener}TlsCertFile`],
          message: 'required unless insecure is set (the listener serves TLS)',
        });
      }
    }
    if (!o.insecure && o.agentTlsCaFile === undefined && o.agentClientCertificates === 'require') {
      ctx.addIssue({
        code: 'custom',
        path: ['agentTlsCaFile'],
        message: 'required when agentClientCertificates is "require" (verifies agent certificates)',
      });
    }
    if (!o.insecure && o.adminTlsCaFile === undefined && o.adminClientCertificates === 'require') {
      ctx.addIssue({
        code: 'custom',
        path: ['adminTlsCaFile'],
        message: 'required when adminClientCertificates is "require"',
      });
    }
  });

/** The hub's validated settings (every field present). */
export type CompiledHubOptions = z.infer<typeof hubOptionsSchema>;

/** Settings as a caller may give them (defaults optional). */
export type HubOptions = z.input<typeof hubOptionsSchema>;

/** The Redis connection the settings describe (the schema guarantees exactly one mode). */
export function redisSettingsOf(options: CompiledHubOptions): RedisSettings {
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

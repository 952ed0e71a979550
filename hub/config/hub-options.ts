import { hostname } from 'node:os';
import { z } from 'zod';
import { checkRedisMode, hostPort, stateOptionFields } from './state-options.js';

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
    ...stateOptionFields,
    insecure: z
      .boolean()
      .default(false)
      .describe('Plaintext listeners (no TLS), for local demos and tests only'),
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
    maxEndpointsPerService: limit('Endpoints one service may have', 20_000, 1_000_000),
    maxEndpointsPerCluster: limit('Endpoints one cluster may have', 200_000, 10_000_000),
    maxServicesPerCluster: limit('Services one cluster may have', 10_000, 1_000_000),
    maxBatchesInFlight: limit('Unacknowledged batches one stream may have', 8, 1_024),
    maxMessageBytes: limit('Largest message an agent may send, in bytes', 4 << 20, 64 << 20),
    maxAgentStreams: limit(
      'Agent streams one hub replica serves at once (more are refused: RESOURCE_EXHAUSTED)',
      10_000,
      1_000_000,
    ),
    maxStandbyStreamsPerCluster: limit(
      'Streams of one cluster on standby at one hub replica (more are refused)',
      8,
      1_024,
    ),
    healthAddress: z
      .string()
      .regex(hostPort, 'host:port')
      .default('0.0.0.0:8081')
      .describe('Address of the /livez and /readyz endpoints'),
  })
  .superRefine((o, ctx) => {
    checkRedisMode(o, ctx);
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

import { z } from 'zod';

const hostPort = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;
// Cluster ids name clusters in logs, metrics, keys and bindings: DNS-label-like.
const clusterId = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Every setting of the agent, with its default and meaning. The same schema validates the
 * config file, the environment (`TGFED_*`) and the flags, and documents all three
 * (`shared/config/config-loader.ts`).
 */
export const agentOptionsSchema = z
  .object({
    clusterId: z
      .string()
      .regex(clusterId, 'lower-case letters, digits and "-", at most 63, like a DNS label')
      .describe('Cluster this agent speaks for; must match the identity of its credentials'),
    hubAddress: z
      .string()
      .regex(hostPort, 'host:port')
      .describe('Address of the hub agent endpoint, host:port'),
    tlsCaFile: z.string().min(1).optional().describe('PEM CA bundle that verifies the hub'),
    tlsCertFile: z.string().min(1).optional().describe('PEM client certificate (mutual TLS)'),
    tlsKeyFile: z.string().min(1).optional().describe('PEM private key of the client certificate'),
    tlsServerName: z
      .string()
      .min(1)
      .optional()
      .describe('Name to verify in the hub certificate, when it differs from the address host'),
    tokenFile: z
      .string()
      .min(1)
      .optional()
      .describe('File holding the per-cluster bearer token (instead of a client certificate)'),
    insecure: z
      .boolean()
      .default(false)
      .describe('Plaintext connection to the hub, for local demos and tests only'),
    namespaces: z
      .array(z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a namespace name'))
      .default([])
      .describe('Namespaces to watch (comma-separated); empty watches all namespaces'),
    labelSelector: z
      .string()
      .optional()
      .describe('Label selector for EndpointSlices, e.g. "tgfed.io/federate=true"'),
    includeUnnamedSlices: z
      .boolean()
      .default(false)
      .describe('Federate EndpointSlices without kubernetes.io/service-name (as their own name)'),
    batchWindowMs: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(50)
      .describe('How long endpoint changes gather before a batch goes to the hub'),
    maxBatchesInFlight: z
      .number()
      .int()
      .min(1)
      .max(1_024)
      .default(8)
      .describe('Unacknowledged batches allowed; beyond it changes coalesce per service'),
    maxEndpointsPerBatch: z
      .number()
      .int()
      .min(1)
      .max(50_000)
      .default(2_000)
      .describe('Endpoints per batch; larger services are split over batches'),
    heartbeatIntervalMs: z
      .number()
      .int()
      .min(100)
      .max(300_000)
      .default(10_000)
      .describe('Heartbeat interval until the hub sets one'),
    watchdogMs: z
      .number()
      .int()
      .min(100)
      .default(120_000)
      .describe('Restart a watch that has seen no event or bookmark for this long'),
    reconnectInitialMs: z
      .number()
      .int()
      .min(1)
      .default(500)
      .describe('First reconnect delay (jittered, doubling)'),
    reconnectMaxMs: z.number().int().min(1).default(30_000).describe('Longest reconnect delay'),
    healthAddress: z
      .string()
      .regex(hostPort, 'host:port')
      .default('0.0.0.0:8081')
      .describe('Address of the /livez and /readyz endpoints'),
    readyMaxStalenessMs: z
      .number()
      .int()
      .min(1_000)
      .default(300_000)
      .describe('Not ready when the watch has not synced or heard from Kubernetes for this long'),
    shutdownGraceMs: z
      .number()
      .int()
      .min(0)
      .default(20_000)
      .describe('On SIGTERM, how long to flush pending batches before exiting'),
    logLevel: z
      .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
      .default('info')
      .describe('Log level'),
  })
  .superRefine((o, ctx) => {
    if ((o.tlsCertFile === undefined) !== (o.tlsKeyFile === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [o.tlsCertFile === undefined ? 'tlsCertFile' : 'tlsKeyFile'],
        message: 'tlsCertFile and tlsKeyFile go together',
      });
    }
    if (!o.insecure && o.tlsCaFile === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['tlsCaFile'],
        message: 'required unless insecure is set (the hub is verified by this CA)',
      });
    }
    if (!o.insecure && o.tlsCertFile === undefined && o.tokenFile === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['tlsCertFile'],
        message: 'the agent needs credentials: tlsCertFile + tlsKeyFile, or tokenFile',
      });
    }
    if (o.reconnectMaxMs < o.reconnectInitialMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['reconnectMaxMs'],
        message: 'must be at least reconnectInitialMs',
      });
    }
  });

/** The agent's validated settings (every field present). */
export type CompiledAgentOptions = z.infer<typeof agentOptionsSchema>;

/** Settings as a caller may give them (defaults optional). */
export type AgentOptions = z.input<typeof agentOptionsSchema>;

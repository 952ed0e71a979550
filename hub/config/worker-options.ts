import { hostname } from 'node:os';
import { z } from 'zod';
import { checkRedisMode, hostPort, stateOptionFields } from './state-options.js';

function rate(description: string, fallback: number) {
  return z.number().positive().max(100_000).default(fallback).describe(description);
}

function burst(description: string, fallback: number) {
  return z.number().int().min(1).max(100_000).default(fallback).describe(description);
}

/**
 * Every setting of a worker process (`tgfed worker`). The state fields (Redis, clusters file,
 * safety timings, reconcile queues) are the hub's, so one config file serves both roles. AWS
 * endpoints and base credentials come from the SDK's standard settings (`AWS_REGION`,
 * `AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2`, `AWS_ENDPOINT_URL_STS`, IRSA, Pod Identity, …).
 */
export const workerOptionsSchema = z
  .object({
    workerId: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'letters, digits, ".", "_" and "-"')
      .default(hostname().replace(/[^A-Za-z0-9._-]/g, '-'))
      .describe('Name of this worker in logs (default: host name)'),
    ...stateOptionFields,
    workerShards: z
      .array(z.coerce.number().int().min(0).max(1_023))
      .default([])
      .describe(
        'Reconcile queues this worker consumes (comma-separated shard numbers; default all)',
      ),
    workerConcurrency: z
      .number()
      .int()
      .min(1)
      .max(256)
      .default(4)
      .describe('Target groups reconciled at once per queue'),
    reconcileChunkSize: z
      .number()
      .int()
      .min(1)
      .max(1_000)
      .default(500)
      .describe('Targets per RegisterTargets / DeregisterTargets call'),
    guardMaxShare: z
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe('A reconcile removing more than this share of a group is held for an operator'),
    guardMinTargets: z
      .number()
      .int()
      .min(1)
      .default(5)
      .describe('Removals of fewer targets than this are never held'),
    driftIntervalMs: z
      .number()
      .int()
      .min(1_000)
      .default(300_000)
      .describe('How often each target group is described to repair drift (jittered)'),
    drainingCountsTowardCapacity: z
      .boolean()
      .default(true)
      .describe("Count draining targets toward a group's capacity (AWS does not document it)"),
    followUpMs: z
      .number()
      .int()
      .min(100)
      .default(15_000)
      .describe(
        'How soon a group is reconciled again while targets wait for room or health decides',
      ),
    capacityDescribeIntervalMs: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(5_000)
      .describe(
        'While targets wait for room in a full group, how long a describe of it is trusted',
      ),
    transientRetryMaxMs: z
      .number()
      .int()
      .min(1_000)
      .max(86_400_000)
      .default(30_000)
      .describe(
        'Longest wait before a group is retried after AWS throttled it, a 5xx or a network error',
      ),
    retryMaxMs: z
      .number()
      .int()
      .min(1_000)
      .max(86_400_000)
      .default(300_000)
      .describe('Wait before a group is retried after access denied, not found or a full group'),
    awsMutateRatePerSecond: rate('Register/DeregisterTargets calls per second per account', 4),
    awsMutateBurst: burst('Register/DeregisterTargets burst per account and region', 20),
    awsDescribeRatePerSecond: rate('Describe* calls per second per account and region', 50),
    awsDescribeBurst: burst('Describe* burst per account and region', 200),
    awsModifyRatePerSecond: rate('Modify* calls per second per account and region', 3),
    awsModifyBurst: burst('Modify* burst per account and region', 20),
    listenerWeightDebounceMs: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(3_000)
      .describe("Debounce window of a pool's listener rule weights update"),
    listenerWeightMinShareChange: z
      .number()
      .min(0)
      .max(1)
      .default(0.02)
      .describe("Least change of a pool group's traffic share worth a ModifyRule call"),
    listenerWeightCheckIntervalMs: z
      .number()
      .int()
      .min(1_000)
      .default(300_000)
      .describe('How long listener rule weights are trusted without a describe'),
    awsRoleSessionName: z
      .string()
      .regex(/^[\w+=,.@-]{2,64}$/, 'AWS role session name characters ([\\w+=,.@-], 2 to 64)')
      .default('tgfed-worker')
      .describe('Session name of assumed roles (shows in CloudTrail)'),
    lockDurationMs: z
      .number()
      .int()
      .min(1_000)
      .default(30_000)
      .describe('A reconcile whose worker stops renewing its lock this long is taken over'),
    healthAddress: z
      .string()
      .regex(hostPort, 'host:port')
      .default('0.0.0.0:8082')
      .describe('Address of the /livez and /readyz endpoints'),
  })
  .superRefine((o, ctx) => {
    checkRedisMode(o, ctx);
    for (const [i, shard] of o.workerShards.entries()) {
      if (shard >= o.reconcileShardCount) {
        ctx.addIssue({
          code: 'custom',
          path: ['workerShards', i],
          message: `shard ${shard} does not exist (reconcileShardCount is ${o.reconcileShardCount})`,
        });
      }
    }
  });

/** The worker's validated settings (every field present). */
export type CompiledWorkerOptions = z.infer<typeof workerOptionsSchema>;

/** Settings as a caller may give them (defaults optional). */
export type WorkerOptions = z.input<typeof workerOptionsSchema>;

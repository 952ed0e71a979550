import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { EndpointDecoderLimits, Logger } from '../../shared/index.js';
import { silentLogger } from '../../shared/index.js';

/** Hard limits of one agent stream (sent to the agent in the welcome). */
export interface StreamLimitOptions {
  /** @default 8 */
  maxBatchesInFlight?: number;
  /** @default 4194304 (gRPC's default receive limit) */
  maxMessageBytes?: number;
  /** @default 20000 */
  maxEndpointsPerService?: number;
  /** @default 200000 */
  maxEndpointsPerCluster?: number;
  /** @default 10000 */
  maxServicesPerCluster?: number;
}

/** Options for {@link SyncService}. */
export interface SyncServiceOptions {
  /** Name of this hub replica in leases, welcomes and logs. @default `<hostname>-<random>` */
  hubId?: string;
  /** @default 10000 */
  heartbeatIntervalMs?: number;
  /** Cluster lease TTL; the holder renews it every third of it. @default 15000 */
  leaseTtlMs?: number;
  /** How often a standby stream tries to take the lease. @default 1000 */
  standbyRetryMs?: number;
  /** How often the storage epoch is verified (Redis loss detection). @default 5000 */
  epochCheckMs?: number;
  /**
   * Open `Sync` streams this replica serves at once, authenticated or not; a stream beyond it
   * is refused with RESOURCE_EXHAUSTED before any work (a connection flood stays bounded).
   * @default 10000
   */
  maxAgentStreams?: number;
  /**
   * Streams of one cluster waiting on standby at this replica (agent replicas for HA); one
   * more is refused with RESOURCE_EXHAUSTED. @default 8
   */
  maxStandbyStreamsPerCluster?: number;
  limits?: StreamLimitOptions;
  decoderLimits?: EndpointDecoderLimits;
  logger?: Logger;
}

/** {@link SyncServiceOptions} with every default applied, validated. */
export interface CompiledSyncServiceOptions {
  hubId: string;
  heartbeatIntervalMs: number;
  leaseTtlMs: number;
  standbyRetryMs: number;
  epochCheckMs: number;
  maxAgentStreams: number;
  maxStandbyStreamsPerCluster: number;
  limits: Required<StreamLimitOptions>;
  decoderLimits: EndpointDecoderLimits;
  logger: Logger;
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`sync service option ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/** Applies defaults and fails fast with the name of a bad setting. */
export function compileSyncServiceOptions(options: SyncServiceOptions): CompiledSyncServiceOptions {
  const limits = options.limits ?? {};
  const compiled: CompiledSyncServiceOptions = {
    hubId: options.hubId ?? `${hostname()}-${randomBytes(3).toString('hex')}`,
    heartbeatIntervalMs: positive('heartbeatIntervalMs', options.heartbeatIntervalMs ?? 10_000),
    leaseTtlMs: positive('leaseTtlMs', options.leaseTtlMs ?? 15_000),
    standbyRetryMs: positive('standbyRetryMs', options.standbyRetryMs ?? 1_000),
    epochCheckMs: positive('epochCheckMs', options.epochCheckMs ?? 5_000),
    maxAgentStreams: positive('maxAgentStreams', options.maxAgentStreams ?? 10_000),
    maxStandbyStreamsPerCluster: positive(
      'maxStandbyStreamsPerCluster',
      options.maxStandbyStreamsPerCluster ?? 8,
    ),
    limits: {
      maxBatchesInFlight: positive('limits.maxBatchesInFlight', limits.maxBatchesInFlight ?? 8),
      maxMessageBytes: positive('limits.maxMessageBytes', limits.maxMessageBytes ?? 4 << 20),
      maxEndpointsPerService: positive(
        'limits.maxEndpointsPerService',
        limits.maxEndpointsPerService ?? 20_000,
      ),
      maxEndpointsPerCluster: positive(
        'limits.maxEndpointsPerCluster',
        limits.maxEndpointsPerCluster ?? 200_000,
      ),
      maxServicesPerCluster: positive(
        'limits.maxServicesPerCluster',
        limits.maxServicesPerCluster ?? 10_000,
      ),
    },
    decoderLimits: options.decoderLimits ?? {},
    logger: options.logger ?? silentLogger(),
  };
  if (compiled.hubId.includes('/'))
    throw new Error('sync service option hubId must not contain "/"');
  return compiled;
}

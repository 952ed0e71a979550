import type { KubeConfig, V1EndpointSlice } from '@kubernetes/client-node';
import {
  ATTR_TGFED_CLUSTER_ID,
  SERVICE_NAMES,
  silentLogger,
  startHealthServer,
  startTelemetry,
  type HealthServer,
  type Logger,
  type Telemetry,
} from '../shared/index.js';
import {
  ServiceEndpointSets,
  type ServiceEndpointsChange,
} from './aggregate/service-endpoint-sets.js';
import type { CompiledAgentOptions } from './config/agent-options.js';
import { hubConnection } from './config/hub-connection.js';
import { registerPublisherMetrics } from './publish/publisher-metrics.js';
import { SyncPublisher } from './publish/sync-publisher.js';
import { EndpointSliceWatch } from './watch/endpoint-slice-watch.js';

// Time the telemetry flush gets even when the publisher's flush used the whole grace period.
const telemetryMinFlushMs = 1_000;

/** Lifecycle of the agent process. */
export type AgentState = 'idle' | 'starting' | 'running' | 'draining' | 'closed';

/** Dependencies the agent is given rather than creates (tests pass their own). */
export interface AgentDependencies {
  kubeConfig: KubeConfig;
  logger?: Logger;
  /** Agent version sent in hello. */
  version: string;
  /**
   * Metrics (and traces) of the agent; the agent shuts down only the one it created.
   * @default `startTelemetry` configured by the `OTEL_*` variables
   */
  telemetry?: Telemetry;
}

/**
 * The in-cluster agent: watch → aggregate → publish. The watch feeds every EndpointSlice event
 * into the per-service endpoint sets; each resulting endpoint-level change goes to the
 * publisher, which starts streaming once the first list of every watched scope is in (so the
 * resync never mistakes a service not yet listed for a deleted one).
 */
export class Agent {
  readonly sets: ServiceEndpointSets;
  readonly watch: EndpointSliceWatch;
  readonly publisher: SyncPublisher;
  readonly telemetry: Telemetry;
  readonly #ownsTelemetry: boolean;
  readonly #options: CompiledAgentOptions;
  readonly #log: Logger;
  #state: AgentState = 'idle';
  #health: HealthServer | undefined;
  #startedAtMs = 0;
  #closing: Promise<void> | undefined;

  constructor(options: CompiledAgentOptions, deps: AgentDependencies) {
    this.#options = options;
    this.#log = deps.logger ?? silentLogger();
    this.#ownsTelemetry = deps.telemetry === undefined;
    this.telemetry =
      deps.telemetry ??
      startTelemetry({
        serviceName: SERVICE_NAMES.agent,
        attributes: { [ATTR_TGFED_CLUSTER_ID]: options.clusterId },
        logger: this.#log,
      });
    this.sets = new ServiceEndpointSets({ includeUnnamedSlices: options.includeUnnamedSlices });
    const connection = hubConnection(options);
    this.publisher = new SyncPublisher(this.sets, {
      clusterId: options.clusterId,
      agentVersion: deps.version,
      target: options.hubAddress,
      credentials: connection.credentials,
      metadata: connection.metadata,
      channelOptions: connection.channelOptions,
      batchWindowMs: options.batchWindowMs,
      maxBatchesInFlight: options.maxBatchesInFlight,
      maxEndpointsPerBatch: options.maxEndpointsPerBatch,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      reconnectInitialMs: options.reconnectInitialMs,
      reconnectMaxMs: options.reconnectMaxMs,
      logger: this.#log,
      tracer: this.telemetry.tracer(),
    });
    registerPublisherMetrics(this.telemetry.meter, {
      clusterId: options.clusterId,
      publisher: this.publisher,
      endpoints: () => this.sets.endpointCount,
    });
    const publish = (changes: ServiceEndpointsChange[]) => {
      for (const change of changes) this.publisher.notify(change);
      // The watch counts a scope as synced once its onSync returned: check right after.
      if (this.#state === 'starting') setImmediate(() => this.#maybeStartPublishing());
    };
    this.watch = new EndpointSliceWatch(
      deps.kubeConfig,
      {
        onSync: (scope: string | null, slices: V1EndpointSlice[]) =>
          publish(this.sets.replaceScope(scope, slices, Date.now())),
        onUpsert: (slice: V1EndpointSlice) => publish(this.sets.upsertSlice(slice, Date.now())),
        onDelete: (slice: V1EndpointSlice) => publish(this.sets.deleteSlice(slice, Date.now())),
      },
      {
        namespaces: options.namespaces,
        labelSelector: options.labelSelector,
        watchdogMs: options.watchdogMs,
        logger: this.#log.child({ component: 'watch' }),
      },
    );
  }

  get state(): AgentState {
    return this.#state;
  }

  /** Port of the health endpoints (useful when configured with port 0). */
  get healthPort(): number | undefined {
    return this.#health?.port;
  }

  /** Starts the health endpoints and the watch; publishing follows the first full list. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') return;
    this.#setState('starting');
    this.#startedAtMs = Date.now();
    this.#health = await startHealthServer({
      address: this.#options.healthAddress,
      live: () => ({ ok: this.#state !== 'closed', detail: { state: this.#state } }),
      ready: () => this.#readiness(),
      metrics: this.telemetry.metricsEndpoint,
    });
    this.watch.start();
  }

  /**
   * Graceful stop: stop watching, flush pending batches to the hub within `graceMs`, then close
   * everything (every step runs even if one fails). Idempotent.
   */
  shutdown(graceMs = this.#options.shutdownGraceMs): Promise<void> {
    this.#closing ??= this.#shutdown(graceMs);
    return this.#closing;
  }

  async #shutdown(graceMs: number): Promise<void> {
    this.#setState('draining');
    const deadline = Date.now() + graceMs;
    const steps: [string, () => Promise<unknown>][] = [
      ['watch', () => this.watch.close()],
      [
        'flush',
        async () => {
          const flushed = await this.publisher.drain(graceMs);
          this.#log.info(
            {
              flushed,
              pendingServices: this.publisher.pendingServices,
              inFlight: this.publisher.inFlight,
            },
            flushed
              ? 'flushed every pending change'
              : 'shutdown deadline passed with changes unflushed',
          );
        },
      ],
      ['publisher', () => this.publisher.close()],
      [
        'telemetry',
        () =>
          this.#ownsTelemetry
            ? this.telemetry.shutdown(Math.max(telemetryMinFlushMs, deadline - Date.now()))
            : Promise.resolve(),
      ],
      ['health', () => this.#health?.close() ?? Promise.resolve()],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.#log.error({ err, step: name }, 'shutdown step failed');
      }
    }
    this.#setState('closed');
  }

  #maybeStartPublishing(): void {
    if (this.#state !== 'starting' || !this.watch.synced) return;
    this.#setState('running');
    this.#log.info(
      {
        services: this.sets.serviceCount,
        endpoints: this.sets.endpointCount,
        listMs: Date.now() - this.#startedAtMs,
      },
      'initial list complete; connecting to the hub',
    );
    this.publisher.start();
  }

  #readiness(): { ok: boolean; detail: Record<string, unknown> } {
    const lastSyncAt = this.watch.lastSyncAt;
    const stalenessMs = lastSyncAt === undefined ? undefined : Date.now() - lastSyncAt;
    const fresh = stalenessMs !== undefined && stalenessMs <= this.#options.readyMaxStalenessMs;
    return {
      ok: this.#state === 'running' && this.watch.synced && fresh,
      detail: {
        state: this.#state,
        watch: this.watch.state,
        watchSynced: this.watch.synced,
        watchStalenessMs: stalenessMs,
        hub: this.publisher.state,
        services: this.sets.serviceCount,
        endpoints: this.sets.endpointCount,
      },
    };
  }

  #setState(state: AgentState): void {
    if (this.#state === state) return;
    this.#log.info({ from: this.#state, to: state }, 'agent state');
    this.#state = state;
  }
}

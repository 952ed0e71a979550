import type * as grpc from '@grpc/grpc-js';
import type { Tracer } from '@opentelemetry/api';
import {
  AgentServiceService,
  type AgentServiceServer,
  type Logger,
  type SyncRequest,
  type SyncResponse,
} from '../../shared/index.js';
import {
  StorageLostError,
  type ClusterEndpointStore,
  type ClusterLease,
  type ClusterSessionRecords,
  type StorageEpoch,
} from '../state/index.js';
import type { AddressPolicy } from './address-policy.js';
import type { AgentAuthenticator } from './agent-authenticator.js';
import { ClusterSession } from './cluster-session.js';
import { HubClosingError, StreamLimitError } from './errors.js';
import { grpcStatusOf } from './grpc-status.js';
import { IngestCounters } from './ingest-counters.js';
import type { ReconcileSink } from './reconcile-sink.js';
import type { SubscriptionSource } from './subscription-source.js';
import {
  compileSyncServiceOptions,
  type CompiledSyncServiceOptions,
  type SyncServiceOptions,
} from './sync-service-options.js';

/** The collaborators of {@link SyncService}. */
export interface SyncServiceDeps {
  readonly store: ClusterEndpointStore;
  readonly lease: ClusterLease;
  readonly epoch: StorageEpoch;
  readonly authenticator: AgentAuthenticator;
  readonly addressPolicy: AddressPolicy;
  readonly subscriptions: SubscriptionSource;
  readonly reconcileSink: ReconcileSink;
  /** Where each admitted stream is recorded (admin API, safety layer). @default not recorded */
  readonly sessionRecords?: ClusterSessionRecords;
  /**
   * Whether the workers still wait for the cluster to resync (the cluster status tracker's
   * `awaitingResync`, which ends with the resync timeout). @default always, while not synced
   */
  readonly awaitingResync?: (clusterId: string) => boolean;
  /** Called once per detected Redis loss (the safety layer holds deregistrations). */
  readonly onStorageLost?: (previousEpoch: string, epoch: string) => void;
  /** Traces each batch's apply (see `ClusterSession`). @default no spans */
  readonly tracer?: Tracer;
}

/** Lifecycle of the service. */
export type SyncServiceState = 'idle' | 'running' | 'closed';

/**
 * Serves `AgentService.Sync` (DESIGN.md, protocol): one {@link ClusterSession} per stream;
 * pushes subscription changes to admitted streams; watches the storage epoch and, when Redis
 * lost its data, ends every stream so that agents resync into the empty store.
 * Add `handlers` to a grpc-js server (`agentServerOptions` sizes its message limit).
 */
export class SyncService {
  readonly counters = new IngestCounters();
  readonly options: CompiledSyncServiceOptions;
  readonly #deps: SyncServiceDeps;
  readonly #log: Logger;
  readonly #sessions = new Set<ClusterSession>();
  #state: SyncServiceState = 'idle';
  #epochTimer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(deps: SyncServiceDeps, options: SyncServiceOptions = {}) {
    this.#deps = deps;
    this.options = compileSyncServiceOptions(options);
    this.#log = this.options.logger.child({ component: 'sync-service', hub: this.options.hubId });
  }

  /** The grpc-js implementation of `AgentService`. */
  readonly handlers: AgentServiceServer = {
    sync: (call) => this.#onStream(call),
  };

  /**
   * `AgentServiceService` as the listener should serve it: a message that does not decode is
   * counted (`malformedMessages`) before grpc-js ends the stream with INTERNAL.
   */
  readonly definition: typeof AgentServiceService = {
    ...AgentServiceService,
    sync: {
      ...AgentServiceService.sync,
      requestDeserialize: (bytes: Buffer): SyncRequest => {
        try {
          return AgentServiceService.sync.requestDeserialize(bytes);
        } catch (err) {
          this.counters.malformedMessages++;
          throw err;
        }
      },
    },
  };

  get state(): SyncServiceState {
    return this.#state;
  }

  /** Streams that hold their cluster's lease, by cluster id. */
  admittedClusters(): string[] {
    return [...this.#sessions].filter((s) => s.admitted).map((s) => s.clusterId);
  }

  /** Streams open on this replica, in any state (bounded by `maxAgentStreams`). */
  get openStreams(): number {
    return this.#sessions.size;
  }

  /** Streams on standby. */
  standbyCount(): number {
    return [...this.#sessions].filter((s) => s.state === 'standby').length;
  }

  /** Establishes the storage epoch and starts watching it and the subscriptions. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') return;
    const epoch = await this.#deps.epoch.establish();
    this.#state = 'running';
    this.#log.info({ epoch }, 'sync service running');
    this.#unsubscribe = this.#deps.subscriptions.onChange(() => {
      for (const session of this.#sessions) session.pushSubscription();
    });
    this.#epochTimer = setInterval(() => void this.checkStorage(), this.options.epochCheckMs);
    this.#epochTimer.unref();
  }

  /** Verifies the storage epoch now; on a loss, ends every stream. Returns true when intact. */
  async checkStorage(): Promise<boolean> {
    if (this.#state !== 'running') return true;
    try {
      const check = await this.#deps.epoch.verify();
      if (check.intact) return true;
      this.counters.storageLosses++;
      this.#log.error(
        { previous: check.previous, epoch: check.epoch },
        'Redis lost the hub state; ending every stream so that agents resync',
      );
      this.#deps.onStorageLost?.(check.previous, check.epoch);
      const lost = new StorageLostError(
        'the hub state store was reset; reconnect to resync the cluster',
      );
      await Promise.all([...this.#sessions].map((s) => s.close(lost)));
      return false;
    } catch (err) {
      this.#log.warn({ err }, 'storage epoch check failed');
      return true;
    }
  }

  /** Ends every stream (UNAVAILABLE, leases released) and stops. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearInterval(this.#epochTimer);
    this.#unsubscribe?.();
    const closing = new HubClosingError();
    const results = await Promise.allSettled([...this.#sessions].map((s) => s.close(closing)));
    for (const r of results) {
      if (r.status === 'rejected') this.#log.warn({ err: r.reason as unknown }, 'close failed');
    }
    this.#log.info('sync service closed');
  }

  #onStream(call: grpc.ServerDuplexStream<SyncRequest, SyncResponse>): void {
    this.counters.streams++;
    if (this.#sessions.size >= this.options.maxAgentStreams) {
      this.counters.streamsRefused++;
      const limit = new StreamLimitError(
        `this hub serves at most ${this.options.maxAgentStreams} agent streams; retry later`,
      );
      call.emit('error', grpcStatusOf(limit, this.#log));
      return;
    }
    const session = new ClusterSession(call, {
      store: this.#deps.store,
      lease: this.#deps.lease,
      authenticator: this.#deps.authenticator,
      addressPolicy: this.#deps.addressPolicy,
      subscriptions: this.#deps.subscriptions,
      reconcileSink: this.#deps.reconcileSink,
      sessionRecords: this.#deps.sessionRecords,
      storageEpoch: () => this.#deps.epoch.current,
      awaitingResync: this.#deps.awaitingResync,
      counters: this.counters,
      options: this.options,
      onClosed: (s) => this.#sessions.delete(s),
      standbyStreams: (clusterId) => {
        let n = 0;
        for (const s of this.#sessions) if (s.clusterId === clusterId && s.state === 'standby') n++;
        return n;
      },
      tracer: this.#deps.tracer,
    });
    this.#sessions.add(session);
    if (this.#state !== 'running') void session.close(new HubClosingError());
  }
}

/** grpc-js server options matching the stream limits (message size). */
export function agentServerOptions(options: CompiledSyncServiceOptions): grpc.ServerOptions {
  return {
    'grpc.max_receive_message_length': options.limits.maxMessageBytes,
    // Agents keep one stream for days; let HTTP/2 keepalives find dead peers as well.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_permit_without_calls': 1,
  };
}

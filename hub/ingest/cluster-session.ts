import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { SpanKind, SpanStatusCode, type Span, type Tracer } from '@opentelemetry/api';
import {
  EndpointDecoder,
  NackReason,
  ProtocolViolationError,
  SpanAttribute,
  SpanName,
  addressFromBytes,
  addressToBytes,
  remoteParentContext,
  sameDigest,
  serviceKeyString,
  traceHeadersFromContext,
  withSpan,
  type EndpointBatch,
  type EndpointRecord,
  type Hello,
  type Logger,
  type Rejection,
  type ServiceChange,
  type ServiceKey,
  type SyncRequest,
  type SyncResponse,
} from '../../shared/index.js';
import {
  ClusterEndpointCache,
  LeaseLostError,
  type ClusterEndpointStore,
  type ClusterSessionRecords,
  type ClusterLease,
  type HeldLease,
  type ServiceWrite,
} from '../state/index.js';
import type { AddressPolicy } from './address-policy.js';
import type { AgentAuthenticator } from './agent-authenticator.js';
import {
  ClusterMismatchError,
  HeartbeatTimeoutError,
  ProtocolOrderError,
  StreamLimitError,
  UnauthenticatedError,
} from './errors.js';
import { grpcStatusOf } from './grpc-status.js';
import type { IngestCounters } from './ingest-counters.js';
import type { InitialSyncHold, ReconcileSink } from './reconcile-sink.js';
import type { SubscriptionSource } from './subscription-source.js';
import type { CompiledSyncServiceOptions } from './sync-service-options.js';

/** Lifecycle of one agent stream. */
export type ClusterSessionState =
  'awaiting-hello' | 'standby' | 'admitting' | 'resyncing' | 'streaming' | 'closed';

/** What a session needs from the hub around it. */
export interface ClusterSessionDeps {
  readonly store: ClusterEndpointStore;
  readonly lease: ClusterLease;
  readonly authenticator: AgentAuthenticator;
  readonly addressPolicy: AddressPolicy;
  readonly subscriptions: SubscriptionSource;
  readonly reconcileSink: ReconcileSink;
  readonly counters: IngestCounters;
  readonly options: CompiledSyncServiceOptions;
  /** Where the session is recorded for the admin API and the safety layer; none in some tests. */
  readonly sessionRecords?: ClusterSessionRecords | undefined;
  /** The storage epoch the hub knows (recorded with SYNCED). */
  readonly storageEpoch?: (() => string | undefined) | undefined;
  /** See `SyncServiceDeps.awaitingResync`. */
  readonly awaitingResync?: ((clusterId: string) => boolean) | undefined;
  readonly onClosed: (session: ClusterSession) => void;
  /** Streams of a cluster on standby at this hub (bounded by `maxStandbyStreamsPerCluster`). */
  readonly standbyStreams?: ((clusterId: string) => number) | undefined;
  /** Starts the apply span of each batch (and its Redis write's). @default no spans */
  readonly tracer?: Tracer | undefined;
}

type SyncCall = grpc.ServerDuplexStream<SyncRequest, SyncResponse>;

const clusterIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** One rejected item, before it becomes a wire `Rejection`. */
function rejection(
  service: ServiceKey | undefined,
  reason: NackReason,
  message: string,
  address?: Uint8Array,
): Rejection {
  return { service, address: address ?? new Uint8Array(0), reason, message };
}

/** A change of one service that failed validation as a whole. */
class ChangeRejectedError extends Error {
  override readonly name = 'ChangeRejectedError';
  constructor(
    readonly reason: NackReason,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The hub's side of one `Sync` stream: hello and authentication, the cluster lease (standby
 * while another stream holds it), welcome from the stored state, then batches in order —
 * validated at the edge, written to Redis in one fenced script per batch, handed to the
 * reconcile sink, and acked. Messages are processed one at a time, in arrival order.
 */
export class ClusterSession {
  readonly #call: SyncCall;
  readonly #deps: ClusterSessionDeps;
  #log: Logger;
  #state: ClusterSessionState = 'awaiting-hello';
  #clusterId = '';
  #lease: HeldLease | undefined;
  #cache: ClusterEndpointCache | undefined;
  #decoder: EndpointDecoder;
  #expectedSequence = 1;
  /** While this stream is its cluster's initial sync after a cold start or Redis loss. */
  #initialSync: InitialSyncHold | undefined;
  /** Services the agent removed during the resync; removed only at SYNCED. */
  readonly #deferredRemovals = new Map<string, ServiceKey>();
  /** Services where the hub holds less than the agent on purpose (rejected addresses). */
  readonly #diverged = new Set<string>();
  #subscriptionVersion: number | undefined;
  #chain: Promise<void> = Promise.resolve();
  #queued = 0;
  #lastReceivedMs = Date.now();
  /** When the stream opened; a stream without a hello within three intervals is closed. */
  readonly #openedAtMs = Date.now();
  #helloReceived = false;
  #agentVersion = '';
  #agentSessionEpoch = '';
  /** Random id of this stream's admission, fencing its session record updates. */
  #streamId: string | undefined;
  #lastAckedSequence = 0;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #leaseTimer: NodeJS.Timeout | undefined;
  #standbyTimer: NodeJS.Timeout | undefined;

  constructor(call: SyncCall, deps: ClusterSessionDeps) {
    this.#call = call;
    this.#deps = deps;
    this.#decoder = new EndpointDecoder(deps.options.decoderLimits);
    this.#log = deps.options.logger.child({ component: 'cluster-session', peer: call.getPeer() });
    call.on('data', (request: SyncRequest) => this.#onRequest(request));
    call.on('end', () => void this.close());
    call.on('error', () => void this.close());
    call.on('cancelled', () => void this.close());
    call.on('close', () => void this.close());
    this.#heartbeatTimer = setInterval(() => this.#heartbeat(), deps.options.heartbeatIntervalMs);
    this.#heartbeatTimer.unref();
    // The credentials come with the stream's headers: a stream without any the hub accepts is
    // ended at once, not kept until its hello (a connection flood costs next to nothing).
    try {
      deps.authenticator.authenticate(call);
    } catch (err) {
      if (!(err instanceof UnauthenticatedError)) throw err;
      deps.counters.unauthenticated++;
      this.#chain = this.#chain.then(() => this.#fail(err));
    }
  }

  get state(): ClusterSessionState {
    return this.#state;
  }

  /** The cluster named by the hello ('' before it). */
  get clusterId(): string {
    return this.#clusterId;
  }

  /** True while this stream holds its cluster's lease. */
  get admitted(): boolean {
    return this.#state === 'resyncing' || this.#state === 'streaming';
  }

  /** Sends the cluster's subscription when it changed since the last one sent. */
  pushSubscription(): void {
    if (!this.admitted) return;
    const subscription = this.#deps.subscriptions.subscriptionFor(this.#clusterId);
    if (subscription.version === this.#subscriptionVersion) return;
    this.#subscriptionVersion = subscription.version;
    this.#write({ message: { $case: 'subscription', subscription } });
  }

  /**
   * Ends the stream: with the status of `err`, or OK when the agent ended it. Releases the
   * lease so a standby stream takes over at once. Idempotent; every step runs.
   */
  async close(err?: Error): Promise<void> {
    if (this.#state === 'closed') return;
    const from = this.#state;
    this.#state = 'closed';
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#leaseTimer);
    clearInterval(this.#standbyTimer);
    this.#log.info({ from, err: err?.message }, 'stream closed');
    try {
      if (err === undefined) {
        this.#call.end();
      } else {
        this.#call.emit('error', grpcStatusOf(err, this.#log));
      }
    } catch (endErr) {
      this.#log.debug({ err: endErr }, 'stream already gone');
    }
    const initialSync = this.#initialSync;
    this.#initialSync = undefined;
    await initialSync
      ?.end()
      .catch((endErr: unknown) =>
        this.#log.warn({ err: endErr }, 'cannot enqueue the reconciles kept back for the sync'),
      );
    const lease = this.#lease;
    this.#lease = undefined;
    this.#cache = undefined;
    const streamId = this.#streamId;
    if (lease !== undefined && streamId !== undefined) {
      // Before the release, so that a successor's fresh record is never marked ended.
      await this.#record('end', (records) => records.ended(this.#clusterId, streamId, Date.now()));
    }
    if (lease !== undefined) {
      await this.#deps.lease
        .release(lease)
        .catch((releaseErr: unknown) =>
          this.#log.warn({ err: releaseErr }, 'lease release failed; it will expire'),
        );
    }
    this.#deps.onClosed(this);
  }

  // --- messages ----------------------------------------------------------------------------

  #onRequest(request: SyncRequest): void {
    if (this.#state === 'closed') return;
    this.#lastReceivedMs = Date.now();
    const message = request.message;
    if (message?.$case === 'heartbeat') return;
    if (message?.$case === 'hello') this.#helloReceived = true;
    if (message?.$case === 'batch' || message?.$case === 'synced') {
      if (!this.admitted) {
        this.#fail(
          new ProtocolOrderError(
            this.#state === 'standby'
              ? 'this stream is on standby: send only heartbeats until welcomed'
              : 'batch before the welcome',
          ),
        );
        return;
      }
      // Counted from arrival: a well-behaved agent never has more unacked than the welcome said.
      if (++this.#queued > this.#deps.options.limits.maxBatchesInFlight) {
        this.#fail(
          new StreamLimitError(
            `more than ${this.#deps.options.limits.maxBatchesInFlight} batches in flight`,
          ),
        );
        return;
      }
    }
    const receivedAtMs = Date.now();
    this.#chain = this.#chain
      .then(async () => {
        if (this.#state === 'closed') return;
        switch (message?.$case) {
          case 'hello':
            await this.#onHello(message.hello);
            break;
          case 'batch':
            this.#queued--;
            await this.#onBatch(message.batch, receivedAtMs);
            break;
          case 'synced':
            this.#queued--;
            await this.#onSynced(message.synced.sequence);
            break;
          default:
            this.#log.debug('ignoring an unknown message from the agent');
        }
      })
      .catch((err: unknown) => this.#fail(err instanceof Error ? err : new Error(String(err))));
  }

  async #onHello(hello: Hello): Promise<void> {
    if (this.#state !== 'awaiting-hello') throw new ProtocolOrderError('a second hello');
    let identity;
    try {
      identity = this.#deps.authenticator.authenticate(this.#call);
    } catch (err) {
      if (err instanceof UnauthenticatedError) this.#deps.counters.unauthenticated++;
      throw err;
    }
    if (identity.clusterId !== hello.clusterId) {
      this.#deps.counters.permissionDenied++;
      throw new ClusterMismatchError(identity.clusterId, hello.clusterId);
    }
    if (!clusterIdPattern.test(hello.clusterId)) {
      throw new ProtocolOrderError(`cluster id ${JSON.stringify(hello.clusterId)} is not valid`);
    }
    this.#clusterId = hello.clusterId;
    this.#agentVersion = hello.agentVersion;
    this.#agentSessionEpoch = Buffer.from(hello.sessionEpoch).toString('hex');
    this.#log = this.#log.child({ cluster: this.#clusterId });
    this.#log.info(
      { agentVersion: hello.agentVersion, auth: identity.method },
      'hello from an authenticated agent',
    );
    await this.#tryAdmit();
    if (this.#state === 'awaiting-hello' || this.#state === 'standby') {
      this.#standbyTimer = setInterval(() => {
        this.#chain = this.#chain
          .then(() => (this.#state === 'standby' ? this.#tryAdmit() : undefined))
          .catch((err: unknown) => this.#fail(err instanceof Error ? err : new Error(String(err))));
      }, this.#deps.options.standbyRetryMs);
      this.#standbyTimer.unref();
    }
  }

  async #tryAdmit(): Promise<void> {
    const attempt = await this.#deps.lease.acquire(this.#clusterId, this.#deps.options.hubId);
    if (this.#state === 'closed') {
      if (attempt.acquired) await this.#deps.lease.release(attempt.lease);
      return;
    }
    if (!attempt.acquired) {
      if (this.#state !== 'standby') {
        // Each standby stream polls the lease: one cluster's credentials get a bounded number.
        const max = this.#deps.options.maxStandbyStreamsPerCluster;
        if ((this.#deps.standbyStreams?.(this.#clusterId) ?? 0) >= max) {
          throw new StreamLimitError(
            `cluster ${this.#clusterId} already has ${max} streams on standby at this hub`,
          );
        }
        this.#state = 'standby';
        this.#deps.counters.standbys++;
        this.#log.info({ holder: attempt.holderHubId }, 'cluster held by another stream; standby');
        this.#write({
          message: {
            $case: 'standby',
            standby: {
              holderHubId: attempt.holderHubId,
              leaseExpiresUnixMs: attempt.expiresAtMs,
            },
          },
        });
      }
      return;
    }
    this.#lease = attempt.lease;
    this.#state = 'admitting';
    clearInterval(this.#standbyTimer);
    this.#leaseTimer = setInterval(() => void this.#renewLease(), this.#deps.lease.ttlMs / 3);
    this.#leaseTimer.unref();
    const streamId = randomBytes(8).toString('hex');
    this.#streamId = streamId;
    let lastSynced: { syncedStorageEpoch: string | undefined } | undefined;
    await this.#record('admission', async (records) => {
      lastSynced = await records.admitted(this.#clusterId, {
        hubId: this.#deps.options.hubId,
        agentVersion: this.#agentVersion,
        sessionEpoch: this.#agentSessionEpoch,
        streamId,
        atMs: Date.now(),
      });
    });
    if (this.#state !== 'admitting') return;
    const storageEpoch = this.#deps.storageEpoch?.();
    if (
      lastSynced !== undefined &&
      storageEpoch !== undefined &&
      lastSynced.syncedStorageEpoch !== storageEpoch &&
      (this.#deps.awaitingResync?.(this.#clusterId) ?? true)
    ) {
      // The workers hold this cluster's groups' registrations until it has synced: the sink
      // may keep their reconciles back until then (ended at SYNCED or by close).
      this.#initialSync = this.#deps.reconcileSink.initialSyncStarted?.(this.#clusterId);
    }
    // Indexed before anything of this stream is written: workers list the clusters that may
    // hold state from the index (`StateKeys.clusters`).
    await this.#deps.store.index(this.#clusterId);
    const stored = await this.#deps.store.loadCluster(this.#clusterId);
    if (this.#state !== 'admitting') return;
    this.#cache = ClusterEndpointCache.fromStored(stored);
    const subscription = this.#deps.subscriptions.subscriptionFor(this.#clusterId);
    this.#subscriptionVersion = subscription.version;
    this.#state = 'resyncing';
    this.#deps.counters.admissions++;
    const limits = this.#deps.options.limits;
    this.#write({
      message: {
        $case: 'welcome',
        welcome: {
          hubId: this.#deps.options.hubId,
          digests: this.#cache.digests(),
          subscription,
          limits: {
            maxBatchesInFlight: limits.maxBatchesInFlight,
            maxMessageBytes: limits.maxMessageBytes,
            maxEndpointsPerService: limits.maxEndpointsPerService,
            maxEndpointsPerCluster: limits.maxEndpointsPerCluster,
            maxServicesPerCluster: limits.maxServicesPerCluster,
          },
          heartbeatIntervalMs: this.#deps.options.heartbeatIntervalMs,
          capabilities: [],
        },
      },
    });
    this.#log.info(
      { services: this.#cache.serviceCount, endpoints: this.#cache.endpointCount },
      'admitted; welcome sent',
    );
  }

  async #renewLease(): Promise<void> {
    const lease = this.#lease;
    if (lease === undefined || this.#state === 'closed') return;
    try {
      if (await this.#deps.lease.renew(lease)) {
        await this.#recordProgress();
        return;
      }
      this.#fail(new LeaseLostError(this.#clusterId));
    } catch (err) {
      // Redis unreachable: keep the stream while the lease may still be ours.
      this.#log.warn({ err }, 'lease renewal failed');
      if (Date.now() >= lease.expiresAtMs) {
        this.#fail(new LeaseLostError(this.#clusterId, { cause: err }));
      }
    }
  }

  #sequenceOk(sequence: number, services: ServiceKey[]): boolean {
    if (sequence === this.#expectedSequence) {
      this.#expectedSequence++;
      return true;
    }
    this.#deps.counters.sequenceErrors++;
    const message = `sequence ${sequence}, expected ${this.#expectedSequence}`;
    this.#log.warn({ sequence, expected: this.#expectedSequence }, 'sequence gap');
    // Re-align on the agent's numbering after a gap, and ask again for whatever this batch
    // touched. A replay (a sequence already processed) never moves it back: an old batch sent
    // again must not be applied a second time (issue #9, hostile input).
    if (sequence > this.#expectedSequence) this.#expectedSequence = sequence + 1;
    this.#write({
      message: {
        $case: 'nack',
        nack: { sequence, reason: NackReason.NACK_REASON_SEQUENCE, message, rejections: [] },
      },
    });
    if (services.length > 0) {
      this.#write({
        message: { $case: 'resyncRequest', resyncRequest: { services, reason: message } },
      });
    }
    return false;
  }

  /**
   * Applies a batch in a `tgfed.hub.apply` span whose parent is the batch's own trace context
   * (the agent's batch span), not the stream's: each batch is its own trace.
   */
  async #onBatch(batch: EndpointBatch, receivedAtMs: number): Promise<void> {
    const tracer = this.#deps.tracer;
    if (tracer === undefined) return this.#applyBatch(batch, receivedAtMs, undefined);
    return withSpan(
      tracer,
      SpanName.HUB_APPLY,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          [SpanAttribute.RPC_SYSTEM]: 'grpc',
          [SpanAttribute.RPC_SERVICE]: 'tgfed.v1.AgentService',
          [SpanAttribute.RPC_METHOD]: 'Sync',
          [SpanAttribute.TGFED_CLUSTER_ID]: this.#clusterId,
          [SpanAttribute.TGFED_BATCH_SEQUENCE]: batch.sequence,
          [SpanAttribute.TGFED_BATCH_SERVICE_COUNT]: batch.changes.length,
        },
      },
      (span) => this.#applyBatch(batch, receivedAtMs, span),
      remoteParentContext(traceHeadersFromContext(batch.traceContext)),
    );
  }

  async #applyBatch(
    batch: EndpointBatch,
    receivedAtMs: number,
    span: Span | undefined,
  ): Promise<void> {
    const cache = this.#cache;
    const lease = this.#lease;
    if (cache === undefined || lease === undefined) return;
    const services = batch.changes.flatMap((c) => (c.service === undefined ? [] : [c.service]));
    if (!this.#sequenceOk(batch.sequence, services)) {
      this.#deps.counters.cluster(this.#clusterId).batchesRejected++;
      span?.setStatus({ code: SpanStatusCode.ERROR, message: 'sequence gap; resync requested' });
      return;
    }
    this.#deps.counters.batches++;

    const rejections: Rejection[] = [];
    const mismatched: ServiceKey[] = [];
    const writes: ServiceWrite[] = [];
    let endpointChanges = 0;
    let stringsOk = true;
    try {
      this.#decoder.bindStrings(batch.strings);
    } catch (err) {
      if (!(err instanceof ProtocolViolationError)) throw err;
      stringsOk = false;
      for (const service of services) {
        rejections.push(rejection(service, NackReason.NACK_REASON_INVALID, err.message));
      }
      this.#deps.counters.invalidChanges += services.length;
    }
    for (const change of stringsOk ? batch.changes : []) {
      const service = change.service;
      if (service === undefined || service.namespace === '' || service.name === '') {
        this.#deps.counters.invalidChanges++;
        rejections.push(
          rejection(service, NackReason.NACK_REASON_INVALID, 'change without a service key'),
        );
        continue;
      }
      const key = serviceKeyString(service);
      try {
        const applied = this.#applyChange(cache, service, key, change, rejections);
        if (applied !== undefined) {
          writes.push(applied.write);
          endpointChanges += applied.endpointChanges;
        }
      } catch (err) {
        if (err instanceof ProtocolViolationError) {
          this.#deps.counters.invalidChanges++;
          rejections.push(rejection(service, NackReason.NACK_REASON_INVALID, err.message));
          continue;
        }
        if (err instanceof ChangeRejectedError) {
          this.#deps.counters.limitExceeded++;
          rejections.push(rejection(service, err.reason, err.message));
          continue;
        }
        throw err;
      }
      if (change.digest.length > 0 && !this.#diverged.has(key)) {
        if (!sameDigest(cache.digest(key), change.digest)) {
          this.#deps.counters.digestMismatches++;
          mismatched.push(service);
        }
      }
    }

    if (writes.length > 0) {
      await this.#writeBatch(lease, writes, cache);
      await this.#deps.reconcileSink.changed(
        this.#clusterId,
        writes.map((w) => w.service),
        batch.traceContext,
        batch.observedBaseUnixMs > 0 ? batch.observedBaseUnixMs : undefined,
      );
    }
    this.#deps.counters.endpointChanges += endpointChanges;
    span?.setAttribute(SpanAttribute.TGFED_ENDPOINT_CHANGES, endpointChanges);
    if (rejections.length > 0) {
      span?.setAttribute(SpanAttribute.TGFED_BATCH_REJECTIONS, rejections.length);
      span?.setStatus({
        code: SpanStatusCode.ERROR,
        message: `${rejections.length} item(s) rejected`,
      });
    }
    if (mismatched.length > 0) {
      this.#log.info({ services: mismatched.length }, 'digest mismatch; asking for a resync');
      this.#write({
        message: {
          $case: 'resyncRequest',
          resyncRequest: { services: mismatched, reason: 'digest mismatch' },
        },
      });
    }
    if (rejections.length > 0) {
      this.#deps.counters.rejected(this.#clusterId, rejections.length);
      this.#countRejections(rejections);
      const first = rejections[0];
      this.#write({
        message: {
          $case: 'nack',
          nack: {
            sequence: batch.sequence,
            reason: first?.reason ?? NackReason.NACK_REASON_INVALID,
            message: `${rejections.length} item(s) rejected; first: ${first?.message ?? ''}`,
            rejections,
          },
        },
      });
    }
    this.#write({ message: { $case: 'ack', ack: { sequence: batch.sequence } } });
    this.#deps.counters.batchAcked(
      this.#clusterId,
      rejections.length > 0 ? 'rejected' : 'applied',
      endpointChanges,
      Date.now() - receivedAtMs,
    );
  }

  /**
   * The fenced Redis write of a batch, as a database client span. ioredis is not patched by
   * @opentelemetry/instrumentation-ioredis: its require-hook patching misses ESM imports and
   * esbuild bundles, and it would trace every lease renewal and BullMQ poll as well.
   */
  async #writeBatch(
    lease: HeldLease,
    writes: ServiceWrite[],
    cache: ClusterEndpointCache,
  ): Promise<void> {
    const write = () =>
      this.#deps.store.applyBatch(this.#clusterId, lease.token, writes, cache.totals());
    const tracer = this.#deps.tracer;
    if (tracer === undefined) return write();
    await withSpan(
      tracer,
      SpanName.HUB_STORE_WRITE,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          [SpanAttribute.DB_SYSTEM_NAME]: 'redis',
          [SpanAttribute.DB_OPERATION_NAME]: 'EVALSHA',
          [SpanAttribute.DB_STORED_PROCEDURE_NAME]: 'tgfedApplyBatch',
          [SpanAttribute.TGFED_CLUSTER_ID]: this.#clusterId,
          [SpanAttribute.TGFED_BATCH_SERVICE_COUNT]: writes.length,
        },
      },
      write,
    );
  }

  #countRejections(rejections: readonly Rejection[]): void {
    const counters = this.#deps.counters;
    let notAllowed = 0;
    let limit = 0;
    for (const r of rejections) {
      if (r.reason === NackReason.NACK_REASON_ADDRESS_NOT_ALLOWED) notAllowed++;
      else if (r.reason === NackReason.NACK_REASON_LIMIT_EXCEEDED) limit++;
    }
    counters.endpointsRejected(this.#clusterId, 'address_not_allowed', notAllowed);
    counters.endpointsRejected(this.#clusterId, 'limit_exceeded', limit);
    counters.endpointsRejected(this.#clusterId, 'invalid', rejections.length - notAllowed - limit);
  }

  /** Validates and applies one service change to the cache; returns its Redis write. */
  #applyChange(
    cache: ClusterEndpointCache,
    service: ServiceKey,
    key: string,
    change: ServiceChange,
    rejections: Rejection[],
  ): { write: ServiceWrite; endpointChanges: number } | undefined {
    const c = change.change;
    switch (c?.$case) {
      case 'replace': {
        this.#decoder.checkLabels(key, c.replace.labels);
        this.#decoder.forgetService(key);
        this.#decoder.bindPortSets(key, c.replace.portSets);
        const records = this.#allowed(
          service,
          c.replace.endpoints.map((e) => this.#decoder.decode(key, service.namespace, e)),
          rejections,
        );
        this.#checkLimits(cache, key, records.length);
        this.#deferredRemovals.delete(key);
        if (records.rejected === 0) this.#diverged.delete(key);
        return {
          write: cache.replace(service, c.replace.labels, records),
          endpointChanges: c.replace.endpoints.length,
        };
      }
      case 'delta': {
        if (c.delta.labels !== undefined) this.#decoder.checkLabels(key, c.delta.labels.labels);
        this.#decoder.bindPortSets(key, c.delta.portSets);
        const upserts = this.#allowed(
          service,
          c.delta.upserts.map((e) => this.#decoder.decode(key, service.namespace, e)),
          rejections,
        );
        const removals = c.delta.removals.map((r) => {
          try {
            return addressFromBytes(r.address);
          } catch (err) {
            throw new ProtocolViolationError((err as Error).message, { cause: err });
          }
        });
        this.#checkLimits(cache, key, cache.countAfterDelta(key, upserts, removals));
        this.#deferredRemovals.delete(key);
        return {
          write: cache.delta(service, upserts, removals, c.delta.labels?.labels),
          endpointChanges: c.delta.upserts.length + c.delta.removals.length,
        };
      }
      case 'removed': {
        this.#decoder.forgetService(key);
        this.#diverged.delete(key);
        if (this.#state !== 'streaming') {
          // DESIGN.md: entries are possibly stale until SYNCED; leftovers go only after it.
          this.#deferredRemovals.set(key, service);
          return undefined;
        }
        const write = cache.remove(service);
        return write === undefined ? undefined : { write, endpointChanges: 1 };
      }
      default:
        throw new ProtocolViolationError(`change of ${key} is neither replace, delta nor removed`);
    }
  }

  /** Drops (and reports) records outside the cluster's allowed CIDRs. */
  #allowed(
    service: ServiceKey,
    records: EndpointRecord[],
    rejections: Rejection[],
  ): EndpointRecord[] & { rejected: number } {
    const kept = records.filter((r) => this.#deps.addressPolicy.allows(this.#clusterId, r.address));
    const rejected = records.length - kept.length;
    if (rejected > 0) {
      const key = serviceKeyString(service);
      this.#diverged.add(key);
      this.#deps.counters.addressesNotAllowed += rejected;
      for (const r of records) {
        if (kept.includes(r)) continue;
        rejections.push(
          rejection(
            service,
            NackReason.NACK_REASON_ADDRESS_NOT_ALLOWED,
            `${r.address} is outside the allowed CIDRs of cluster ${this.#clusterId}`,
            addressToBytes(r.address),
          ),
        );
      }
    }
    return Object.assign(kept, { rejected });
  }

  #checkLimits(cache: ClusterEndpointCache, key: string, countAfter: number): void {
    const limits = this.#deps.options.limits;
    if (countAfter > limits.maxEndpointsPerService) {
      throw new ChangeRejectedError(
        NackReason.NACK_REASON_LIMIT_EXCEEDED,
        `${key} would hold ${countAfter} endpoints; the limit is ${limits.maxEndpointsPerService}`,
      );
    }
    const clusterAfter = cache.endpointCount - cache.endpointCountOf(key) + countAfter;
    if (clusterAfter > limits.maxEndpointsPerCluster) {
      throw new ChangeRejectedError(
        NackReason.NACK_REASON_LIMIT_EXCEEDED,
        `cluster would hold ${clusterAfter} endpoints; the limit is ${limits.maxEndpointsPerCluster}`,
      );
    }
    if (!cache.has(key) && cache.serviceCount >= limits.maxServicesPerCluster) {
      throw new ChangeRejectedError(
        NackReason.NACK_REASON_LIMIT_EXCEEDED,
        `cluster holds ${cache.serviceCount} services; the limit is ${limits.maxServicesPerCluster}`,
      );
    }
  }

  async #onSynced(sequence: number): Promise<void> {
    const cache = this.#cache;
    const lease = this.#lease;
    if (cache === undefined || lease === undefined) return;
    if (!this.#sequenceOk(sequence, [])) return;
    const writes: ServiceWrite[] = [];
    for (const service of this.#deferredRemovals.values()) {
      const write = cache.remove(service);
      if (write !== undefined) writes.push(write);
    }
    this.#deferredRemovals.clear();
    if (writes.length > 0) {
      await this.#deps.store.applyBatch(this.#clusterId, lease.token, writes, cache.totals());
      await this.#deps.reconcileSink.changed(
        this.#clusterId,
        writes.map((w) => w.service),
        undefined,
      );
    }
    const streamId = this.#streamId;
    const storageEpoch = this.#deps.storageEpoch?.();
    if (streamId !== undefined && storageEpoch !== undefined) {
      await this.#record('sync', (records) =>
        records.synced(this.#clusterId, streamId, {
          atMs: Date.now(),
          storageEpoch,
          lastAckedSequence: sequence,
        }),
      );
    }
    this.#state = 'streaming';
    // After the SYNCED record: a worker that reads the statuses now finds the sync over.
    const initialSync = this.#initialSync;
    this.#initialSync = undefined;
    await initialSync?.end();
    this.#log.info({ leftoversRemoved: writes.length }, 'agent SYNCED');
    this.#write({ message: { $case: 'ack', ack: { sequence } } });
    // A subscription change during the resync was held back until now.
    this.pushSubscription();
  }

  // --- plumbing ----------------------------------------------------------------------------

  /** Last seen and last acked, piggy-backed on the lease renewal (one write per third of a TTL). */
  async #recordProgress(): Promise<void> {
    const streamId = this.#streamId;
    if (streamId === undefined || this.#state === 'closed') return;
    await this.#record('progress', (records) =>
      records.seen(this.#clusterId, streamId, {
        lastSeenMs: this.#lastReceivedMs,
        lastAckedSequence: this.#lastAckedSequence,
      }),
    );
  }

  /** Session records are for readers: a failed write is logged, never fails the stream. */
  async #record(
    what: string,
    write: (records: ClusterSessionRecords) => Promise<unknown>,
  ): Promise<void> {
    const records = this.#deps.sessionRecords;
    if (records === undefined) return;
    try {
      await write(records);
    } catch (err) {
      this.#log.warn({ err, record: what }, 'cannot write the session record');
    }
  }

  #heartbeat(): void {
    if (this.#state === 'closed') return;
    const silentMs = Date.now() - this.#lastReceivedMs;
    if (silentMs > 3 * this.#deps.options.heartbeatIntervalMs) {
      this.#deps.counters.heartbeatTimeouts++;
      this.#fail(new HeartbeatTimeoutError(`no message from the agent for ${silentMs} ms`));
      return;
    }
    // Heartbeats alone do not keep a stream that never identified itself (slowloris).
    const openMs = Date.now() - this.#openedAtMs;
    if (!this.#helloReceived && openMs > 3 * this.#deps.options.heartbeatIntervalMs) {
      this.#deps.counters.heartbeatTimeouts++;
      this.#fail(new HeartbeatTimeoutError(`no hello from the agent within ${openMs} ms`));
      return;
    }
    this.#write({ message: { $case: 'heartbeat', heartbeat: { sentUnixMs: Date.now() } } });
  }

  #fail(err: Error): void {
    if (err instanceof ProtocolOrderError || err instanceof StreamLimitError) {
      this.#deps.counters.protocolViolations++;
    }
    if (err instanceof LeaseLostError) this.#deps.counters.leaseLosses++;
    void this.close(err);
  }

  #write(response: SyncResponse): void {
    if (this.#state === 'closed') return;
    if (response.message?.$case === 'ack') this.#lastAckedSequence = response.message.ack.sequence;
    this.#call.write(response);
  }
}

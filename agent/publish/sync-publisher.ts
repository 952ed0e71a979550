import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { SpanKind, SpanStatusCode, type Span, type Tracer } from '@opentelemetry/api';
import {
  AgentServiceService,
  BatchPhase,
  EndpointEncoder,
  addressToBytes,
  JitteredBackoff,
  MAX_LISTED_SERVICES,
  NackReason,
  SpanAttribute,
  SpanName,
  clampOffset,
  digestHex,
  isSubscribed,
  serviceKeyString,
  silentLogger,
  traceContextFromHeaders,
  traceHeadersOf,
  type Endpoint,
  type EndpointBatch,
  type EndpointRecord,
  type EndpointRemoval,
  type Logger,
  type Nack,
  type PortSet,
  type ServiceChange,
  type ServiceKey,
  type Subscription,
  type SyncRequest,
  type SyncResponse,
  type TraceHeaders,
  type Welcome,
} from '../../shared/index.js';
import { PendingChanges, type PendingChange } from './pending-changes.js';

/** One service as the publisher reads it: the current merged state. */
export interface PublishedService {
  readonly service: ServiceKey;
  readonly labels: Readonly<Record<string, string>>;
  readonly endpoints: ReadonlyMap<string, EndpointRecord>;
  digest(): Uint8Array;
}

/** Where the publisher reads current state (the aggregator implements it). */
export interface EndpointStateSource {
  get(service: ServiceKey): PublishedService | undefined;
  services(): Iterable<PublishedService>;
}

/** What changed in one service (the aggregator's change events fit this). */
export interface EndpointChangeNotice {
  readonly service: ServiceKey;
  readonly upserts: readonly EndpointRecord[];
  readonly removals: readonly string[];
  readonly labelsChanged: boolean;
  readonly deleted: boolean;
  readonly observedAtMs: number;
}

/** Options for {@link SyncPublisher}. */
export interface SyncPublisherOptions {
  clusterId: string;
  agentVersion: string;
  /** Hub address, `host:port`. */
  target: string;
  credentials: grpc.ChannelCredentials;
  /** Per-call metadata, e.g. `authorization: Bearer …`. */
  metadata?: () => grpc.Metadata;
  /** Extra channel options (e.g. TLS name override). */
  channelOptions?: grpc.ChannelOptions;
  /** How long changes gather before a delta batch goes out. @default 50 */
  batchWindowMs?: number;
  /** Unacked batches allowed (the hub's limit applies if lower). @default 8 */
  maxBatchesInFlight?: number;
  /**
   * Endpoints per batch. A larger delta is split over batches (the last piece carries the
   * digest); a replace always travels whole, in a batch of its own when it is larger. 2,000
   * records of at most ~600 bytes stay far below gRPC's 4 MiB default message limit.
   * @default 2000
   */
  maxEndpointsPerBatch?: number;
  /** Heartbeat interval until the hub's welcome sets it. @default 10000 */
  heartbeatIntervalMs?: number;
  /** Time to wait for the welcome (or standby) after hello. @default 30000 */
  welcomeTimeoutMs?: number;
  /** Reconnect backoff. @default 500 */
  reconnectInitialMs?: number;
  /** @default 30000 */
  reconnectMaxMs?: number;
  logger?: Logger;
  /**
   * Starts a `tgfed.agent.batch` span per batch, from sending to the hub's ack; its context is
   * the one the batch carries, so the hub's apply span is its child.
   * @default none: batches carry {@link traceContext}'s
   */
  tracer?: Tracer;
  /**
   * The W3C trace context of a batch sent without a recording span.
   * @default a random traceparent per batch
   */
  traceContext?: () => TraceHeaders;
}

/** Lifecycle of the publisher. */
export type SyncPublisherState =
  'idle' | 'connecting' | 'standby' | 'resyncing' | 'streaming' | 'backoff' | 'closed';

/** Counters for metrics and tests. */
export interface SyncPublisherStats {
  connects: number;
  welcomes: number;
  standbys: number;
  streamErrors: number;
  batchesSent: number;
  /** Endpoint upserts and removals sent (all phases). */
  endpointChangesSent: number;
  /** Endpoint upserts and removals sent in delta batches. */
  deltaEndpointChanges: number;
  /** Serialized bytes of all messages sent. */
  bytesSent: number;
  /** Serialized bytes of delta batches. */
  deltaBytes: number;
  servicesReplaced: number;
  servicesRemoved: number;
  acks: number;
  nacks: number;
  nacksByReason: Record<string, number>;
  resyncRequests: number;
  heartbeatTimeouts: number;
  /** Times the window was full when changes were waiting. */
  windowFull: number;
}

interface InFlight {
  readonly sentAtMs: number;
  readonly endpointChanges: number;
  /** The batch's span, ended by the ack (or nack, or the end of the stream). */
  readonly span?: Span;
}

/** The generated client's shape, built here with a byte-counting serializer. */
type SyncClient = grpc.Client & {
  sync(metadata: grpc.Metadata): grpc.ClientDuplexStream<SyncRequest, SyncResponse>;
};

/** A random W3C traceparent, until the telemetry setup provides real spans. */
function randomTraceContext(): TraceHeaders {
  return {
    traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
    tracestate: '',
  };
}

/**
 * The agent side of `AgentService.Sync` (DESIGN.md, protocol): hello, resync by digest against
 * the welcome, SYNCED, then endpoint-granular deltas in batches with sequence numbers, digests
 * and trace context; a bounded window of unacked batches with per-service coalescing behind
 * it; heartbeats; reconnects with jittered exponential backoff; standby while another agent of
 * the cluster holds the stream.
 *
 * No state outlives a stream: on reconnect, the welcome's digests say what the hub has, so
 * whatever was pending or unacked is recomputed from the current state.
 */
export class SyncPublisher {
  readonly #source: EndpointStateSource;
  readonly #options: Required<
    Omit<SyncPublisherOptions, 'metadata' | 'channelOptions' | 'logger' | 'traceContext' | 'tracer'>
  >;
  readonly #metadata: (() => grpc.Metadata) | undefined;
  readonly #log: Logger;
  readonly #traceContext: () => TraceHeaders;
  readonly #tracer: Tracer | undefined;
  readonly #client: SyncClient;
  readonly #sessionEpoch = randomBytes(16);
  readonly #backoff: JitteredBackoff;

  #state: SyncPublisherState = 'idle';
  #call: grpc.ClientDuplexStream<SyncRequest, SyncResponse> | undefined;
  #stream = 0;
  #pending = new PendingChanges();
  #encoder = new EndpointEncoder();
  #inFlight = new Map<number, InFlight>();
  #sequence = 0;
  #window = 8;
  #heartbeatMs: number;
  #subscription: Subscription | undefined;
  /** Services the hub holds, as far as this stream knows. */
  #hubServices = new Set<string>();
  /** Resync entries not yet sent; SYNCED goes out when this is empty. */
  #resyncKeys = new Set<string>();
  #syncedDue = false;
  #batchTimer: NodeJS.Timeout | undefined;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #welcomeTimer: NodeJS.Timeout | undefined;
  #lastReceivedMs = 0;
  #idleWaiters: (() => void)[] = [];
  readonly #ackListeners = new Set<(latencyMs: number) => void>();

  readonly stats: SyncPublisherStats = {
    connects: 0,
    welcomes: 0,
    standbys: 0,
    streamErrors: 0,
    batchesSent: 0,
    endpointChangesSent: 0,
    deltaEndpointChanges: 0,
    bytesSent: 0,
    deltaBytes: 0,
    servicesReplaced: 0,
    servicesRemoved: 0,
    acks: 0,
    nacks: 0,
    nacksByReason: {},
    resyncRequests: 0,
    heartbeatTimeouts: 0,
    windowFull: 0,
  };

  constructor(source: EndpointStateSource, options: SyncPublisherOptions) {
    this.#source = source;
    this.#options = {
      clusterId: options.clusterId,
      agentVersion: options.agentVersion,
      target: options.target,
      credentials: options.credentials,
      batchWindowMs: options.batchWindowMs ?? 50,
      maxBatchesInFlight: options.maxBatchesInFlight ?? 8,
      maxEndpointsPerBatch: options.maxEndpointsPerBatch ?? 2_000,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 10_000,
      welcomeTimeoutMs: options.welcomeTimeoutMs ?? 30_000,
      reconnectInitialMs: options.reconnectInitialMs ?? 500,
      reconnectMaxMs: options.reconnectMaxMs ?? 30_000,
    };
    this.#metadata = options.metadata;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'publisher' });
    this.#traceContext = options.traceContext ?? randomTraceContext;
    this.#tracer = options.tracer;
    this.#heartbeatMs = this.#options.heartbeatIntervalMs;
    this.#backoff = new JitteredBackoff({
      initialMs: this.#options.reconnectInitialMs,
      maxMs: this.#options.reconnectMaxMs,
    });

    // The generated client, with a serializer that counts the bytes each message costs.
    const base = AgentServiceService.sync;
    const counted = {
      sync: {
        ...base,
        requestSerialize: (value: SyncRequest): Buffer => {
          const bytes = base.requestSerialize(value);
          this.#countBytes(value, bytes.length);
          return bytes;
        },
      },
    };
    const Client = grpc.makeGenericClientConstructor(counted, 'tgfed.v1.AgentService');
    this.#client = new Client(
      this.#options.target,
      this.#options.credentials,
      options.channelOptions,
    ) as unknown as SyncClient;
  }

  get state(): SyncPublisherState {
    return this.#state;
  }

  /** The random epoch of this process, sent in every hello. */
  get sessionEpoch(): Uint8Array {
    return this.#sessionEpoch;
  }

  /** Unacked batches on the current stream. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Services with changes not yet sent. */
  get pendingServices(): number {
    return this.#pending.size;
  }

  /** Addresses pending in deltas (bounded by the services' sizes, never by churn). */
  get pendingAddresses(): number {
    return this.#pending.pendingAddresses;
  }

  /** Changes merged into an already pending entry, over the life of the current stream. */
  get coalesced(): number {
    return this.#pending.coalesced;
  }

  /**
   * Calls `listener` with the time from sending to acknowledgement of every acked batch (and
   * SYNCED marker), for the ack-latency histogram. Returns the function that removes it.
   */
  onAck(listener: (latencyMs: number) => void): () => void {
    this.#ackListeners.add(listener);
    return () => this.#ackListeners.delete(listener);
  }

  /** Connects. Call once the source holds the cluster's full state (the watch has listed). */
  start(): void {
    if (this.#state !== 'idle') return;
    this.#connect();
  }

  /** Feeds one change of the source. Cheap: only marks what the next batch must carry. */
  notify(change: EndpointChangeNotice): void {
    if (this.#state !== 'resyncing' && this.#state !== 'streaming') return;
    const key = serviceKeyString(change.service);
    const current = this.#source.get(change.service);
    const wanted =
      current !== undefined && isSubscribed(this.#subscription, current.service, current.labels);
    if (!wanted) {
      if (this.#hubServices.has(key) || this.#pending.has(key)) {
        this.#pending.markRemove(change.service, change.observedAtMs);
      }
    } else if (!this.#hubServices.has(key) && !this.#pending.has(key)) {
      this.#pending.markReplace(change.service, change.observedAtMs);
    } else {
      const addresses = [...change.upserts.map((e) => e.address), ...change.removals];
      this.#pending.markAddresses(
        change.service,
        addresses,
        change.labelsChanged,
        change.observedAtMs,
        current.endpoints.size,
      );
    }
    this.#schedule();
  }

  /**
   * Resolves true once nothing is pending or unacked on a live stream, false when the deadline
   * passes first or no stream is up (SIGTERM: flush what can be flushed, then go).
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.#idle()) return true;
      if (this.#state !== 'resyncing' && this.#state !== 'streaming') return false;
      this.#flushNow();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, Math.min(100, deadline - Date.now())));
        this.#idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.#idle();
  }

  /** Ends the stream and stops reconnecting. Idempotent. */
  close(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    this.#setState('closed');
    this.#endStream();
    clearTimeout(this.#reconnectTimer);
    this.#client.close();
    return Promise.resolve();
  }

  // --- stream lifecycle ------------------------------------------------------------------

  #connect(): void {
    if (this.#state === 'closed') return;
    this.#setState('connecting');
    this.stats.connects++;
    const stream = ++this.#stream;
    const call = this.#client.sync(this.#metadata?.() ?? new grpc.Metadata());
    this.#call = call;
    this.#resetStreamState();
    this.#lastReceivedMs = Date.now();
    call.on('data', (response: SyncResponse) => {
      if (stream === this.#stream) this.#onResponse(response);
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (stream === this.#stream) this.#onStreamEnd(err);
    });
    call.on('end', () => {
      if (stream === this.#stream) this.#onStreamEnd(undefined);
    });
    this.#write({
      message: {
        $case: 'hello',
        hello: {
          clusterId: this.#options.clusterId,
          agentVersion: this.#options.agentVersion,
          sessionEpoch: this.#sessionEpoch,
          capabilities: ['interned-strings', 'split-services'],
        },
      },
    });
    this.#welcomeTimer = setTimeout(() => {
      if (stream === this.#stream && this.#state === 'connecting') {
        this.#log.warn({ timeoutMs: this.#options.welcomeTimeoutMs }, 'no welcome from the hub');
        this.#onStreamEnd(new Error('welcome timeout'));
      }
    }, this.#options.welcomeTimeoutMs);
    this.#startHeartbeats();
  }

  #onStreamEnd(err: Error | undefined): void {
    if (this.#state === 'closed') return;
    this.stats.streamErrors++;
    const level =
      err === undefined || (err as grpc.ServiceError).code === grpc.status.CANCELLED
        ? 'info'
        : 'warn';
    this.#log[level](
      { err: err?.message, code: (err as grpc.ServiceError | undefined)?.code },
      'stream ended',
    );
    this.#endStream();
    const delayMs = this.#backoff.next();
    this.#setState('backoff');
    this.#log.info({ delayMs }, 'reconnecting after backoff');
    this.#reconnectTimer = setTimeout(() => this.#connect(), delayMs);
  }

  #endStream(): void {
    this.#stream++;
    clearTimeout(this.#batchTimer);
    clearInterval(this.#heartbeatTimer);
    clearTimeout(this.#welcomeTimer);
    this.#batchTimer = undefined;
    const call = this.#call;
    this.#call = undefined;
    if (call !== undefined) {
      call.removeAllListeners('data');
      call.on('error', () => undefined); // a cancelled call still reports CANCELLED
      call.cancel();
    }
    this.#resetStreamState();
    this.#wakeIdleWaiters();
  }

  #resetStreamState(): void {
    this.#pending = new PendingChanges();
    this.#encoder = new EndpointEncoder();
    for (const sent of this.#inFlight.values()) {
      sent.span?.setStatus({ code: SpanStatusCode.ERROR, message: 'stream ended before the ack' });
      sent.span?.end();
    }
    this.#inFlight.clear();
    this.#sequence = 0;
    this.#hubServices.clear();
    this.#resyncKeys.clear();
    this.#syncedDue = false;
  }

  #startHeartbeats(): void {
    clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = setInterval(() => {
      if (Date.now() - this.#lastReceivedMs > 3 * this.#heartbeatMs) {
        this.stats.heartbeatTimeouts++;
        this.#log.warn(
          { silentMs: Date.now() - this.#lastReceivedMs },
          'hub silent; closing stream',
        );
        this.#onStreamEnd(new Error('heartbeat timeout'));
        return;
      }
      this.#write({ message: { $case: 'heartbeat', heartbeat: { sentUnixMs: Date.now() } } });
    }, this.#heartbeatMs);
    this.#heartbeatTimer.unref();
  }

  #onResponse(response: SyncResponse): void {
    this.#lastReceivedMs = Date.now();
    const message = response.message;
    switch (message?.$case) {
      case 'welcome':
        this.#onWelcome(message.welcome);
        break;
      case 'standby':
        this.stats.standbys++;
        clearTimeout(this.#welcomeTimer);
        this.#setState('standby');
        this.#log.info(
          { holder: message.standby.holderHubId },
          'another stream holds the cluster; standing by',
        );
        break;
      case 'ack':
        this.#onAck(message.ack.sequence);
        break;
      case 'nack':
        this.stats.nacks++;
        {
          const reason = NackReason[message.nack.reason] ?? String(message.nack.reason);
          this.stats.nacksByReason[reason] = (this.stats.nacksByReason[reason] ?? 0) + 1;
          this.#log.warn(
            {
              sequence: message.nack.sequence,
              reason,
              message: message.nack.message,
              rejections: message.nack.rejections.slice(0, 10).map((r) => ({
                service: r.service === undefined ? undefined : serviceKeyString(r.service),
                reason: NackReason[r.reason],
                message: r.message,
              })),
            },
            'hub rejected content',
          );
        }
        {
          const span = this.#inFlight.get(message.nack.sequence)?.span;
          span?.setAttribute(SpanAttribute.TGFED_BATCH_REJECTIONS, message.nack.rejections.length);
          span?.setStatus({ code: SpanStatusCode.ERROR, message: message.nack.message });
          span?.end();
        }
        this.#inFlight.delete(message.nack.sequence);
        this.#onRejected(message.nack);
        break;
      case 'resyncRequest':
        this.stats.resyncRequests++;
        this.#log.info(
          { services: message.resyncRequest.services.length, reason: message.resyncRequest.reason },
          'hub asked for services again',
        );
        for (const service of message.resyncRequest.services) {
          const current = this.#source.get(service);
          if (current !== undefined && isSubscribed(this.#subscription, service, current.labels)) {
            this.#pending.markReplace(service, Date.now());
          } else {
            this.#hubServices.add(serviceKeyString(service));
            this.#pending.markRemove(service, Date.now());
          }
        }
        this.#flushNow();
        break;
      case 'subscription':
        this.#applySubscription(message.subscription);
        break;
      case 'heartbeat':
        break;
      default:
        this.#log.debug('ignoring an unknown message from the hub');
    }
  }

  /**
   * After a NACK the hub may lack what this stream assumes it has. A rejected service change: the
   * hub may not know the service or its port sets, so forget both; its next change goes out in
   * full (not retried at once, so a limit the service exceeds cannot loop). A batch rejected
   * as a whole (or out of sequence): interned strings may be unbound, so start a fresh stream.
   */
  #onRejected(nack: Nack): void {
    const whole =
      nack.reason === NackReason.NACK_REASON_SEQUENCE ||
      (nack.rejections.length === 0 && nack.reason === NackReason.NACK_REASON_INVALID);
    if (whole) {
      this.#onStreamEnd(new Error(`hub rejected batch ${nack.sequence} as a whole`));
      return;
    }
    for (const rejection of nack.rejections) {
      if (rejection.service === undefined || rejection.address.length > 0) continue;
      const key = serviceKeyString(rejection.service);
      this.#hubServices.delete(key);
      this.#encoder.forgetService(key);
      if (this.#pending.get(key)?.kind === 'delta')
        this.#pending.markReplace(rejection.service, Date.now());
    }
    this.#flushNow();
  }

  #onWelcome(welcome: Welcome): void {
    clearTimeout(this.#welcomeTimer);
    this.stats.welcomes++;
    this.#backoff.reset();
    this.#window = Math.max(
      1,
      Math.min(
        this.#options.maxBatchesInFlight,
        welcome.limits?.maxBatchesInFlight || Number.POSITIVE_INFINITY,
      ),
    );
    if (welcome.heartbeatIntervalMs > 0 && welcome.heartbeatIntervalMs !== this.#heartbeatMs) {
      this.#heartbeatMs = welcome.heartbeatIntervalMs;
      this.#startHeartbeats();
    }
    this.#subscription = welcome.subscription;
    this.#setState('resyncing');

    const hubDigests = new Map<string, Uint8Array>();
    const hubKeys = new Map<string, ServiceKey>();
    for (const d of welcome.digests) {
      if (d.service === undefined) continue;
      const key = serviceKeyString(d.service);
      hubDigests.set(key, d.digest);
      hubKeys.set(key, d.service);
    }
    const now = Date.now();
    let same = 0;
    for (const current of this.#source.services()) {
      const key = serviceKeyString(current.service);
      if (!isSubscribed(this.#subscription, current.service, current.labels)) continue;
      const theirs = hubDigests.get(key);
      hubDigests.delete(key);
      if (theirs !== undefined && Buffer.from(theirs).equals(Buffer.from(current.digest()))) {
        this.#hubServices.add(key);
        same++;
      } else {
        if (theirs !== undefined) this.#hubServices.add(key);
        this.#pending.markReplace(current.service, now);
        this.#resyncKeys.add(key);
      }
    }
    for (const [key, digest] of hubDigests) {
      const service = hubKeys.get(key);
      if (service === undefined) continue;
      this.#hubServices.add(key);
      this.#pending.markRemove(service, now);
      this.#resyncKeys.add(key);
      this.#log.debug({ service: key, digest: digestHex(digest) }, 'hub holds a service to remove');
    }
    this.#syncedDue = true;
    this.#log.info(
      {
        hub: welcome.hubId,
        unchanged: same,
        toSend: this.#resyncKeys.size,
        window: this.#window,
        subscription: this.#subscription?.version,
      },
      'welcomed; resyncing by digest',
    );
    this.#flushNow();
  }

  #applySubscription(subscription: Subscription): void {
    this.#subscription = subscription;
    const now = Date.now();
    const wanted = new Set<string>();
    for (const current of this.#source.services()) {
      if (!isSubscribed(subscription, current.service, current.labels)) continue;
      const key = serviceKeyString(current.service);
      wanted.add(key);
      if (
        (!this.#hubServices.has(key) && !this.#pending.has(key)) ||
        this.#pending.get(key)?.kind === 'remove'
      ) {
        this.#pending.markReplace(current.service, now);
      }
    }
    for (const key of this.#hubServices) {
      if (!wanted.has(key)) {
        const [namespace = '', name = ''] = key.split('/');
        this.#pending.markRemove({ namespace, name }, now);
      }
    }
    this.#log.info(
      {
        version: subscription.version,
        selectors: subscription.selectors.length,
        services: wanted.size,
      },
      'subscription changed',
    );
    this.#flushNow();
  }

  #onAck(sequence: number): void {
    this.stats.acks++;
    const now = Date.now();
    for (const [seq, sent] of this.#inFlight) {
      if (seq > sequence) continue;
      this.#inFlight.delete(seq);
      sent.span?.end();
      for (const listener of this.#ackListeners) listener(now - sent.sentAtMs);
    }
    this.#flushNow();
  }

  // --- batching --------------------------------------------------------------------------

  #schedule(): void {
    if (this.#batchTimer !== undefined) return;
    this.#batchTimer = setTimeout(() => {
      this.#batchTimer = undefined;
      this.#pump();
    }, this.#options.batchWindowMs);
  }

  #flushNow(): void {
    clearTimeout(this.#batchTimer);
    this.#batchTimer = undefined;
    this.#pump();
  }

  #pump(): void {
    while (this.#state === 'resyncing' || this.#state === 'streaming') {
      if (this.#inFlight.size >= this.#window) {
        if (this.#pending.size > 0 || this.#syncedDue) this.stats.windowFull++;
        break;
      }
      if (this.#syncedDue && this.#resyncKeys.size === 0) {
        const sequence = ++this.#sequence;
        this.#inFlight.set(sequence, { sentAtMs: Date.now(), endpointChanges: 0 });
        this.#syncedDue = false;
        this.#write({ message: { $case: 'synced', synced: { sequence } } });
        this.#setState('streaming');
        this.#log.info({ sequence }, 'resync sent; SYNCED');
        continue;
      }
      const batch = this.#buildBatch();
      if (batch === undefined) break;
      this.#write({ message: { $case: 'batch', batch } });
    }
    this.#wakeIdleWaiters();
  }

  #buildBatch(): EndpointBatch | undefined {
    let budget = this.#options.maxEndpointsPerBatch;
    const planned: {
      key: string;
      entry: PendingChange;
      take: (base: number) => ServiceChange | undefined;
      observedAtMs: number;
    }[] = [];
    let earliest = Number.POSITIVE_INFINITY;

    for (const [key, entry] of [...this.#pending.entries()]) {
      if (budget <= 0) break;
      // A replace travels whole (splitting it would let the hub hold a truncated set between
      // pieces); it starts a batch of its own when it does not fit in what is left.
      if (planned.length > 0 && entry.kind !== 'delta') {
        const size = this.#source.get(entry.service)?.endpoints.size ?? 0;
        if (size > budget) break;
      }
      const plan = this.#plan(key, entry, budget);
      if (plan.remainder !== undefined) {
        this.#pending.setRemainder(key, plan.remainder); // keeps the entry's place
      } else {
        this.#pending.delete(key);
        this.#resyncKeys.delete(key);
      }
      if (plan.change === undefined) continue;
      budget -= Math.max(1, plan.cost);
      earliest = Math.min(earliest, plan.observedAtMs);
      planned.push({ key, entry, take: plan.change, observedAtMs: plan.observedAtMs });
    }
    if (planned.length === 0) return undefined;

    const base = Number.isFinite(earliest) ? earliest : Date.now();
    const changes: ServiceChange[] = [];
    let endpointChanges = 0;
    for (const p of planned) {
      const change = p.take(base);
      if (change === undefined) continue;
      changes.push(change);
      const c = change.change;
      if (c?.$case === 'replace') endpointChanges += c.replace.endpoints.length;
      else if (c?.$case === 'delta')
        endpointChanges += c.delta.upserts.length + c.delta.removals.length;
      else endpointChanges += 1;
    }
    const sequence = ++this.#sequence;
    const phase = this.#syncedDue ? BatchPhase.BATCH_PHASE_RESYNC : BatchPhase.BATCH_PHASE_DELTA;
    const span = this.#batchSpan(sequence, phase, changes, endpointChanges);
    const batch: EndpointBatch = {
      sequence,
      phase,
      changes,
      strings: this.#encoder.takeNewStrings(),
      observedBaseUnixMs: base,
      traceContext: traceContextFromHeaders(
        (span === undefined ? undefined : traceHeadersOf(span.spanContext())) ??
          this.#traceContext(),
      ),
    };
    this.#inFlight.set(sequence, {
      sentAtMs: Date.now(),
      endpointChanges,
      ...(span === undefined ? {} : { span }),
    });
    this.stats.batchesSent++;
    this.stats.endpointChangesSent += endpointChanges;
    if (batch.phase === BatchPhase.BATCH_PHASE_DELTA)
      this.stats.deltaEndpointChanges += endpointChanges;
    return batch;
  }

  /**
   * Plans one pending entry within `budget` endpoints: what to send now, and what stays
   * pending. Content is read now, from the current state.
   */
  #plan(
    key: string,
    entry: PendingChange,
    budget: number,
  ): {
    change: ((base: number) => ServiceChange | undefined) | undefined;
    remainder: PendingChange | undefined;
    cost: number;
    observedAtMs: number;
  } {
    const current = this.#source.get(entry.service);
    const wanted =
      current !== undefined && isSubscribed(this.#subscription, current.service, current.labels);
    const namespace = entry.service.namespace;

    if (!wanted) {
      if (!this.#hubServices.has(key)) {
        return {
          change: undefined,
          remainder: undefined,
          cost: 0,
          observedAtMs: entry.observedAtMs,
        };
      }
      this.#hubServices.delete(key);
      this.#encoder.forgetService(key);
      this.stats.servicesRemoved++;
      return {
        change: (base) => ({
          service: entry.service,
          digest: new Uint8Array(0),
          change: {
            $case: 'removed',
            removed: { observedOffsetMs: clampOffset(entry.observedAtMs - base) },
          },
        }),
        remainder: undefined,
        cost: 1,
        observedAtMs: entry.observedAtMs,
      };
    }

    // A service wanted again after a pending removal (subscription flip, resync) goes in full.
    if (entry.kind === 'replace' || entry.kind === 'remove') {
      this.#hubServices.add(key);
      this.stats.servicesReplaced++;
      const now = [...current.endpoints.values()];
      this.#encoder.forgetService(key);
      const digest = current.digest();
      const labels = { ...current.labels };
      return {
        change: (base) => {
          const portSets: PortSet[] = [];
          const offset = entry.observedAtMs - base;
          const endpoints = now.map((e) =>
            this.#encoder.encode(key, namespace, e, offset, portSets),
          );
          return {
            service: entry.service,
            digest,
            change: { $case: 'replace', replace: { labels, portSets, endpoints } },
          };
        },
        remainder: undefined,
        cost: now.length,
        observedAtMs: entry.observedAtMs,
      };
    }

    // delta
    const addresses = [...entry.addresses];
    const now = addresses.slice(0, budget);
    const rest = addresses.slice(budget);
    const digest = rest.length === 0 ? current.digest() : new Uint8Array(0);
    const labels = entry.labels ? { ...current.labels } : undefined;
    const records = now.map(([address, observedAtMs]) => ({
      address,
      observedAtMs,
      record: current.endpoints.get(address),
    }));
    return {
      change: (base) => {
        const portSets: PortSet[] = [];
        const upserts: Endpoint[] = [];
        const removals: EndpointRemoval[] = [];
        for (const { address, observedAtMs, record } of records) {
          if (record === undefined) {
            removals.push({
              address: addressToBytes(address),
              observedOffsetMs: clampOffset(observedAtMs - base),
            });
          } else {
            upserts.push(
              this.#encoder.encode(key, namespace, record, observedAtMs - base, portSets),
            );
          }
        }
        return {
          service: entry.service,
          digest,
          change: {
            $case: 'delta',
            delta: {
              portSets,
              upserts,
              removals,
              labels: labels === undefined ? undefined : { labels },
            },
          },
        };
      },
      remainder:
        rest.length === 0 ? undefined : { ...entry, addresses: new Map(rest), labels: false },
      cost: now.length,
      observedAtMs: entry.observedAtMs,
    };
  }

  /** A batch's own trace (a root span: the batch, not the stream, is the unit of work). */
  #batchSpan(
    sequence: number,
    phase: BatchPhase,
    changes: readonly ServiceChange[],
    endpointChanges: number,
  ): Span | undefined {
    if (this.#tracer === undefined) return undefined;
    const services = changes.flatMap((c) =>
      c.service === undefined ? [] : [serviceKeyString(c.service)],
    );
    return this.#tracer.startSpan(SpanName.AGENT_BATCH, {
      kind: SpanKind.PRODUCER,
      root: true,
      attributes: {
        [SpanAttribute.TGFED_CLUSTER_ID]: this.#options.clusterId,
        [SpanAttribute.TGFED_BATCH_SEQUENCE]: sequence,
        [SpanAttribute.TGFED_BATCH_PHASE]:
          phase === BatchPhase.BATCH_PHASE_RESYNC ? 'resync' : 'delta',
        [SpanAttribute.TGFED_ENDPOINT_CHANGES]: endpointChanges,
        [SpanAttribute.TGFED_BATCH_SERVICE_COUNT]: services.length,
        [SpanAttribute.TGFED_BATCH_SERVICES]: services.slice(0, MAX_LISTED_SERVICES),
      },
    });
  }

  // --- plumbing --------------------------------------------------------------------------

  #write(request: SyncRequest): void {
    this.#call?.write(request);
  }

  #countBytes(request: SyncRequest, bytes: number): void {
    this.stats.bytesSent += bytes;
    if (
      request.message?.$case === 'batch' &&
      request.message.batch.phase === BatchPhase.BATCH_PHASE_DELTA
    ) {
      this.stats.deltaBytes += bytes;
    }
  }

  #idle(): boolean {
    return (
      (this.#state === 'streaming' || this.#state === 'resyncing') &&
      this.#pending.size === 0 &&
      this.#inFlight.size === 0 &&
      !this.#syncedDue
    );
  }

  #wakeIdleWaiters(): void {
    if (this.#idleWaiters.length === 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }

  #setState(state: SyncPublisherState): void {
    if (this.#state === state) return;
    this.#log.debug({ from: this.#state, to: state }, 'publisher state');
    this.#state = state;
  }
}

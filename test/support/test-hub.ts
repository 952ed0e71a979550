import * as grpc from '@grpc/grpc-js';
import {
  AgentServiceService,
  BatchPhase,
  EndpointDecoder,
  NackReason,
  ProtocolViolationError,
  SyncRequest,
  addressFromBytes,
  endpointDigest,
  sameDigest,
  serviceKeyString,
  type AgentServiceServer,
  type EndpointBatch,
  type EndpointRecord,
  type ServiceKey,
  type Subscription,
  type SyncResponse,
} from '../../shared/index.js';

/** One service as the test hub holds it. */
export interface HeldService {
  service: ServiceKey;
  labels: Record<string, string>;
  endpoints: Map<string, EndpointRecord>;
}

/** What the test hub stores, per cluster; pass it to a new hub to model a restart with Redis. */
export type TestHubState = Map<string, Map<string, HeldService>>;

/** Options for {@link TestHub.start}. */
export interface TestHubOptions {
  /** @default 0 (a free port) */
  port?: number;
  state?: TestHubState;
  /** @default every service */
  subscription?: Subscription;
  /** @default 8 */
  maxBatchesInFlight?: number;
  /** @default 1000 */
  heartbeatIntervalMs?: number;
  /** Hold every ack until {@link TestHub.releaseAcks}. */
  holdAcks?: boolean;
  /** Services whose changes are rejected with a NACK (INVALID). */
  rejectServices?: string[];
  hubId?: string;
}

/** Everything the hub received, for assertions. */
export interface TestHubStats {
  hellos: number;
  welcomes: number;
  standbys: number;
  batches: number;
  /** Endpoint upserts + removals received in delta-phase batches. */
  deltaEndpointChanges: number;
  /** Bytes of delta-phase batches on the wire: protobuf plus gRPC's 5-byte message prefix. */
  deltaBytes: number;
  /** Services received in full (replace), per service key. */
  replaces: Map<string, number>;
  /** Endpoints in the last replace of each service. */
  replaceSizes: Map<string, number>;
  removals: number;
  synced: number;
  digestMismatches: number;
  nacks: number;
  batchesByCluster: Map<string, number>;
}

interface Session {
  clusterId: string;
  call: grpc.ServerDuplexStream<SyncRequest, SyncResponse>;
  decoder: EndpointDecoder;
  expectedSequence: number;
  synced: boolean;
  deferredRemovals: string[];
  heldAcks: number[];
}

/**
 * A real gRPC server that plays the hub's side of `Sync` with state in memory: welcome with
 * digests, resync, deltas, SYNCED, acks (optionally held), digest checks with resync requests,
 * one admitted stream per cluster with the others on standby, live subscription changes.
 * It verifies the agent, it is not the hub.
 */
export class TestHub {
  readonly state: TestHubState;
  readonly stats: TestHubStats = {
    hellos: 0,
    welcomes: 0,
    standbys: 0,
    batches: 0,
    deltaEndpointChanges: 0,
    deltaBytes: 0,
    replaces: new Map(),
    replaceSizes: new Map(),
    removals: 0,
    synced: 0,
    digestMismatches: 0,
    nacks: 0,
    batchesByCluster: new Map(),
  };
  readonly #server: grpc.Server;
  readonly #options: TestHubOptions;
  readonly #active = new Map<string, Session>();
  readonly #standby = new Map<string, Session[]>();
  #subscription: Subscription;
  #holdAcks: boolean;

  private constructor(
    server: grpc.Server,
    readonly port: number,
    options: TestHubOptions,
    state: TestHubState,
  ) {
    this.#server = server;
    this.#options = options;
    this.state = state;
    this.#subscription = options.subscription ?? {
      version: 1,
      selectors: [{ namespace: '', name: '', labels: undefined }],
    };
    this.#holdAcks = options.holdAcks ?? false;
  }

  /** Starts a hub on 127.0.0.1 (plaintext). */
  static async start(options: TestHubOptions = {}): Promise<TestHub> {
    const server = new grpc.Server();
    const holder: { hub?: TestHub } = {};
    const sync: AgentServiceServer['sync'] = (call) => {
      if (holder.hub === undefined) call.destroy();
      else holder.hub.#onStream(call);
    };
    // Count the bytes of delta batches as they arrived on the wire.
    const counted = {
      sync: {
        ...AgentServiceService.sync,
        requestDeserialize: (bytes: Buffer): SyncRequest => {
          const request = SyncRequest.decode(bytes);
          const hub = holder.hub;
          if (
            hub !== undefined &&
            request.message?.$case === 'batch' &&
            request.message.batch.phase === BatchPhase.BATCH_PHASE_DELTA
          ) {
            hub.stats.deltaBytes += bytes.length + 5;
          }
          return request;
        },
      },
    };
    server.addService(counted, { sync });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `127.0.0.1:${options.port ?? 0}`,
        grpc.ServerCredentials.createInsecure(),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    );
    const hub = new TestHub(
      server,
      port,
      options,
      options.state ?? new Map<string, Map<string, HeldService>>(),
    );
    holder.hub = hub;
    return hub;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The services held for a cluster. */
  cluster(clusterId: string): Map<string, HeldService> {
    let services = this.state.get(clusterId);
    if (services === undefined) {
      services = new Map();
      this.state.set(clusterId, services);
    }
    return services;
  }

  /** Is a stream of this cluster admitted (and which hello sent it)? */
  activeStreams(): number {
    return this.#active.size;
  }

  standbyStreams(): number {
    let n = 0;
    for (const list of this.#standby.values()) n += list.length;
    return n;
  }

  /** Replaces the subscription and pushes it to every admitted stream. */
  setSubscription(subscription: Subscription): void {
    this.#subscription = subscription;
    for (const session of this.#active.values()) {
      session.call.write({ message: { $case: 'subscription', subscription } });
    }
  }

  /** Sends every held ack and stops holding. */
  releaseAcks(): void {
    this.#holdAcks = false;
    for (const session of this.#active.values()) {
      const last = session.heldAcks.at(-1);
      session.heldAcks = [];
      if (last !== undefined)
        session.call.write({ message: { $case: 'ack', ack: { sequence: last } } });
    }
  }

  /** Kills the hub: every stream drops at once. */
  stop(): void {
    this.#server.forceShutdown();
  }

  #onStream(call: grpc.ServerDuplexStream<SyncRequest, SyncResponse>): void {
    let session: Session | undefined;
    call.on('data', (request: SyncRequest) => {
      const message = request.message;
      switch (message?.$case) {
        case 'hello':
          this.stats.hellos++;
          session = {
            clusterId: message.hello.clusterId,
            call,
            decoder: new EndpointDecoder(),
            expectedSequence: 1,
            synced: false,
            deferredRemovals: [],
            heldAcks: [],
          };
          if (this.#active.has(session.clusterId)) {
            this.stats.standbys++;
            const list = this.#standby.get(session.clusterId) ?? [];
            list.push(session);
            this.#standby.set(session.clusterId, list);
            call.write({
              message: {
                $case: 'standby',
                standby: { holderHubId: this.#options.hubId ?? 'test-hub', leaseExpiresUnixMs: 0 },
              },
            });
          } else {
            this.#admit(session);
          }
          break;
        case 'batch':
          if (session !== undefined && this.#active.get(session.clusterId) === session) {
            this.#onBatch(session, message.batch);
          }
          break;
        case 'synced':
          if (session !== undefined && this.#active.get(session.clusterId) === session) {
            this.#sequence(session, message.synced.sequence);
            for (const key of session.deferredRemovals) this.cluster(session.clusterId).delete(key);
            session.deferredRemovals = [];
            session.synced = true;
            this.stats.synced++;
            this.#ack(session, message.synced.sequence);
          }
          break;
        case 'heartbeat':
          call.write({ message: { $case: 'heartbeat', heartbeat: { sentUnixMs: Date.now() } } });
          break;
        default:
          break;
      }
    });
    const end = () => {
      if (session === undefined) return;
      const s = session;
      session = undefined;
      if (this.#active.get(s.clusterId) === s) {
        this.#active.delete(s.clusterId);
        const next = this.#standby.get(s.clusterId)?.shift();
        if (next !== undefined) this.#admit(next);
      } else {
        const list = this.#standby.get(s.clusterId) ?? [];
        this.#standby.set(
          s.clusterId,
          list.filter((x) => x !== s),
        );
      }
    };
    call.on('end', () => {
      end();
      call.end();
    });
    call.on('error', end);
    call.on('cancelled', end);
    call.on('close', end);
  }

  #admit(session: Session): void {
    this.#active.set(session.clusterId, session);
    this.stats.welcomes++;
    const digests = [...this.cluster(session.clusterId).values()].map((held) => ({
      service: held.service,
      digest: endpointDigest(held.labels, held.endpoints.values()),
    }));
    session.call.write({
      message: {
        $case: 'welcome',
        welcome: {
          hubId: this.#options.hubId ?? 'test-hub',
          digests,
          subscription: this.#subscription,
          limits: {
            maxBatchesInFlight: this.#options.maxBatchesInFlight ?? 8,
            maxMessageBytes: 4 << 20,
            maxEndpointsPerService: 0,
            maxEndpointsPerCluster: 0,
            maxServicesPerCluster: 0,
          },
          heartbeatIntervalMs: this.#options.heartbeatIntervalMs ?? 1_000,
          capabilities: [],
        },
      },
    });
  }

  #sequence(session: Session, sequence: number): void {
    if (sequence !== session.expectedSequence) {
      throw new Error(`sequence ${sequence}, expected ${session.expectedSequence}`);
    }
    session.expectedSequence++;
  }

  #onBatch(session: Session, batch: EndpointBatch): void {
    this.#sequence(session, batch.sequence);
    this.stats.batches++;
    this.stats.batchesByCluster.set(
      session.clusterId,
      (this.stats.batchesByCluster.get(session.clusterId) ?? 0) + 1,
    );
    const services = this.cluster(session.clusterId);
    const rejected: ServiceKey[] = [];
    const mismatched: ServiceKey[] = [];
    try {
      session.decoder.bindStrings(batch.strings);
    } catch (err) {
      if (!(err instanceof ProtocolViolationError)) throw err;
      this.#nack(session, batch.sequence, err.message, []);
      return;
    }
    for (const change of batch.changes) {
      const service = change.service;
      if (service === undefined) continue;
      const key = serviceKeyString(service);
      if (this.#options.rejectServices?.includes(key)) {
        rejected.push(service);
        continue;
      }
      const c = change.change;
      try {
        switch (c?.$case) {
          case 'replace': {
            this.stats.replaces.set(key, (this.stats.replaces.get(key) ?? 0) + 1);
            this.stats.replaceSizes.set(key, c.replace.endpoints.length);
            session.decoder.forgetService(key);
            session.decoder.bindPortSets(key, c.replace.portSets);
            const endpoints = new Map<string, EndpointRecord>();
            for (const e of c.replace.endpoints) {
              const record = session.decoder.decode(key, service.namespace, e);
              endpoints.set(record.address, record);
            }
            services.set(key, { service, labels: { ...c.replace.labels }, endpoints });
            session.deferredRemovals = session.deferredRemovals.filter((k) => k !== key);
            break;
          }
          case 'delta': {
            const held = services.get(key) ?? { service, labels: {}, endpoints: new Map() };
            services.set(key, held);
            session.decoder.bindPortSets(key, c.delta.portSets);
            for (const e of c.delta.upserts) {
              const record = session.decoder.decode(key, service.namespace, e);
              held.endpoints.set(record.address, record);
            }
            for (const r of c.delta.removals) {
              try {
                held.endpoints.delete(addressFromBytes(r.address));
              } catch (err) {
                throw new ProtocolViolationError((err as Error).message);
              }
            }
            if (c.delta.labels !== undefined) held.labels = { ...c.delta.labels.labels };
            if (batch.phase === BatchPhase.BATCH_PHASE_DELTA) {
              this.stats.deltaEndpointChanges += c.delta.upserts.length + c.delta.removals.length;
            }
            break;
          }
          case 'removed':
            this.stats.removals++;
            session.decoder.forgetService(key);
            if (session.synced) services.delete(key);
            else session.deferredRemovals.push(key);
            break;
          default:
            break;
        }
      } catch (err) {
        if (!(err instanceof ProtocolViolationError)) throw err;
        rejected.push(service);
        continue;
      }
      if (change.digest.length > 0) {
        const held = services.get(key);
        const ours =
          held === undefined ? undefined : endpointDigest(held.labels, held.endpoints.values());
        if (!sameDigest(ours, change.digest)) {
          this.stats.digestMismatches++;
          mismatched.push(service);
        }
      }
    }
    if (mismatched.length > 0) {
      session.call.write({
        message: {
          $case: 'resyncRequest',
          resyncRequest: { services: mismatched, reason: 'digest mismatch' },
        },
      });
    }
    if (rejected.length > 0)
      this.#nack(session, batch.sequence, 'rejected by the test hub', rejected);
    else this.#ack(session, batch.sequence);
  }

  #nack(session: Session, sequence: number, message: string, services: ServiceKey[]): void {
    this.stats.nacks++;
    session.call.write({
      message: {
        $case: 'nack',
        nack: {
          sequence,
          reason: NackReason.NACK_REASON_INVALID,
          message,
          rejections: services.map((service) => ({
            service,
            address: new Uint8Array(0),
            reason: NackReason.NACK_REASON_INVALID,
            message,
          })),
        },
      },
    });
  }

  #ack(session: Session, sequence: number): void {
    if (this.#holdAcks) session.heldAcks.push(sequence);
    else session.call.write({ message: { $case: 'ack', ack: { sequence } } });
  }
}

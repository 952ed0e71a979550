import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  AgentServiceClient,
  BatchPhase,
  Protocol,
  SyncRequest,
  SyncResponse,
  addressToBytes,
  type Endpoint,
  type EndpointBatch,
  type ServiceChange,
} from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { bearer } from '../../support/test-hub-settings.js';

type ResponseCase = NonNullable<SyncResponse['message']>['$case'];
type ResponseOf<C extends ResponseCase> = Extract<
  NonNullable<SyncResponse['message']>,
  { $case: C }
>;

/** The status a stream ended with (OK included). */
export interface EndedStatus {
  readonly code: grpc.status;
  readonly details: string;
}

/**
 * One `Sync` stream of a rogue agent: whatever the test writes goes out as is; every response
 * and the final status are recorded.
 */
export class RogueStream {
  readonly responses: SyncResponse[] = [];
  #status: EndedStatus | undefined;

  constructor(readonly call: grpc.ClientDuplexStream<SyncRequest, SyncResponse>) {
    call.on('data', (r: SyncResponse) => this.responses.push(r));
    call.on('status', (s: grpc.StatusObject) => (this.#status = s));
    // Every non-OK status is also an 'error' event; the status above records it.
    call.on('error', () => undefined);
  }

  get status(): EndedStatus | undefined {
    return this.#status;
  }

  write(request: SyncRequest): void {
    this.call.write(request);
  }

  hello(clusterId: string): void {
    this.write({
      message: {
        $case: 'hello',
        hello: {
          clusterId,
          agentVersion: 'rogue',
          sessionEpoch: randomBytes(16),
          capabilities: [],
        },
      },
    });
  }

  synced(sequence: number): void {
    this.write({ message: { $case: 'synced', synced: { sequence } } });
  }

  heartbeat(): void {
    this.write({ message: { $case: 'heartbeat', heartbeat: { sentUnixMs: Date.now() } } });
  }

  batch(sequence: number, changes: ServiceChange[]): void {
    this.write(batchRequest(sequence, changes));
  }

  /** The next response of `kind` (removed from the queue), waiting for it. */
  next<C extends ResponseCase>(kind: C, timeoutMs = 10_000): Promise<ResponseOf<C>> {
    return waitFor(
      () => {
        const i = this.responses.findIndex((r) => r.message?.$case === kind);
        if (i < 0) {
          if (this.#status !== undefined) {
            throw new Error(`stream ended (${this.#status.code} ${this.#status.details})`);
          }
          return undefined;
        }
        const [r] = this.responses.splice(i, 1);
        return r?.message as ResponseOf<C>;
      },
      { what: `a ${kind} from the hub`, timeoutMs, intervalMs: 10 },
    );
  }

  /** Hello, welcome, SYNCED (sequence 1) and its ack: a stream ready for deltas at sequence 2. */
  async admit(clusterId: string): Promise<void> {
    this.hello(clusterId);
    await this.next('welcome');
    this.synced(1);
    const ack = await this.next('ack');
    if (ack.ack.sequence !== 1) throw new Error(`SYNCED acked as ${ack.ack.sequence}`);
  }

  /** The status the stream ends with. */
  ended(timeoutMs = 15_000): Promise<EndedStatus> {
    return waitFor(() => this.#status, { what: 'the stream to end', timeoutMs, intervalMs: 10 });
  }

  cancel(): void {
    this.call.cancel();
  }
}

/** Options for {@link RogueAgent}. */
export interface RogueAgentOptions {
  /** Bearer token presented; none when undefined. */
  token?: string | undefined;
  /** A channel (and TCP connection) of its own instead of the shared subchannel pool. */
  ownConnection?: boolean;
}

/** A hostile agent: its own grpc-js client, speaking the protocol (or not) as the test says. */
export class RogueAgent {
  readonly client: AgentServiceClient;
  readonly #streams: RogueStream[] = [];

  constructor(
    target: string,
    readonly options: RogueAgentOptions = {},
  ) {
    this.client = new AgentServiceClient(target, grpc.credentials.createInsecure(), {
      ...(options.ownConnection === true ? { 'grpc.use_local_subchannel_pool': 1 } : {}),
      // Never retry or buffer on our side: what the test writes is what the hub gets.
      'grpc.enable_retries': 0,
    });
  }

  /** A new `Sync` stream with the agent's token. */
  open(): RogueStream {
    const stream = new RogueStream(this.client.sync(bearer(this.options.token)));
    this.#streams.push(stream);
    return stream;
  }

  /**
   * A `Sync` stream whose messages are raw bytes, framed as gRPC messages but never encoded by
   * protobuf: garbage reaches the hub's deserializer as is.
   */
  openRaw(): RawStream {
    const call = this.client.makeBidiStreamRequest<Buffer, Buffer>(
      '/tgfed.v1.AgentService/Sync',
      (bytes) => bytes,
      (bytes) => bytes,
      bearer(this.options.token),
    );
    return new RawStream(call);
  }

  close(): void {
    for (const s of this.#streams) s.cancel();
    this.client.close();
  }
}

/** A `Sync` stream that sends raw bytes as gRPC messages. */
export class RawStream {
  readonly received: Buffer[] = [];
  #status: EndedStatus | undefined;

  constructor(readonly call: grpc.ClientDuplexStream<Buffer, Buffer>) {
    call.on('data', (b: Buffer) => this.received.push(b));
    call.on('status', (s: grpc.StatusObject) => (this.#status = s));
    call.on('error', () => undefined);
  }

  get status(): EndedStatus | undefined {
    return this.#status;
  }

  /** Responses that decode as `SyncResponse`. */
  responses(): SyncResponse[] {
    return this.received.map((b) => SyncResponse.decode(b));
  }

  ended(timeoutMs = 15_000): Promise<EndedStatus> {
    return waitFor(() => this.#status, { what: 'the stream to end', timeoutMs, intervalMs: 10 });
  }
}

/** The encoded form of a request, for tests that tamper with bytes. */
export function encodeRequest(request: SyncRequest): Buffer {
  return Buffer.from(SyncRequest.encode(request).finish());
}

/** An endpoint on port set 1, ready. */
export function endpoint(address: string): Endpoint {
  return {
    address: addressToBytes(address),
    portSet: 1,
    ready: true,
    serving: true,
    terminating: false,
    zone: 0,
    node: 0,
    pod: undefined,
    observedOffsetMs: 0,
  };
}

const httpPortSet = {
  id: 1,
  ports: [{ name: 'http', port: 8080, protocol: Protocol.PROTOCOL_TCP, appProtocol: '' }],
};

/** Full state of `shop/<name>` (port `http` 8080). */
export function replaceChange(name: string, addresses: readonly string[]): ServiceChange {
  return {
    service: { namespace: 'shop', name },
    digest: new Uint8Array(0),
    change: {
      $case: 'replace',
      replace: { labels: {}, portSets: [httpPortSet], endpoints: addresses.map(endpoint) },
    },
  };
}

/** Endpoint-granular change of `shop/<name>`. */
export function deltaChange(
  name: string,
  upserts: readonly string[],
  removals: readonly string[] = [],
): ServiceChange {
  return {
    service: { namespace: 'shop', name },
    digest: new Uint8Array(0),
    change: {
      $case: 'delta',
      delta: {
        portSets: [httpPortSet],
        upserts: upserts.map(endpoint),
        removals: removals.map((a) => ({ address: addressToBytes(a), observedOffsetMs: 0 })),
        labels: undefined,
      },
    },
  };
}

export function batchRequest(sequence: number, changes: ServiceChange[]): SyncRequest {
  const batch: EndpointBatch = {
    sequence,
    phase: BatchPhase.BATCH_PHASE_DELTA,
    changes,
    strings: [],
    observedBaseUnixMs: Date.now(),
    traceContext: undefined,
  };
  return { message: { $case: 'batch', batch } };
}

/** `count` distinct addresses `10.<block>.x.y`, from host `first` on. */
export function addressesIn(block: number, count: number, first = 1): string[] {
  return Array.from({ length: count }, (_, i) => {
    const h = first + i;
    return `10.${block}.${(h >> 8) & 0xff}.${h & 0xff}`;
  });
}

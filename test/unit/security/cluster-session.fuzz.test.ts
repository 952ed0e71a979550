import { EventEmitter } from 'node:events';
import { setImmediate as nextTurn } from 'node:timers/promises';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import {
  AddressPolicy,
  AgentAuthenticator,
  ClusterSession,
  IngestCounters,
  RecordingReconcileSink,
  compileSyncServiceOptions,
  hashAgentToken,
} from '../../../hub/ingest/index.js';
import type {
  ClusterEndpointStore,
  ClusterLease,
  ClusterTotals,
  ServiceWrite,
} from '../../../hub/state/index.js';
import {
  NackReason,
  Protocol,
  SyncRequest,
  SyncResponse,
  serviceKeyString,
  type Endpoint,
  type InternedString,
  type PortSet,
  type ServiceChange,
} from '../../../shared/index.js';

// The hub's whole validation path for one agent stream — authentication, hello, sequence
// checks, interned strings, port sets, endpoint decoding, allowed CIDRs and the hard limits —
// fed with random protobuf messages (issue #9, hostile input). Storage and lease are fakes
// that record every write. Whatever arrives: nothing outside the cluster's CIDRs is written,
// no limit is exceeded by what is written, and a stream only ever ends with a documented
// status (never UNKNOWN, which is what an unexpected error becomes).

const CLUSTER = 'fuzz';
const TOKEN = 'token-of-fuzz';
const CIDRS = ['10.1.0.0/16', 'fd00:1::/64'];
const LIMITS = {
  maxBatchesInFlight: 4,
  maxMessageBytes: 1 << 20,
  maxEndpointsPerService: 6,
  maxEndpointsPerCluster: 14,
  maxServicesPerCluster: 3,
};
const DECODER_LIMITS = {
  maxInternedStrings: 6,
  maxStringLength: 12,
  maxPortSetsPerService: 3,
  maxPortsPerSet: 3,
  maxLabelsPerService: 3,
};
const documented = new Set([
  grpc.status.OK,
  grpc.status.UNAUTHENTICATED,
  grpc.status.PERMISSION_DENIED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.UNAVAILABLE,
]);

const ranges = CIDRS.map((c) => ipaddr.parseCIDR(c));

/** Reference check, independent of `AddressPolicy`'s byte comparison. */
function inCidrs(address: string): boolean {
  const parsed = ipaddr.parse(address);
  return ranges.some(
    ([range, bits]) => parsed.kind() === range.kind() && parsed.match(range, bits),
  );
}

/** A server call as grpc-js hands it to the service, recording what the hub does with it. */
class FakeCall extends EventEmitter {
  readonly written: SyncResponse[] = [];
  readonly metadata = new grpc.Metadata();
  status: grpc.StatusObject | undefined;

  constructor(token: string | undefined) {
    super();
    if (token !== undefined) this.metadata.set('authorization', `Bearer ${token}`);
  }

  getPeer(): string {
    return 'ipv4:127.0.0.1:1';
  }

  getAuthContext(): Record<string, never> {
    return {};
  }

  write(response: SyncResponse): boolean {
    // What grpc-js does with it: a response the hub cannot encode would be a bug too.
    SyncResponse.encode(response).finish();
    this.written.push(response);
    return true;
  }

  end(): void {
    this.status ??= { code: grpc.status.OK, details: '', metadata: new grpc.Metadata() };
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    // The session ends a stream by emitting its status as an 'error' (grpc-js sends it).
    if (event === 'error') {
      this.status ??= args[0] as grpc.StatusObject;
      return true;
    }
    return super.emit(event, ...args);
  }
}

/** What the fake store was asked to write, and the model of what it holds. */
class RecordingStore {
  readonly writes: ServiceWrite[] = [];
  readonly totals: ClusterTotals[] = [];
  readonly held = new Map<string, Set<string>>();
  readonly indexed = new Set<string>();
  /** Batches written for a cluster not indexed yet (workers would not find its state). */
  unindexedWrites = 0;

  index(clusterId: string): Promise<void> {
    this.indexed.add(clusterId);
    return Promise.resolve();
  }

  loadCluster(): Promise<Map<string, never>> {
    return Promise.resolve(new Map<string, never>());
  }

  applyBatch(
    clusterId: string,
    _token: string,
    writes: readonly ServiceWrite[],
    totals: ClusterTotals,
  ): Promise<void> {
    if (!this.indexed.has(clusterId)) this.unindexedWrites++;
    this.totals.push(totals);
    for (const w of writes) {
      this.writes.push(w);
      const key = serviceKeyString(w.service);
      if (w.kind === 'remove') {
        this.held.delete(key);
      } else if (w.kind === 'replace') {
        this.held.set(key, new Set(w.endpoints.map((e) => e.address)));
      } else {
        const set = this.held.get(key) ?? new Set<string>();
        for (const e of w.upserts) set.add(e.address);
        for (const a of w.removals) set.delete(a);
        this.held.set(key, set);
      }
    }
    return Promise.resolve();
  }
}

const fakeLease = {
  ttlMs: 3_600_000,
  acquire: (clusterId: string, hubId: string) =>
    Promise.resolve({
      acquired: true as const,
      lease: { clusterId, hubId, token: 'lease', expiresAtMs: Date.now() + 3_600_000 },
    }),
  release: () => Promise.resolve(),
  renew: () => Promise.resolve(true),
};

// --- arbitraries: valid-looking most of the time, wrong in every field some of the time -------

const inside = fc.oneof(
  fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => Uint8Array.from([10, 1, a, b])),
  fc
    .uint8Array({ minLength: 8, maxLength: 8 })
    .map((tail) => Uint8Array.from([0xfd, 0, 0, 1, 0, 0, 0, 0, ...tail])),
);
function addressOfLength(length: number): fc.Arbitrary<Uint8Array> {
  return fc.uint8Array({ minLength: length, maxLength: length });
}
const addressArb = fc.oneof(
  { weight: 4, arbitrary: inside },
  { weight: 2, arbitrary: addressOfLength(4) },
  { weight: 2, arbitrary: addressOfLength(16) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 20 }) },
);
const smallId = fc.integer({ min: -1, max: 5 });
const text = fc.string({ maxLength: 16 });

const portSetArb: fc.Arbitrary<PortSet> = fc.record({
  id: smallId,
  ports: fc.array(
    fc.record({
      name: fc.oneof(fc.constant('http'), text, fc.string({ minLength: 60, maxLength: 70 })),
      port: fc.oneof(fc.constant(8080), fc.integer({ min: -2, max: 70_000 })),
      protocol: fc.integer({ min: 0, max: 5 }),
      appProtocol: text,
    }),
    { maxLength: 5 },
  ),
});

/** Each field wrong now and then: one bad field rejects the whole service change. */
function mostly<T>(good: fc.Arbitrary<T>, any: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.oneof({ weight: 30, arbitrary: good }, { weight: 1, arbitrary: any });
}

const endpointArb: fc.Arbitrary<Endpoint> = fc.record({
  address: mostly(fc.oneof(inside, inside, addressOfLength(4), addressOfLength(16)), addressArb),
  portSet: mostly(fc.constant(1), smallId),
  ready: fc.boolean(),
  serving: fc.boolean(),
  terminating: fc.boolean(),
  zone: mostly(fc.constant(0), fc.nat(7)),
  node: mostly(fc.constant(0), fc.nat(7)),
  pod: mostly(
    fc.option(fc.record({ namespace: fc.constant('shop'), name: fc.constant('p') }), {
      nil: undefined,
    }),
    fc.option(fc.record({ namespace: text, name: text }), { nil: undefined }),
  ),
  observedOffsetMs: fc.nat(),
});

const labelsArb = mostly(
  fc.dictionary(
    fc.constantFrom('app', 'tier', 'example.com/team', 'x'),
    fc.string({ maxLength: 8 }),
    {
      maxKeys: 4,
    },
  ),
  fc.dictionary(fc.string({ maxLength: 70 }), fc.string({ maxLength: 70 }), { maxKeys: 4 }),
);

const goodPortSet: PortSet = {
  id: 1,
  ports: [{ name: 'http', port: 8080, protocol: Protocol.PROTOCOL_TCP, appProtocol: '' }],
};
const portSetsArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant<PortSet[]>([goodPortSet]) },
  { weight: 1, arbitrary: fc.array(portSetArb, { maxLength: 5 }).map((s) => [goodPortSet, ...s]) },
  { weight: 1, arbitrary: fc.array(portSetArb, { maxLength: 5 }) },
);

const changeArb: fc.Arbitrary<ServiceChange> = fc.record({
  service: fc.option(
    fc.record({
      namespace: fc.constantFrom('shop', 'blog', ''),
      name: fc.constantFrom('a', 'b', 'c', 'd', 'e', ''),
    }),
    { nil: undefined, freq: 10 },
  ),
  digest: fc.uint8Array({ maxLength: 9 }),
  change: fc.option(
    fc.oneof(
      fc.record({
        $case: fc.constant('replace' as const),
        replace: fc.record({
          labels: labelsArb,
          portSets: portSetsArb,
          endpoints: fc.array(endpointArb, { maxLength: 9 }),
        }),
      }),
      fc.record({
        $case: fc.constant('delta' as const),
        delta: fc.record({
          portSets: portSetsArb,
          upserts: fc.array(endpointArb, { maxLength: 9 }),
          removals: fc.array(fc.record({ address: addressArb, observedOffsetMs: fc.nat() }), {
            maxLength: 4,
          }),
          labels: fc.option(fc.record({ labels: labelsArb }), {
            nil: undefined,
          }),
        }),
      }),
      fc.record({
        $case: fc.constant('removed' as const),
        removed: fc.record({ observedOffsetMs: fc.nat() }),
      }),
    ),
    { nil: undefined, freq: 12 },
  ),
});

/** A message after the hello; `sequence: undefined` means "the one the hub expects". */
type Step =
  | { kind: 'batch'; sequence: number | undefined; request: SyncRequest }
  | { kind: 'synced'; sequence: number | undefined }
  | { kind: 'raw'; request: SyncRequest };

const sequenceArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 12 }) },
);

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .record({
        sequence: sequenceArb,
        phase: fc.integer({ min: 0, max: 3 }),
        changes: fc.array(changeArb, { maxLength: 4 }),
        strings: fc.oneof(
          { weight: 3, arbitrary: fc.constant<InternedString[]>([]) },
          {
            weight: 1,
            arbitrary: fc.array(
              fc.record({
                id: smallId,
                value: fc.oneof(text, fc.string({ minLength: 13, maxLength: 20 })),
              }),
              { maxLength: 4 },
            ),
          },
        ),
        observedBaseUnixMs: fc.nat(),
      })
      .map(({ sequence, ...batch }) => ({
        kind: 'batch' as const,
        sequence,
        request: {
          message: {
            $case: 'batch' as const,
            batch: { sequence: 0, ...batch, traceContext: undefined },
          },
        },
      })),
  },
  { weight: 1, arbitrary: sequenceArb.map((sequence) => ({ kind: 'synced' as const, sequence })) },
  {
    weight: 1,
    arbitrary: fc
      .oneof(
        fc.constant<SyncRequest>({ message: undefined }),
        fc.constant<SyncRequest>({ message: { $case: 'heartbeat', heartbeat: { sentUnixMs: 1 } } }),
        fc.string({ maxLength: 8 }).map((clusterId): SyncRequest => ({
          message: {
            $case: 'hello',
            hello: {
              clusterId,
              agentVersion: '',
              sessionEpoch: new Uint8Array(0),
              capabilities: [],
            },
          },
        })),
      )
      .map((request) => ({ kind: 'raw' as const, request })),
  },
);

const helloArb = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.constant({ clusterId: CLUSTER, token: TOKEN }),
  },
  { weight: 1, arbitrary: fc.constant({ clusterId: 'other', token: TOKEN }) },
  { weight: 1, arbitrary: fc.constant({ clusterId: CLUSTER, token: undefined }) },
  { weight: 1, arbitrary: fc.constant({ clusterId: CLUSTER, token: 'token-of-nobody' }) },
  {
    weight: 1,
    arbitrary: fc.constant({ clusterId: '../etc', token: TOKEN }),
  },
);

interface Run {
  call: FakeCall;
  store: RecordingStore;
  counters: IngestCounters;
}

/** Plays one stream: the hello, then each step in turn, each processed before the next. */
async function play(
  hello: { clusterId: string; token: string | undefined },
  steps: Step[],
): Promise<Run> {
  const call = new FakeCall(hello.token);
  const store = new RecordingStore();
  const counters = new IngestCounters();
  const session = new ClusterSession(call as never, {
    store: store as unknown as ClusterEndpointStore,
    lease: fakeLease as unknown as ClusterLease,
    authenticator: new AgentAuthenticator({ tokenSha256: { [CLUSTER]: hashAgentToken(TOKEN) } }),
    addressPolicy: new AddressPolicy({ clusters: { [CLUSTER]: CIDRS } }),
    subscriptions: {
      subscriptionFor: () => ({ version: 1, selectors: [{ namespace: '', name: '' }] }),
      onChange: () => () => undefined,
    },
    reconcileSink: new RecordingReconcileSink(),
    counters,
    options: compileSyncServiceOptions({
      hubId: 'hub-fuzz',
      heartbeatIntervalMs: 3_600_000,
      limits: LIMITS,
      decoderLimits: DECODER_LIMITS,
    }),
    onClosed: () => undefined,
  });
  try {
    call.emit('data', {
      message: {
        $case: 'hello',
        hello: {
          clusterId: hello.clusterId,
          agentVersion: 'fuzz',
          sessionEpoch: new Uint8Array(16),
          capabilities: [],
        },
      },
    } satisfies SyncRequest);
    await nextTurn();
    let expected = 1;
    const sequenced = (given: number | undefined): number => {
      const sequence = given ?? expected;
      if (sequence >= expected) expected = sequence + 1;
      return sequence;
    };
    for (const step of steps) {
      if (call.status !== undefined) break;
      if (step.kind === 'batch') {
        const message = step.request.message;
        if (message?.$case === 'batch') message.batch.sequence = sequenced(step.sequence);
        call.emit('data', step.request);
      } else if (step.kind === 'synced') {
        call.emit('data', {
          message: { $case: 'synced', synced: { sequence: sequenced(step.sequence) } },
        } satisfies SyncRequest);
      } else {
        call.emit('data', step.request);
      }
      await nextTurn();
    }
  } finally {
    await session.close();
  }
  return { call, store, counters };
}

function checkInvariants({ call, store, counters }: Run): void {
  // Never anything but a documented status.
  expect(documented, `status ${call.status?.code} ${call.status?.details}`).toContain(
    call.status?.code,
  );
  // Nothing outside the CIDRs is ever written, nor labels past the limits.
  for (const w of store.writes) {
    if (w.kind !== 'remove') {
      const labels = Object.entries(w.meta.labels);
      expect(labels.length).toBeLessThanOrEqual(DECODER_LIMITS.maxLabelsPerService);
      for (const [key, value] of labels) {
        expect(key.length).toBeGreaterThan(0);
        expect(value.length).toBeLessThanOrEqual(63);
      }
    }
    const written = w.kind === 'replace' ? w.endpoints : w.kind === 'delta' ? w.upserts : [];
    for (const e of written) expect(inCidrs(e.address), e.address).toBe(true);
  }
  // A cluster is indexed before anything of it is written.
  expect(store.unindexedWrites).toBe(0);
  // What the store holds never exceeds a limit, nor do the totals the hub reports.
  let total = 0;
  for (const addresses of store.held.values()) {
    expect(addresses.size).toBeLessThanOrEqual(LIMITS.maxEndpointsPerService);
    total += addresses.size;
  }
  expect(total).toBeLessThanOrEqual(LIMITS.maxEndpointsPerCluster);
  expect(store.held.size).toBeLessThanOrEqual(LIMITS.maxServicesPerCluster);
  for (const t of store.totals) {
    expect(t.endpoints).toBeLessThanOrEqual(LIMITS.maxEndpointsPerCluster);
    expect(t.services).toBeLessThanOrEqual(LIMITS.maxServicesPerCluster);
  }
  // Every rejection the agent was told about is counted, and every NACK names a reason.
  const nacks = call.written.flatMap((r) => (r.message?.$case === 'nack' ? [r.message.nack] : []));
  for (const nack of nacks) expect(nack.reason).not.toBe(NackReason.NACK_REASON_UNSPECIFIED);
  const rejected = nacks.reduce((n, nack) => n + nack.rejections.length, 0);
  expect(counters.rejectedByCluster.get(CLUSTER) ?? 0).toBe(rejected);
}

describe('ClusterSession under random protobuf input', () => {
  it('writes nothing outside the CIDRs, nothing past a limit, and ends only with documented statuses', async () => {
    let admitted = 0;
    let written = 0;
    await fc.assert(
      fc.asyncProperty(helloArb, fc.array(stepArb, { maxLength: 14 }), async (hello, steps) => {
        const run = await play(hello, steps);
        checkInvariants(run);
        if (run.counters.admissions > 0) admitted++;
        written += run.store.writes.length;
      }),
      { numRuns: 2_000 },
    );
    // The generators reach the interesting parts: most streams get in, many writes happen.
    expect(admitted).toBeGreaterThan(1_000);
    expect(written).toBeGreaterThan(500);
  });

  it('survives random bytes decoded as SyncRequest after an admitted hello', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 8 }),
        async (chunks) => {
          const steps: Step[] = [];
          for (const bytes of chunks) {
            let request: SyncRequest;
            try {
              request = SyncRequest.decode(bytes);
            } catch (err) {
              // grpc-js answers INTERNAL for a message its deserializer rejects.
              expect(err).toBeInstanceOf(Error);
              continue;
            }
            steps.push({ kind: 'raw', request });
          }
          checkInvariants(await play({ clusterId: CLUSTER, token: TOKEN }, steps));
        },
      ),
      { numRuns: 1_000 },
    );
  });
});

import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { AddressPolicy } from '../../../hub/ingest/index.js';
import {
  EndpointDecoder,
  ProtocolViolationError,
  SyncRequest,
  addressFromBytes,
  type Endpoint,
  type InternedString,
  type PortSet,
} from '../../../shared/index.js';

// The validators a hostile agent's bytes meet first (issue #9, hostile input): the protobuf
// decoder of SyncRequest, the endpoint decoder of each stream, and the per-cluster address
// policy, each fed random input.

const LIMITS = {
  maxInternedStrings: 5,
  maxStringLength: 10,
  maxPortSetsPerService: 3,
  maxPortsPerSet: 2,
};

describe('SyncRequest.decode on random bytes', () => {
  it('returns a message or throws an Error (grpc-js then answers INTERNAL); a decoded message encodes again', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        let decoded: SyncRequest;
        try {
          decoded = SyncRequest.decode(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          return;
        }
        expect(() => SyncRequest.encode(decoded).finish()).not.toThrow();
      }),
      { numRuns: 5_000 },
    );
  });

  it('never yields a batch sequence that is not a safe integer', () => {
    // A uint64 above 2^53 would make sequence arithmetic inexact; the generated code throws.
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (sequence) => {
        const bytes = Buffer.concat([
          Buffer.from([0x12]), // field 2 (batch), length-delimited
          lengthPrefixed(Buffer.concat([Buffer.from([0x08]), varint(sequence)])),
        ]);
        try {
          const decoded = SyncRequest.decode(bytes);
          if (decoded.message?.$case === 'batch') {
            expect(Number.isSafeInteger(decoded.message.batch.sequence)).toBe(true);
          }
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
        }
      }),
      { numRuns: 2_000 },
    );
  });
});

function varint(value: bigint): Buffer {
  const out: number[] = [];
  let v = value;
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}

function lengthPrefixed(bytes: Buffer): Buffer {
  return Buffer.concat([varint(BigInt(bytes.length)), bytes]);
}

// --- EndpointDecoder -------------------------------------------------------------------------

const smallId = fc.integer({ min: -1, max: 8 });
const stringsArb: fc.Arbitrary<InternedString[]> = fc.array(
  fc.record({ id: smallId, value: fc.string({ maxLength: 14 }) }),
  { maxLength: 4 },
);
const portSetArb: fc.Arbitrary<PortSet> = fc.record({
  id: smallId,
  ports: fc.array(
    fc.record({
      name: fc.string({ maxLength: 70 }),
      port: fc.integer({ min: -3, max: 70_000 }),
      protocol: fc.integer({ min: -1, max: 5 }),
      appProtocol: fc.string({ maxLength: 8 }),
    }),
    { maxLength: 4 },
  ),
});
const endpointArb: fc.Arbitrary<Endpoint> = fc.record({
  address: fc.oneof(
    fc.uint8Array({ minLength: 4, maxLength: 4 }),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.uint8Array({ maxLength: 20 }),
  ),
  portSet: smallId,
  ready: fc.boolean(),
  serving: fc.boolean(),
  terminating: fc.boolean(),
  zone: smallId,
  node: smallId,
  pod: fc.option(
    fc.record({ namespace: fc.string({ maxLength: 70 }), name: fc.string({ maxLength: 260 }) }),
    { nil: undefined },
  ),
  observedOffsetMs: fc.nat(),
});

type DecoderOp =
  | { op: 'strings'; strings: InternedString[] }
  | { op: 'portSets'; service: string; portSets: PortSet[] }
  | { op: 'forget'; service: string }
  | { op: 'decode'; service: string; endpoint: Endpoint };

const serviceArb = fc.constantFrom('shop/a', 'shop/b');
const opArb: fc.Arbitrary<DecoderOp> = fc.oneof(
  stringsArb.map((strings) => ({ op: 'strings' as const, strings })),
  fc
    .record({ service: serviceArb, portSets: fc.array(portSetArb, { maxLength: 3 }) })
    .map((r) => ({ op: 'portSets' as const, ...r })),
  serviceArb.map((service) => ({ op: 'forget' as const, service })),
  fc
    .record({ service: serviceArb, endpoint: endpointArb })
    .map((r) => ({ op: 'decode' as const, ...r })),
);

describe('EndpointDecoder on random input', () => {
  it('throws only ProtocolViolationError, and what it accepts is within the wire contract and its limits', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 30 }), (ops) => {
        const decoder = new EndpointDecoder(LIMITS);
        const offeredIds = new Set<number>();
        for (const op of ops) {
          try {
            switch (op.op) {
              case 'strings':
                for (const s of op.strings) offeredIds.add(s.id);
                decoder.bindStrings(op.strings);
                break;
              case 'portSets':
                decoder.bindPortSets(op.service, op.portSets);
                break;
              case 'forget':
                decoder.forgetService(op.service);
                break;
              case 'decode': {
                const record = decoder.decode(op.service, 'shop', op.endpoint);
                expect(record.address).toBe(addressFromBytes(op.endpoint.address));
                expect(ipaddr.isValid(record.address)).toBe(true);
                expect(record.ports.length).toBeLessThanOrEqual(LIMITS.maxPortsPerSet);
                for (const p of record.ports) {
                  expect(Number.isInteger(p.port) && p.port >= 1 && p.port <= 65_535).toBe(true);
                  expect(['TCP', 'UDP', 'SCTP']).toContain(p.protocol);
                  expect(p.name.length).toBeLessThanOrEqual(63);
                }
                expect(record.zone.length).toBeLessThanOrEqual(LIMITS.maxStringLength);
                expect(record.node.length).toBeLessThanOrEqual(LIMITS.maxStringLength);
                if (record.pod !== undefined) {
                  expect(record.pod.name).not.toBe('');
                  expect(record.pod.name.length).toBeLessThanOrEqual(253);
                }
                break;
              }
            }
          } catch (err) {
            if (!(err instanceof ProtocolViolationError)) throw err;
            expect(err.message).not.toBe('');
          }
        }
        // However many ids were offered, no more than the limit are bound.
        let bound = 0;
        for (const id of offeredIds) {
          if (id <= 0) continue;
          try {
            decoder.bindPortSets('probe', [
              { id: 1, ports: [{ name: '', port: 1, protocol: 1, appProtocol: '' }] },
            ]);
            decoder.decode('probe', 'shop', {
              address: Uint8Array.from([10, 0, 0, 1]),
              portSet: 1,
              ready: true,
              serving: true,
              terminating: false,
              zone: id,
              node: 0,
              pod: undefined,
              observedOffsetMs: 0,
            });
            bound++;
          } catch (err) {
            if (!(err instanceof ProtocolViolationError)) throw err;
          }
        }
        expect(bound).toBeLessThanOrEqual(LIMITS.maxInternedStrings);
      }),
      { numRuns: 3_000 },
    );
  });
});

// --- AddressPolicy ---------------------------------------------------------------------------

const cidrArb = fc.oneof(
  fc
    .tuple(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 32 }))
    .map(([bytes, bits]) => ({ bytes, bits })),
  fc
    .tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 128 }))
    .map(([bytes, bits]) => ({ bytes, bits })),
);

/** An address near a range (same leading bytes, some bits flipped), or anywhere. */
const addressNear = (range: { bytes: Uint8Array }) =>
  fc.oneof(
    fc
      .tuple(fc.nat(range.bytes.length), fc.uint8Array({ minLength: 16, maxLength: 16 }))
      .map(([keep, noise]) =>
        Uint8Array.from(range.bytes, (b, i) => (i < keep ? b : (noise[i] ?? 0))),
      ),
    fc.uint8Array({ minLength: 4, maxLength: 4 }),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
  );

describe('AddressPolicy on random ranges and addresses', () => {
  it('allows exactly the addresses inside a cluster’s ranges (ipaddr.js as the reference), never one of another family', () => {
    fc.assert(
      fc.property(
        fc
          .array(cidrArb, { minLength: 1, maxLength: 3 })
          .chain((cidrs) =>
            fc.tuple(
              fc.constant(cidrs),
              fc.array(addressNear(cidrs[0]!), { minLength: 1, maxLength: 10 }),
            ),
          ),
        ([cidrs, addresses]) => {
          const texts = cidrs.map(
            (c) => `${ipaddr.fromByteArray(Array.from(c.bytes)).toString()}/${c.bits}`,
          );
          const policy = new AddressPolicy({ clusters: { c: texts } });
          const ranges = texts.map((t) => ipaddr.parseCIDR(t));
          for (const bytes of addresses) {
            const address = addressFromBytes(bytes);
            const parsed = ipaddr.parse(address);
            const expected = ranges.some(
              ([range, bits]) => parsed.kind() === range.kind() && parsed.match(range, bits),
            );
            expect(policy.allows('c', address), `${address} in ${texts.join(',')}`).toBe(expected);
            // Another cluster, without ranges of its own, gets nothing.
            expect(policy.allows('other', address)).toBe(false);
          }
        },
      ),
      { numRuns: 3_000 },
    );
  });
});

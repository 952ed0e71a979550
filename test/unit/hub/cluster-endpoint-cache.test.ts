import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ClusterEndpointCache,
  decodeEndpointRecord,
  decodeServiceMeta,
  encodeEndpointRecord,
  encodeServiceMeta,
} from '../../../hub/state/index.js';
import { AddressPolicy } from '../../../hub/ingest/index.js';
import { endpointDigest, type EndpointRecord } from '../../../shared/index.js';

const service = { namespace: 'shop', name: 'web' };

const recordArb: fc.Arbitrary<EndpointRecord> = fc.record({
  address: fc.integer({ min: 1, max: 40 }).map((i) => `10.0.0.${i}`),
  ports: fc.constant([
    { name: 'http', port: 8080, protocol: 'TCP' as const, appProtocol: '' },
    { name: 'grpc', port: 9090, protocol: 'TCP' as const, appProtocol: 'kubernetes.io/h2c' },
  ]),
  ready: fc.boolean(),
  serving: fc.boolean(),
  terminating: fc.boolean(),
  zone: fc.constantFrom('', 'a', 'b'),
  node: fc.string({ maxLength: 8 }),
  pod: fc.option(
    fc.record({ namespace: fc.constantFrom('shop', 'other'), name: fc.string({ minLength: 1 }) }),
    { nil: undefined },
  ),
});

describe('endpoint record encoding', () => {
  it('reads back exactly what it wrote, whatever the names contain', () => {
    fc.assert(
      fc.property(recordArb, (record) => {
        const value = encodeEndpointRecord(record, 'shop');
        expect(decodeEndpointRecord(record.address, value, 'shop')).toEqual(record);
      }),
    );
  });

  it('stays compact for a typical pod', () => {
    const value = encodeEndpointRecord(
      {
        address: '10.1.2.3',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: '' }],
        ready: true,
        serving: true,
        terminating: false,
        zone: 'eu-west-1a',
        node: 'ip-10-0-1-1.eu-west-1.compute.internal',
        pod: { namespace: 'shop', name: 'web-7d9f8b6c5d-x2x9z' },
      },
      'shop',
    );
    expect(value.length).toBeLessThan(120);
  });

  it('round-trips service meta', () => {
    const meta = {
      digest: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 255]),
      endpointCount: 12,
      labels: { app: 'web', 'a:b': 'c:d' },
    };
    expect(decodeServiceMeta('shop/web', encodeServiceMeta(meta))).toEqual(meta);
  });
});

describe('ClusterEndpointCache', () => {
  it('keeps every digest equal to the digest of the whole set through any sequence of changes', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('replace' as const), records: fc.array(recordArb) }),
      fc.record({
        kind: fc.constant('delta' as const),
        upserts: fc.array(recordArb, { maxLength: 5 }),
        removals: fc.array(
          fc.integer({ min: 1, max: 40 }).map((i) => `10.0.0.${i}`),
          {
            maxLength: 5,
          },
        ),
        labels: fc.option(fc.dictionary(fc.constantFrom('app', 'tier'), fc.string()), {
          nil: undefined,
        }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 20 }), (ops) => {
        const cache = new ClusterEndpointCache();
        const model = new Map<string, EndpointRecord>();
        let labels: Record<string, string> = {};
        for (const o of ops) {
          if (o.kind === 'replace') {
            model.clear();
            for (const r of o.records) model.set(r.address, r);
            labels = {};
            cache.replace(service, labels, o.records);
          } else {
            for (const a of o.removals) model.delete(a);
            for (const r of o.upserts) model.set(r.address, r);
            if (o.labels !== undefined) labels = o.labels;
            if (!cache.has('shop/web')) labels = o.labels ?? {};
            cache.delta(service, o.upserts, o.removals, o.labels);
          }
          expect(cache.digest('shop/web')).toEqual(endpointDigest(labels, model.values()));
          expect(cache.endpointCount).toBe(model.size);
        }
      }),
    );
  });

  it('keeps the digest exact when a replace resends most of the service unchanged', () => {
    // The agent sends a service whole when most of it changed: the records it holds already
    // keep their hashes, the changed ones (same address, other content) are hashed again.
    const change = fc.record({
      index: fc.nat(),
      edit: fc.constantFrom('ready', 'zone', 'ports', 'drop', 'same-content-copy'),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(recordArb, { selector: (r) => r.address, minLength: 1 }),
        fc.array(change, { maxLength: 10 }),
        (records, changes) => {
          const cache = new ClusterEndpointCache();
          cache.replace(service, {}, records);
          const next = new Map(records.map((r) => [r.address, r]));
          for (const { index, edit } of changes) {
            const r = records[index % records.length] as EndpointRecord;
            if (!next.has(r.address)) continue;
            if (edit === 'drop') next.delete(r.address);
            else if (edit === 'ready') next.set(r.address, { ...r, ready: !r.ready });
            else if (edit === 'zone') next.set(r.address, { ...r, zone: `${r.zone}x` });
            else if (edit === 'ports') next.set(r.address, { ...r, ports: r.ports.slice(1) });
            else next.set(r.address, structuredClone(r));
          }
          cache.replace(service, {}, [...next.values()]);
          expect(cache.digest('shop/web')).toEqual(endpointDigest({}, next.values()));
          expect(cache.endpointCount).toBe(next.size);
        },
      ),
    );
  });
});

describe('AddressPolicy', () => {
  it('allows addresses inside a cluster range and nothing for an unlisted cluster by default', () => {
    const policy = new AddressPolicy({ clusters: { a: ['10.1.0.0/16', 'fd00:1::/64'] } });
    expect(policy.allows('a', '10.1.2.3')).toBe(true);
    expect(policy.allows('a', '10.2.0.1')).toBe(false);
    expect(policy.allows('a', 'fd00:1::5')).toBe(true);
    expect(policy.allows('a', '::ffff:10.1.2.3')).toBe(false);
    expect(policy.allows('b', '10.1.2.3')).toBe(false);
  });

  it('allows no text that is not a dotted quad, and every address for 0.0.0.0/0', () => {
    const policy = new AddressPolicy({ clusters: { a: ['10.1.0.0/16'], all: ['0.0.0.0/0'] } });
    for (const text of ['10.1.2', '10.1.2.3.4', '10.1.2.256', '10.1..3', '10.1.2.3 ', '', '.']) {
      expect(policy.allows('a', text), text).toBe(false);
      expect(policy.allows('all', text), text).toBe(false);
    }
    expect(policy.allows('all', '255.255.255.255')).toBe(true);
    expect(policy.allows('all', '0.0.0.0')).toBe(true);
    expect(policy.allows('all', 'fd00::1')).toBe(false);
  });
});

describe('AddressPolicy against ipaddr.js', () => {
  it('agrees with ipaddr.js on random addresses and prefixes of any length', () => {
    const octets = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255));
    const groups = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 });
    const v4 = fc.tuple(octets, octets, fc.nat(32)).map(([a, r, bits]) => ({
      address: a.join('.'),
      cidr: `${r.join('.')}/${bits}`,
    }));
    const v6 = fc.tuple(groups, groups, fc.nat(128)).map(([a, r, bits]) => ({
      address: ipaddr.parse(a.map((g) => g.toString(16)).join(':')).toString(),
      cidr: `${r.map((g) => g.toString(16)).join(':')}/${bits}`,
    }));
    fc.assert(
      fc.property(fc.oneof(v4, v6), ({ address, cidr }) => {
        const policy = new AddressPolicy({ clusters: { c: [cidr] } });
        const parsed = ipaddr.parse(address);
        const range = ipaddr.parseCIDR(cidr);
        const expected = parsed.kind() === range[0].kind() && parsed.match(range);
        expect(policy.allows('c', address)).toBe(expected);
      }),
      { numRuns: 2_000 },
    );
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ServiceEndpointSets } from '../../../agent/aggregate/service-endpoint-sets.js';
import {
  endpointDigest,
  sameDigest,
  sameEndpoint,
  sortPorts,
  type EndpointPort,
  type EndpointRecord,
} from '../../../shared/index.js';
import { endpointSlice, snapshot, type ServiceMirror } from './endpoint-slice-fixtures.js';

// Small domains, so that equal sets and near misses (one field apart) come up often.
const portSets: readonly (readonly EndpointPort[])[] = [
  [],
  [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: '' }],
  sortPorts([
    { name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' },
    { name: 'dns', port: 53, protocol: 'UDP', appProtocol: '' },
  ]),
];

const recordArb: fc.Arbitrary<EndpointRecord> = fc.record({
  address: fc.oneof(
    fc.nat(7).map((i) => `10.0.0.${i}`),
    fc.nat(7).map((i) => `fd00::${i}`),
  ),
  ports: fc.constantFrom(...portSets),
  ready: fc.boolean(),
  serving: fc.boolean(),
  terminating: fc.boolean(),
  zone: fc.constantFrom('', 'eu-west-1a', 'eu-west-1b'),
  node: fc.constantFrom('', 'node-1', 'node-2'),
  pod: fc.option(
    fc.record({ namespace: fc.constantFrom('shop', 'blog'), name: fc.constantFrom('p1', 'p2') }),
    { nil: undefined },
  ),
});

const setArb = fc.uniqueArray(recordArb, { selector: (e) => e.address, maxLength: 12 });
const labelsArb = fc.dictionary(fc.constantFrom('app', 'tier', 'team'), fc.constantFrom('a', 'b'), {
  maxKeys: 3,
});

interface Service {
  labels: Record<string, string>;
  endpoints: EndpointRecord[];
}

/** A second service: the same one reordered, the same one with one thing changed, or another. */
function relatedArb(first: Service): fc.Arbitrary<Service> {
  const same = fc
    .shuffledSubarray(first.endpoints, {
      minLength: first.endpoints.length,
      maxLength: first.endpoints.length,
    })
    .map((endpoints) => ({ labels: { ...first.labels }, endpoints }));
  const nudged = fc
    .tuple(same, fc.nat(), recordArb, labelsArb, fc.nat(3))
    .map(([base, at, other, labels, what]) => {
      const endpoints = [...base.endpoints];
      const i = endpoints.length === 0 ? -1 : at % endpoints.length;
      if (what === 0 || i < 0) return { labels, endpoints };
      if (what === 1)
        return { labels: base.labels, endpoints: endpoints.filter((_, j) => j !== i) };
      const target = endpoints[i]!;
      endpoints[i] = { ...other, address: target.address };
      return { labels: base.labels, endpoints };
    });
  const other = fc.record({ labels: labelsArb, endpoints: setArb });
  return fc.oneof(same, nudged, other);
}

const pairArb = fc
  .record({ labels: labelsArb, endpoints: setArb })
  .chain((first) => fc.tuple(fc.constant(first), relatedArb(first)));

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a).sort();
  return keys.join() === Object.keys(b).sort().join() && keys.every((k) => a[k] === b[k]);
}

function sameSet(a: readonly EndpointRecord[], b: readonly EndpointRecord[]): boolean {
  const byAddress = new Map(b.map((e) => [e.address, e]));
  return (
    a.length === b.length &&
    a.every((e) => {
      const other = byAddress.get(e.address);
      return other !== undefined && sameEndpoint(e, other);
    })
  );
}

function sameService(a: ServiceMirror | undefined, b: ServiceMirror | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    sameLabels(a.labels, b.labels) && sameSet([...a.endpoints.values()], [...b.endpoints.values()])
  );
}

describe('endpoint digests', () => {
  it('are equal if and only if the labels and endpoint sets are equal', () => {
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        const equal = sameLabels(a.labels, b.labels) && sameSet(a.endpoints, b.endpoints);
        const digestsEqual = sameDigest(
          endpointDigest(a.labels, a.endpoints),
          endpointDigest(b.labels, b.endpoints),
        );
        expect(digestsEqual).toBe(equal);
      }),
      { numRuns: 2_000 },
    );
  });

  it('of two services built from slices are equal if and only if their merged sets are', () => {
    // Each service is one slice per port set; the slice content comes from the record.
    const toSets = (service: Service): ServiceEndpointSets => {
      const sets = new ServiceEndpointSets();
      for (const [p, ports] of portSets.entries()) {
        for (const family of ['IPv4', 'IPv6'] as const) {
          sets.upsertSlice(
            endpointSlice({
              name: `web-${p}-${family.toLowerCase()}`,
              addressType: family,
              labels: service.labels,
              ports: ports.map((port) => ({ ...port })),
              endpoints: service.endpoints
                .filter((e) => e.ports === ports && e.address.includes(':') === (family === 'IPv6'))
                .map((e) => ({
                  addresses: [e.address],
                  conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating },
                  zone: e.zone,
                  nodeName: e.node,
                  targetRef: e.pod && { kind: 'Pod', ...e.pod },
                })),
            }),
            0,
          );
        }
      }
      return sets;
    };
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        const key = { namespace: 'shop', name: 'web' };
        const [left, right] = [toSets(a), toSets(b)];
        const equal = sameService(snapshot(left).get('shop/web'), snapshot(right).get('shop/web'));
        expect(sameDigest(left.get(key)?.digest(), right.get(key)?.digest())).toBe(equal);
      }),
      { numRuns: 300 },
    );
  });
});

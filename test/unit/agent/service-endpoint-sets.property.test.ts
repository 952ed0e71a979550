import type { DiscoveryV1EndpointPort, V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ServiceEndpointSets } from '../../../agent/aggregate/service-endpoint-sets.js';
import { digestHex, serviceKeyString } from '../../../shared/index.js';
import {
  applyChanges,
  endpointSlice,
  expectDigestsConsistent,
  snapshot,
  type ServiceMirror,
} from './endpoint-slice-fixtures.js';

// Few addresses and values, so that addresses often sit in several slices at once.
const families = ['IPv4', 'IPv6'] as const;
type Family = (typeof families)[number];

const portSets: readonly DiscoveryV1EndpointPort[][] = [
  [{ name: 'http', port: 8080 }],
  [
    { name: 'metrics', port: 9090, appProtocol: 'http' },
    { name: 'http', port: 8081, protocol: 'TCP' },
  ],
  [],
];

const conditionArb = fc.option(fc.boolean(), { nil: undefined });

function endpointArb(family: Family): fc.Arbitrary<V1Endpoint> {
  return fc.record({
    addresses: fc
      .nat(9)
      .map((i) => [family === 'IPv4' ? `10.0.0.${i}` : `fd00::${i.toString(16)}`]),
    conditions: fc.record({
      ready: conditionArb,
      serving: conditionArb,
      terminating: conditionArb,
    }),
    zone: fc.constantFrom(undefined, 'eu-west-1a', 'eu-west-1b'),
    nodeName: fc.constantFrom(undefined, 'node-1'),
    targetRef: fc.option(
      fc.constantFrom('p1', 'p2').map((name) => ({ kind: 'Pod', name })),
      { nil: undefined },
    ),
  });
}

/** One endpoint as listed in some slice, with the slice-level fields it needs. */
interface View {
  family: Family;
  portSet: number;
  endpoint: V1Endpoint;
}

const viewArb: fc.Arbitrary<View> = fc
  .record({ family: fc.constantFrom(...families), portSet: fc.nat(portSets.length - 1) })
  .chain(({ family, portSet }) =>
    endpointArb(family).map((endpoint) => ({ family, portSet, endpoint })),
  );

/**
 * Cuts views into slices as some controller could: a slice holds one family and one port set;
 * `buckets` decides the boundaries and `salt` the names (so also which slice sorts first).
 */
function sliceUp(
  views: readonly View[],
  buckets: readonly number[],
  salt: string,
  labels: Record<string, string>,
): V1EndpointSlice[] {
  const groups = new Map<string, { family: Family; portSet: number; endpoints: V1Endpoint[] }>();
  views.forEach((view, i) => {
    const id = `${view.family}-${view.portSet}-${buckets[i % buckets.length] ?? 0}`;
    let group = groups.get(id);
    if (group === undefined) {
      group = { family: view.family, portSet: view.portSet, endpoints: [] };
      groups.set(id, group);
    }
    group.endpoints.push(view.endpoint);
  });
  return [...groups].map(([id, group]) =>
    endpointSlice({
      name: `web-${salt}${id.toLowerCase()}`,
      addressType: group.family,
      labels,
      ports: portSets[group.portSet],
      endpoints: group.endpoints,
    }),
  );
}

const layoutArb = fc.record({
  buckets: fc.array(fc.nat(4), { minLength: 1, maxLength: 8 }),
  salt: fc.string({ unit: fc.constantFrom('a', 'b', 'z'), maxLength: 2 }),
  order: fc.array(fc.nat(), { maxLength: 40 }),
  byRelist: fc.boolean(),
});

function inOrder<T>(items: readonly T[], keys: readonly number[]): T[] {
  return items
    .map((item, i) => ({ item, key: keys[i] ?? i }))
    .sort((a, b) => a.key - b.key)
    .map((x) => x.item);
}

function digests(sets: ServiceEndpointSets): Record<string, string> {
  return Object.fromEntries(
    [...sets.services()].map((s) => [serviceKeyString(s.service), digestHex(s.digest())]),
  );
}

describe('ServiceEndpointSets (properties)', () => {
  it('merges the same views to the same set and digest, whatever the slice boundaries and order', () => {
    fc.assert(
      fc.property(
        fc.array(viewArb, { maxLength: 40 }),
        layoutArb,
        layoutArb,
        (views, first, second) => {
          const labels = { app: 'web' };
          const build = (layout: typeof first): ServiceEndpointSets => {
            const sets = new ServiceEndpointSets();
            const slices = inOrder(
              sliceUp(views, layout.buckets, layout.salt, labels),
              layout.order,
            );
            if (layout.byRelist) sets.replaceScope(null, slices, 0);
            else for (const slice of slices) sets.upsertSlice(slice, 0);
            return sets;
          };
          const [a, b] = [build(first), build(second)];
          expect(snapshot(a)).toEqual(snapshot(b));
          expect(digests(a)).toEqual(digests(b));
          expectDigestsConsistent(a);
        },
      ),
      { numRuns: 300 },
    );
  });

  // A random life of a few services in two namespaces: slices come, change, move between
  // services, lose their service label, go, and whole namespaces are re-listed.
  const namespaces = ['shop', 'blog'] as const;
  const sliceSpecArb = fc
    .record({
      namespace: fc.constantFrom(...namespaces),
      name: fc.constantFrom('s1', 's2', 's3', 's4'),
      service: fc.constantFrom('web', 'web', 'api', null),
      family: fc.constantFrom(...families, 'FQDN' as const),
      portSet: fc.nat(portSets.length - 1),
      labels: fc.constantFrom<Record<string, string>>({}, { tier: 'a' }, { tier: 'b' }),
    })
    .chain((spec) =>
      fc
        .array(endpointArb(spec.family === 'IPv6' ? 'IPv6' : 'IPv4'), { maxLength: 6 })
        .map((endpoints) =>
          endpointSlice({
            namespace: spec.namespace,
            name: spec.name,
            service: spec.service,
            addressType: spec.family,
            labels: spec.labels,
            ports: portSets[spec.portSet],
            endpoints,
          }),
        ),
    );
  type Operation =
    | { kind: 'upsert'; slice: V1EndpointSlice }
    | { kind: 'delete'; slice: V1EndpointSlice }
    | { kind: 'relist'; scope: string | null; slices: V1EndpointSlice[] };
  const operationArb: fc.Arbitrary<Operation> = fc.oneof(
    { weight: 5, arbitrary: sliceSpecArb.map((slice) => ({ kind: 'upsert' as const, slice })) },
    { weight: 2, arbitrary: sliceSpecArb.map((slice) => ({ kind: 'delete' as const, slice })) },
    {
      weight: 1,
      arbitrary: fc
        .record({
          scope: fc.constantFrom(null, ...namespaces),
          slices: fc.array(sliceSpecArb, { maxLength: 6 }),
        })
        .map(({ scope, slices }) => ({
          kind: 'relist' as const,
          scope,
          slices: slices.filter((s) => scope === null || s.metadata?.namespace === scope),
        })),
    },
  );
  const keyOf = (slice: V1EndpointSlice) => `${slice.metadata?.namespace}/${slice.metadata?.name}`;

  it('emits changes that, applied to the previous state, reproduce the new one exactly', () => {
    fc.assert(
      fc.property(
        fc.array(operationArb, { maxLength: 30 }),
        fc.boolean(),
        (operations, includeUnnamedSlices) => {
          const sets = new ServiceEndpointSets({ includeUnnamedSlices });
          const mirror = new Map<string, ServiceMirror>();
          // What the API server holds, to check the incremental state against a fresh build.
          const cluster = new Map<string, V1EndpointSlice>();
          for (const [step, operation] of operations.entries()) {
            let changes;
            if (operation.kind === 'upsert') {
              cluster.set(keyOf(operation.slice), operation.slice);
              changes = sets.upsertSlice(operation.slice, step);
            } else if (operation.kind === 'delete') {
              cluster.delete(keyOf(operation.slice));
              changes = sets.deleteSlice(operation.slice, step);
            } else {
              for (const [key, slice] of cluster) {
                if (operation.scope === null || slice.metadata?.namespace === operation.scope) {
                  cluster.delete(key);
                }
              }
              for (const slice of operation.slices) cluster.set(keyOf(slice), slice);
              changes = sets.replaceScope(operation.scope, operation.slices, step);
            }
            expect(changes.every((c) => c.observedAtMs === step)).toBe(true);
            applyChanges(mirror, changes, sets);
            expect(mirror).toEqual(snapshot(sets));
            expectDigestsConsistent(sets);

            const fresh = new ServiceEndpointSets({ includeUnnamedSlices });
            fresh.replaceScope(null, [...cluster.values()], step);
            expect(snapshot(sets)).toEqual(snapshot(fresh));
            expect(digests(sets)).toEqual(digests(fresh));
            expect(sets.endpointCount).toBe(fresh.endpointCount);
            expect(sets.serviceCount).toBe(fresh.serviceCount);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

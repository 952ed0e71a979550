import { describe, expect, it } from 'vitest';
import {
  ServiceEndpointSets,
  type ServiceEndpointsChange,
} from '../../../agent/aggregate/service-endpoint-sets.js';
import type { EndpointRecord } from '../../../shared/index.js';
import {
  applyChanges,
  endpointSlice,
  expectDigestsConsistent,
  httpPort,
  ipv4,
  podEndpoint,
  snapshot,
} from './endpoint-slice-fixtures.js';

const web = { namespace: 'shop', name: 'web' };
const now = 1_790_000_000_000;

function addresses(sets: ServiceEndpointSets, service = web): string[] {
  return [...(sets.get(service)?.endpoints.keys() ?? [])].sort();
}

function record(sets: ServiceEndpointSets, address: string, service = web): EndpointRecord {
  const found = sets.get(service)?.endpoints.get(address);
  if (found === undefined) throw new Error(`${address} is not in ${service.name}`);
  return found;
}

function only(changes: ServiceEndpointsChange[]): ServiceEndpointsChange {
  expect(changes).toHaveLength(1);
  return changes[0]!;
}

describe('ServiceEndpointSets', () => {
  describe('reading slices', () => {
    it('resolves nil conditions as the API documents: ready and serving true, terminating false', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          endpoints: [
            { addresses: ['10.0.0.1'] },
            { addresses: ['10.0.0.2'], conditions: { ready: false, terminating: true } },
            { addresses: ['10.0.0.3'], conditions: { serving: false } },
          ],
        }),
        now,
      );
      const conditions = (a: string) => {
        const { ready, serving, terminating } = record(sets, a);
        return { ready, serving, terminating };
      };
      expect(conditions('10.0.0.1')).toEqual({ ready: true, serving: true, terminating: false });
      expect(conditions('10.0.0.2')).toEqual({ ready: false, serving: true, terminating: true });
      expect(conditions('10.0.0.3')).toEqual({ ready: true, serving: false, terminating: false });
    });

    it("takes zone, node and the pod, whose namespace defaults to the slice's", () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          endpoints: [
            podEndpoint('10.0.0.1', 'ready', { zone: 'eu-west-1b', nodeName: 'node-7' }),
            podEndpoint('10.0.0.2', 'ready', {
              targetRef: { kind: 'Pod', name: 'elsewhere', namespace: 'other' },
            }),
            { addresses: ['10.0.0.3'], targetRef: { kind: 'Node', name: 'node-3' } },
          ],
        }),
        now,
      );
      expect(record(sets, '10.0.0.1')).toMatchObject({
        zone: 'eu-west-1b',
        node: 'node-7',
        pod: { namespace: 'shop', name: 'pod-10.0.0.1' },
      });
      expect(record(sets, '10.0.0.2').pod).toEqual({ namespace: 'other', name: 'elsewhere' });
      expect(record(sets, '10.0.0.3')).toMatchObject({ zone: '', node: '', pod: undefined });
    });

    it('sorts ports and defaults protocol to TCP, name and appProtocol to empty', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          ports: [
            { name: 'metrics', port: 9090, appProtocol: 'http' },
            { name: 'dns', port: 53, protocol: 'UDP' },
            { name: 'dns', port: 53 },
            { name: 'any' }, // nil port: not derived from a Service, cannot be a target
          ],
          endpoints: [podEndpoint('10.0.0.1')],
        }),
        now,
      );
      expect(record(sets, '10.0.0.1').ports).toEqual([
        { name: 'dns', port: 53, protocol: 'TCP', appProtocol: '' },
        { name: 'dns', port: 53, protocol: 'UDP', appProtocol: '' },
        { name: 'metrics', port: 9090, protocol: 'TCP', appProtocol: 'http' },
      ]);
      sets.upsertSlice(
        endpointSlice({
          name: 'web-b',
          ports: [{ port: 80 }],
          endpoints: [podEndpoint('10.0.0.2')],
        }),
        now,
      );
      expect(record(sets, '10.0.0.2').ports).toEqual([
        { name: '', port: 80, protocol: 'TCP', appProtocol: '' },
      ]);
    });

    it('keys endpoints by canonical address', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          addressType: 'IPv6',
          endpoints: [podEndpoint('FD00:0:0:0:0:0:0:A')],
        }),
        now,
      );
      expect(addresses(sets)).toEqual(['fd00::a']);
      expect(record(sets, 'fd00::a').address).toBe('fd00::a');
    });

    it('skips and counts invalid addresses and addresses of the wrong family, never throwing', () => {
      const sets = new ServiceEndpointSets();
      const changes = sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          endpoints: [
            podEndpoint('10.0.0.1'),
            podEndpoint('10.0.0.256'),
            podEndpoint('010.0.0.2'),
            podEndpoint('fd00::1'), // in an IPv4 slice
            podEndpoint('not-an-ip'),
            { addresses: [] },
          ],
        }),
        now,
      );
      expect(only(changes).upserts.map((e) => e.address)).toEqual(['10.0.0.1']);
      expect(sets.counters.invalidEndpoints).toBe(5);
    });

    it('uses the first address of an endpoint and counts the others', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          endpoints: [podEndpoint('10.0.0.1', 'ready', { addresses: ['10.0.0.1', '10.0.0.9'] })],
        }),
        now,
      );
      expect(addresses(sets)).toEqual(['10.0.0.1']);
      expect(sets.counters.extraAddresses).toBe(1);
    });

    it('ignores and counts FQDN slices', () => {
      const sets = new ServiceEndpointSets();
      const changes = sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          addressType: 'FQDN',
          endpoints: [{ addresses: ['web.example.com'] }],
        }),
        now,
      );
      expect(changes).toEqual([]);
      expect(sets.serviceCount).toBe(0);
      expect(sets.counters.ignoredSlices).toBe(1);
    });

    it('ignores slices without a service name unless configured', () => {
      const unnamed = endpointSlice({
        name: 'custom-slice',
        service: null,
        endpoints: [podEndpoint('10.0.0.1')],
      });
      const ignoring = new ServiceEndpointSets();
      expect(ignoring.upsertSlice(unnamed, now)).toEqual([]);
      expect(ignoring.counters.ignoredSlices).toBe(1);

      const including = new ServiceEndpointSets({ includeUnnamedSlices: true });
      const change = only(including.upsertSlice(unnamed, now));
      expect(change.service).toEqual({ namespace: 'shop', name: 'custom-slice' });
      expect(change.upserts.map((e) => e.address)).toEqual(['10.0.0.1']);
    });

    it('withdraws the endpoints of a slice that loses its service-name label', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(endpointSlice({ name: 'web-a', endpoints: [podEndpoint('10.0.0.1')] }), now);
      const change = only(
        sets.upsertSlice(
          endpointSlice({ name: 'web-a', service: null, endpoints: [podEndpoint('10.0.0.1')] }),
          now,
        ),
      );
      expect(change).toMatchObject({ deleted: true, removals: ['10.0.0.1'] });
      expect(sets.serviceCount).toBe(0);
    });
  });

  describe('merging slices', () => {
    it('merges the slices of a service into one set and keeps services apart', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(endpointSlice({ name: 'web-a', endpoints: [podEndpoint('10.0.0.1')] }), now);
      sets.upsertSlice(endpointSlice({ name: 'web-b', endpoints: [podEndpoint('10.0.0.2')] }), now);
      sets.upsertSlice(
        endpointSlice({ name: 'api-a', service: 'api', endpoints: [podEndpoint('10.0.0.1')] }),
        now,
      );
      sets.upsertSlice(
        endpointSlice({ namespace: 'blog', name: 'web-a', endpoints: [podEndpoint('10.0.0.3')] }),
        now,
      );
      expect(addresses(sets)).toEqual(['10.0.0.1', '10.0.0.2']);
      expect(addresses(sets, { namespace: 'shop', name: 'api' })).toEqual(['10.0.0.1']);
      expect(addresses(sets, { namespace: 'blog', name: 'web' })).toEqual(['10.0.0.3']);
      expect(sets.serviceCount).toBe(3);
      expect(sets.endpointCount).toBe(4);
      expectDigestsConsistent(sets);
    });

    it('counts an address listed by two slices once, the most-ready view winning in either order', () => {
      const slow = endpointSlice({
        name: 'web-a',
        endpoints: [podEndpoint('10.0.0.1', 'not-ready')],
      });
      const fast = endpointSlice({ name: 'web-b', endpoints: [podEndpoint('10.0.0.1', 'ready')] });
      for (const order of [
        [slow, fast],
        [fast, slow],
      ]) {
        const sets = new ServiceEndpointSets();
        for (const slice of order) sets.upsertSlice(slice, now);
        expect(addresses(sets)).toEqual(['10.0.0.1']);
        expect(record(sets, '10.0.0.1').ready).toBe(true);
        expect(sets.endpointCount).toBe(1);
        expectDigestsConsistent(sets);
      }
    });

    it('hands an address over to the new slice when the controller moves it, without a removal', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          endpoints: [podEndpoint('10.0.0.1'), podEndpoint('10.0.0.2')],
        }),
        now,
      );
      // The controller writes the address into its new slice first, then drops it from the old.
      expect(
        sets.upsertSlice(
          endpointSlice({ name: 'web-b', endpoints: [podEndpoint('10.0.0.2')] }),
          now,
        ),
      ).toEqual([]);
      expect(
        sets.upsertSlice(
          endpointSlice({ name: 'web-a', endpoints: [podEndpoint('10.0.0.1')] }),
          now,
        ),
      ).toEqual([]);
      expect(addresses(sets)).toEqual(['10.0.0.1', '10.0.0.2']);
      // Attributed to web-b now: deleting web-a leaves it in place.
      const change = only(sets.deleteSlice(endpointSlice({ name: 'web-a' }), now));
      expect(change).toMatchObject({ removals: ['10.0.0.1'], upserts: [], deleted: false });
      expect(addresses(sets)).toEqual(['10.0.0.2']);
    });

    it("lets the other slice's view take over when the winning slice drops the address", () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          endpoints: [podEndpoint('10.0.0.1', 'terminating-serving')],
        }),
        now,
      );
      sets.upsertSlice(
        endpointSlice({ name: 'web-b', endpoints: [podEndpoint('10.0.0.1', 'ready')] }),
        now,
      );
      expect(record(sets, '10.0.0.1').ready).toBe(true);
      const change = only(sets.upsertSlice(endpointSlice({ name: 'web-b', endpoints: [] }), now));
      expect(change.removals).toEqual([]);
      expect(change.upserts).toMatchObject([
        { address: '10.0.0.1', ready: false, serving: true, terminating: true },
      ]);
      expectDigestsConsistent(sets);
    });

    it('ranks ready over serving over terminating-not-serving', () => {
      const phases = ['terminating', 'terminating-serving', 'ready'] as const;
      for (const [i, weaker] of phases.entries()) {
        for (const stronger of phases.slice(i + 1)) {
          const sets = new ServiceEndpointSets();
          sets.upsertSlice(
            endpointSlice({ name: 'web-a', endpoints: [podEndpoint('10.0.0.1', stronger)] }),
            now,
          );
          sets.upsertSlice(
            endpointSlice({ name: 'web-b', endpoints: [podEndpoint('10.0.0.1', weaker)] }),
            now,
          );
          const { serving, ready } = record(sets, '10.0.0.1');
          expect({ serving, ready }, `${stronger} over ${weaker}`).toEqual({
            serving: true,
            ready: stronger === 'ready',
          });
        }
      }
    });

    it('reports a pod turning terminating as a changed record, and its removal when it goes', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          endpoints: [podEndpoint('10.0.0.1'), podEndpoint('10.0.0.2')],
        }),
        now,
      );
      const draining = only(
        sets.upsertSlice(
          endpointSlice({
            name: 'web-a',
            endpoints: [podEndpoint('10.0.0.1'), podEndpoint('10.0.0.2', 'terminating-serving')],
          }),
          now + 1,
        ),
      );
      expect(draining).toMatchObject({
        upserts: [{ address: '10.0.0.2', ready: false, serving: true, terminating: true }],
        removals: [],
        observedAtMs: now + 1,
      });
      const gone = only(
        sets.upsertSlice(
          endpointSlice({ name: 'web-a', endpoints: [podEndpoint('10.0.0.1')] }),
          now,
        ),
      );
      expect(gone).toMatchObject({ upserts: [], removals: ['10.0.0.2'], deleted: false });
    });

    it('merges the IPv4 and IPv6 slices of a dual-stack service into one set', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({ name: 'web-v4', endpoints: [podEndpoint('10.0.0.1')] }),
        now,
      );
      sets.upsertSlice(
        endpointSlice({ name: 'web-v6', addressType: 'IPv6', endpoints: [podEndpoint('fd00::1')] }),
        now,
      );
      expect(addresses(sets)).toEqual(['10.0.0.1', 'fd00::1']);
      expect(sets.serviceCount).toBe(1);
      const change = only(sets.deleteSlice(endpointSlice({ name: 'web-v4' }), now));
      expect(change).toMatchObject({ removals: ['10.0.0.1'], deleted: false });
      expect(addresses(sets)).toEqual(['fd00::1']);
      expectDigestsConsistent(sets);
    });

    it('yields exactly the right set for a 2,500-endpoint service across 25 slices', () => {
      const sets = new ServiceEndpointSets();
      const size = 2_500;
      const perSlice = 100;
      const slices = Array.from({ length: size / perSlice }, (_, s) =>
        endpointSlice({
          name: `web-${s.toString().padStart(2, '0')}`,
          endpoints: Array.from({ length: perSlice }, (_, i) =>
            podEndpoint(ipv4(s * perSlice + i), i % 10 === 0 ? 'terminating' : 'ready'),
          ),
        }),
      );
      const mirror = snapshot(sets);
      for (const slice of slices) applyChanges(mirror, sets.upsertSlice(slice, now), sets);
      expect(addresses(sets)).toEqual(Array.from({ length: size }, (_, i) => ipv4(i)).sort());
      expect(sets.endpointCount).toBe(size);
      expect([...sets.get(web)!.endpoints.values()].filter((e) => e.ready)).toHaveLength(2_250);
      expect(mirror).toEqual(snapshot(sets));
      expectDigestsConsistent(sets);

      // Scale down by one pod in one slice: one removal, nothing else.
      const shrunk = endpointSlice({
        name: 'web-07',
        endpoints: Array.from({ length: perSlice - 1 }, (_, i) =>
          podEndpoint(ipv4(7 * perSlice + i), i % 10 === 0 ? 'terminating' : 'ready'),
        ),
      });
      expect(only(sets.upsertSlice(shrunk, now))).toMatchObject({
        upserts: [],
        removals: [ipv4(7 * perSlice + perSlice - 1)],
      });
      expect(sets.endpointCount).toBe(size - 1);
      expectDigestsConsistent(sets);
    });
  });

  describe('labels', () => {
    it("takes the service's labels from its first slice by name, without the controller's labels", () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(endpointSlice({ name: 'web-b', labels: { app: 'web', tier: 'b' } }), now);
      expect(sets.get(web)?.labels).toEqual({ app: 'web', tier: 'b' });
      const change = only(
        sets.upsertSlice(endpointSlice({ name: 'web-a', labels: { app: 'web', tier: 'a' } }), now),
      );
      expect(change).toMatchObject({ labelsChanged: true, upserts: [], removals: [] });
      expect(sets.get(web)?.labels).toEqual({ app: 'web', tier: 'a' });
      expectDigestsConsistent(sets);
    });

    it('reports a label change only when the labels of the first slice change', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(endpointSlice({ name: 'web-a', labels: { app: 'web' } }), now);
      sets.upsertSlice(endpointSlice({ name: 'web-b', labels: { app: 'web' } }), now);
      expect(
        sets.upsertSlice(endpointSlice({ name: 'web-b', labels: { app: 'other' } }), now),
      ).toEqual([]);
      const change = only(
        sets.upsertSlice(endpointSlice({ name: 'web-a', labels: { app: 'web', v: '2' } }), now),
      );
      expect(change.labelsChanged).toBe(true);
      expectDigestsConsistent(sets);
    });

    it("follows the next slice's labels when the first slice goes", () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(endpointSlice({ name: 'web-a', labels: { v: 'a' } }), now);
      sets.upsertSlice(endpointSlice({ name: 'web-c', labels: { v: 'c' } }), now);
      sets.upsertSlice(endpointSlice({ name: 'web-b', labels: { v: 'b' } }), now);
      expect(only(sets.deleteSlice(endpointSlice({ name: 'web-a' }), now)).labelsChanged).toBe(
        true,
      );
      expect(sets.get(web)?.labels).toEqual({ v: 'b' });
      expectDigestsConsistent(sets);
    });
  });

  describe('changes', () => {
    it('reports a new service, even without endpoints, with its labels', () => {
      const sets = new ServiceEndpointSets();
      expect(sets.upsertSlice(endpointSlice({ name: 'web-a' }), now)).toEqual([
        {
          service: web,
          upserts: [],
          removals: [],
          labelsChanged: true,
          deleted: false,
          observedAtMs: now,
        },
      ]);
      expect(sets.get(web)?.endpoints.size).toBe(0);
    });

    it('reports nothing for a slice update that changes only its resourceVersion', () => {
      const sets = new ServiceEndpointSets();
      const endpoints = [podEndpoint('10.0.0.1'), podEndpoint('10.0.0.2')];
      sets.upsertSlice(endpointSlice({ name: 'web-a', endpoints, resourceVersion: '1' }), now);
      expect(
        sets.upsertSlice(
          endpointSlice({
            name: 'web-a',
            endpoints: structuredClone(endpoints),
            resourceVersion: '2',
          }),
          now,
        ),
      ).toEqual([]);
    });

    it('reports only the endpoints that changed', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({
          name: 'web-a',
          endpoints: [podEndpoint('10.0.0.1'), podEndpoint('10.0.0.2'), podEndpoint('10.0.0.3')],
        }),
        now,
      );
      const change = only(
        sets.upsertSlice(
          endpointSlice({
            name: 'web-a',
            endpoints: [
              podEndpoint('10.0.0.1'),
              podEndpoint('10.0.0.2', 'ready', { zone: 'eu-west-1c' }),
              podEndpoint('10.0.0.4'),
            ],
          }),
          now,
        ),
      );
      expect(change.upserts.map((e) => e.address).sort()).toEqual(['10.0.0.2', '10.0.0.4']);
      expect(change.removals).toEqual(['10.0.0.3']);
      expect(change.labelsChanged).toBe(false);
    });

    it('reports a deleted service with every address removed', () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(endpointSlice({ name: 'web-a', endpoints: [podEndpoint('10.0.0.1')] }), now);
      sets.upsertSlice(
        endpointSlice({
          name: 'web-b',
          endpoints: [podEndpoint('10.0.0.1'), podEndpoint('10.0.0.2')],
        }),
        now,
      );
      sets.deleteSlice(endpointSlice({ name: 'web-a' }), now);
      const change = only(sets.deleteSlice(endpointSlice({ name: 'web-b' }), now));
      expect(change).toMatchObject({ deleted: true, upserts: [], labelsChanged: false });
      expect(change.removals.sort()).toEqual(['10.0.0.1', '10.0.0.2']);
      expect(sets.get(web)).toBeUndefined();
      expect(sets.serviceCount).toBe(0);
      expect(sets.endpointCount).toBe(0);
    });

    it('reports nothing when an unknown slice is deleted', () => {
      const sets = new ServiceEndpointSets();
      expect(sets.deleteSlice(endpointSlice({ name: 'web-a' }), now)).toEqual([]);
    });

    it("moves the endpoints to the other service when a slice's service label changes", () => {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(
        endpointSlice({ name: 'shared', endpoints: [podEndpoint('10.0.0.1')] }),
        now,
      );
      const changes = sets.upsertSlice(
        endpointSlice({ name: 'shared', service: 'api', endpoints: [podEndpoint('10.0.0.1')] }),
        now,
      );
      expect(changes).toHaveLength(2);
      expect(changes[0]).toMatchObject({ service: web, deleted: true, removals: ['10.0.0.1'] });
      expect(changes[1]).toMatchObject({
        service: { namespace: 'shop', name: 'api' },
        upserts: [{ address: '10.0.0.1' }],
        labelsChanged: true,
      });
    });
  });

  describe('replaceScope', () => {
    function populated(): ServiceEndpointSets {
      const sets = new ServiceEndpointSets();
      sets.upsertSlice(endpointSlice({ name: 'web-a', endpoints: [podEndpoint('10.0.0.1')] }), now);
      sets.upsertSlice(endpointSlice({ name: 'web-b', endpoints: [podEndpoint('10.0.0.2')] }), now);
      sets.upsertSlice(
        endpointSlice({ namespace: 'blog', name: 'web-a', endpoints: [podEndpoint('10.1.0.1')] }),
        now,
      );
      return sets;
    }

    it('reports nothing when a re-list finds the same state', () => {
      const sets = populated();
      const before = snapshot(sets);
      const relisted = [
        endpointSlice({
          name: 'web-b',
          endpoints: [podEndpoint('10.0.0.2')],
          resourceVersion: '9',
        }),
        endpointSlice({
          name: 'web-a',
          endpoints: [podEndpoint('10.0.0.1')],
          resourceVersion: '9',
        }),
        endpointSlice({ namespace: 'blog', name: 'web-a', endpoints: [podEndpoint('10.1.0.1')] }),
      ];
      expect(sets.replaceScope(null, relisted, now)).toEqual([]);
      expect(sets.replaceScope('shop', relisted.slice(0, 2), now)).toEqual([]);
      expect(snapshot(sets)).toEqual(before);
    });

    it('deletes the slices of the namespace that a re-list no longer has, and no others', () => {
      const sets = populated();
      const change = only(
        sets.replaceScope(
          'shop',
          [endpointSlice({ name: 'web-a', endpoints: [podEndpoint('10.0.0.1')] })],
          now,
        ),
      );
      expect(change).toMatchObject({ service: web, removals: ['10.0.0.2'], upserts: [] });
      expect(addresses(sets, { namespace: 'blog', name: 'web' })).toEqual(['10.1.0.1']);
    });

    it('deletes the missing slices of every namespace with the null scope', () => {
      const sets = populated();
      const changes = sets.replaceScope(
        null,
        [endpointSlice({ name: 'web-a', endpoints: [podEndpoint('10.0.0.1')] })],
        now,
      );
      expect(changes).toHaveLength(2);
      expect(changes).toContainEqual(
        expect.objectContaining({ service: web, removals: ['10.0.0.2'], deleted: false }),
      );
      expect(changes).toContainEqual(
        expect.objectContaining({
          service: { namespace: 'blog', name: 'web' },
          removals: ['10.1.0.1'],
          deleted: true,
        }),
      );
      expect(sets.serviceCount).toBe(1);
    });

    it('reports the net difference once per service, as when slices were renamed meanwhile', () => {
      const sets = populated();
      const changes = sets.replaceScope(
        'shop',
        [
          endpointSlice({
            name: 'web-x',
            endpoints: [podEndpoint('10.0.0.1'), podEndpoint('10.0.0.2', 'terminating')],
          }),
        ],
        now,
      );
      expect(changes).toEqual([
        {
          service: web,
          upserts: [expect.objectContaining({ address: '10.0.0.2', terminating: true })],
          removals: [],
          labelsChanged: false,
          deleted: false,
          observedAtMs: now,
        },
      ]);
      expectDigestsConsistent(sets);
    });
  });

  it('keeps its counts', () => {
    const sets = new ServiceEndpointSets();
    sets.upsertSlice(
      endpointSlice({ name: 'web-a', ports: [httpPort], endpoints: [podEndpoint('10.0.0.1')] }),
      now,
    );
    sets.upsertSlice(
      endpointSlice({ name: 'api-a', service: 'api', endpoints: [podEndpoint('10.0.0.1')] }),
      now,
    );
    expect({ services: sets.serviceCount, endpoints: sets.endpointCount }).toEqual({
      services: 2,
      endpoints: 2,
    });
    expect([...sets.services()].map((s) => s.service.name).sort()).toEqual(['api', 'web']);
  });
});

import type { DiscoveryV1EndpointPort, V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import { expect } from 'vitest';
import type {
  ServiceEndpointSets,
  ServiceEndpointsChange,
} from '../../../agent/aggregate/service-endpoint-sets.js';
import {
  digestHex,
  endpointDigest,
  sameEndpoint,
  serviceKeyString,
  type EndpointRecord,
} from '../../../shared/index.js';

/** What a test says about one slice; the rest is filled in as the EndpointSlice controller would. */
export interface SliceSpec {
  namespace?: string;
  name: string;
  /** The `kubernetes.io/service-name` label; null leaves it out. @default 'web' */
  service?: string | null;
  addressType?: string;
  /** Labels besides the two the controller sets. */
  labels?: Record<string, string>;
  ports?: DiscoveryV1EndpointPort[];
  endpoints?: V1Endpoint[];
  resourceVersion?: string;
}

export const httpPort: DiscoveryV1EndpointPort = { name: 'http', port: 8080, protocol: 'TCP' };

/** An EndpointSlice as the EndpointSlice controller writes it. */
export function endpointSlice(spec: SliceSpec): V1EndpointSlice {
  const service = spec.service === undefined ? 'web' : spec.service;
  const labels: Record<string, string> = {
    ...spec.labels,
    'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
  };
  if (service !== null) labels['kubernetes.io/service-name'] = service;
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      namespace: spec.namespace ?? 'shop',
      name: spec.name,
      labels,
      resourceVersion: spec.resourceVersion ?? '1',
    },
    addressType: spec.addressType ?? 'IPv4',
    ports: spec.ports ?? [httpPort],
    endpoints: spec.endpoints ?? [],
  };
}

/** Conditions as the controller sets them for a pod. */
export type PodPhase = 'ready' | 'not-ready' | 'terminating-serving' | 'terminating';

const conditionsOf: Record<PodPhase, V1Endpoint['conditions']> = {
  ready: { ready: true, serving: true, terminating: false },
  'not-ready': { ready: false, serving: false, terminating: false },
  'terminating-serving': { ready: false, serving: true, terminating: true },
  terminating: { ready: false, serving: false, terminating: true },
};

/** One endpoint backed by pod `pod-<address>`, ready unless told otherwise. */
export function podEndpoint(
  address: string,
  phase: PodPhase = 'ready',
  more: Partial<V1Endpoint> = {},
): V1Endpoint {
  return {
    addresses: [address],
    conditions: conditionsOf[phase],
    nodeName: 'node-1',
    zone: 'eu-west-1a',
    targetRef: { kind: 'Pod', name: `pod-${address}` },
    ...more,
  };
}

/** `10.<a>.<b>.<c>` for the i-th pod. */
export function ipv4(i: number): string {
  return `10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`;
}

/** Labels and endpoints of one service, as a consumer of the change stream rebuilds them. */
export interface ServiceMirror {
  labels: Readonly<Record<string, string>>;
  endpoints: Map<string, EndpointRecord>;
}

/** The state of every service, by `namespace/name`. */
export function snapshot(sets: ServiceEndpointSets): Map<string, ServiceMirror> {
  const result = new Map<string, ServiceMirror>();
  for (const s of sets.services()) {
    result.set(serviceKeyString(s.service), { labels: s.labels, endpoints: new Map(s.endpoints) });
  }
  return result;
}

/**
 * Applies changes to a mirror as the publisher would, asserting that each one is exact: every
 * upsert is new or different, every removal was there, a deletion removes everything.
 */
export function applyChanges(
  mirror: Map<string, ServiceMirror>,
  changes: readonly ServiceEndpointsChange[],
  sets: ServiceEndpointSets,
): void {
  const seen = new Set<string>();
  for (const change of changes) {
    const key = serviceKeyString(change.service);
    expect(seen.has(key), `one change per service and mutation (${key})`).toBe(false);
    seen.add(key);
    expect(
      change.upserts.length + change.removals.length > 0 || change.labelsChanged || change.deleted,
      `an empty change for ${key}`,
    ).toBe(true);
    let service = mirror.get(key);
    if (service === undefined) {
      expect(change.deleted, `deletion of unknown service ${key}`).toBe(false);
      expect(change.labelsChanged, `a new service reports its labels (${key})`).toBe(true);
      service = { labels: {}, endpoints: new Map() };
      mirror.set(key, service);
    }
    for (const address of change.removals) {
      expect(service.endpoints.has(address), `removal of absent ${address} in ${key}`).toBe(true);
      service.endpoints.delete(address);
    }
    for (const record of change.upserts) {
      const previous = service.endpoints.get(record.address);
      expect(
        previous !== undefined && sameEndpoint(previous, record),
        `no-op upsert of ${record.address} in ${key}`,
      ).toBe(false);
      service.endpoints.set(record.address, record);
    }
    if (change.deleted) {
      expect(service.endpoints.size, `${key} deleted with endpoints left`).toBe(0);
      expect(change.upserts).toEqual([]);
      mirror.delete(key);
    } else if (change.labelsChanged) {
      service.labels = sets.get(change.service)?.labels ?? {};
    }
  }
}

/** Every service's incremental digest equals the digest computed from scratch. */
export function expectDigestsConsistent(sets: ServiceEndpointSets): void {
  for (const s of sets.services()) {
    expect(digestHex(s.digest()), serviceKeyString(s.service)).toBe(
      digestHex(endpointDigest(s.labels, s.endpoints.values())),
    );
  }
}

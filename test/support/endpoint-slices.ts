import type { V1EndpointSlice } from '@kubernetes/client-node';

/** One endpoint of a test slice. */
export interface TestEndpoint {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  zone?: string;
  node?: string;
  pod?: string;
}

/** A test slice, shaped as the EndpointSlice controller writes them. */
export interface TestSliceSpec {
  namespace: string;
  service: string;
  name: string;
  addressType?: 'IPv4' | 'IPv6';
  endpoints: TestEndpoint[];
  ports?: { name: string; port: number; protocol?: string }[];
  labels?: Record<string, string>;
}

/** An EndpointSlice object as the EndpointSlice controller would write it. */
export function endpointSlice(spec: TestSliceSpec): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      namespace: spec.namespace,
      name: spec.name,
      labels: {
        ...spec.labels,
        'kubernetes.io/service-name': spec.service,
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
      },
    },
    addressType: spec.addressType ?? 'IPv4',
    endpoints: spec.endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: {
        ready: e.ready ?? true,
        serving: e.serving ?? e.ready ?? true,
        terminating: e.terminating ?? false,
      },
      zone: e.zone,
      nodeName: e.node,
      targetRef:
        e.pod === undefined ? undefined : { kind: 'Pod', namespace: spec.namespace, name: e.pod },
    })),
    ports: (spec.ports ?? [{ name: 'http', port: 8080 }]).map((p) => ({
      name: p.name,
      port: p.port,
      protocol: p.protocol ?? 'TCP',
    })),
  };
}

/** `count` IPv4 endpoints 10.<block>.x.y with pods and zones, split into slices of `perSlice`. */
export function manyEndpointSlices(
  namespace: string,
  service: string,
  count: number,
  perSlice: number,
  block = 1,
): V1EndpointSlice[] {
  const slices: V1EndpointSlice[] = [];
  for (let start = 0; start < count; start += perSlice) {
    const endpoints: TestEndpoint[] = [];
    for (let i = start; i < Math.min(count, start + perSlice); i++) {
      endpoints.push({
        ip: `10.${block}.${Math.floor(i / 250)}.${(i % 250) + 1}`,
        zone: `zone-${i % 3}`,
        node: `node-${i % 20}`,
        pod: `${service}-${i.toString(36).padStart(5, '0')}`,
      });
    }
    slices.push(
      endpointSlice({ namespace, service, name: `${service}-${slices.length}`, endpoints }),
    );
  }
  return slices;
}

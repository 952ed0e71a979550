import type { PodReference, ServiceKey } from '../generated/tgfed/v1/endpoint.js';

/** Protocol of an endpoint port, as in Kubernetes. */
export type PortProtocol = 'TCP' | 'UDP' | 'SCTP';

/** One port of an endpoint (EndpointSlice `ports[]`). */
export interface EndpointPort {
  /** '' for the single unnamed port of a service. */
  readonly name: string;
  readonly port: number;
  readonly protocol: PortProtocol;
  /** '' when unset. */
  readonly appProtocol: string;
}

/**
 * One endpoint of a service: the content that is federated. Two records with equal fields are
 * the same endpoint state; the digest is computed over exactly these fields.
 */
export interface EndpointRecord {
  /** Canonical text form (`canonicalAddress`); identifies the endpoint in its service. */
  readonly address: string;
  /** Sorted by name, then port, then protocol (`sortPorts`). */
  readonly ports: readonly EndpointPort[];
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  /** '' when unknown. */
  readonly zone: string;
  /** '' when unknown. */
  readonly node: string;
  /** The pod behind the endpoint, with its full namespace. */
  readonly pod: PodReference | undefined;
}

/** `namespace/name`, the key of a service in maps and logs. */
export function serviceKeyString(key: ServiceKey): string {
  return `${key.namespace}/${key.name}`;
}

/** Parses `namespace/name`. */
export function parseServiceKey(text: string): ServiceKey {
  const slash = text.indexOf('/');
  if (slash <= 0 || slash === text.length - 1 || text.indexOf('/', slash + 1) !== -1) {
    throw new Error(`not a service key (namespace/name): ${JSON.stringify(text)}`);
  }
  return { namespace: text.slice(0, slash), name: text.slice(slash + 1) };
}

function comparePorts(a: EndpointPort, b: EndpointPort): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  if (a.port !== b.port) return a.port - b.port;
  if (a.protocol !== b.protocol) return a.protocol < b.protocol ? -1 : 1;
  return a.appProtocol < b.appProtocol ? -1 : a.appProtocol > b.appProtocol ? 1 : 0;
}

/** Ports in their canonical order. */
export function sortPorts(ports: readonly EndpointPort[]): EndpointPort[] {
  return [...ports].sort(comparePorts);
}

/** Canonical string of a sorted port list; equal lists give equal keys. */
export function portsKey(ports: readonly EndpointPort[]): string {
  return ports
    .map((p) => `${p.name}\u0000${p.port}\u0000${p.protocol}\u0000${p.appProtocol}`)
    .join('\u0001');
}

/** True when two records describe the same endpoint state. */
export function sameEndpoint(a: EndpointRecord, b: EndpointRecord): boolean {
  return (
    a.address === b.address &&
    a.ready === b.ready &&
    a.serving === b.serving &&
    a.terminating === b.terminating &&
    a.zone === b.zone &&
    a.node === b.node &&
    a.pod?.namespace === b.pod?.namespace &&
    a.pod?.name === b.pod?.name &&
    (a.ports === b.ports || portsKey(a.ports) === portsKey(b.ports))
  );
}

import type { DiscoveryV1EndpointPort, V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import {
  InvalidAddressError,
  addressFamily,
  canonicalAddress,
  portsKey,
  sortPorts,
  type EndpointPort,
  type EndpointRecord,
  type PortProtocol,
  type ServiceKey,
} from '../../shared/index.js';

/** Label by which the EndpointSlice controller names the Service a slice belongs to. */
export const serviceNameLabel = 'kubernetes.io/service-name';

/** Label naming the controller that manages a slice; not a label of the Service. */
export const managedByLabel = 'endpointslice.kubernetes.io/managed-by';

/** Why a slice contributes nothing. */
export type IgnoredSliceReason = 'no-identity' | 'no-service-name' | 'unsupported-address-type';

/** What one EndpointSlice contributes to its service, read into the endpoint model. */
export type SliceEndpoints =
  | { readonly federated: false; readonly reason: IgnoredSliceReason }
  | {
      readonly federated: true;
      readonly service: ServiceKey;
      /** The slice's labels minus the two the controller adds (so: the Service's labels). */
      readonly labels: Readonly<Record<string, string>>;
      /** By canonical address; an address listed twice keeps its most-ready view. */
      readonly endpoints: Map<string, EndpointRecord>;
      /** Endpoints skipped: no address, an unparsable one, or one of the wrong family. */
      readonly invalidEndpoints: number;
      /** Addresses after the first of an endpoint, ignored as Kubernetes consumers do. */
      readonly extraAddresses: number;
    };

/** Options of {@link sliceEndpoints}. */
export interface SliceEndpointsOptions {
  /** Read a slice without `kubernetes.io/service-name` as service `<slice name>`. */
  readonly includeUnnamedSlices: boolean;
}

/** `namespace/name` of a slice, or undefined when its metadata lacks either. */
export function sliceKey(slice: V1EndpointSlice): string | undefined {
  const namespace = slice.metadata?.namespace;
  const name = slice.metadata?.name;
  if (!namespace || !name) return undefined;
  return `${namespace}/${name}`;
}

/** Reads an EndpointSlice into endpoint records of its service; never throws on bad content. */
export function sliceEndpoints(
  slice: V1EndpointSlice,
  options: SliceEndpointsOptions,
): SliceEndpoints {
  const namespace = slice.metadata?.namespace;
  const name = slice.metadata?.name;
  if (!namespace || !name) return { federated: false, reason: 'no-identity' };
  // FQDN slices carry host names, which cannot be IP targets.
  if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') {
    return { federated: false, reason: 'unsupported-address-type' };
  }
  const labels = slice.metadata?.labels ?? {};
  const serviceName = labels[serviceNameLabel];
  if (!serviceName && !options.includeUnnamedSlices) {
    return { federated: false, reason: 'no-service-name' };
  }

  const ports = slicePorts(slice.ports ?? []);
  const endpoints = new Map<string, EndpointRecord>();
  let invalidEndpoints = 0;
  let extraAddresses = 0;
  for (const endpoint of slice.endpoints ?? []) {
    const addresses = endpoint.addresses ?? [];
    // The API allows up to 100 addresses per endpoint but every consumer (kube-proxy included)
    // reads only the first: they are by definition fungible.
    extraAddresses += Math.max(0, addresses.length - 1);
    const address = validAddress(addresses[0], slice.addressType);
    if (address === undefined) {
      invalidEndpoints++;
      continue;
    }
    const record = endpointRecord(address, endpoint, ports, namespace);
    const other = endpoints.get(address);
    endpoints.set(address, other === undefined ? record : mostReadyView(other, record));
  }

  return {
    federated: true,
    service: { namespace, name: serviceName || name },
    labels: serviceLabels(labels),
    endpoints,
    invalidEndpoints,
    extraAddresses,
  };
}

/**
 * The view of an address that wins when two slices (or one slice twice) list it: ready, then
 * serving, then not terminating; on a tie the smaller content, so that the winner depends only
 * on the views and never on slice names, boundaries or arrival order.
 */
export function mostReadyView(a: EndpointRecord, b: EndpointRecord): EndpointRecord {
  const byRank = readiness(b) - readiness(a);
  if (byRank !== 0) return byRank < 0 ? a : b;
  return contentKey(a) <= contentKey(b) ? a : b;
}

function readiness(e: EndpointRecord): number {
  return (e.ready ? 4 : 0) + (e.serving ? 2 : 0) + (e.terminating ? 0 : 1);
}

function contentKey(e: EndpointRecord): string {
  const pod = e.pod === undefined ? '' : `${e.pod.namespace}/${e.pod.name}`;
  return [portsKey(e.ports), e.zone, e.node, pod].join('\u0002');
}

function validAddress(text: string | undefined, addressType: string): string | undefined {
  if (text === undefined) return undefined;
  try {
    const address = canonicalAddress(text);
    return addressFamily(address) === addressType ? address : undefined;
  } catch (error) {
    if (error instanceof InvalidAddressError) return undefined;
    throw error;
  }
}

function endpointRecord(
  address: string,
  endpoint: V1Endpoint,
  ports: readonly EndpointPort[],
  sliceNamespace: string,
): EndpointRecord {
  // Kubernetes' unknown (nil) conditions, as discovery.k8s.io/v1 documents them: ready and
  // serving mean true, terminating means false.
  const ready = endpoint.conditions?.ready ?? true;
  const serving = endpoint.conditions?.serving ?? true;
  const terminating = endpoint.conditions?.terminating ?? false;
  const target = endpoint.targetRef;
  return {
    address,
    ports,
    ready,
    serving,
    terminating,
    zone: endpoint.zone ?? '',
    node: endpoint.nodeName ?? '',
    pod:
      target?.kind === 'Pod' && target.name
        ? { namespace: target.namespace || sliceNamespace, name: target.name }
        : undefined,
  };
}

const protocols: ReadonlySet<string> = new Set<PortProtocol>(['TCP', 'UDP', 'SCTP']);

/** The slice's ports in canonical order, shared by all its records. */
function slicePorts(ports: readonly DiscoveryV1EndpointPort[]): readonly EndpointPort[] {
  const result: EndpointPort[] = [];
  for (const p of ports) {
    const protocol = p.protocol ?? 'TCP';
    // A nil port ("all ports", for slices not derived from a Service) cannot be a target, and
    // the API admits no other protocols.
    if (p.port === undefined || p.port === null || !protocols.has(protocol)) continue;
    result.push({
      name: p.name ?? '',
      port: p.port,
      protocol: protocol as PortProtocol,
      appProtocol: p.appProtocol ?? '',
    });
  }
  return sortPorts(result);
}

function serviceLabels(labels: Readonly<Record<string, string>>): Record<string, string> {
  // The controller copies the Service's labels onto each slice and adds these two.
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(labels)) {
    if (key !== serviceNameLabel && key !== managedByLabel) result[key] = value;
  }
  return result;
}

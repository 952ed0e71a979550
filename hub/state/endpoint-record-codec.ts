import type { EndpointPort, EndpointRecord, PortProtocol } from '../../shared/index.js';
import { StoredValueError } from './errors.js';

/**
 * The stored form of an endpoint record: the value of the address field in its service's hash.
 *
 * A short JSON array, `[flags, zone, node, ports, podName?, podNamespace?]`, flags being
 * ready|serving<<1|terminating<<2|hasPod<<3, ports `[name, port, "T"|"U"|"S", appProtocol?]`,
 * and the pod namespace omitted when it is the service's (the usual case). About 60–80 bytes
 * for a typical pod: small enough for the 64 MB at 100k endpoints budget (the hash entry
 * overhead dominates), robust against any character in names (JSON escapes them), readable
 * with `redis-cli`, and parsed by V8's native JSON parser, faster than a hand-rolled
 * binary format in JavaScript. The address is the field name, so it is not repeated here.
 */
export function encodeEndpointRecord(record: EndpointRecord, serviceNamespace: string): string {
  const flags =
    (record.ready ? 1 : 0) |
    (record.serving ? 2 : 0) |
    (record.terminating ? 4 : 0) |
    (record.pod === undefined ? 0 : 8);
  const ports = record.ports.map((p) =>
    p.appProtocol === ''
      ? [p.name, p.port, p.protocol[0]]
      : [p.name, p.port, p.protocol[0], p.appProtocol],
  );
  const value: unknown[] = [flags, record.zone, record.node, ports];
  if (record.pod !== undefined) {
    value.push(record.pod.name);
    if (record.pod.namespace !== serviceNamespace) value.push(record.pod.namespace);
  }
  return JSON.stringify(value);
}

const protocols: Record<string, PortProtocol> = { T: 'TCP', U: 'UDP', S: 'SCTP' };

function fail(address: string, what: string): never {
  throw new StoredValueError(`stored endpoint ${address}: ${what}`);
}

/** Reads a value written by {@link encodeEndpointRecord}; throws `StoredValueError` otherwise. */
export function decodeEndpointRecord(
  address: string,
  value: string,
  serviceNamespace: string,
): EndpointRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new StoredValueError(`stored endpoint ${address}: not JSON`, { cause: err });
  }
  if (!Array.isArray(parsed)) fail(address, 'not an array');
  const [flags, zone, node, ports, podName, podNamespace] = parsed as unknown[];
  if (typeof flags !== 'number' || typeof zone !== 'string' || typeof node !== 'string') {
    fail(address, 'bad flags, zone or node');
  }
  if (!Array.isArray(ports)) fail(address, 'bad ports');
  const decodedPorts: EndpointPort[] = ports.map((p: unknown) => {
    if (!Array.isArray(p)) fail(address, 'bad port');
    const [name, port, protocol, appProtocol] = p as unknown[];
    const proto = typeof protocol === 'string' ? protocols[protocol] : undefined;
    if (typeof name !== 'string' || typeof port !== 'number' || proto === undefined) {
      fail(address, 'bad port');
    }
    return {
      name,
      port,
      protocol: proto,
      appProtocol: typeof appProtocol === 'string' ? appProtocol : '',
    };
  });
  const hasPod = (flags & 8) !== 0;
  if (hasPod && typeof podName !== 'string') fail(address, 'bad pod');
  return {
    address,
    ports: decodedPorts,
    ready: (flags & 1) !== 0,
    serving: (flags & 2) !== 0,
    terminating: (flags & 4) !== 0,
    zone,
    node,
    pod: hasPod
      ? {
          namespace: typeof podNamespace === 'string' ? podNamespace : serviceNamespace,
          name: podName as string,
        }
      : undefined,
  };
}

/** What the `services` hash holds per service: digest, endpoint count, labels. */
export interface ServiceMeta {
  /** 8 bytes. */
  readonly digest: Uint8Array;
  readonly endpointCount: number;
  readonly labels: Readonly<Record<string, string>>;
}

/** `<16 hex digest>:<count>:<labels JSON>`. */
export function encodeServiceMeta(meta: ServiceMeta): string {
  return `${Buffer.from(meta.digest).toString('hex')}:${meta.endpointCount}:${JSON.stringify(meta.labels)}`;
}

export function decodeServiceMeta(serviceKey: string, value: string): ServiceMeta {
  const second = value.indexOf(':', 17);
  const count = Number(value.slice(17, second));
  if (value[16] !== ':' || second < 0 || !Number.isInteger(count)) {
    throw new StoredValueError(`stored meta of service ${serviceKey} is malformed`);
  }
  let labels: unknown;
  try {
    labels = JSON.parse(value.slice(second + 1));
  } catch (err) {
    throw new StoredValueError(`stored labels of service ${serviceKey} are not JSON`, {
      cause: err,
    });
  }
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) {
    throw new StoredValueError(`stored labels of service ${serviceKey} are not an object`);
  }
  return {
    digest: Uint8Array.from(Buffer.from(value.slice(0, 16), 'hex')),
    endpointCount: count,
    labels: labels as Record<string, string>,
  };
}

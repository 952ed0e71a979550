import type { Endpoint, InternedString, PortSet } from '../generated/tgfed/v1/endpoint.js';
import { Protocol } from '../generated/tgfed/v1/endpoint.js';
import type { EndpointPort, EndpointRecord, PortProtocol } from '../model/endpoint.js';
import { sortPorts } from '../model/endpoint.js';
import { addressFromBytes } from '../model/ip-address.js';

/** Content of a batch that breaks the wire contract; the hub NACKs it with this message. */
export class ProtocolViolationError extends Error {
  override readonly name = 'ProtocolViolationError';
}

const protocols = new Map<Protocol, PortProtocol>([
  [Protocol.PROTOCOL_TCP, 'TCP'],
  [Protocol.PROTOCOL_UDP, 'UDP'],
  [Protocol.PROTOCOL_SCTP, 'SCTP'],
]);

/** Limits the decoder enforces, so that one stream cannot grow the hub's tables without end. */
export interface EndpointDecoderLimits {
  /** @default 100000 */
  maxInternedStrings?: number;
  /** @default 253 (a DNS name) */
  maxStringLength?: number;
  /** @default 64 */
  maxPortSetsPerService?: number;
  /** @default 100 */
  maxPortsPerSet?: number;
  /** Labels of one service (Kubernetes sets no count limit; real services carry a few). @default 256 */
  maxLabelsPerService?: number;
}

/**
 * Turns the wire form of endpoints back into records for one `Sync` stream (hub side): the
 * mirror image of `EndpointEncoder`. Every check fails with a `ProtocolViolationError` that
 * says what was wrong; nothing is trusted.
 */
export class EndpointDecoder {
  readonly #strings = new Map<number, string>();
  /** service key → port set id → sorted ports */
  readonly #portSets = new Map<string, Map<number, EndpointPort[]>>();
  readonly #limits: Required<EndpointDecoderLimits>;

  constructor(limits: EndpointDecoderLimits = {}) {
    this.#limits = {
      maxInternedStrings: limits.maxInternedStrings ?? 100_000,
      maxStringLength: limits.maxStringLength ?? 253,
      maxPortSetsPerService: limits.maxPortSetsPerService ?? 64,
      maxPortsPerSet: limits.maxPortsPerSet ?? 100,
      maxLabelsPerService: limits.maxLabelsPerService ?? 256,
    };
  }

  /**
   * Checks a service's labels against Kubernetes' rules for their size: a key is an optional
   * DNS-subdomain prefix (253) and a name (1 to 63), a value at most 63 characters.
   */
  checkLabels(serviceKey: string, labels: Readonly<Record<string, string>>): void {
    const entries = Object.entries(labels);
    if (entries.length > this.#limits.maxLabelsPerService) {
      throw new ProtocolViolationError(
        `${serviceKey} has ${entries.length} labels; the limit is ${this.#limits.maxLabelsPerService}`,
      );
    }
    for (const [key, value] of entries) {
      const slash = key.lastIndexOf('/');
      const name = key.slice(slash + 1);
      if (name.length === 0 || name.length > 63 || slash > 253 || value.length > 63) {
        throw new ProtocolViolationError(
          `${serviceKey} has a label that Kubernetes would not allow: ${JSON.stringify(key.slice(0, 80))}`,
        );
      }
    }
  }

  /** Binds the strings of a batch; an id may be bound once, to one value. */
  bindStrings(strings: readonly InternedString[]): void {
    for (const { id, value } of strings) {
      if (id <= 0) throw new ProtocolViolationError(`interned string id must be > 0, got ${id}`);
      if (value.length > this.#limits.maxStringLength) {
        throw new ProtocolViolationError(
          `interned string ${id} is longer than ${this.#limits.maxStringLength}`,
        );
      }
      const bound = this.#strings.get(id);
      if (bound !== undefined && bound !== value) {
        throw new ProtocolViolationError(
          `interned string ${id} rebound from ${JSON.stringify(bound)}`,
        );
      }
      if (bound === undefined && this.#strings.size >= this.#limits.maxInternedStrings) {
        throw new ProtocolViolationError(
          `more than ${this.#limits.maxInternedStrings} interned strings`,
        );
      }
      this.#strings.set(id, value);
    }
  }

  /** Forgets a service's port sets (before a replace, or on removal). */
  forgetService(serviceKey: string): void {
    this.#portSets.delete(serviceKey);
  }

  /** Adds or replaces port sets of a service. */
  bindPortSets(serviceKey: string, portSets: readonly PortSet[]): void {
    if (portSets.length === 0) return;
    let sets = this.#portSets.get(serviceKey);
    if (sets === undefined) {
      sets = new Map();
      this.#portSets.set(serviceKey, sets);
    }
    for (const set of portSets) {
      if (set.id <= 0) throw new ProtocolViolationError(`port set id must be > 0, got ${set.id}`);
      if (set.ports.length > this.#limits.maxPortsPerSet) {
        throw new ProtocolViolationError(
          `port set ${set.id} has more than ${this.#limits.maxPortsPerSet} ports`,
        );
      }
      if (!sets.has(set.id) && sets.size >= this.#limits.maxPortSetsPerService) {
        throw new ProtocolViolationError(
          `more than ${this.#limits.maxPortSetsPerService} port sets in ${serviceKey}`,
        );
      }
      sets.set(set.id, sortPorts(set.ports.map((p) => this.#port(set.id, p))));
    }
  }

  /** One endpoint as a record; `serviceNamespace` fills an empty pod namespace. */
  decode(serviceKey: string, serviceNamespace: string, endpoint: Endpoint): EndpointRecord {
    let address: string;
    try {
      address = addressFromBytes(endpoint.address);
    } catch (err) {
      throw new ProtocolViolationError((err as Error).message, { cause: err });
    }
    const ports = this.#portSets.get(serviceKey)?.get(endpoint.portSet);
    if (ports === undefined) {
      throw new ProtocolViolationError(
        `endpoint ${address} uses unknown port set ${endpoint.portSet}`,
      );
    }
    const pod = endpoint.pod;
    if (
      pod !== undefined &&
      (pod.name === '' || pod.name.length > 253 || pod.namespace.length > 63)
    ) {
      throw new ProtocolViolationError(`endpoint ${address} has an invalid pod reference`);
    }
    return {
      address,
      ports,
      ready: endpoint.ready,
      serving: endpoint.serving,
      terminating: endpoint.terminating,
      zone: this.#string(endpoint.zone, address),
      node: this.#string(endpoint.node, address),
      pod:
        pod === undefined
          ? undefined
          : { namespace: pod.namespace === '' ? serviceNamespace : pod.namespace, name: pod.name },
    };
  }

  #string(id: number, address: string): string {
    if (id === 0) return '';
    const value = this.#strings.get(id);
    if (value === undefined) {
      throw new ProtocolViolationError(`endpoint ${address} uses unbound interned string ${id}`);
    }
    return value;
  }

  #port(
    setId: number,
    p: { name: string; port: number; protocol: Protocol; appProtocol: string },
  ): EndpointPort {
    const protocol = protocols.get(p.protocol);
    if (protocol === undefined) {
      throw new ProtocolViolationError(`port set ${setId}: unknown protocol ${p.protocol}`);
    }
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65_535) {
      throw new ProtocolViolationError(`port set ${setId}: port ${p.port} out of range`);
    }
    if (p.name.length > 63 || p.appProtocol.length > 253) {
      throw new ProtocolViolationError(`port set ${setId}: port name or appProtocol too long`);
    }
    return { name: p.name, port: p.port, protocol, appProtocol: p.appProtocol };
  }
}

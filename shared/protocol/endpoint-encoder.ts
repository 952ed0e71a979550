import type { Endpoint, InternedString, PortSet } from '../generated/tgfed/v1/endpoint.js';
import { Protocol } from '../generated/tgfed/v1/endpoint.js';
import type { EndpointPort, EndpointRecord } from '../model/endpoint.js';
import { portsKey } from '../model/endpoint.js';
import { addressToBytes } from '../model/ip-address.js';

const protocols: Record<EndpointPort['protocol'], Protocol> = {
  TCP: Protocol.PROTOCOL_TCP,
  UDP: Protocol.PROTOCOL_UDP,
  SCTP: Protocol.PROTOCOL_SCTP,
};

/** Largest observed_offset_ms (uint32). */
const maxOffsetMs = 0xffff_ffff;

/**
 * Turns endpoint records into their compact wire form for one `Sync` stream (agent side).
 *
 * Per stream it interns zone and node names (each string crosses the wire once) and numbers the
 * port sets of each service (each set crosses once per service). Both tables die with the
 * stream; the hub keeps the mirror image (`EndpointDecoder`).
 */
export class EndpointEncoder {
  readonly #strings = new Map<string, number>();
  #pendingStrings: InternedString[] = [];
  /** service key → ports key → port set id */
  readonly #portSets = new Map<string, Map<string, number>>();
  /** service key → ids the hub already knows on this stream */
  readonly #announced = new Map<string, Set<number>>();

  /** Number of interned strings on this stream. */
  get internedCount(): number {
    return this.#strings.size;
  }

  /** Strings interned since the last call; they go into the batch being built. */
  takeNewStrings(): InternedString[] {
    const strings = this.#pendingStrings;
    this.#pendingStrings = [];
    return strings;
  }

  /** Forgets the port sets of a service (it was removed, or is about to be replaced). */
  forgetService(serviceKey: string): void {
    this.#portSets.delete(serviceKey);
    this.#announced.delete(serviceKey);
  }

  /**
   * The wire form of one endpoint. A port set the hub does not know yet for this service is
   * appended to `newPortSets`, which the caller puts into the same service change.
   */
  encode(
    serviceKey: string,
    serviceNamespace: string,
    record: EndpointRecord,
    observedOffsetMs: number,
    newPortSets: PortSet[],
  ): Endpoint {
    return {
      address: addressToBytes(record.address),
      portSet: this.#portSetId(serviceKey, record.ports, newPortSets),
      ready: record.ready,
      serving: record.serving,
      terminating: record.terminating,
      zone: this.#intern(record.zone),
      node: this.#intern(record.node),
      pod:
        record.pod === undefined
          ? undefined
          : {
              namespace: record.pod.namespace === serviceNamespace ? '' : record.pod.namespace,
              name: record.pod.name,
            },
      observedOffsetMs: clampOffset(observedOffsetMs),
    };
  }

  #intern(value: string): number {
    if (value === '') return 0;
    let id = this.#strings.get(value);
    if (id === undefined) {
      id = this.#strings.size + 1;
      this.#strings.set(value, id);
      this.#pendingStrings.push({ id, value });
    }
    return id;
  }

  #portSetId(serviceKey: string, ports: readonly EndpointPort[], newPortSets: PortSet[]): number {
    let sets = this.#portSets.get(serviceKey);
    if (sets === undefined) {
      sets = new Map();
      this.#portSets.set(serviceKey, sets);
    }
    const key = portsKey(ports);
    let id = sets.get(key);
    if (id === undefined) {
      id = sets.size + 1;
      sets.set(key, id);
    }
    let announced = this.#announced.get(serviceKey);
    if (announced === undefined) {
      announced = new Set();
      this.#announced.set(serviceKey, announced);
    }
    if (!announced.has(id)) {
      announced.add(id);
      newPortSets.push({
        id,
        ports: ports.map((p) => ({
          name: p.name,
          port: p.port,
          protocol: protocols[p.protocol],
          appProtocol: p.appProtocol,
        })),
      });
    }
    return id;
  }
}

/** An offset in range for observed_offset_ms. */
export function clampOffset(offsetMs: number): number {
  return Math.min(maxOffsetMs, Math.max(0, Math.round(offsetMs)));
}

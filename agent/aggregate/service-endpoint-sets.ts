import type { V1EndpointSlice } from '@kubernetes/client-node';
import {
  DigestAccumulator,
  sameEndpoint,
  serviceKeyString,
  type EndpointRecord,
  type ServiceKey,
} from '../../shared/index.js';
import { mostReadyView, sliceEndpoints, sliceKey } from './slice-endpoints.js';

/** Options of {@link ServiceEndpointSets}. */
export interface ServiceEndpointSetsOptions {
  /**
   * Federate slices without `kubernetes.io/service-name`, as service `<slice name>`?
   * Otherwise they are ignored and counted.
   * @default false
   */
  includeUnnamedSlices?: boolean;
}

/** Endpoint-level change of one service, produced by every mutation. */
export interface ServiceEndpointsChange {
  service: ServiceKey;
  /** New or changed endpoints (full records). */
  upserts: EndpointRecord[];
  /** Addresses no longer in the service. */
  removals: string[];
  /** The labels differ from before; always true when the service appears. */
  labelsChanged: boolean;
  /** The service has no slices left. */
  deleted: boolean;
  /** When the caller observed the mutation. */
  observedAtMs: number;
}

/** The merged endpoint set of one service. */
export interface ServiceEndpoints {
  readonly service: ServiceKey;
  readonly labels: Readonly<Record<string, string>>;
  /** By canonical address. */
  readonly endpoints: ReadonlyMap<string, EndpointRecord>;
  /** Equals `endpointDigest(labels, endpoints.values())`. */
  digest(): Uint8Array;
}

/** How much slice content was left out; monotonic, counted each time a slice is applied. */
export interface SliceContentCounters {
  /** Slices without identity, without a service name (unless included) or of type FQDN. */
  readonly ignoredSlices: number;
  /** Endpoints without a valid address of the slice's family. */
  readonly invalidEndpoints: number;
  /** Addresses after the first of an endpoint. */
  readonly extraAddresses: number;
}

/** What one slice currently contributes to its service. */
interface SliceContribution {
  readonly key: string;
  readonly namespace: string;
  readonly set: ServiceEndpointSet;
  labels: Readonly<Record<string, string>>;
  endpoints: Map<string, EndpointRecord>;
}

class ServiceEndpointSet implements ServiceEndpoints {
  readonly key: string;
  labels: Readonly<Record<string, string>> = {};
  readonly endpoints = new Map<string, EndpointRecord>();
  readonly slices = new Map<string, SliceContribution>();
  /** The lexicographically first slice, whose labels are the service's. */
  firstSlice: SliceContribution | undefined;
  /** The slices that list each address; usually one, two while the controller moves it. */
  readonly holders = new Map<string, SliceContribution[]>();
  readonly accumulator = new DigestAccumulator();

  constructor(readonly service: ServiceKey) {
    this.key = serviceKeyString(service);
  }

  digest(): Uint8Array {
    return this.accumulator.digest();
  }
}

interface ServiceBefore {
  readonly service: ServiceKey;
  readonly existed: boolean;
  readonly labels: Readonly<Record<string, string>>;
  /** The merged record of each touched address before the mutation. */
  readonly endpoints: Map<string, EndpointRecord | undefined>;
}

/** Remembers the state each mutation started from, to emit only the net difference. */
class MutationLog {
  readonly #services = new Map<string, ServiceBefore>();

  noteService(service: ServiceKey, key: string, set: ServiceEndpointSet | undefined): void {
    if (this.#services.has(key)) return;
    this.#services.set(key, {
      service,
      existed: set !== undefined,
      labels: set?.labels ?? {},
      endpoints: new Map(),
    });
  }

  noteEndpoint(key: string, address: string, before: EndpointRecord | undefined): void {
    const endpoints = this.#services.get(key)?.endpoints;
    if (endpoints !== undefined && !endpoints.has(address)) endpoints.set(address, before);
  }

  changes(
    current: ReadonlyMap<string, ServiceEndpointSet>,
    observedAtMs: number,
  ): ServiceEndpointsChange[] {
    const changes: ServiceEndpointsChange[] = [];
    for (const [key, before] of this.#services) {
      const set = current.get(key);
      if (set === undefined && !before.existed) continue;
      const upserts: EndpointRecord[] = [];
      const removals: string[] = [];
      for (const [address, was] of before.endpoints) {
        const now = set?.endpoints.get(address);
        if (now === undefined) {
          if (was !== undefined) removals.push(address);
        } else if (was === undefined || !sameEndpoint(was, now)) {
          upserts.push(now);
        }
      }
      const deleted = set === undefined;
      const labelsChanged =
        set !== undefined && (!before.existed || !sameLabels(before.labels, set.labels));
      if (upserts.length === 0 && removals.length === 0 && !labelsChanged && !deleted) continue;
      changes.push({
        service: before.service,
        upserts,
        removals,
        labelsChanged,
        deleted,
        observedAtMs,
      });
    }
    return changes;
  }
}

/**
 * The endpoint sets of all services of a cluster, merged from their EndpointSlices.
 *
 * Each slice's contribution is kept, so that when an address sits in two slices (the controller
 * adds it to the new slice before removing it from the old) the most-ready view counts once and
 * the other takes over when the first goes. A mutation costs O(slice size), never O(service
 * size), and returns the exact endpoint-level difference it made.
 */
export class ServiceEndpointSets {
  readonly #includeUnnamedSlices: boolean;
  readonly #slices = new Map<string, SliceContribution>();
  readonly #services = new Map<string, ServiceEndpointSet>();
  #endpointCount = 0;
  readonly #counters = { ignoredSlices: 0, invalidEndpoints: 0, extraAddresses: 0 };

  constructor(options: ServiceEndpointSetsOptions = {}) {
    this.#includeUnnamedSlices = options.includeUnnamedSlices ?? false;
  }

  /** Applies an added or modified slice; two changes when the slice moved to another service. */
  upsertSlice(slice: V1EndpointSlice, observedAtMs: number): ServiceEndpointsChange[] {
    const log = new MutationLog();
    this.#upsert(slice, log);
    return log.changes(this.#services, observedAtMs);
  }

  /** Applies a deleted slice (its last known content is what is removed). */
  deleteSlice(slice: V1EndpointSlice, observedAtMs: number): ServiceEndpointsChange[] {
    const log = new MutationLog();
    const key = sliceKey(slice);
    const contribution = key === undefined ? undefined : this.#slices.get(key);
    if (contribution !== undefined) this.#remove(contribution, log);
    return log.changes(this.#services, observedAtMs);
  }

  /**
   * Replaces all slices of one scope (a namespace, or null = everything) after a re-list: slices
   * missing from `slices` are deleted. Emits only real differences.
   */
  replaceScope(
    scope: string | null,
    slices: readonly V1EndpointSlice[],
    observedAtMs: number,
  ): ServiceEndpointsChange[] {
    const log = new MutationLog();
    const listed = new Set<string>();
    for (const slice of slices) {
      const key = sliceKey(slice);
      if (key !== undefined) listed.add(key);
      this.#upsert(slice, log);
    }
    const gone = [...this.#slices.values()].filter(
      (c) => (scope === null || c.namespace === scope) && !listed.has(c.key),
    );
    for (const contribution of gone) this.#remove(contribution, log);
    return log.changes(this.#services, observedAtMs);
  }

  get(service: ServiceKey): ServiceEndpoints | undefined {
    return this.#services.get(serviceKeyString(service));
  }

  services(): IterableIterator<ServiceEndpoints> {
    return this.#services.values();
  }

  get serviceCount(): number {
    return this.#services.size;
  }

  /** Endpoints over all services (an address in two services counts twice). */
  get endpointCount(): number {
    return this.#endpointCount;
  }

  get counters(): SliceContentCounters {
    return this.#counters;
  }

  #upsert(slice: V1EndpointSlice, log: MutationLog): void {
    const key = sliceKey(slice);
    let contribution = key === undefined ? undefined : this.#slices.get(key);
    const read = sliceEndpoints(slice, { includeUnnamedSlices: this.#includeUnnamedSlices });
    if (key === undefined || !read.federated) {
      this.#counters.ignoredSlices++;
      // A slice can lose its service-name label; what it contributed goes with it.
      if (contribution !== undefined) this.#remove(contribution, log);
      return;
    }
    this.#counters.invalidEndpoints += read.invalidEndpoints;
    this.#counters.extraAddresses += read.extraAddresses;

    const serviceKey = serviceKeyString(read.service);
    if (contribution !== undefined && contribution.set.key !== serviceKey) {
      this.#remove(contribution, log);
      contribution = undefined;
    }
    let set = this.#services.get(serviceKey);
    log.noteService(read.service, serviceKey, set);
    if (set === undefined) {
      set = new ServiceEndpointSet(read.service);
      this.#services.set(serviceKey, set);
    }
    if (contribution === undefined) {
      contribution = {
        key,
        namespace: read.service.namespace,
        set,
        labels: read.labels,
        endpoints: new Map(),
      };
      this.#slices.set(key, contribution);
      set.slices.set(key, contribution);
      if (set.firstSlice === undefined || key < set.firstSlice.key) set.firstSlice = contribution;
    } else {
      contribution.labels = read.labels;
    }
    this.#contribute(contribution, read.endpoints, log);
    this.#refreshLabels(set);
  }

  #remove(contribution: SliceContribution, log: MutationLog): void {
    const set = contribution.set;
    log.noteService(set.service, set.key, set);
    this.#contribute(contribution, new Map(), log);
    this.#slices.delete(contribution.key);
    set.slices.delete(contribution.key);
    if (set.slices.size === 0) {
      this.#services.delete(set.key);
      return;
    }
    if (set.firstSlice === contribution) {
      // Only when the first slice goes: O(slices of the service), about a hundredth of its size.
      let first: SliceContribution | undefined;
      for (const c of set.slices.values()) if (first === undefined || c.key < first.key) first = c;
      set.firstSlice = first;
    }
    this.#refreshLabels(set);
  }

  /** Replaces a slice's endpoints with `next` and re-merges only the addresses that changed. */
  #contribute(
    contribution: SliceContribution,
    next: Map<string, EndpointRecord>,
    log: MutationLog,
  ): void {
    const { set, endpoints: previous } = contribution;
    const touched: string[] = [];
    for (const [address, record] of next) {
      const old = previous.get(address);
      if (old === undefined) {
        addHolder(set, address, contribution);
        touched.push(address);
      } else if (sameEndpoint(old, record)) {
        next.set(address, old);
      } else {
        touched.push(address);
      }
    }
    for (const address of previous.keys()) {
      if (next.has(address)) continue;
      removeHolder(set, address, contribution);
      touched.push(address);
    }
    contribution.endpoints = next;
    for (const address of touched) this.#merge(set, address, log);
  }

  /** Sets an address's merged record to the most-ready view among the slices that list it. */
  #merge(set: ServiceEndpointSet, address: string, log: MutationLog): void {
    let winner: EndpointRecord | undefined;
    for (const holder of set.holders.get(address) ?? []) {
      const view = holder.endpoints.get(address);
      if (view !== undefined) winner = winner === undefined ? view : mostReadyView(winner, view);
    }
    const current = set.endpoints.get(address);
    if (current === winner) return;
    if (current !== undefined && winner !== undefined && sameEndpoint(current, winner)) return;
    log.noteEndpoint(set.key, address, current);
    if (current !== undefined) {
      set.accumulator.remove(current);
      this.#endpointCount--;
    }
    if (winner === undefined) {
      set.endpoints.delete(address);
    } else {
      set.endpoints.set(address, winner);
      set.accumulator.add(winner);
      this.#endpointCount++;
    }
  }

  #refreshLabels(set: ServiceEndpointSet): void {
    const labels = set.firstSlice?.labels ?? {};
    if (labels === set.labels || sameLabels(labels, set.labels)) return;
    set.labels = labels;
    set.accumulator.setLabels(labels);
  }
}

function addHolder(set: ServiceEndpointSet, address: string, holder: SliceContribution): void {
  const holders = set.holders.get(address);
  if (holders === undefined) set.holders.set(address, [holder]);
  else holders.push(holder);
}

function removeHolder(set: ServiceEndpointSet, address: string, holder: SliceContribution): void {
  const holders = set.holders.get(address);
  if (holders === undefined) return;
  const remaining = holders.filter((h) => h !== holder);
  if (remaining.length === 0) set.holders.delete(address);
  else set.holders.set(address, remaining);
}

function sameLabels(
  a: Readonly<Record<string, string>>,
  b: Readonly<Record<string, string>>,
): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

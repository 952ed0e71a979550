import type { V1Endpoint, V1EndpointSlice } from '@kubernetes/client-node';
import { ServiceEndpointSets } from '../aggregate/service-endpoint-sets.js';
import { SyncPublisher, type SyncPublisherOptions } from '../publish/sync-publisher.js';

/** One service of a synthetic cluster. */
export interface SyntheticServiceSpec {
  name: string;
  /** Ready pods at start. */
  pods: number;
}

/** Options for {@link SyntheticCluster}. */
export interface SyntheticClusterOptions {
  /** The namespace of every service. */
  namespace: string;
  services: readonly SyntheticServiceSpec[];
  /**
   * First two octets of every pod address (`10.7` gives 10.7.0.1 ... 10.7.255.254); 65,024
   * addresses per cluster, handed out in order and never reused.
   */
  addressPrefix: string;
  /** The named port of every slice. @default { name: 'http', port: 8080 } */
  port?: { name: string; port: number };
  /** Most endpoints per slice, as the EndpointSlice controller's default. @default 100 */
  endpointsPerSlice?: number;
  /** Zones the pods spread over, round robin. @default ['zone-a', 'zone-b', 'zone-c'] */
  zones?: readonly string[];
  /** How long a restarted pod stays terminating before it leaves its slice. @default 2000 */
  terminationMs?: number;
  /** Called for every change of a pod's readiness the cluster publishes (benchmarks). */
  onChange?: (change: SyntheticChange) => void;
}

/** A pod turning ready (`ready`) or leaving the ready set (`unready`), as the agent saw it. */
export interface SyntheticChange {
  address: string;
  service: string;
  kind: 'ready' | 'unready';
  atMs: number;
}

interface Pod {
  address: string;
  /** Index of the slice the pod is in. */
  slice: number;
  /** Given when the pod is created, as a scheduler places a pod once. */
  zone: string;
  terminatingSinceMs?: number;
}

interface Slice {
  name: string;
  pods: Pod[];
  /** Pods of the slice that are terminating: only such a slice is swept at a flush. */
  terminating: number;
}

interface Service {
  name: string;
  slices: Slice[];
  /** Ready pods, in creation order. */
  ready: Pod[];
  dirty: Set<number>;
  nextSliceName: number;
}

const ADDRESSES_PER_PREFIX = 256 * 254;

/**
 * A Kubernetes cluster without Kubernetes, for the demo and the benchmarks: services whose pods
 * come and go as a Deployment's would, written as the EndpointSlices the EndpointSlice controller
 * would write, fed to the real aggregator and published by the real agent publisher over the
 * real protocol. Changes made between two {@link flush} calls reach the agent as one slice
 * update per touched slice.
 */
export class SyntheticCluster {
  readonly sets = new ServiceEndpointSets();
  readonly #options: SyntheticClusterOptions;
  readonly #publisherOptions: SyncPublisherOptions;
  #publisher: SyncPublisher;
  readonly #services = new Map<string, Service>();
  readonly #perSlice: number;
  readonly #zones: readonly string[];
  readonly #terminationMs: number;
  readonly clusterId: string;
  #nextAddress = 0;

  constructor(options: SyntheticClusterOptions, publisher: SyncPublisherOptions) {
    this.#options = options;
    this.clusterId = publisher.clusterId;
    this.#perSlice = options.endpointsPerSlice ?? 100;
    this.#zones = options.zones ?? ['zone-a', 'zone-b', 'zone-c'];
    this.#terminationMs = options.terminationMs ?? 2_000;
    this.#publisherOptions = publisher;
    this.#publisher = new SyncPublisher(this.sets, publisher);
    for (const spec of options.services) {
      this.#services.set(spec.name, {
        name: spec.name,
        slices: [],
        ready: [],
        dirty: new Set(),
        nextSliceName: 0,
      });
      this.scale(spec.name, spec.pods);
    }
    this.flush();
  }

  /** The agent publisher of the cluster (a new one after {@link reconnect}). */
  get publisher(): SyncPublisher {
    return this.#publisher;
  }

  /** Starts publishing to the hub. */
  start(): void {
    this.#publisher.start();
  }

  /** Closes the stream to the hub, as an agent that goes away does. */
  disconnect(): Promise<void> {
    return this.#publisher.close();
  }

  /** Comes back after {@link disconnect}: a new publisher (a restarted agent) over the same state. */
  reconnect(): void {
    this.#publisher = new SyncPublisher(this.sets, this.#publisherOptions);
    this.#publisher.start();
  }

  /** Ready pods of `service`, or of every service. */
  readyPods(service?: string): number {
    if (service !== undefined) return this.#service(service).ready.length;
    let n = 0;
    for (const s of this.#services.values()) n += s.ready.length;
    return n;
  }

  /** Ready addresses of a service. */
  readyAddresses(service: string): string[] {
    return this.#service(service).ready.map((p) => p.address);
  }

  serviceNames(): string[] {
    return [...this.#services.keys()];
  }

  /** Adds ready pods or terminates the newest ones until `service` has `pods` ready pods. */
  scale(service: string, pods: number): void {
    const s = this.#service(service);
    const now = Date.now();
    while (s.ready.length < pods) this.#addPod(s, now);
    while (s.ready.length > pods) this.#terminate(s, s.ready.length - 1, now);
  }

  /**
   * Restarts the oldest ready pod of `service` as a rolling update does: its replacement (a new
   * address) is ready, then the old pod turns terminating and leaves its slice after
   * `terminationMs`. Returns the old and new addresses.
   */
  restartOldest(service: string): { old: string; replacement: string } | undefined {
    const s = this.#service(service);
    if (s.ready.length === 0) return undefined;
    const now = Date.now();
    const replacement = this.#addPod(s, now);
    const old = this.#terminate(s, 0, now);
    return { old: old.address, replacement: replacement.address };
  }

  /**
   * Publishes every slice touched since the last flush (one slice update each) and removes pods
   * whose termination has ended.
   */
  flush(): void {
    const now = Date.now();
    for (const s of this.#services.values()) {
      for (const [index, slice] of s.slices.entries()) {
        // Flushed every few milliseconds: a slice with no terminating pod is not walked.
        if (slice.terminating === 0) continue;
        const before = slice.pods.length;
        slice.pods = slice.pods.filter(
          (p) =>
            p.terminatingSinceMs === undefined || now - p.terminatingSinceMs < this.#terminationMs,
        );
        if (slice.pods.length !== before) {
          slice.terminating -= before - slice.pods.length;
          s.dirty.add(index);
        }
      }
      for (const index of s.dirty) this.#publish(s, index);
      s.dirty.clear();
    }
  }

  #service(name: string): Service {
    const s = this.#services.get(name);
    if (s === undefined) throw new Error(`synthetic cluster has no service ${name}`);
    return s;
  }

  #addPod(s: Service, now: number): Pod {
    if (this.#nextAddress >= ADDRESSES_PER_PREFIX) {
      throw new Error(`synthetic cluster ${this.clusterId} ran out of addresses`);
    }
    const n = this.#nextAddress++;
    const address = `${this.#options.addressPrefix}.${Math.floor(n / 254)}.${(n % 254) + 1}`;
    let index = s.slices.findIndex((slice) => slice.pods.length < this.#perSlice);
    if (index < 0) {
      index = s.slices.length;
      s.slices.push({
        name: `${s.name}-${(s.nextSliceName++).toString(36)}`,
        pods: [],
        terminating: 0,
      });
    }
    const pod: Pod = { address, slice: index, zone: this.#zones[n % this.#zones.length] ?? '' };
    s.slices[index]!.pods.push(pod);
    s.ready.push(pod);
    s.dirty.add(index);
    this.#options.onChange?.({ address, service: s.name, kind: 'ready', atMs: now });
    return pod;
  }

  #terminate(s: Service, readyIndex: number, now: number): Pod {
    const [pod] = s.ready.splice(readyIndex, 1);
    pod!.terminatingSinceMs = now;
    s.slices[pod!.slice]!.terminating++;
    s.dirty.add(pod!.slice);
    this.#options.onChange?.({
      address: pod!.address,
      service: s.name,
      kind: 'unready',
      atMs: now,
    });
    return pod!;
  }

  #publish(s: Service, index: number): void {
    const slice = s.slices[index]!;
    const port = this.#options.port ?? { name: 'http', port: 8080 };
    const endpoints: V1Endpoint[] = slice.pods.map((pod) => {
      const terminating = pod.terminatingSinceMs !== undefined;
      return {
        addresses: [pod.address],
        conditions: { ready: !terminating, serving: true, terminating },
        zone: pod.zone,
        targetRef: {
          kind: 'Pod',
          namespace: this.#options.namespace,
          name: `${s.name}-${pod.address}`,
        },
      };
    });
    const object: V1EndpointSlice = {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        namespace: this.#options.namespace,
        name: slice.name,
        labels: {
          'kubernetes.io/service-name': s.name,
          'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        },
      },
      addressType: 'IPv4',
      endpoints,
      ports: [{ name: port.name, port: port.port, protocol: 'TCP' }],
    };
    const now = Date.now();
    const changes =
      endpoints.length === 0
        ? this.sets.deleteSlice(object, now)
        : this.sets.upsertSlice(object, now);
    for (const change of changes) this.#publisher.notify(change);
  }
}

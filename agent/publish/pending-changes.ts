import type { ServiceKey } from '../../shared/index.js';
import { serviceKeyString } from '../../shared/index.js';

/** What the hub still has to learn about one service. */
export type PendingChange =
  /** Send the full state (it differs from the hub's, or the hub has none). */
  | { readonly kind: 'replace'; readonly service: ServiceKey; readonly observedAtMs: number }
  /** Tell the hub the service is gone (or no longer subscribed). */
  | { readonly kind: 'remove'; readonly service: ServiceKey; readonly observedAtMs: number }
  /** Send the current state of these addresses (an upsert, or a removal if gone). */
  | {
      readonly kind: 'delta';
      readonly service: ServiceKey;
      /** address → earliest unsent observation of it */
      readonly addresses: Map<string, number>;
      labels: boolean;
      readonly observedAtMs: number;
    };

/** Options for {@link PendingChanges}. */
export interface PendingChangesOptions {
  /**
   * A delta that names more addresses than this share of a service's endpoints becomes a
   * replace, so that a service never pends more addresses than it has. A delta carries at most
   * one record per address it names and a replace one per endpoint, so at 1 the replace is never
   * the larger message. (At 0.5, in a rolling restart of 50-pod services, a delta waiting behind
   * a full window passed half the service within seconds: most batches carried their service
   * whole, and the hub hashed and rewrote every endpoint of it.) @default 1
   */
  replaceShare?: number;
  /** ...but never below this many addresses. @default 64 */
  replaceMinAddresses?: number;
}

/**
 * The coalescing buffer between the watch and the stream: at most one entry per service, and
 * the entry only names *what* changed; the content is read from the current state when the
 * batch is built, so the newest state always wins and memory is bounded by the number of
 * services (and their sizes), never by how often they change.
 *
 * Iteration is in insertion order; an entry keeps its place when it changes, so the resync's
 * entries (inserted first) go out before later deltas.
 */
export class PendingChanges {
  readonly #entries = new Map<string, PendingChange>();
  readonly #replaceShare: number;
  readonly #replaceMin: number;
  /** Entries merged into an existing entry instead of adding one. */
  coalesced = 0;

  constructor(options: PendingChangesOptions = {}) {
    this.#replaceShare = options.replaceShare ?? 1;
    this.#replaceMin = options.replaceMinAddresses ?? 64;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Addresses pending across all delta entries (for the bounded-memory assertions). */
  get pendingAddresses(): number {
    let n = 0;
    for (const e of this.#entries.values()) if (e.kind === 'delta') n += e.addresses.size;
    return n;
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  get(key: string): PendingChange | undefined {
    return this.#entries.get(key);
  }

  entries(): IterableIterator<[string, PendingChange]> {
    return this.#entries.entries();
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }

  /** The hub needs the full state of the service. */
  markReplace(service: ServiceKey, observedAtMs: number): void {
    const key = serviceKeyString(service);
    const existing = this.#entries.get(key);
    if (existing !== undefined) this.coalesced++;
    this.#entries.set(key, {
      kind: 'replace',
      service,
      observedAtMs: Math.min(observedAtMs, existing?.observedAtMs ?? observedAtMs),
    });
  }

  /** The hub must drop the service. */
  markRemove(service: ServiceKey, observedAtMs: number): void {
    const key = serviceKeyString(service);
    const existing = this.#entries.get(key);
    if (existing !== undefined) this.coalesced++;
    this.#entries.set(key, {
      kind: 'remove',
      service,
      observedAtMs: Math.min(observedAtMs, existing?.observedAtMs ?? observedAtMs),
    });
  }

  /**
   * Some addresses of a service changed (and/or its labels). Merges into a pending entry:
   * a replace stays a replace, a remove becomes a replace (the service is back), a delta grows
   * until it is large against `serviceSize`, then becomes a replace.
   */
  markAddresses(
    service: ServiceKey,
    addresses: Iterable<string>,
    labelsChanged: boolean,
    observedAtMs: number,
    serviceSize: number,
  ): void {
    const key = serviceKeyString(service);
    const existing = this.#entries.get(key);
    if (existing !== undefined) this.coalesced++;
    if (existing?.kind === 'replace') return;
    if (existing?.kind === 'remove') {
      this.markReplace(service, observedAtMs);
      return;
    }
    const entry =
      existing ??
      ({ kind: 'delta', service, addresses: new Map(), labels: false, observedAtMs } as const);
    const delta = { ...entry, addresses: entry.addresses, labels: entry.labels || labelsChanged };
    for (const address of addresses) {
      if (!delta.addresses.has(address)) delta.addresses.set(address, observedAtMs);
    }
    if (delta.addresses.size > Math.max(this.#replaceMin, serviceSize * this.#replaceShare)) {
      this.#entries.set(key, { kind: 'replace', service, observedAtMs: delta.observedAtMs });
      return;
    }
    this.#entries.set(key, delta);
  }

  /** Puts back the addresses of a delta that did not fit into a batch (keeps the entry's place). */
  setRemainder(key: string, remainder: PendingChange): void {
    this.#entries.set(key, remainder);
  }
}

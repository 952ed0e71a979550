/** The ingest counters the window samples (`IngestCounters` of a `SyncService`). */
export interface RejectionCounters {
  /** Endpoints refused because their address is outside the cluster's allowed CIDRs. */
  readonly addressesNotAllowed: number;
  /** Cluster id → rejected items, any reason. */
  readonly rejectedByCluster: ReadonlyMap<string, number>;
  /** Cluster id → rejections by reason, when the ingest keeps them (exact attribution). */
  readonly byCluster?: ReadonlyMap<
    string,
    { readonly rejectedByReason: { readonly address_not_allowed: number } }
  >;
}

/** Options of {@link CidrRejectionWindow}. */
export interface CidrRejectionWindowOptions {
  /** How long a rejection keeps the alert firing (the rule's `increase(...[15m])`). @default 900000 */
  windowMs?: number;
  /** How often the counters are sampled between evaluations. @default 30000 */
  sampleIntervalMs?: number;
  /** @default Date.now */
  clock?: () => number;
}

/** A cluster whose endpoints were recently rejected for their address. */
export interface RecentCidrRejection {
  readonly clusterId: string;
  /** Rejections counted since {@link sinceMs} (see {@link CidrRejectionWindow} on attribution). */
  readonly rejected: number;
  /** When the first sample of the current run of rejections saw one. */
  readonly sinceMs: number;
}

interface ClusterRun {
  firstSeenMs: number;
  lastSeenMs: number;
  rejected: number;
}

/**
 * Which clusters announced addresses outside their allowed CIDRs within the last `windowMs`,
 * from the in-process ingest counters of this hub replica (streams held by other replicas are
 * not seen; Prometheus sums every replica). With per-cluster counts by reason the attribution
 * is exact; with only per-cluster totals (any reason) and the address total, a cluster is
 * reported when its rejections grew in a sample interval in which address rejections grew too.
 * Sampling runs on a timer (and at every evaluation) so that "recent" means the same whenever
 * ListAlerts is called.
 */
export class CidrRejectionWindow {
  readonly #counters: RejectionCounters;
  readonly #windowMs: number;
  readonly #sampleIntervalMs: number;
  readonly #clock: () => number;
  readonly #runs = new Map<string, ClusterRun>();
  #lastAddresses: number;
  #lastByCluster: Map<string, number>;
  #timer: NodeJS.Timeout | undefined;

  constructor(counters: RejectionCounters, options: CidrRejectionWindowOptions = {}) {
    this.#counters = counters;
    this.#windowMs = options.windowMs ?? 900_000;
    this.#sampleIntervalMs = options.sampleIntervalMs ?? 30_000;
    this.#clock = options.clock ?? Date.now;
    this.#lastAddresses = counters.addressesNotAllowed;
    this.#lastByCluster = perCluster(counters);
  }

  /** Samples every `sampleIntervalMs` until {@link close}. Idempotent. */
  start(): void {
    if (this.#timer !== undefined || this.#sampleIntervalMs <= 0) return;
    this.#timer = setInterval(() => this.sample(), this.#sampleIntervalMs);
    this.#timer.unref();
  }

  /** Stops sampling. Idempotent. */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Compares the counters with the previous sample. */
  sample(): void {
    const now = this.#clock();
    const addresses = this.#counters.addressesNotAllowed;
    const grew = addresses > this.#lastAddresses;
    const byCluster = perCluster(this.#counters);
    if (grew || this.#counters.byCluster !== undefined) {
      for (const [clusterId, count] of byCluster) {
        const added = count - (this.#lastByCluster.get(clusterId) ?? 0);
        if (added <= 0) continue;
        const run = this.#runs.get(clusterId);
        if (run === undefined || now - run.lastSeenMs > this.#windowMs) {
          this.#runs.set(clusterId, { firstSeenMs: now, lastSeenMs: now, rejected: added });
        } else {
          run.lastSeenMs = now;
          run.rejected += added;
        }
      }
    }
    this.#lastAddresses = addresses;
    this.#lastByCluster = byCluster;
  }

  /** Clusters with rejections in the window, by id. */
  recent(): RecentCidrRejection[] {
    this.sample();
    const now = this.#clock();
    const recent: RecentCidrRejection[] = [];
    for (const [clusterId, run] of [...this.#runs].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (now - run.lastSeenMs > this.#windowMs) {
        this.#runs.delete(clusterId);
        continue;
      }
      recent.push({ clusterId, rejected: run.rejected, sinceMs: run.firstSeenMs });
    }
    return recent;
  }
}

/** Address rejections per cluster when counted so, else rejections of any reason. */
function perCluster(counters: RejectionCounters): Map<string, number> {
  if (counters.byCluster === undefined) return new Map(counters.rejectedByCluster);
  return new Map(
    [...counters.byCluster].map(([id, c]) => [id, c.rejectedByReason.address_not_allowed]),
  );
}

import type { Logger } from '../../shared/index.js';
import { silentLogger } from '../../shared/index.js';
import {
  StateKeys,
  leaseHolderOf,
  sessionConnection,
  type ClusterSessionRecord,
  type ClusterSessionRecords,
  type RedisClient,
} from '../state/index.js';
import type { ClusterConnection, ClusterStatus, ClusterStatusSource } from './desired-targets.js';

/** Options of {@link ClusterStatusTracker}. */
export interface ClusterStatusTrackerOptions {
  /**
   * How long a cluster without a stream keeps its endpoints as last seen (fail-static).
   * @default 300000
   */
  disconnectedGraceMs?: number;
  /**
   * After a Redis loss or a cold start, how long a cluster that has not resynced holds
   * deregistrations back; then they go on and {@link onResyncTimeout} alerts.
   * @default 600000
   */
  resyncTimeoutMs?: number;
  /**
   * How long after its stream was admitted a cluster awaiting resync counts as in its initial
   * sync (`ClusterStatus.initialSync`) while it has not sent SYNCED. 0 turns the hold off.
   * @default 10000
   */
  initialSyncHoldMs?: number;
  /** How often {@link ClusterStatusTracker.start} re-reads Redis. @default 1000 */
  refreshIntervalMs?: number;
  /**
   * Called after a refresh for each tracked cluster whose status changed since the previous
   * refresh, including changes that come with time (its grace period or resync timeout ran
   * out): groups it feeds need a reconcile although no endpoint changed.
   */
  onStatusChange?: (clusterId: string, status: ClusterStatus, previous: ClusterStatus) => void;
  /** Called once per cluster and storage epoch when the resync timeout passes without SYNCED. */
  onResyncTimeout?: (clusterId: string, storageEpoch: string) => void;
  /** @default Date.now */
  clock?: () => number;
  /** @default silentLogger() */
  logger?: Logger;
}

interface Observed {
  readonly record: ClusterSessionRecord | undefined;
  readonly held: boolean;
  /**
   * When a held lease was first seen without a record of its stream (a stream being admitted
   * writes its record just after it takes the lease); undefined otherwise.
   */
  readonly admittingSinceMs: number | undefined;
}

type TrackerState = 'idle' | 'running' | 'closed';

/**
 * The {@link ClusterStatusSource} of resolution (DESIGN.md, Safety), from what every replica can
 * read in Redis: the cluster's lease (is a stream held), its session record (last seen, last
 * SYNCED and its storage epoch) and the storage epoch.
 *
 * `status()` is synchronous, so it answers from the last {@link refresh}; a cluster asked about
 * for the first time is tracked from then on and, until read, is treated as disconnected within
 * its grace and awaiting resync: nothing is withdrawn on an unread status.
 */
export class ClusterStatusTracker implements ClusterStatusSource {
  readonly #redis: RedisClient;
  readonly #keys: StateKeys;
  readonly #sessions: ClusterSessionRecords;
  readonly #graceMs: number;
  readonly #resyncTimeoutMs: number;
  readonly #initialSyncHoldMs: number;
  readonly #refreshIntervalMs: number;
  readonly #onResyncTimeout: ((clusterId: string, storageEpoch: string) => void) | undefined;
  readonly #onStatusChange: ClusterStatusTrackerOptions['onStatusChange'];
  readonly #reported = new Map<string, ClusterStatus>();
  readonly #clock: () => number;
  readonly #log: Logger;
  readonly #tracked = new Set<string>();
  readonly #observed = new Map<string, Observed>();
  /** Clusters already alerted for the current epoch. */
  readonly #timedOut = new Set<string>();
  #epoch: string | undefined;
  #epochNoticedAtMs: number;
  #state: TrackerState = 'idle';
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;
  #refreshBeganAtMs = -Infinity;

  constructor(
    redis: RedisClient,
    sessions: ClusterSessionRecords,
    options: ClusterStatusTrackerOptions & { keys?: StateKeys } = {},
  ) {
    this.#redis = redis;
    this.#sessions = sessions;
    this.#keys = options.keys ?? new StateKeys();
    this.#graceMs = nonNegative('disconnectedGraceMs', options.disconnectedGraceMs ?? 300_000);
    this.#resyncTimeoutMs = nonNegative('resyncTimeoutMs', options.resyncTimeoutMs ?? 600_000);
    this.#initialSyncHoldMs = nonNegative('initialSyncHoldMs', options.initialSyncHoldMs ?? 10_000);
    this.#refreshIntervalMs = nonNegative('refreshIntervalMs', options.refreshIntervalMs ?? 1_000);
    this.#onResyncTimeout = options.onResyncTimeout;
    this.#onStatusChange = options.onStatusChange;
    this.#clock = options.clock ?? Date.now;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'cluster-status' });
    // A cold start: the hub learns now what it did not see before.
    this.#epochNoticedAtMs = this.#clock();
  }

  /** The storage epoch of the last refresh ('' when Redis held none). */
  get storageEpoch(): string | undefined {
    return this.#epoch;
  }

  /** Every tracked cluster (listed, or asked about). */
  clusters(): string[] {
    return [...this.#tracked];
  }

  /** Adds clusters to read on every refresh (those asked about are added on their own). */
  track(clusterIds: Iterable<string>): void {
    for (const id of clusterIds) this.#tracked.add(id);
  }

  /** Reads once, then re-reads every `refreshIntervalMs` until {@link close}. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') return;
    this.#state = 'running';
    await this.refresh();
    if (this.#refreshIntervalMs > 0) {
      this.#timer = setInterval(() => {
        this.refresh().catch((err: unknown) =>
          this.#log.warn({ err }, 'cannot read cluster statuses'),
        );
      }, this.#refreshIntervalMs);
      this.#timer.unref();
    }
  }

  /** Stops refreshing. Idempotent. */
  async close(): Promise<void> {
    this.#state = 'closed';
    clearInterval(this.#timer);
    await this.#refreshing?.catch(() => undefined);
  }

  /** Reads again unless a read began within `maxAgeMs` (then waits for that one). */
  async refreshOlderThan(maxAgeMs: number): Promise<void> {
    const recent = (): boolean => this.#clock() - this.#refreshBeganAtMs <= maxAgeMs;
    if (!recent()) await this.#refreshing?.catch(() => undefined);
    await (recent() ? this.#refreshing : this.refresh());
  }

  /** Reads the storage epoch and every tracked cluster's lease and session record. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    this.#refreshBeganAtMs = this.#clock();
    const epoch = (await this.#redis.get(this.#keys.epoch())) ?? '';
    if (epoch !== this.#epoch) {
      if (this.#epoch !== undefined) {
        this.#log.warn(
          { previous: this.#epoch, epoch },
          'storage epoch changed: clusters must resync before deregistrations go on',
        );
        this.#epochNoticedAtMs = this.#clock();
      }
      this.#epoch = epoch;
      this.#timedOut.clear();
    }
    const ids = [...this.#tracked];
    const observed = await Promise.all(
      ids.map(async (id): Promise<Observed> => {
        const [lease, record] = await Promise.all([
          this.#redis.get(this.#keys.lease(id)),
          this.#sessions.read(id),
        ]);
        const held = leaseHolderOf(lease) !== '';
        const admitting = held && (record === undefined || record.disconnectedAtMs !== undefined);
        const since = this.#observed.get(id)?.admittingSinceMs;
        return {
          record,
          held,
          admittingSinceMs: admitting ? (since ?? this.#clock()) : undefined,
        };
      }),
    );
    ids.forEach((id, i) => {
      const o = observed[i];
      if (o !== undefined) this.#observed.set(id, o);
    });
    if (this.#onStatusChange !== undefined) this.#reportChanges(this.#onStatusChange, ids);
  }

  #reportChanges(
    listener: NonNullable<ClusterStatusTrackerOptions['onStatusChange']>,
    ids: readonly string[],
  ): void {
    for (const id of ids) {
      const status = this.status(id);
      const previous = this.#reported.get(id);
      this.#reported.set(id, status);
      if (
        previous !== undefined &&
        (previous.connection !== status.connection ||
          previous.awaitingResync !== status.awaitingResync ||
          previous.initialSync !== status.initialSync)
      ) {
        try {
          listener(id, status, previous);
        } catch (err) {
          this.#log.warn({ err, cluster: id }, 'cluster status listener failed');
        }
      }
    }
  }

  status(clusterId: string): ClusterStatus {
    this.#tracked.add(clusterId);
    const now = this.#clock();
    const observed = this.#observed.get(clusterId);
    const awaitingResync = this.#awaitingResync(clusterId, observed?.record, now);
    const record = observed?.record;
    // Connected since: the stream's record, or, while a stream is being admitted (its lease
    // taken, its record not written yet), when that was first seen: it is syncing already.
    const sinceMs = observed?.admittingSinceMs ?? record?.connectedSinceMs;
    return {
      connection: this.#connection(observed, now),
      awaitingResync,
      initialSync:
        awaitingResync &&
        observed !== undefined &&
        sinceMs !== undefined &&
        sessionConnection(record, observed.held, now, this.#graceMs) === 'syncing' &&
        now - sinceMs < this.#initialSyncHoldMs,
    };
  }

  #connection(observed: Observed | undefined, now: number): ClusterConnection {
    const connection =
      observed === undefined
        ? 'never-connected'
        : sessionConnection(observed.record, observed.held, now, this.#graceMs);
    switch (connection) {
      case 'syncing':
      case 'connected':
        return 'connected';
      case 'disconnected':
        return 'disconnected-within-grace';
      case 'stale':
        return 'stale';
      case 'never-connected':
        // Unknown to this storage epoch: its grace counts from when the hub noticed.
        return now - this.#epochNoticedAtMs <= this.#graceMs
          ? 'disconnected-within-grace'
          : 'stale';
    }
  }

  #awaitingResync(
    clusterId: string,
    record: ClusterSessionRecord | undefined,
    now: number,
  ): boolean {
    const epoch = this.#epoch;
    if (epoch !== undefined && epoch !== '' && record?.syncedStorageEpoch === epoch) return false;
    if (now - this.#epochNoticedAtMs < this.#resyncTimeoutMs) return true;
    if (!this.#timedOut.has(clusterId)) {
      this.#timedOut.add(clusterId);
      this.#log.error(
        { cluster: clusterId, storageEpoch: epoch, resyncTimeoutMs: this.#resyncTimeoutMs },
        'cluster did not resync within the timeout; deregistrations of its groups go on',
      );
      this.#onResyncTimeout?.(clusterId, epoch ?? '');
    }
    return false;
  }
}

function nonNegative(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`cluster status option ${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

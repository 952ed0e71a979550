import { SpanKind, context, trace, type Span, type Tracer } from '@opentelemetry/api';
import { Queue } from 'bullmq';
import type { Binding, Logger, ServiceKey, TraceContext } from '../../shared/index.js';
import {
  SpanAttribute,
  SpanName,
  TGFED_TRACER_NAME,
  markSpanFailed,
  serviceKeyString,
  silentLogger,
  traceHeadersFromContext,
  traceHeadersOf,
  withSpan,
} from '../../shared/index.js';
import type { ClusterDirectory } from '../federation/desired-targets.js';
import { selectsCluster, targetGroupArnsOf } from '../federation/subscription-resolver.js';
import type { InitialSyncHold, ReconcileSink } from '../ingest/reconcile-sink.js';
import type { RedisClient } from '../state/index.js';
import {
  MAX_TRACE_LINKS,
  RECONCILE_JOB_NAME,
  ReconcileQueueOptionsError,
  compileReconcileQueueOptions,
  keepTraceLinks,
  newReconcileJobId,
  reconcileJobOptions,
  reconcileQueueFor,
  type CompiledReconcileQueueOptions,
  type ReconcileQueueAddress,
  type ReconcileQueueOptions,
  type ReconcileReason,
  type ReconcileRequest,
} from './reconcile-contract.js';

/** Enqueuing reconcile work failed; the batch that caused it must not be acked. */
export class ReconcileEnqueueError extends Error {
  override readonly name = 'ReconcileEnqueueError';
}

/** Options of {@link BullMqReconcileSink}. */
export interface BullMqReconcileSinkOptions extends ReconcileQueueOptions {
  /** @default Date.now */
  clock?: () => number;
  /** @default silentLogger() */
  logger?: Logger;
  /**
   * Starts a `tgfed.reconcile.enqueue` producer span per request; the job carries its context
   * as the reconcile's link. @default the global tracer (a no-op unless one is registered)
   */
  tracer?: Tracer;
  /**
   * How long at most, from its start, a local cluster's initial sync keeps back the reconciles
   * of the groups it feeds (see {@link BullMqReconcileSink.initialSyncStarted}); the workers'
   * `initialSyncHoldMs`, which bounds how long their registrations wait for it. 0: never.
   * @default 10000
   */
  initialSyncHoldMs?: number;
}

/** Outcome of one enqueue. */
export interface EnqueuedReconcile {
  readonly targetGroupArn: string;
  /** The job that will run the reconcile (an existing one when coalesced). */
  readonly jobId: string;
  /** True when the request joined a job already pending for the group. */
  readonly coalesced: boolean;
}

/** Bindings at one revision, as the store's snapshot gives them. */
export interface BindingsSnapshot {
  readonly revision: number;
  readonly bindings: readonly Binding[];
  /** The store's generation (see the binding store's snapshot); absent for bindings not stored. */
  readonly generation?: string;
}

interface IndexedBinding {
  readonly binding: Binding;
  readonly content: string;
  readonly groups: readonly string[];
}

/** One group's share of a flush: the requests of every batch that joined it, merged. */
interface MergedRequest {
  /** The batches' links (their enqueue spans', or their own traceparents when not recording). */
  readonly traceLinks: Set<string>;
  /** The earliest observation time of the batches. */
  observedAtMs: number | undefined;
  /** One open `tgfed.reconcile.enqueue` span per batch, ended when the flush is done. */
  readonly spans: Span[];
  /** Kept back for an initial sync: it waited long enough, no debounce window. */
  now?: boolean;
}

/** What a group's reconciles kept back during initial syncs carry, merged. */
interface DeferredRequest {
  readonly traceLinks: Set<string>;
  observedAtMs: number | undefined;
}

/** One local cluster's initial sync, while it keeps back the reconciles of its groups. */
interface SyncHold {
  readonly clusterId: string;
  /** The groups of the bindings that select the cluster. */
  groups: Set<string>;
  readonly timer: NodeJS.Timeout | undefined;
  /**
   * A sync expected, not begun here (see {@link BullMqReconcileSink.initialSyncsExpected}): its
   * end enqueues what was kept back, not every group it covered (nothing of its cluster came).
   */
  readonly expected: boolean;
  /** Set by the first end: every later end returns the same release. */
  ended: Promise<void> | undefined;
}

/** Pause before enqueuing again reconciles whose release failed (they stay kept back). */
const RELEASE_RETRY_MS = 1_000;

/** Requests for changed endpoints gathered while the previous flush was under way. */
interface PendingFlush {
  readonly requests: Map<string, MergedRequest>;
  readonly done: Promise<Map<string, EnqueuedReconcile>>;
  readonly settle: {
    resolve: (enqueued: Map<string, EnqueuedReconcile>) => void;
    reject: (err: unknown) => void;
  };
}

function pendingFlush(): PendingFlush {
  let settle!: PendingFlush['settle'];
  const done = new Promise<Map<string, EnqueuedReconcile>>((resolve, reject) => {
    settle = { resolve, reject };
  });
  // A caller that gave up (its stream ended) must not leave an unhandled rejection behind.
  done.catch(() => undefined);
  return { requests: new Map(), done, settle };
}

/** Adds a trace link, dropping the oldest beyond {@link MAX_TRACE_LINKS} (as the flush keeps the last). */
function addLink(links: Set<string>, link: string): void {
  links.delete(link);
  links.add(link);
  if (links.size > MAX_TRACE_LINKS) links.delete(links.values().next().value as string);
}

function earliest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

function contentOf(binding: Binding): string {
  return JSON.stringify({ ...binding, version: 0, updatedUnixMs: 0 });
}

/**
 * Bindings indexed by the service names they select, so that a batch costs a few map look-ups
 * per service instead of a scan of every binding.
 *
 * Label selectors on services are matched on namespace and name only: the ingest reports a
 * service's key, and a service whose labels just stopped matching (or that was removed) must
 * still reconcile the groups it fed. An extra reconcile finds no difference and calls no AWS API.
 */
class BindingIndex {
  readonly byName = new Map<string, IndexedBinding>();
  readonly #exact = new Map<string, IndexedBinding[]>();
  readonly #byNamespace = new Map<string, IndexedBinding[]>();
  readonly #byServiceName = new Map<string, IndexedBinding[]>();
  readonly #anyService: IndexedBinding[] = [];

  constructor(bindings: readonly Binding[]) {
    for (const binding of bindings) {
      const entry = { binding, content: contentOf(binding), groups: targetGroupArnsOf(binding) };
      this.byName.set(binding.name, entry);
      const namespace = binding.services?.namespace ?? '';
      const name = binding.services?.name ?? '';
      if (namespace !== '' && name !== '') push(this.#exact, `${namespace}/${name}`, entry);
      else if (namespace !== '') push(this.#byNamespace, namespace, entry);
      else if (name !== '') push(this.#byServiceName, name, entry);
      else this.#anyService.push(entry);
    }
  }

  candidates(service: ServiceKey): IndexedBinding[] {
    return [
      ...(this.#exact.get(serviceKeyString(service)) ?? []),
      ...(this.#byNamespace.get(service.namespace) ?? []),
      ...(this.#byServiceName.get(service.name) ?? []),
      ...this.#anyService,
    ];
  }
}

function push<V>(map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

type SinkState = 'open' | 'closing' | 'closed';

/**
 * The ingest's {@link ReconcileSink} on BullMQ: maps a batch's changed services to the target
 * groups whose bindings select them in that cluster, and enqueues one coalesced reconcile per
 * group with the batch's trace link (contract: `reconcile-contract.ts`).
 */
export class BullMqReconcileSink implements ReconcileSink {
  readonly #connection: RedisClient;
  readonly #directory: ClusterDirectory;
  readonly #options: CompiledReconcileQueueOptions;
  readonly #clock: () => number;
  readonly #logger: Logger;
  readonly #tracer: Tracer;
  readonly #queues = new Map<number, Queue<ReconcileRequest>>();
  #index = new BindingIndex([]);
  #revision: number | undefined;
  #generation: string | undefined;
  #state: SinkState = 'open';
  /** The flush under way, if any. */
  #flushing: Promise<void> | undefined;
  /** Requests waiting for the flush under way to end; they go in the next one. */
  #pending: PendingFlush | undefined;
  readonly #initialSyncHoldMs: number;
  /** Local clusters in their initial sync, and clusters whose initial sync is expected. */
  readonly #holds = new Set<SyncHold>();
  /** Per cluster, its expected sync's hold (see {@link initialSyncsExpected}). */
  readonly #expected = new Map<string, SyncHold>();
  /** Per group, how many of {@link #holds} it is fed by. */
  #waiting = new Map<string, number>();
  /** Reconciles kept back while their groups are waiting (or until a failed release is retried). */
  readonly #deferred = new Map<string, DeferredRequest>();
  #releaseRetry: NodeJS.Timeout | undefined;

  /**
   * @param connection shared by the queues (BullMQ does not close a connection it was given); the
   *   caller closes it after {@link close}.
   */
  constructor(
    connection: RedisClient,
    directory: ClusterDirectory,
    options: BullMqReconcileSinkOptions = {},
  ) {
    this.#connection = connection;
    this.#directory = directory;
    this.#options = compileReconcileQueueOptions(options);
    this.#clock = options.clock ?? Date.now;
    this.#logger = options.logger ?? silentLogger();
    this.#tracer = options.tracer ?? trace.getTracer(TGFED_TRACER_NAME);
    const holdMs = options.initialSyncHoldMs ?? 10_000;
    if (!Number.isInteger(holdMs) || holdMs < 0 || holdMs > 600_000) {
      throw new ReconcileQueueOptionsError('initialSyncHoldMs must be an integer from 0 to 600000');
    }
    this.#initialSyncHoldMs = holdMs;
  }

  /** The compiled queue options (shard count, prefix, debounce) this sink uses. */
  get options(): CompiledReconcileQueueOptions {
    return this.#options;
  }

  /**
   * Replaces the bindings. Every group of a binding that was added, changed or deleted is
   * enqueued with reason `binding` (old and new groups alike: a group a binding no longer feeds
   * must lose its targets). The first snapshot only builds the index; older revisions are ignored
   * within a generation. Another generation means Redis lost the bindings and revisions restarted:
   * its snapshot is taken whatever its revision, except an empty store not written since the loss
   * (generation ''), which keeps the last index until the bindings are written back.
   */
  async updateBindings(snapshot: BindingsSnapshot): Promise<EnqueuedReconcile[]> {
    const known = this.#generation;
    const generation = snapshot.generation;
    if (generation === '' && known !== undefined && known !== '') return [];
    const newLineage = generation !== undefined && known !== undefined && generation !== known;
    if (!newLineage && this.#revision !== undefined && snapshot.revision < this.#revision) {
      return [];
    }
    const first = this.#revision === undefined;
    const previous = this.#index;
    const next = new BindingIndex(snapshot.bindings);
    this.#index = next;
    this.#revision = snapshot.revision;
    if (generation !== undefined) this.#generation = generation;
    if (first) {
      if (this.#holds.size > 0) await this.#regroupHolds();
      return [];
    }
    const affected = new Set<string>();
    for (const [name, entry] of next.byName) {
      const before = previous.byName.get(name);
      if (before?.content === entry.content) continue;
      for (const arn of entry.groups) affected.add(arn);
      for (const arn of before?.groups ?? []) affected.add(arn);
    }
    for (const [name, before] of previous.byName) {
      if (!next.byName.has(name)) for (const arn of before.groups) affected.add(arn);
    }
    const enqueued = await this.#enqueueAll([...affected].sort(), 'binding', []);
    // After the binding's own requests: a failed release must not cost them.
    if (this.#holds.size > 0) await this.#regroupHolds();
    return enqueued;
  }

  /** The target groups fed by these services of this cluster, sorted. */
  targetGroupsFor(clusterId: string, services: readonly ServiceKey[]): string[] {
    const labels = this.#directory.labels(clusterId) ?? {};
    const clusterSelection = new Map<IndexedBinding, boolean>();
    const groups = new Set<string>();
    for (const service of services) {
      for (const entry of this.#index.candidates(service)) {
        let selected = clusterSelection.get(entry);
        if (selected === undefined) {
          selected = selectsCluster(entry.binding.clusters, clusterId, labels);
          clusterSelection.set(entry, selected);
        }
        if (selected) for (const arn of entry.groups) groups.add(arn);
      }
    }
    return [...groups].sort();
  }

  /**
   * Enqueues the groups the batch's services feed and resolves once every one is in a job, so
   * that the batch is acknowledged only then.
   *
   * Concurrent batches share the adds (group commit): while one flush of adds is under way, the
   * batches that arrive gather, and the next flush makes one add per group for all of them, each
   * after its batch was written. Under load this turns an add per group and batch into an add
   * per group and round trip; alone, a batch waits for nothing. Each batch still gets its own
   * enqueue span per group, linked from the reconcile.
   */
  async changed(
    clusterId: string,
    services: readonly ServiceKey[],
    batchTrace: TraceContext | undefined,
    observedAtMs?: number,
  ): Promise<void> {
    const all = this.targetGroupsFor(clusterId, services);
    const batchSpan = trace.getActiveSpan();
    batchSpan?.setAttribute(SpanAttribute.TGFED_BATCH_TARGET_GROUPS, all.length);
    if (all.length === 0) return;
    if (this.#state !== 'open') throw new ReconcileEnqueueError('the reconcile sink is closed');
    const batchLink = traceHeadersFromContext(batchTrace)?.traceparent;
    const groups = this.#waiting.size === 0 ? all : this.#keepBack(all, batchLink, observedAtMs);
    if (groups.length < all.length) {
      batchSpan?.setAttribute(
        SpanAttribute.TGFED_BATCH_DEFERRED_TARGET_GROUPS,
        all.length - groups.length,
      );
    }
    if (groups.length === 0) return;
    const flush = (this.#pending ??= pendingFlush());
    const parent = context.active();
    for (const arn of groups) {
      const address = reconcileQueueFor(arn, this.#options);
      const span = this.#tracer.startSpan(
        SpanName.RECONCILE_ENQUEUE,
        { kind: SpanKind.PRODUCER, attributes: this.#enqueueAttributes(address, arn, 'endpoints') },
        parent,
      );
      const link = traceHeadersOf(span.spanContext())?.traceparent ?? batchLink;
      let merged = flush.requests.get(arn);
      if (merged === undefined) {
        merged = { traceLinks: new Set(), observedAtMs: undefined, spans: [] };
        flush.requests.set(arn, merged);
      }
      if (link !== undefined) merged.traceLinks.add(link);
      if (observedAtMs !== undefined) {
        merged.observedAtMs = earliest(merged.observedAtMs, observedAtMs);
      }
      merged.spans.push(span);
    }
    this.#flushPending();
    await flush.done;
  }

  /**
   * A stream of this hub began the initial sync of a cluster that has not synced against the
   * storage epoch (a cold start, a Redis loss). Until the hold ends (the stream's SYNCED, its
   * end, or `initialSyncHoldMs` after it began, as the workers bound their wait), a batch's
   * reconciles of the groups the cluster feeds are kept back, with their trace links and
   * observation times, and enqueued when no local sync feeding the group is left. Those
   * reconciles could only record registrations waiting for the sync (the workers hold them
   * while a feeding cluster syncs): at fleet scale they were hundreds of jobs a second taking
   * the CPU the sync itself needed.
   *
   * When a hold ends, every group it covered that no other local sync feeds is enqueued, kept
   * back or not. So if a hub dies with reconciles kept back, the cluster's next stream (still
   * its initial sync: it never sent SYNCED in this epoch) brings them back at its own end, although
   * its agent resends nothing the dead hub wrote; the workers also reconcile the cluster's groups
   * when they see its stream end. A release that fails keeps its reconciles back and is tried
   * again after {@link RELEASE_RETRY_MS}. A cluster syncing at another hub replica keeps back
   * here only what {@link initialSyncsExpected} expects of it, until it is seen synced.
   */
  initialSyncStarted(clusterId: string): InitialSyncHold {
    if (this.#initialSyncHoldMs === 0 || this.#state !== 'open') {
      return { end: () => Promise.resolve() };
    }
    const hold = this.#hold(clusterId, false);
    // The sync expected has begun: its hold hands over to this one (no group is let go between).
    this.#endExpected(clusterId).catch((err: unknown) =>
      this.#logger.warn({ err, cluster: clusterId }, 'cannot enqueue reconciles kept back'),
    );
    return { end: () => this.#endHold(hold) };
  }

  /**
   * After a start or a Redis loss: these clusters have not synced against the storage epoch, and
   * their streams are expected (agents reconnect after a backoff, not all at once). Until each
   * one's initial sync begins here ({@link initialSyncStarted} takes over), it is seen synced at
   * another replica ({@link initialSyncSeen}), or `initialSyncHoldMs` passed, the reconciles of
   * the groups it feeds are kept back as for a sync under way. Without this, a group whose first
   * clusters had synced before the others' streams began was enqueued in the lull between,
   * reconciled while those synced (its registrations held for them), and again after: at fleet
   * scale, twice the reconciles of a cold start. Its end enqueues what was kept back, once no
   * other sync feeds the group. A cluster already expected or syncing here is left as it is.
   */
  initialSyncsExpected(clusterIds: Iterable<string>): void {
    if (this.#initialSyncHoldMs === 0 || this.#state !== 'open') return;
    const syncing = new Set([...this.#holds].map((h) => h.clusterId));
    for (const clusterId of clusterIds) {
      if (!syncing.has(clusterId)) this.#expected.set(clusterId, this.#hold(clusterId, true));
    }
  }

  /**
   * The cluster has synced against the storage epoch (seen in its session record, wherever its
   * stream is): an expected sync of it no longer keeps anything back. A sync under way here ends
   * with its stream's SYNCED, not with this.
   */
  initialSyncSeen(clusterId: string): Promise<void> {
    return this.#endExpected(clusterId);
  }

  /** Clusters whose initial sync is expected and has not begun here (for tests). */
  get expectedSyncs(): string[] {
    return [...this.#expected.keys()].sort();
  }

  /** Starts holding the groups the cluster feeds; ends by itself after `initialSyncHoldMs`. */
  #hold(clusterId: string, expected: boolean): SyncHold {
    const timer = setTimeout(() => {
      const ending = expected ? this.#endExpected(clusterId) : this.#endHold(hold);
      ending.catch((err: unknown) =>
        this.#logger.warn({ err, cluster: clusterId }, 'cannot enqueue reconciles kept back'),
      );
    }, this.#initialSyncHoldMs);
    timer.unref();
    const hold: SyncHold = {
      clusterId,
      groups: this.#groupsOf(clusterId),
      timer,
      expected,
      ended: undefined,
    };
    this.#holds.add(hold);
    for (const arn of hold.groups) this.#waiting.set(arn, (this.#waiting.get(arn) ?? 0) + 1);
    return hold;
  }

  #endExpected(clusterId: string): Promise<void> {
    const hold = this.#expected.get(clusterId);
    if (hold === undefined) return Promise.resolve();
    this.#expected.delete(clusterId);
    return this.#endHold(hold);
  }

  #endHold(hold: SyncHold): Promise<void> {
    if (hold.ended !== undefined) return hold.ended;
    clearTimeout(hold.timer);
    this.#holds.delete(hold);
    for (const arn of hold.groups) {
      const n = (this.#waiting.get(arn) ?? 0) - 1;
      if (n > 0) this.#waiting.set(arn, n);
      else this.#waiting.delete(arn);
    }
    if (!hold.expected) {
      // A group another hold still waits for is owed a reconcile all the same: whichever hold
      // ends last enqueues it, an expected one too (which enqueues only what was kept back).
      for (const arn of hold.groups) {
        if (this.#waiting.has(arn) && !this.#deferred.has(arn)) {
          this.#deferred.set(arn, { traceLinks: new Set(), observedAtMs: undefined });
        }
      }
    }
    hold.ended = this.#release(hold.expected ? [] : hold.groups);
    return hold.ended;
  }

  /** Groups held back now (for tests and the admin view). */
  get deferredGroups(): string[] {
    return [...this.#deferred.keys()].sort();
  }

  /** Every group of a binding that selects the cluster. */
  #groupsOf(clusterId: string): Set<string> {
    const labels = this.#directory.labels(clusterId) ?? {};
    const groups = new Set<string>();
    for (const entry of this.#index.byName.values()) {
      if (!selectsCluster(entry.binding.clusters, clusterId, labels)) continue;
      for (const arn of entry.groups) groups.add(arn);
    }
    return groups;
  }

  /** After a bindings change: the holds' groups again, and what no longer waits goes. */
  async #regroupHolds(): Promise<void> {
    const waiting = new Map<string, number>();
    for (const hold of this.#holds) {
      hold.groups = this.#groupsOf(hold.clusterId);
      for (const arn of hold.groups) waiting.set(arn, (waiting.get(arn) ?? 0) + 1);
    }
    this.#waiting = waiting;
    await this.#release();
  }

  /** Keeps back the reconciles of groups fed by a local initial sync; returns the others. */
  #keepBack(
    groups: readonly string[],
    link: string | undefined,
    observedAtMs: number | undefined,
  ): string[] {
    const now: string[] = [];
    for (const arn of groups) {
      if (!this.#waiting.has(arn)) {
        now.push(arn);
        continue;
      }
      let deferred = this.#deferred.get(arn);
      if (deferred === undefined) {
        deferred = { traceLinks: new Set(), observedAtMs: undefined };
        this.#deferred.set(arn, deferred);
      }
      if (link !== undefined) addLink(deferred.traceLinks, link);
      if (observedAtMs !== undefined) {
        deferred.observedAtMs = earliest(deferred.observedAtMs, observedAtMs);
      }
    }
    return now;
  }

  /**
   * Enqueues the kept-back reconciles of groups no local initial sync feeds any more, and those
   * of `groups` (a hold's) that none feeds, kept back or not. If the enqueue fails they are kept
   * back again and tried again after {@link RELEASE_RETRY_MS}.
   */
  async #release(groups: Iterable<string> = []): Promise<void> {
    const ready = new Map<string, DeferredRequest>();
    for (const arn of groups) {
      if (!this.#waiting.has(arn)) {
        ready.set(arn, { traceLinks: new Set(), observedAtMs: undefined });
      }
    }
    for (const [arn, deferred] of this.#deferred) {
      if (!this.#waiting.has(arn)) ready.set(arn, deferred);
    }
    if (ready.size === 0) return;
    const flush = (this.#pending ??= pendingFlush());
    for (const [arn, deferred] of ready) {
      this.#deferred.delete(arn);
      let merged = flush.requests.get(arn);
      if (merged === undefined) {
        merged = { traceLinks: new Set(), observedAtMs: undefined, spans: [] };
        flush.requests.set(arn, merged);
      }
      merged.now = true;
      for (const link of deferred.traceLinks) merged.traceLinks.add(link);
      merged.observedAtMs = earliest(merged.observedAtMs, deferred.observedAtMs);
    }
    this.#logger.debug({ groups: ready.size }, 'reconciles kept back for initial syncs released');
    this.#flushPending();
    try {
      await flush.done;
    } catch (err) {
      for (const [arn, request] of ready) {
        const kept = this.#deferred.get(arn);
        if (kept === undefined) {
          this.#deferred.set(arn, request);
          continue;
        }
        for (const link of request.traceLinks) addLink(kept.traceLinks, link);
        kept.observedAtMs = earliest(kept.observedAtMs, request.observedAtMs);
      }
      this.#retryRelease();
      throw err;
    }
  }

  #retryRelease(): void {
    if (this.#releaseRetry !== undefined || this.#state !== 'open') return;
    this.#releaseRetry = setTimeout(() => {
      this.#releaseRetry = undefined;
      this.#release().catch((err: unknown) =>
        this.#logger.warn({ err }, 'cannot enqueue reconciles kept back; trying again'),
      );
    }, RELEASE_RETRY_MS);
    this.#releaseRetry.unref();
  }

  /** Starts the next flush unless one is under way (it starts the next one when it ends). */
  #flushPending(): void {
    if (this.#flushing !== undefined || this.#pending === undefined) return;
    const flush = this.#pending;
    this.#pending = undefined;
    this.#flushing = this.#flush(flush)
      .catch((err: unknown) => flush.settle.reject(err))
      .finally(() => {
        this.#flushing = undefined;
        this.#flushPending();
      });
  }

  async #flush(flush: PendingFlush): Promise<void> {
    const entries = [...flush.requests];
    const settled = await Promise.allSettled(
      entries.map(([arn, merged]) => {
        const request: ReconcileRequest = {
          targetGroupArn: arn,
          reason: 'endpoints',
          requestedAtMs: this.#clock(),
          traceLinks: [...merged.traceLinks].slice(-MAX_TRACE_LINKS),
          ...(merged.observedAtMs === undefined ? {} : { observedAtMs: merged.observedAtMs }),
        };
        return this.#add(
          reconcileQueueFor(arn, this.#options),
          request,
          merged.now ? 0 : undefined,
        );
      }),
    );
    const enqueued = new Map<string, EnqueuedReconcile>();
    let failure: unknown;
    entries.forEach(([arn, merged], i) => {
      const result = settled[i] as PromiseSettledResult<EnqueuedReconcile>;
      merged.spans.forEach((span, n) => {
        if (result.status === 'fulfilled') {
          span.setAttributes({
            [SpanAttribute.MESSAGING_MESSAGE_ID]: result.value.jobId,
            // Joined a pending job, or another batch's request in the same add.
            [SpanAttribute.TGFED_RECONCILE_COALESCED]: result.value.coalesced || n > 0,
          });
        } else markSpanFailed(span, result.reason);
        span.end();
      });
      if (result.status === 'fulfilled') enqueued.set(arn, result.value);
      else failure ??= result.reason;
    });
    this.#logger.debug(
      {
        reason: 'endpoints',
        groups: entries.length,
        requests: entries.reduce((n, [, m]) => n + m.spans.length, 0),
        coalesced: [...enqueued.values()].filter((e) => e.coalesced).length,
      },
      'reconciles enqueued',
    );
    // Every batch of the flush fails with the first error: none of them is acknowledged.
    if (failure === undefined) flush.settle.resolve(enqueued);
    else flush.settle.reject(failure);
  }

  /**
   * Enqueues (or joins) the reconcile of one group; for operators, drift checks and tests.
   *
   * Traced by a manual producer span rather than bullmq-otel: BullMQ's telemetry takes its
   * tracer from the global provider, which tgfed does not register (hub, workers and test
   * agents share processes), and a deduplicated add returns the pending job, whose trace
   * metadata is the first producer's. tgfed keeps every producer's context itself: in the job
   * (`traceLinks`) and, for requests coalesced into a pending job, in its links list.
   *
   * @param traceLinks kept when there is no recording enqueue span (the batch's traceparent)
   */
  async request(
    targetGroupArn: string,
    reason: ReconcileReason,
    traceLinks: readonly string[] = [],
    observedAtMs?: number,
  ): Promise<EnqueuedReconcile> {
    if (this.#state !== 'open') throw new ReconcileEnqueueError('the reconcile sink is closed');
    const address = reconcileQueueFor(targetGroupArn, this.#options);
    return withSpan(
      this.#tracer,
      SpanName.RECONCILE_ENQUEUE,
      {
        kind: SpanKind.PRODUCER,
        attributes: this.#enqueueAttributes(address, targetGroupArn, reason),
      },
      async (span) => {
        const own = traceHeadersOf(span.spanContext())?.traceparent;
        const enqueued = await this.#add(address, {
          targetGroupArn,
          reason,
          requestedAtMs: this.#clock(),
          traceLinks: own === undefined ? traceLinks.slice(0, MAX_TRACE_LINKS) : [own],
          ...(observedAtMs === undefined ? {} : { observedAtMs }),
        });
        span.setAttributes({
          [SpanAttribute.MESSAGING_MESSAGE_ID]: enqueued.jobId,
          [SpanAttribute.TGFED_RECONCILE_COALESCED]: enqueued.coalesced,
        });
        return enqueued;
      },
    );
  }

  #enqueueAttributes(
    address: ReconcileQueueAddress,
    targetGroupArn: string,
    reason: ReconcileReason,
  ): Record<string, string | number> {
    return {
      [SpanAttribute.MESSAGING_SYSTEM]: 'bullmq',
      [SpanAttribute.MESSAGING_OPERATION_TYPE]: 'send',
      [SpanAttribute.MESSAGING_OPERATION_NAME]: 'add',
      [SpanAttribute.MESSAGING_DESTINATION_NAME]: `${address.prefix}:${address.name}`,
      [SpanAttribute.TGFED_SHARD]: address.shard,
      [SpanAttribute.TGFED_TARGET_GROUP_ARN]: targetGroupArn,
      [SpanAttribute.TGFED_RECONCILE_REASON]: reason,
    };
  }

  /** One BullMQ add (deduplicated per group); a request that joined a pending job keeps its links. */
  async #add(
    address: ReconcileQueueAddress,
    request: ReconcileRequest,
    delayMs?: number,
  ): Promise<EnqueuedReconcile> {
    const { targetGroupArn } = request;
    const jobId = newReconcileJobId();
    let job;
    try {
      job = await this.#queue(address).add(
        RECONCILE_JOB_NAME,
        request,
        reconcileJobOptions(request, this.#options, jobId, delayMs),
      );
    } catch (err) {
      throw new ReconcileEnqueueError(
        `cannot enqueue the reconcile of ${targetGroupArn}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const coalesced = job.id !== jobId;
    if (coalesced && (request.traceLinks.length > 0 || request.observedAtMs !== undefined)) {
      await this.#keepLinks(address, request);
    }
    return { targetGroupArn, jobId: job.id ?? jobId, coalesced };
  }

  /** Closes the queues (not the connection). Idempotent; every queue is closed even if one fails. */
  async close(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    // What initial syncs kept back is enqueued before the queues close.
    const held = new Set<string>();
    for (const hold of this.#holds) {
      clearTimeout(hold.timer);
      if (!hold.expected) for (const arn of hold.groups) held.add(arn);
    }
    clearTimeout(this.#releaseRetry);
    this.#holds.clear();
    this.#expected.clear();
    this.#waiting.clear();
    this.#release(held).catch((err: unknown) =>
      this.#logger.warn({ err }, 'cannot enqueue reconciles kept back for initial syncs'),
    );
    // Batches waiting for a flush still get their answer (acked or failed), not a hang: each
    // flush starts the next one when it ends.
    while (this.#flushing !== undefined) await this.#flushing.catch(() => undefined);
    const results = await Promise.allSettled([...this.#queues.values()].map((q) => q.close()));
    this.#queues.clear();
    this.#state = 'closed';
    for (const result of results) {
      if (result.status === 'rejected') {
        this.#logger.warn({ err: result.reason as unknown }, 'closing a reconcile queue failed');
      }
    }
  }

  async #enqueueAll(
    groups: readonly string[],
    reason: ReconcileReason,
    traceLinks: readonly string[],
    observedAtMs?: number,
  ): Promise<EnqueuedReconcile[]> {
    const enqueued = await Promise.all(
      groups.map((arn) => this.request(arn, reason, traceLinks, observedAtMs)),
    );
    this.#logger.debug(
      { reason, groups: groups.length, coalesced: enqueued.filter((e) => e.coalesced).length },
      'reconciles enqueued',
    );
    return enqueued;
  }

  // Telemetry only: a link (or observation time) that races with the worker taking it lands in
  // the next reconcile.
  async #keepLinks(address: ReconcileQueueAddress, request: ReconcileRequest): Promise<void> {
    try {
      await keepTraceLinks(this.#connection, address, request.targetGroupArn, {
        traceLinks: request.traceLinks,
        observedAtMs: request.observedAtMs,
        ttlMs: this.#options.traceLinksTtlMs,
      });
    } catch (err) {
      this.#logger.warn(
        { err, targetGroupArn: request.targetGroupArn },
        'cannot keep trace links of a coalesced reconcile',
      );
    }
  }

  #queue(address: ReconcileQueueAddress): Queue<ReconcileRequest> {
    let queue = this.#queues.get(address.shard);
    if (queue === undefined) {
      queue = new Queue<ReconcileRequest>(address.name, {
        connection: this.#connection,
        prefix: address.prefix,
        streams: { events: { maxLen: this.#options.eventsMaxLen } },
      });
      queue.on('error', (err) =>
        this.#logger.warn({ err, shard: address.shard }, 'reconcile queue error'),
      );
      this.#queues.set(address.shard, queue);
    }
    return queue;
  }
}

import { setTimeout as sleep } from 'node:timers/promises';
import {
  DiscoveryV1Api,
  Observable,
  Watch,
  type ConfigurationOptions,
  type KubeConfig,
  type ObservableMiddleware,
  type V1EndpointSlice,
  type V1EndpointSliceList,
  type V1Status,
} from '@kubernetes/client-node';
// Not re-exported by the package index; it is what the generated API clients use to turn list
// responses into model objects, so watch events get exactly the same shape (Dates included).
import { ObjectSerializer } from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import { pino, type Logger } from 'pino';
import { JitteredBackoff } from '../../shared/index.js';

/** Options for {@link EndpointSliceWatch}. */
export interface EndpointSliceWatchOptions {
  /** Namespaces to watch; empty = all namespaces (one list-watch per namespace otherwise). @default [] */
  namespaces?: string[];
  /** Kubernetes label selector applied to lists and watches, e.g. `app.kubernetes.io/part-of=shop`. */
  labelSelector?: string;
  /**
   * Restart a watch that has seen nothing (no event, no bookmark) for this long. The API server
   * sends a bookmark about once a minute while any EndpointSlice in the cluster changes (seen on
   * Kubernetes 1.35); where none changes at all it sends none until 2 s before the watch's
   * timeout, so there a healthy watch is restarted every `watchdogMs`, which costs one request.
   * @default 120000
   */
  watchdogMs?: number;
  /**
   * Server-side watch timeout; the server ends the watch cleanly after it and the watch resumes.
   * Randomized by ±10% per request so that the watches of many agents do not end together.
   * @default 300
   */
  watchTimeoutSeconds?: number;
  /** Ceiling of the first retry delay after an error. @default 250 */
  backoffInitialMs?: number;
  /** Largest retry delay after repeated errors. @default 30000 */
  backoffMaxMs?: number;
  /** Items per list page (`limit`/`continue`). @default 500 */
  pageSize?: number;
  /** @default a silent logger */
  logger?: Logger;
  /** Aborting it closes the watch, as {@link EndpointSliceWatch.close} does. */
  signal?: AbortSignal;
}

/** {@link EndpointSliceWatchOptions} with defaults applied and values validated. */
export interface CompiledEndpointSliceWatchOptions {
  readonly namespaces: readonly string[];
  readonly labelSelector: string | undefined;
  readonly watchdogMs: number;
  readonly watchTimeoutSeconds: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly pageSize: number;
  readonly logger: Logger;
  readonly signal: AbortSignal | undefined;
}

// RFC 1123 label: what Kubernetes accepts as a namespace name.
const namespacePattern = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Applies defaults and validates; throws a RangeError naming the offending setting. */
export function compileEndpointSliceWatchOptions(
  options: EndpointSliceWatchOptions = {},
): CompiledEndpointSliceWatchOptions {
  const positiveInteger = (name: string, value: number | undefined, fallback: number): number => {
    const v = value ?? fallback;
    if (!Number.isSafeInteger(v) || v <= 0) {
      throw new RangeError(
        `EndpointSliceWatchOptions.${name} must be a positive integer, got ${String(value)}`,
      );
    }
    return v;
  };
  const namespaces = [...new Set(options.namespaces ?? [])];
  for (const namespace of namespaces) {
    if (!namespacePattern.test(namespace)) {
      throw new RangeError(
        `EndpointSliceWatchOptions.namespaces: "${namespace}" is not a valid namespace name`,
      );
    }
  }
  const backoffInitialMs = positiveInteger('backoffInitialMs', options.backoffInitialMs, 250);
  const backoffMaxMs = positiveInteger('backoffMaxMs', options.backoffMaxMs, 30_000);
  if (backoffMaxMs < backoffInitialMs) {
    throw new RangeError(
      `EndpointSliceWatchOptions.backoffMaxMs (${backoffMaxMs}) must be >= backoffInitialMs (${backoffInitialMs})`,
    );
  }
  const labelSelector = options.labelSelector?.trim();
  return {
    namespaces,
    labelSelector: labelSelector === '' ? undefined : labelSelector,
    watchdogMs: positiveInteger('watchdogMs', options.watchdogMs, 120_000),
    watchTimeoutSeconds: positiveInteger('watchTimeoutSeconds', options.watchTimeoutSeconds, 300),
    backoffInitialMs,
    backoffMaxMs,
    pageSize: positiveInteger('pageSize', options.pageSize, 500),
    logger: options.logger ?? pino({ level: 'silent' }),
    signal: options.signal,
  };
}

/**
 * Receives the watched EndpointSlices. Calls are synchronous and, per scope, in API order: one
 * `onSync` after each (re)list, then the events that follow that list. Exceptions are logged and
 * counted; they do not stop the watch.
 */
export interface EndpointSliceHandler {
  /**
   * Full state of one scope after a (re)list: `scope` is the namespace, or null for all
   * namespaces. Replaces everything known of the scope: a slice held before and absent now is gone.
   */
  onSync(scope: string | null, slices: V1EndpointSlice[]): void;
  /** A slice was created or changed (the whole new slice). */
  onUpsert(slice: V1EndpointSlice): void;
  /** A slice was deleted (its last state). */
  onDelete(slice: V1EndpointSlice): void;
}

/** Lifecycle of an {@link EndpointSliceWatch}; with several scopes, the least healthy one's. */
export type EndpointSliceWatchState = 'idle' | 'listing' | 'watching' | 'backoff' | 'closed';

/** Running totals over all scopes, for metrics. */
export interface EndpointSliceWatchCounters {
  /** Completed (re)lists. */
  lists: number;
  /** Routine watch restarts: the server ended the watch, or client-node's inactivity abort. */
  watchRestarts: number;
  /** 410 Gone answers (watch too old, or list continue token expired), each followed by a relist. */
  gone410: number;
  /** Watches restarted because they saw nothing for `watchdogMs`. */
  watchdogRestarts: number;
  /** Failed API requests and watch errors, each followed by a backoff. */
  errors: number;
  /** Exceptions thrown by the handler. */
  handlerErrors: number;
}

/** A list page, unlike a watch, must end; client-node sets no timeout on API requests. */
const listPageTimeoutMs = 60_000;
/** A continue token that expired this many times in a row makes the list fail (and back off). */
const maxListRestarts = 3;
/**
 * A watch that the server ends cleanly within this time without a single event is treated as an
 * error, so that a server misbehaving that way meets backoff rather than a hot loop (client-go's
 * reflector calls this a "very short watch").
 */
const veryShortWatchMs = 1_000;
const discoveryPath = '/apis/discovery.k8s.io/v1';

/**
 * List-then-watch of `discovery.k8s.io/v1` EndpointSlices that never dies silently: every error
 * is retried with jittered backoff, 410 Gone relists, a watchdog restarts silent watches.
 *
 * Why our own loop on `DiscoveryV1Api` (list) and `Watch` (watch) rather than client-node's informer
 * (`makeInformer`/`ListWatch`), @kubernetes/client-node 2.0.1:
 * - `ListWatch` stops for good on any watch error other than 410, and on a failed list: it only
 *   emits an ERROR event and waits for the caller to start() it again. It also lists in one
 *   request (no `limit`/`continue`) and gives no "this is the complete state" boundary after a
 *   relist, which the aggregator needs (`onSync`).
 * - `Watch` aborts a request after `requestTimeoutMs` (30 s; private, no option) without data. In
 *   2.0.0 that aborted every healthy watch after 30 s (kubernetes-client/javascript issue #3020);
 *   2.0.1 made it an inactivity timeout. But the API server sends bookmarks at most about once a
 *   minute (none at all until 2 s before the watch's timeout where no EndpointSlice changes), so a
 *   watch of a quiet scope would still be cut every 30 s without ever seeing a bookmark: its
 *   resourceVersion would age until a resume fails with 410 and the scope is relisted for nothing.
 *   We therefore raise `requestTimeoutMs` on our `Watch` instance above `watchdogMs`, so that our
 *   watchdog (which counts events and bookmarks) is what restarts silent watches; should
 *   client-node's abort still fire, it is treated as routine: resume from the last
 *   resourceVersion, no backoff.
 *
 * One independent list-watch runs per namespace, or one for all namespaces.
 */
export class EndpointSliceWatch {
  readonly #options: CompiledEndpointSliceWatchOptions;
  readonly #logger: Logger;
  readonly #scopes: ScopeListWatch[];
  readonly #abort = new AbortController();
  readonly #counters: EndpointSliceWatchCounters = {
    lists: 0,
    watchRestarts: 0,
    gone410: 0,
    watchdogRestarts: 0,
    errors: 0,
    handlerErrors: 0,
  };
  #state: EndpointSliceWatchState = 'idle';
  #runs: Promise<void>[] = [];
  #closing: Promise<void> | undefined;
  readonly #onExternalAbort = (): void => void this.close();

  constructor(
    kubeConfig: KubeConfig,
    handler: EndpointSliceHandler,
    options?: EndpointSliceWatchOptions,
  ) {
    this.#options = compileEndpointSliceWatchOptions(options);
    this.#logger = this.#options.logger.child({ component: 'endpoint-slice-watch' });
    const api = kubeConfig.makeApiClient(DiscoveryV1Api);
    const watch = new Watch(kubeConfig);
    if (typeof Reflect.get(watch, 'requestTimeoutMs') === 'number') {
      // See the class comment: client-node's inactivity abort must not beat our watchdog.
      Reflect.set(watch, 'requestTimeoutMs', this.#options.watchdogMs + 10_000);
    } else {
      this.#logger.debug('client-node Watch has no requestTimeoutMs any more; nothing to raise');
    }
    const scopes: (string | null)[] =
      this.#options.namespaces.length === 0 ? [null] : [...this.#options.namespaces];
    this.#scopes = scopes.map(
      (scope) =>
        new ScopeListWatch({
          scope,
          api,
          watch,
          handler,
          options: this.#options,
          counters: this.#counters,
          logger: this.#logger.child({ scope: scope ?? '*' }),
          onStateChange: () => this.#updateState(),
        }),
    );
  }

  /** The least healthy scope's state: backoff, then listing, then watching. */
  get state(): EndpointSliceWatchState {
    return this.#state;
  }

  /**
   * When every scope last completed a list, received an event or bookmark, or had a watch from
   * its resourceVersion accepted by the server (epoch ms; the oldest over the scopes); undefined
   * before every scope listed once. Feeds the readiness probe.
   */
  get lastSyncAt(): number | undefined {
    let oldest: number | undefined;
    for (const scope of this.#scopes) {
      if (scope.lastSyncAt === undefined) return undefined;
      oldest = oldest === undefined ? scope.lastSyncAt : Math.min(oldest, scope.lastSyncAt);
    }
    return oldest;
  }

  /** True once every scope completed its first list (and delivered its `onSync`). */
  get synced(): boolean {
    return this.#scopes.every((scope) => scope.listed);
  }

  /** A snapshot of the running totals. */
  get counters(): Readonly<EndpointSliceWatchCounters> {
    return { ...this.#counters };
  }

  /** Starts every scope's list-watch. Idempotent; throws once closed. */
  start(): void {
    if (this.#state === 'closed') throw new Error('EndpointSliceWatch: start() after close()');
    if (this.#runs.length > 0) return;
    const external = this.#options.signal;
    if (external?.aborted) {
      void this.close();
      return;
    }
    external?.addEventListener('abort', this.#onExternalAbort, { once: true });
    this.#logger.info(
      {
        namespaces: this.#options.namespaces.length === 0 ? '*' : this.#options.namespaces,
        labelSelector: this.#options.labelSelector,
      },
      'EndpointSlice watch starting',
    );
    const signal = this.#abort.signal;
    this.#runs = this.#scopes.map((scope) =>
      scope.run(signal).catch((err: unknown) => {
        // run() handles its own errors; reaching this is a bug, but must not go unnoticed.
        this.#logger.error({ err, scope: scope.scope }, 'EndpointSlice watch loop crashed');
      }),
    );
  }

  /** Stops every scope and aborts in-flight requests. Idempotent. */
  close(): Promise<void> {
    return (this.#closing ??= this.#close());
  }

  async #close(): Promise<void> {
    this.#options.signal?.removeEventListener('abort', this.#onExternalAbort);
    this.#abort.abort();
    await Promise.all(this.#runs);
    this.#setState('closed');
  }

  #updateState(): void {
    if (this.#state === 'closed' || this.#abort.signal.aborted) return;
    const states = new Set(this.#scopes.map((scope) => scope.state));
    const order: ScopeState[] = ['backoff', 'listing', 'watching', 'idle'];
    this.#setState(order.find((state) => states.has(state)) ?? 'idle');
  }

  #setState(next: EndpointSliceWatchState): void {
    const previous = this.#state;
    if (previous === next) return;
    this.#state = next;
    this.#logger.info({ from: previous, to: next }, 'EndpointSlice watch state changed');
  }
}

/** How one watch request ended. */
type WatchEnd =
  /** The server ended the stream cleanly (its timeoutSeconds, or a graceful shutdown). */
  | { kind: 'closed'; events: number; durationMs: number }
  /** client-node's inactivity abort (see the EndpointSliceWatch comment). */
  | { kind: 'inactivity' }
  | { kind: 'watchdog' }
  | { kind: 'gone'; message: string }
  | { kind: 'failed'; error: unknown; relist: boolean }
  | { kind: 'aborted' };

/** An ERROR event other than 410 on a watch stream. */
class WatchStatusError extends Error {
  override readonly name = 'WatchStatusError';
  readonly code: number | undefined;
  readonly reason: string | undefined;

  constructor(status: V1Status) {
    super(
      `watch ERROR event: ${status.code ?? '?'} ${status.reason ?? ''} ${status.message ?? ''}`,
    );
    this.code = status.code;
    this.reason = status.reason;
  }
}

type ScopeState = Exclude<EndpointSliceWatchState, 'closed'>;

interface ScopeListWatchInit {
  scope: string | null;
  api: DiscoveryV1Api;
  watch: Watch;
  handler: EndpointSliceHandler;
  options: CompiledEndpointSliceWatchOptions;
  counters: EndpointSliceWatchCounters;
  logger: Logger;
  onStateChange: () => void;
}

/** The list-watch loop of one scope (a namespace, or null for all namespaces). */
class ScopeListWatch {
  readonly scope: string | null;
  state: ScopeState = 'idle';
  /** True once the first list completed. */
  listed = false;
  lastSyncAt: number | undefined;
  readonly #init: ScopeListWatchInit;
  readonly #logger: Logger;
  readonly #backoff: JitteredBackoff;
  readonly #watchPath: string;
  #resourceVersion = '';
  /** 410 answers since the last event or bookmark. */
  #goneWithoutEvents = 0;

  constructor(init: ScopeListWatchInit) {
    this.scope = init.scope;
    this.#init = init;
    this.#logger = init.logger;
    this.#backoff = new JitteredBackoff({
      initialMs: init.options.backoffInitialMs,
      maxMs: init.options.backoffMaxMs,
    });
    this.#watchPath =
      init.scope === null
        ? `${discoveryPath}/endpointslices`
        : `${discoveryPath}/namespaces/${encodeURIComponent(init.scope)}/endpointslices`;
  }

  /** Lists, then watches, until `signal` aborts; never rejects. */
  async run(signal: AbortSignal): Promise<void> {
    const { counters } = this.#init;
    let mustList = true;
    while (!signal.aborted) {
      try {
        if (mustList) {
          // A server answering 410 right after each list would otherwise be relisted in a hot loop.
          if (this.#goneWithoutEvents > 1) await this.#sleep(this.#backoff.next(), signal);
          await this.#list(signal);
          mustList = false;
        }
        this.#setState('watching');
        const end = await this.#watchOnce(signal);
        switch (end.kind) {
          case 'aborted':
            return;
          case 'closed':
            if (end.events === 0 && end.durationMs < veryShortWatchMs) {
              throw new Error(
                `watch ended by the server after ${end.durationMs} ms, without events`,
              );
            }
            counters.watchRestarts += 1;
            this.#logger.debug(
              { events: end.events, durationMs: end.durationMs },
              'watch ended by the server; resuming',
            );
            break;
          case 'inactivity':
            counters.watchRestarts += 1;
            this.#logger.debug('watch aborted by client-node for inactivity; resuming');
            break;
          case 'watchdog':
            counters.watchdogRestarts += 1;
            this.#logger.info(
              { watchdogMs: this.#init.options.watchdogMs, resourceVersion: this.#resourceVersion },
              'watch saw nothing for watchdogMs; restarting it',
            );
            break;
          case 'gone':
            counters.gone410 += 1;
            this.#goneWithoutEvents += 1;
            mustList = true;
            this.#logger.info(
              { resourceVersion: this.#resourceVersion, message: end.message },
              'watch resourceVersion expired (410 Gone); relisting',
            );
            break;
          case 'failed':
            mustList = end.relist;
            throw end.error;
        }
      } catch (err) {
        if (signal.aborted) break;
        counters.errors += 1;
        const delayMs = this.#backoff.next();
        this.#logger.warn(
          { err, delayMs, attempt: this.#backoff.attempts, next: mustList ? 'list' : 'watch' },
          'EndpointSlice list-watch failed; retrying after backoff',
        );
        this.#setState('backoff');
        await this.#sleep(delayMs, signal);
      }
    }
    this.#logger.debug('list-watch stopped');
  }

  /** Lists the scope page by page and delivers the result as one onSync. */
  async #list(signal: AbortSignal): Promise<void> {
    this.#setState('listing');
    for (let restart = 0; ; restart += 1) {
      const slices: V1EndpointSlice[] = [];
      let continueToken: string | undefined;
      let resourceVersion: string | undefined;
      try {
        do {
          const page = await this.#listPage(continueToken, signal);
          for (const slice of page.items) slices.push(slice);
          // Every page of one list carries the resourceVersion of the list's snapshot.
          resourceVersion = page.metadata?.resourceVersion;
          continueToken = page.metadata?._continue || undefined;
        } while (continueToken !== undefined);
      } catch (err) {
        // The token of a paginated list expires (after about 5 minutes, or on compaction); the
        // rest of the snapshot is then unavailable and only a fresh list is consistent.
        if (continueToken !== undefined && httpStatusOf(err) === 410 && restart < maxListRestarts) {
          this.#init.counters.gone410 += 1;
          this.#logger.info(
            { slicesSoFar: slices.length },
            'list continue token expired (410 Gone); listing again',
          );
          continue;
        }
        throw err;
      }
      if (!resourceVersion)
        throw new Error('EndpointSlice list answered without a resourceVersion');
      this.#resourceVersion = resourceVersion;
      this.#init.counters.lists += 1;
      this.#deliver('onSync', () => this.#init.handler.onSync(this.scope, slices));
      this.listed = true;
      this.lastSyncAt = Date.now();
      this.#backoff.reset();
      this.#logger.debug({ slices: slices.length, resourceVersion }, 'listed');
      return;
    }
  }

  #listPage(continueToken: string | undefined, signal: AbortSignal): Promise<V1EndpointSliceList> {
    const { api, options } = this.#init;
    const request = {
      labelSelector: options.labelSelector,
      limit: options.pageSize,
      _continue: continueToken,
    };
    // No resourceVersion: a consistent (quorum) read, never older than anything a watch delivered.
    const requestOptions = abortOptions(
      AbortSignal.any([signal, AbortSignal.timeout(listPageTimeoutMs)]),
    );
    return this.scope === null
      ? api.listEndpointSliceForAllNamespaces(request, requestOptions)
      : api.listNamespacedEndpointSlice({ ...request, namespace: this.scope }, requestOptions);
  }

  /** One watch request from the current resourceVersion; resolves how it ended. */
  #watchOnce(signal: AbortSignal): Promise<WatchEnd> {
    const { options, handler } = this.#init;
    const startedAt = Date.now();
    let events = 0;
    return new Promise<WatchEnd>((resolve) => {
      let settled = false;
      let controller: AbortController | undefined;
      const finish = (end: WatchEnd): void => {
        if (settled) return;
        settled = true;
        clearTimeout(watchdog);
        signal.removeEventListener('abort', onAbort);
        controller?.abort();
        resolve(end);
      };
      const onAbort = (): void => finish({ kind: 'aborted' });
      const watchdog = setTimeout(() => finish({ kind: 'watchdog' }), options.watchdogMs);
      signal.addEventListener('abort', onAbort, { once: true });

      const onEvent = (type: string, object: unknown): void => {
        // Lines client-node still parses after we gave up on the request are dropped; the
        // resourceVersion did not advance past them, so the next watch delivers them again.
        if (settled) return;
        try {
          handleEvent(type, object);
        } catch (err) {
          // client-node swallows exceptions thrown here: the event would be lost silently while
          // later ones advance the resourceVersion. End the watch instead; it resumes before it.
          finish({ kind: 'failed', error: err, relist: false });
        }
      };

      const handleEvent = (type: string, object: unknown): void => {
        switch (type) {
          case 'ADDED':
          case 'MODIFIED':
          case 'DELETED': {
            const slice = this.#toSlice(object);
            if (type === 'DELETED') this.#deliver('onDelete', () => handler.onDelete(slice));
            else this.#deliver('onUpsert', () => handler.onUpsert(slice));
            this.#progress(slice.metadata?.resourceVersion);
            events += 1;
            watchdog.refresh();
            return;
          }
          case 'BOOKMARK': {
            const bookmark = object as { metadata?: { resourceVersion?: string } } | undefined;
            this.#progress(bookmark?.metadata?.resourceVersion);
            events += 1;
            watchdog.refresh();
            return;
          }
          case 'ERROR': {
            const status = (object ?? {}) as V1Status;
            if (status.code === 410) finish({ kind: 'gone', message: status.message ?? '' });
            else finish({ kind: 'failed', error: new WatchStatusError(status), relist: false });
            return;
          }
          default:
            this.#logger.warn({ type }, 'ignoring watch event of unknown type');
        }
      };

      const onDone = (err: unknown): void => {
        if (err === null || err === undefined) {
          finish({ kind: 'closed', events, durationMs: Date.now() - startedAt });
        } else if (err instanceof DOMException && err.name === 'TimeoutError') {
          finish({ kind: 'inactivity' });
        } else if (httpStatusOf(err) === 410) {
          finish({ kind: 'gone', message: err instanceof Error ? err.message : 'HTTP 410' });
        } else {
          // 504 on a watch request is the API server's "Too large resource version" (its cache is
          // behind the resourceVersion asked for, e.g. etcd restored from a backup); client-go
          // relists on it, and so do we, since resuming would fail the same way forever.
          finish({ kind: 'failed', error: err, relist: httpStatusOf(err) === 504 });
        }
      };

      const timeoutSeconds = Math.max(
        1,
        Math.round(options.watchTimeoutSeconds * (0.9 + 0.2 * Math.random())),
      );
      this.#init.watch
        .watch(
          this.#watchPath,
          {
            resourceVersion: this.#resourceVersion,
            allowWatchBookmarks: true,
            timeoutSeconds,
            labelSelector: options.labelSelector,
          },
          onEvent,
          onDone,
        )
        .then(
          (c) => {
            // client-node hands out its AbortController only once the response headers arrived.
            controller = c;
            if (settled) {
              c.abort();
            } else if (this.listed) {
              // The server accepted a watch from our resourceVersion: we are current. Without
              // this, a cluster where no EndpointSlice changes (no bookmarks before the watch's
              // timeout, which the watchdog pre-empts) would look stale to the readiness probe.
              this.lastSyncAt = Date.now();
            }
          },
          (err: unknown) => finish({ kind: 'failed', error: err, relist: false }),
        );
    });
  }

  /** The model object a list would have given (Dates as Date); the raw object if that fails. */
  #toSlice(object: unknown): V1EndpointSlice {
    try {
      return ObjectSerializer.deserialize(object, 'V1EndpointSlice', '') as V1EndpointSlice;
    } catch (err) {
      this.#logger.warn({ err }, 'cannot deserialize a watched EndpointSlice; passing it on as is');
      return object as V1EndpointSlice;
    }
  }

  #progress(resourceVersion: string | undefined): void {
    if (resourceVersion) this.#resourceVersion = resourceVersion;
    this.lastSyncAt = Date.now();
    this.#goneWithoutEvents = 0;
    this.#backoff.reset();
  }

  #deliver(callback: keyof EndpointSliceHandler, call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#init.counters.handlerErrors += 1;
      this.#logger.error({ err, callback }, 'EndpointSlice handler threw; the watch goes on');
    }
  }

  async #sleep(ms: number, signal: AbortSignal): Promise<void> {
    try {
      await sleep(ms, undefined, { signal });
    } catch {
      // Aborted: the loop sees signal.aborted and ends.
    }
  }

  #setState(next: ScopeState): void {
    if (this.state === next) return;
    this.#logger.debug({ from: this.state, to: next }, 'scope state changed');
    this.state = next;
    this.#init.onStateChange();
  }
}

/** Request options that abort a generated API client's request with `signal`. */
function abortOptions(signal: AbortSignal): ConfigurationOptions {
  const middleware: ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (response) => new Observable(Promise.resolve(response)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}

/** HTTP status of a failed client-node request: ApiException has `code`, Watch errors `statusCode`. */
function httpStatusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, statusCode } = err as { code?: unknown; statusCode?: unknown };
  if (typeof statusCode === 'number') return statusCode;
  if (typeof code === 'number') return code;
  return undefined;
}

import type { Binding, Logger, Telemetry } from '../shared/index.js';
import {
  SERVICE_NAMES,
  silentLogger,
  startHealthServer,
  startTelemetry,
  type HealthServer,
} from '../shared/index.js';
import {
  AwsRateLimiter,
  Elbv2TargetGroupClients,
  InstrumentedTargetGroupApis,
  type Elbv2TargetGroupClientsOptions,
  type TargetGroupApiFactory,
} from './aws/index.js';
import { ClusterDirectory, redisSettingsOf, type CompiledWorkerOptions } from './config/index.js';
import { BindingStore } from './federation/binding-store.js';
import { ClusterStatusTracker } from './federation/cluster-status-tracker.js';
import { statusChangeMatters } from './federation/desired-targets.js';
import { selectsCluster, targetGroupArnsOf } from './federation/subscription-resolver.js';
import { TargetGroupDesiredState } from './federation/target-group-desired-state.js';
import { BullMqReconcileSink, QueueMetrics, reconcileQueueAddress } from './queue/index.js';
import {
  ReconcileConsumer,
  ReconcileMetrics,
  ReconcileScheduler,
  TargetGroupGauges,
  TargetGroupReconciler,
  TargetGroupRecords,
  type ReconcileResult,
} from './reconcile/index.js';
import { Elbv2ListenerRuleClients, type ListenerRuleApiFactory } from './aws/index.js';
import { ListenerWeights, type ListenerWeightResult } from './reconcile/index.js';
import {
  ClusterEndpointStore,
  ClusterSessionRecords,
  StateKeys,
  createRedis,
  type RedisClient,
} from './state/index.js';

/** Lifecycle of a worker process. */
export type ReconcileWorkerState =
  'idle' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

/** What a worker is given rather than creates (tests, the demo and the benchmark pass their own). */
export interface ReconcileWorkerDependencies {
  logger?: Logger;
  /**
   * The ELBv2 API per target group. @default `Elbv2TargetGroupClients` with `awsClients`
   * (endpoints and credentials otherwise from the SDK's standard settings)
   */
  aws?: TargetGroupApiFactory;
  /** Settings of the default ELBv2 / STS clients, e.g. `endpoint` of a simulator. */
  awsClients?: Elbv2TargetGroupClientsOptions;
  /** Called after every reconcile (metrics, tests). */
  onReconciled?: (result: ReconcileResult) => void;
  /** The ELBv2 API of listener rules (pool weights). @default `Elbv2ListenerRuleClients` with `awsClients` */
  listenerRules?: ListenerRuleApiFactory;
  /** Called after every listener rule weights update (tests). */
  onListenerWeights?: (result: ListenerWeightResult) => void;
  /** @default Date.now */
  clock?: () => number;
  /**
   * Metrics (and traces) of the worker; the worker shuts down only the one it created.
   * @default `startTelemetry` configured by the `OTEL_*` variables
   */
  telemetry?: Telemetry;
}

/**
 * A worker process (`tgfed worker`): consumes the reconcile queues and keeps target groups in
 * sync, any number of them side by side. It reads the same Redis as the hub: bindings, cluster
 * states and statuses (to resolve desired targets, with the same safety rules), and keeps the
 * groups' actual and owned targets and reconcile records. `start()` once; `shutdown()` is
 * idempotent and two-stage: running reconciles get `graceMs`, then the queues close forcibly.
 */
export class ReconcileWorker {
  readonly options: CompiledWorkerOptions;
  readonly telemetry: Telemetry;
  readonly #deps: ReconcileWorkerDependencies;
  readonly #clock: () => number;
  #queueMetrics: QueueMetrics | undefined;
  #groupGauges: TargetGroupGauges | undefined;
  readonly #log: Logger;
  /** The reconcile instruments, once the worker started them. */
  #reconcileMetrics: ReconcileMetrics | undefined;
  #state: ReconcileWorkerState = 'idle';
  #redis: RedisClient | undefined;
  #queueRedis: RedisClient | undefined;
  #clusterStatus: ClusterStatusTracker | undefined;
  #sink: BullMqReconcileSink | undefined;
  #consumer: ReconcileConsumer | undefined;
  #scheduler: ReconcileScheduler | undefined;
  #clients: Elbv2TargetGroupClients | undefined;
  #ruleClients: Elbv2TargetGroupClients | undefined;
  #listenerWeights: ListenerWeights | undefined;
  #records: TargetGroupRecords | undefined;
  #reconciler: TargetGroupReconciler | undefined;
  #health: HealthServer | undefined;
  #closing: Promise<void> | undefined;
  /** Clusters whose status changed and whose groups are not requested yet. */
  readonly #statusChanged = new Set<string>();
  /**
   * Clusters whose status changed in a way that matters now only to the groups holding
   * something for a sync (see `onStatusChange`), and whose groups are not requested yet.
   */
  readonly #resynced = new Set<string>();
  /** Clusters whose stream end this worker saw (and reconciled) and that have not returned. */
  readonly #sawStreamEnd = new Set<string>();
  /** The round of reconcile requests for changed clusters under way, if any. */
  #statusRound: Promise<void> | undefined;

  constructor(options: CompiledWorkerOptions, deps: ReconcileWorkerDependencies = {}) {
    this.options = options;
    this.#deps = deps;
    this.#clock = deps.clock ?? Date.now;
    this.#log = (deps.logger ?? silentLogger()).child({ component: 'worker' });
    this.telemetry =
      deps.telemetry ??
      startTelemetry({
        serviceName: SERVICE_NAMES.worker,
        serviceInstanceId: options.workerId,
        logger: this.#log,
      });
  }

  get state(): ReconcileWorkerState {
    return this.#state;
  }

  /** Port of the HTTP probes, once started. */
  get healthPort(): number {
    return this.#health?.port ?? 0;
  }

  /** The groups' records (actual, owned, last reconcile, held operations), once started. */
  get records(): TargetGroupRecords | undefined {
    return this.#records;
  }

  /** The reconciler, once started (tests reconcile directly). */
  get reconciler(): TargetGroupReconciler | undefined {
    return this.#reconciler;
  }

  /** The clusters' statuses as this worker resolves with them, once started. */
  get clusterStatus(): ClusterStatusTracker | undefined {
    return this.#clusterStatus;
  }

  /** The drift / retry scheduler, once started. */
  get scheduler(): ReconcileScheduler | undefined {
    return this.#scheduler;
  }

  /** Starts every part; on a failure, stops what was started and rethrows. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new Error(`worker cannot start in state ${this.#state}`);
    this.#setState('starting');
    try {
      await this.#start();
    } catch (err) {
      this.#log.error({ err }, 'worker failed to start');
      await this.shutdown(0);
      this.#setState('failed');
      throw err;
    }
    this.#setState('running');
  }

  async #start(): Promise<void> {
    const o = this.options;
    const clock = this.#clock;
    const directory =
      o.clustersFile === undefined ? new ClusterDirectory() : ClusterDirectory.load(o.clustersFile);

    const redis = createRedis(redisSettingsOf(o));
    this.#redis = redis;
    redis.on('error', (err: unknown) => this.#log.warn({ err }, 'Redis connection error'));
    // BullMQ workers block on Redis for jobs: their connection has no command timeout.
    const queueRedis = createRedis({ ...redisSettingsOf(o), commandTimeoutMs: 0 });
    this.#queueRedis = queueRedis;
    queueRedis.on('error', (err: unknown) =>
      this.#log.warn({ err }, 'Redis connection error (reconcile queues)'),
    );

    const keys = new StateKeys(o.redisKeyPrefix);
    const store = new ClusterEndpointStore(redis, keys);
    const sessions = new ClusterSessionRecords(redis, keys);
    const bindings = new BindingStore(redis, { keyPrefix: o.redisKeyPrefix, logger: this.#log });
    const clusterStatus = new ClusterStatusTracker(redis, sessions, {
      keys,
      disconnectedGraceMs: o.disconnectedGraceMs,
      resyncTimeoutMs: o.resyncTimeoutMs,
      initialSyncHoldMs: o.initialSyncHoldMs,
      logger: this.#log,
      clock,
      // A cluster that goes stale or comes back from it, or resyncs, changes its groups' desired
      // state without any endpoint change: those groups are reconciled now. Except when it has
      // just begun its initial sync: until that ends, a reconcile of its groups could only record
      // registrations waiting for it (deregistrations are blocked too), and its end is itself a
      // status change. At a cold start that spared a resolution and a describe of every group
      // while the clusters' state was streaming in. A stream that ends is reconciled too,
      // although within the grace period that changes nothing a reconcile does: a hub that died
      // between writing a batch and enqueueing its reconciles leaves them to this (the agent's
      // resync finds the batch written and sends nothing). Coming back within the grace period
      // is not (`statusChangeMatters`) when this worker saw the stream end: the returning resync
      // brings its changes as batches, and a hub restart that reconnects every agent no longer
      // reconciles every group per cluster. A worker that did not see it end (it started while
      // the cluster was away) reconciles the return instead.
      //
      // Going stale or back and a stream's end are reconciled now. The other changes (a sync
      // ends, a return this worker did not see end, a cluster starts awaiting a resync) matter
      // now only to the groups whose last reconcile held something for a sync: registrations
      // waiting for it, deregistrations blocked. The sync's own changes came as batches, which
      // requested their groups through the hub; every other group is reconciled `followUpMs`
      // to `2 x followUpMs` later, for a hub that died between writing a batch and enqueueing
      // it. At a cold start, reconciling every group at once at the last SYNCED (it finds nothing
      // to do) took a quarter of the workers' CPU while the first reconciles were still resolving
      // their pools.
      onStatusChange: (clusterId, status, previous) => {
        this.#log.info({ cluster: clusterId, ...status }, 'cluster status changed');
        if (status.initialSync === true) return;
        const wasConnected = previous.connection === 'connected';
        const connected = status.connection === 'connected';
        const streamEnded = wasConnected && !connected;
        const returnedUnseen = !wasConnected && connected && !this.#sawStreamEnd.has(clusterId);
        if (streamEnded) this.#sawStreamEnd.add(clusterId);
        if (connected) this.#sawStreamEnd.delete(clusterId);
        if (!streamEnded && !returnedUnseen && !statusChangeMatters(status, previous)) return;
        const staleness = (status.connection === 'stale') !== (previous.connection === 'stale');
        (streamEnded || staleness ? this.#statusChanged : this.#resynced).add(clusterId);
        this.#reconcileChangedClusters(bindings, directory);
      },
    });
    this.#clusterStatus = clusterStatus;
    clusterStatus.track(directory.list().map((c) => c.id));
    await clusterStatus.start();
    const records = new TargetGroupRecords(redis, o.redisKeyPrefix);
    this.#records = records;
    const desired = new TargetGroupDesiredState(
      { redis, store, bindings },
      {
        directory: { labels: (clusterId) => directory.get(clusterId)?.labels },
        status: clusterStatus,
        listedClusters: () => directory.list().map((c) => c.id),
        staleClusterPolicy: o.staleClusterPolicy,
        clock,
        onClaimsLost: ({ binding, adopted, kept }) => {
          this.#reconcileMetrics?.claimsLost(adopted, kept.length);
          if (kept.length > 0) {
            // Two groups may hold them for a moment; the next resolution gives them to one.
            this.#log.warn(
              { binding, kept: kept.slice(0, 10), keptCount: kept.length },
              'pool targets claimed for a group without room stayed where this worker placed them',
            );
          }
        },
        // Draining targets take room only when they count toward the quota.
        ...(o.drainingCountsTowardCapacity
          ? {
              occupancy: {
                counts: (arns: readonly string[]) => records.neededCounts(arns),
                targets: (arns: readonly string[]) => records.heldTargets(arns),
              },
            }
          : {}),
        storageEpoch: {
          known: () => clusterStatus.storageEpoch,
          stored: async () => (await redis.get(keys.epoch())) ?? '',
          key: keys.epoch(),
          onMismatch: () => {
            clusterStatus
              .refresh()
              .catch((err: unknown) => this.#log.warn({ err }, 'cannot read cluster statuses'));
          },
        },
      },
    );

    // Not fatal: the first resolution tries again.
    await desired
      .prepare()
      .catch((err: unknown) => this.#log.warn({ err }, 'cannot read the clusters index yet'));

    const limiter = new AwsRateLimiter(redis, {
      keyPrefix: o.redisKeyPrefix,
      limits: {
        mutate: { ratePerSecond: o.awsMutateRatePerSecond, burst: o.awsMutateBurst },
        describe: { ratePerSecond: o.awsDescribeRatePerSecond, burst: o.awsDescribeBurst },
        modify: { ratePerSecond: o.awsModifyRatePerSecond, burst: o.awsModifyBurst },
      },
    });
    let aws = this.#deps.aws;
    if (aws === undefined) {
      this.#clients = new Elbv2TargetGroupClients({
        roleSessionName: o.awsRoleSessionName,
        tracer: this.telemetry.tracer(),
        ...this.#deps.awsClients,
      });
      aws = this.#clients;
      this.#warmUpCredentials(this.#clients, bindings);
    }
    const meter = this.telemetry.meter;
    const instrumentedAws = new InstrumentedTargetGroupApis(aws, meter, { limits: limiter, clock });
    const reconciler = new TargetGroupReconciler(
      { desired, records, aws: instrumentedAws, limiter },
      {
        chunkSize: o.reconcileChunkSize,
        guardMaxShare: o.guardMaxShare,
        guardMinTargets: o.guardMinTargets,
        driftIntervalMs: o.driftIntervalMs,
        drainingCountsTowardCapacity: o.drainingCountsTowardCapacity,
        followUpMs: o.followUpMs,
        capacityDescribeIntervalMs: o.capacityDescribeIntervalMs,
        transientRetryMaxMs: o.transientRetryMaxMs,
        retryMaxMs: o.retryMaxMs,
        clock,
        logger: this.#log,
      },
    );
    this.#reconciler = reconciler;

    const queueOptions = {
      keyPrefix: o.redisKeyPrefix,
      shardCount: o.reconcileShardCount,
      debounceMs: o.reconcileDebounceMs,
    };
    const sink = new BullMqReconcileSink(
      queueRedis,
      { labels: () => undefined },
      { ...queueOptions, logger: this.#log, clock, tracer: this.telemetry.tracer() },
    );
    this.#sink = sink;
    const onReconciled = this.#deps.onReconciled;
    let rules = this.#deps.listenerRules;
    if (rules === undefined) {
      // The target groups' clients when the worker made them, so rules share their credentials.
      const clients =
        this.#clients ??
        (this.#ruleClients = new Elbv2TargetGroupClients({
          roleSessionName: o.awsRoleSessionName,
          ...this.#deps.awsClients,
        }));
      rules = new Elbv2ListenerRuleClients(clients);
    }
    const listenerWeights = new ListenerWeights(
      queueRedis,
      redis,
      { bindings, rules, limiter, groups: records },
      {
        keyPrefix: o.redisKeyPrefix,
        debounceMs: o.listenerWeightDebounceMs,
        minShareChange: o.listenerWeightMinShareChange,
        checkIntervalMs: o.listenerWeightCheckIntervalMs,
        meter: this.telemetry.meter,
        clock,
        logger: this.#log,
        ...(this.#deps.onListenerWeights === undefined
          ? {}
          : { onUpdated: this.#deps.onListenerWeights }),
      },
    );
    this.#listenerWeights = listenerWeights;
    await listenerWeights.start();
    const reconcileMetrics = new ReconcileMetrics(meter);
    this.#reconcileMetrics = reconcileMetrics;
    this.#groupGauges = new TargetGroupGauges(meter, records);
    const consumer = new ReconcileConsumer(queueRedis, reconciler, {
      ...queueOptions,
      shards: o.workerShards,
      concurrency: o.workerConcurrency,
      lockDurationMs: o.lockDurationMs,
      logger: this.#log,
      tracer: this.telemetry.tracer(),
      onReconciled: (result) => {
        reconcileMetrics.record(result);
        listenerWeights
          .groupReconciled(result.targetGroupArn)
          .catch((err: unknown) =>
            this.#log.warn({ err }, 'cannot request a listener weights update'),
          );
        onReconciled?.(result);
      },
    });
    this.#consumer = consumer;
    this.#queueMetrics = new QueueMetrics(
      meter,
      redis,
      consumer.shards.map((shard) => reconcileQueueAddress(shard, consumer.queueOptions)),
      { clock },
    );
    await consumer.start();
    const scheduler = new ReconcileScheduler(records, sink, { clock, logger: this.#log });
    this.#scheduler = scheduler;
    scheduler.start();

    this.#health = await startHealthServer({
      address: o.healthAddress,
      live: () => ({ ok: this.#state !== 'failed', detail: { state: this.#state } }),
      ready: () => ({
        ok: this.#state === 'running' && redis.status === 'ready' && queueRedis.status === 'ready',
        detail: { state: this.#state, redis: redis.status, queues: queueRedis.status },
      }),
      metrics: this.telemetry.metricsEndpoint,
    });
    this.#log.info(
      {
        shards: consumer.shards.length,
        concurrency: o.workerConcurrency,
        healthPort: this.healthPort,
      },
      'worker consuming reconcile queues',
    );
  }

  /**
   * Fetches the assumed-role credentials of every account the bindings name, in the background
   * (see `Elbv2TargetGroupClients.warmUp`); a role that cannot be assumed is logged here and
   * reported by its groups' reconciles as usual.
   */
  #warmUpCredentials(clients: Elbv2TargetGroupClients, bindings: BindingStore): void {
    const warm = async (): Promise<void> => {
      const { bindings: all } = await bindings.snapshot();
      const groups = all.flatMap((b) =>
        b.target.$case === 'targetGroup' ? [b.target.targetGroup] : b.target.pool.groups,
      );
      for (const { roleArn, region, error } of await clients.warmUp(groups)) {
        this.#log.warn({ roleArn, region, err: error }, 'cannot assume a target role yet');
      }
    };
    warm().catch((err: unknown) =>
      this.#log.warn({ err }, 'cannot read the bindings to fetch AWS credentials'),
    );
  }

  /**
   * Enqueues a reconcile of every group fed by a cluster whose status changed. The clusters that
   * change together (a refresh, or while the previous round of requests is under way) share one
   * round: each of their groups is requested once, not once per cluster.
   */
  #reconcileChangedClusters(bindings: BindingStore, directory: ClusterDirectory): void {
    this.#statusRound ??= (async () => {
      while (this.#statusChanged.size > 0 || this.#resynced.size > 0) {
        const clusters = [...this.#statusChanged];
        const resynced = [...this.#resynced].filter((id) => !this.#statusChanged.has(id));
        this.#statusChanged.clear();
        this.#resynced.clear();
        try {
          await this.#reconcileGroupsOf(bindings, directory, clusters, resynced);
        } catch (err) {
          this.#log.warn({ err, clusters, resynced }, 'cannot enqueue reconciles of clusters');
        }
      }
    })().finally(() => {
      this.#statusRound = undefined;
    });
  }

  /**
   * Enqueues a reconcile of every group a binding selecting one of the clusters targets, except
   * groups that another cluster still in its initial sync feeds: until it is done they can
   * neither register (held for the sync) nor deregister (blocked while it awaits resync), and
   * the end of its sync is a status change that brings them back. At a cold start each SYNCED
   * but the last would otherwise have reconciled every group for nothing.
   *
   * Of the groups only `resynced` clusters feed, those whose last reconcile held something for
   * a sync are enqueued now and the others nudged for later (see `onStatusChange`). A reconcile
   * that records a hold after this read looks at the syncs again itself
   * (`TargetGroupReconciler`), so no group waits for the nudge because of the race.
   *
   * The nudges are spread from `followUpMs` to twice that, one moment per binding: at a cold
   * start every group is nudged at once, and 225 reconciles due in the same second (both
   * workers resolving every pool, for nothing to do) were what a rolling restart begun after
   * the cold start waited for, 10-20 s into it. The groups of one pool stay together, so they
   * still share a resolution.
   */
  async #reconcileGroupsOf(
    bindings: BindingStore,
    directory: ClusterDirectory,
    clusterIds: readonly string[],
    resynced: readonly string[],
  ): Promise<void> {
    const sink = this.#sink;
    const records = this.#records;
    const status = this.#clusterStatus;
    if (sink === undefined || records === undefined) return;
    // The listed clusters, as the reconcile's own check (`initialSyncClusters`) counts them.
    const syncing = directory
      .list()
      .map((c) => c.id)
      .filter((id) => status?.status(id).initialSync === true);
    const selects = (binding: Binding, ids: readonly string[]): boolean =>
      ids.some((id) => selectsCluster(binding.clusters, id, directory.get(id)?.labels ?? {}));
    const groups = new Set<string>();
    /** Group → the place among the resynced clusters' bindings of the first that targets it. */
    const afterSync = new Map<string, number>();
    const waiting = new Set<string>();
    let resyncedBindings = 0;
    for (const binding of (await bindings.snapshot()).bindings) {
      const arns = targetGroupArnsOf(binding);
      if (selects(binding, clusterIds)) for (const arn of arns) groups.add(arn);
      if (selects(binding, resynced)) {
        for (const arn of arns) if (!afterSync.has(arn)) afterSync.set(arn, resyncedBindings);
        resyncedBindings++;
      }
      if (selects(binding, syncing)) for (const arn of arns) waiting.add(arn);
    }
    const later = [...afterSync.keys()].filter((arn) => !groups.has(arn) && !waiting.has(arn));
    const held = later.length === 0 ? [] : await records.heldForSync(later);
    const now = [
      ...[...groups].filter((arn) => !waiting.has(arn)),
      ...later.filter((_, i) => held[i] === true),
    ];
    const followUpMs = this.options.followUpMs;
    const madeAtMs = this.#clock();
    const from = madeAtMs + followUpMs;
    const nudges = new Map<number, string[]>();
    later.forEach((arn, i) => {
      if (held[i] === true) return;
      const place = afterSync.get(arn) ?? 0;
      const atMs = from + Math.floor((followUpMs * place) / Math.max(1, resyncedBindings));
      nudges.set(atMs, [...(nudges.get(atMs) ?? []), arn]);
    });
    await Promise.all([
      ...now.map((arn) => sink.request(arn, 'cluster-status')),
      ...[...nudges].map(([atMs, arns]) => records.nudge(arns, atMs, madeAtMs)),
    ]);
  }

  /**
   * Stops taking work, lets running reconciles finish within `graceMs` (default the
   * `shutdownGraceMs` setting), then closes queues and connections. Every step runs even when
   * one fails. Idempotent.
   */
  shutdown(graceMs = this.options.shutdownGraceMs): Promise<void> {
    this.#closing ??= this.#shutdown(graceMs);
    return this.#closing;
  }

  async #shutdown(graceMs: number): Promise<void> {
    if (this.#state === 'running' || this.#state === 'starting') this.#setState('stopping');
    const steps: [string, () => Promise<unknown> | undefined][] = [
      ['scheduler', () => this.#scheduler?.close()],
      ['consumer', () => this.#consumer?.close(graceMs)],
      ['listener weights', () => this.#listenerWeights?.close()],
      ['status change requests', () => this.#statusRound],
      ['queues', () => this.#sink?.close()],
      ['queue metrics', () => this.#queueMetrics?.close()],
      [
        'telemetry',
        () => {
          this.#groupGauges?.detach();
          return this.#deps.telemetry === undefined
            ? this.telemetry.shutdown(Math.max(telemetryMinFlushMs, graceMs))
            : undefined;
        },
      ],
      ['cluster status', () => this.#clusterStatus?.close()],
      ['health', () => this.#health?.close()],
      ['aws clients', () => Promise.resolve(this.#clients?.close())],
      ['listener rule clients', () => Promise.resolve(this.#ruleClients?.close())],
      ['queue connection', () => quit(this.#queueRedis)],
      ['redis', () => quit(this.#redis)],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.#log.warn({ err, step: name }, 'worker shutdown step failed');
      }
    }
    if (this.#state !== 'failed' && this.#state !== 'idle') this.#setState('stopped');
  }

  #setState(state: ReconcileWorkerState): void {
    this.#log.info({ from: this.#state, to: state }, 'worker state');
    this.#state = state;
  }
}

// Time the telemetry flush gets at least (a shutdown with no grace still sends the last export).
const telemetryMinFlushMs = 1_000;

async function quit(redis: RedisClient | undefined): Promise<void> {
  if (redis === undefined || redis.status === 'end') return;
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  }
}

import * as grpc from '@grpc/grpc-js';
import {
  AdminServiceService,
  SERVICE_NAMES,
  silentLogger,
  startHealthServer,
  startTelemetry,
  type HealthServer,
  type Logger,
  type Subscription,
  type Telemetry,
} from '../shared/index.js';
import {
  AdminAuthenticator,
  AdminService,
  ClusterInventory,
  DesiredTargetGroupStatus,
  QueueHeldOperationReleaser,
  QueueReconcileTrigger,
  addIntrospection,
  findProtoDir,
  registerAdminMetrics,
  type AdminExtensions,
} from './admin/index.js';
import { CidrRejectionWindow, HubAlertEvaluator } from './alerts/index.js';
import {
  ClusterDirectory,
  listenerCredentials,
  loadAdminCredentials,
  redisSettingsOf,
  type AdminCredentials,
  type CompiledHubOptions,
} from './config/index.js';
import { loadBindingFile } from './federation/binding-file.js';
import { BindingRecovery } from './federation/binding-recovery.js';
import { BindingStore } from './federation/binding-store.js';
import { ClusterStatusTracker } from './federation/cluster-status-tracker.js';
import type { ClusterStatusSource } from './federation/desired-targets.js';
import { FederationMetrics } from './federation/federation-metrics.js';
import {
  BindingSubscriptionResolver,
  targetGroupArnsOf,
} from './federation/subscription-resolver.js';
import { TargetGroupDesiredState } from './federation/target-group-desired-state.js';
import {
  AddressPolicy,
  AgentAuthenticator,
  SyncService,
  agentServerOptions,
  registerIngestMetrics,
  type ReconcileSink,
  type SubscriptionSource,
} from './ingest/index.js';
import { BullMqReconcileSink } from './queue/index.js';
import { TargetGroupRecords } from './reconcile/index.js';
import {
  ClusterEndpointStore,
  ClusterLease,
  ClusterSessionRecords,
  StateKeys,
  StorageEpoch,
  createRedis,
  type RedisClient,
} from './state/index.js';

/** Lifecycle of a hub process. */
export type HubState = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

/** What the hub is given rather than creates (tests and other issues pass their own). */
export interface HubDependencies {
  logger?: Logger;
  /**
   * Where acked changes go. @default a `BullMqReconcileSink` on its own connection to the hub's
   * Redis, following the stored bindings
   */
  reconcileSink?: ReconcileSink;
  /**
   * Admin components from other areas (status, reconcile trigger, alerts, guard); each given one
   * replaces the hub's own. @default target-group status from the desired state, alerts from
   * the hub's own state, and TriggerReconcile on the default reconcile queues (none when
   * `reconcileSink` is given)
   */
  adminExtensions?: AdminExtensions;
  /** Where `tgfed/v1/*.proto` live, for server reflection. @default found from this module */
  protoDir?: string;
  /**
   * Metrics (and traces) of the hub; the hub shuts down only the one it created.
   * @default `startTelemetry` configured by the `OTEL_*` variables
   */
  telemetry?: Telemetry;
}

interface Listener {
  server: grpc.Server;
  port: number;
  setServing(serving: boolean): void;
}

/**
 * The hub process: Redis, the storage epoch, bindings (store, declarative file, subscriptions),
 * cluster session records and statuses, the reconcile queues (BullMQ, on their own connection),
 * the agent listener (`SyncService`), the admin listener (`AdminService`), both with gRPC
 * health checking and reflection, and the HTTP probes. `start()` once; `shutdown()` is
 * idempotent, two-stage (graceful within `shutdownGraceMs`, then forced) and runs every step
 * even when one fails, closing Redis last.
 */
export class Hub {
  readonly options: CompiledHubOptions;
  readonly telemetry: Telemetry;
  readonly #log: Logger;
  readonly #deps: HubDependencies;
  #federationMetrics: FederationMetrics | undefined;
  #state: HubState = 'idle';
  #redis: RedisClient | undefined;
  /** The reconcile queues' connection (BullMQ wants its own; closed after the queues). */
  #queueRedis: RedisClient | undefined;
  #reconcileQueues: BullMqReconcileSink | undefined;
  /** Where acked changes go: {@link reconcileQueues}, or the one given. */
  #reconcileSink: ReconcileSink | undefined;
  #stopQueueBindings: (() => void) | undefined;
  #clusterStatus: ClusterStatusTracker | undefined;
  #desiredState: TargetGroupDesiredState | undefined;
  #bindings: BindingStore | undefined;
  #bindingRecovery: BindingRecovery | undefined;
  #stopFollowing: (() => void) | undefined;
  #sync: SyncService | undefined;
  #admin: AdminService | undefined;
  #cidrRejections: CidrRejectionWindow | undefined;
  #agentListener: Listener | undefined;
  #adminListener: Listener | undefined;
  #health: HealthServer | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: CompiledHubOptions, deps: HubDependencies = {}) {
    this.options = options;
    this.#deps = deps;
    this.#log = (deps.logger ?? silentLogger()).child({ component: 'hub' });
    this.telemetry =
      deps.telemetry ??
      startTelemetry({
        serviceName: SERVICE_NAMES.hub,
        serviceInstanceId: options.hubId,
        logger: this.#log,
      });
  }

  get state(): HubState {
    return this.#state;
  }

  /** Port of the agent listener, once started. */
  get agentPort(): number {
    return this.#agentListener?.port ?? 0;
  }

  /** Port of the admin listener, once started. */
  get adminPort(): number {
    return this.#adminListener?.port ?? 0;
  }

  /** Port of the HTTP probes, once started. */
  get healthPort(): number {
    return this.#health?.port ?? 0;
  }

  /** The agent ingest (counters, admitted clusters), once started. */
  get syncService(): SyncService | undefined {
    return this.#sync;
  }

  /** The reconcile queues the ingest enqueues on (absent with a sink of the caller's). */
  get reconcileQueues(): BullMqReconcileSink | undefined {
    return this.#reconcileQueues;
  }

  /** Connection status of every cluster for resolution (DESIGN.md, Safety), once started. */
  get clusterStatus(): ClusterStatusSource | undefined {
    return this.#clusterStatus;
  }

  /**
   * Desired state per target group (targets, conflicts, `deregistrationsBlocked` after a Redis
   * loss or a cold start), as workers resolve it, once started.
   */
  get desiredState(): TargetGroupDesiredState | undefined {
    return this.#desiredState;
  }

  /** What writes the bindings back after a Redis loss (counters), once started. */
  get bindingRecovery(): BindingRecovery | undefined {
    return this.#bindingRecovery;
  }

  /** The admin API (counters), once started. */
  get adminService(): AdminService | undefined {
    return this.#admin;
  }

  /** Starts every part; on a failure, stops what was started and rethrows. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new Error(`hub cannot start in state ${this.#state}`);
    this.#setState('starting');
    try {
      await this.#start();
    } catch (err) {
      this.#log.error({ err }, 'hub failed to start');
      await this.shutdown(0);
      this.#setState('failed');
      throw err;
    }
    this.#agentListener?.setServing(true);
    this.#adminListener?.setServing(true);
    this.#setState('running');
  }

  async #start(): Promise<void> {
    const o = this.options;
    // Files first: a bad file fails the start before anything connects.
    const directory =
      o.clustersFile === undefined ? new ClusterDirectory() : ClusterDirectory.load(o.clustersFile);
    const adminCredentials: AdminCredentials =
      o.adminTokensFile === undefined
        ? { tokens: [], certificates: [] }
        : loadAdminCredentials(o.adminTokensFile);
    const fileBindings = o.bindingsFile === undefined ? [] : loadBindingFile(o.bindingsFile);
    if (adminCredentials.tokens.length === 0 && adminCredentials.certificates.length === 0) {
      this.#log.warn('no admin credentials configured: every admin call will be refused');
    }

    const redis = createRedis(redisSettingsOf(o));
    this.#redis = redis;
    redis.on('error', (err: unknown) => this.#log.warn({ err }, 'Redis connection error'));
    const keys = new StateKeys(o.redisKeyPrefix);
    const store = new ClusterEndpointStore(redis, keys);
    const sessions = new ClusterSessionRecords(redis, keys);

    const bindings = new BindingStore(redis, { keyPrefix: o.redisKeyPrefix, logger: this.#log });
    this.#bindings = bindings;
    for (const binding of fileBindings) {
      const applied = await bindings.apply(binding);
      this.#log.info(
        { binding: binding.name, version: applied.binding.version, changed: applied.changed },
        'binding from the bindings file applied',
      );
    }
    // Every replica remembers the last bindings it saw, to write them back after a Redis loss.
    const recovery = new BindingRecovery(bindings, { fileBindings, logger: this.#log });
    this.#bindingRecovery = recovery;
    await recovery.start();
    const resolver = new BindingSubscriptionResolver();
    this.#stopFollowing = await resolver.follow(bindings, this.#log);
    const subscriptions: SubscriptionSource = {
      subscriptionFor: (clusterId: string): Subscription =>
        resolver.subscriptionFor(clusterId, directory.labelsOf(clusterId)),
      onChange: (listener) => resolver.onUpdate(() => listener()),
    };

    const clusterStatus = new ClusterStatusTracker(redis, sessions, {
      keys,
      disconnectedGraceMs: o.disconnectedGraceMs,
      resyncTimeoutMs: o.resyncTimeoutMs,
      initialSyncHoldMs: o.initialSyncHoldMs,
      onResyncTimeout: () => this.#federationMetrics?.recoveryTimedOut(),
      onStatusChange: (clusterId, status, previous) => {
        // Synced here or at another replica: its expected sync keeps nothing back any longer.
        if (!previous.awaitingResync || status.awaitingResync) return;
        // The sink is made after the tracker's first reads.
        this.#reconcileSink
          ?.initialSyncSeen?.(clusterId)
          .catch((err: unknown) =>
            this.#log.warn({ err, cluster: clusterId }, 'cannot enqueue reconciles kept back'),
          );
      },
      logger: this.#log,
    });
    this.#clusterStatus = clusterStatus;
    clusterStatus.track(directory.list().map((c) => c.id));
    await clusterStatus.start();
    const refreshStatus = (): void => {
      clusterStatus
        .refresh()
        .catch((err: unknown) => this.#log.warn({ err }, 'cannot read cluster statuses'));
    };
    const desiredState = new TargetGroupDesiredState(
      { redis, store, bindings },
      {
        directory: { labels: (clusterId) => directory.get(clusterId)?.labels },
        status: clusterStatus,
        listedClusters: () => directory.list().map((c) => c.id),
        staleClusterPolicy: o.staleClusterPolicy,
        // The hub reports; the workers place (they know what AWS holds).
        writesPlacements: false,
        storageEpoch: {
          known: () => clusterStatus.storageEpoch,
          stored: async () => (await redis.get(keys.epoch())) ?? '',
          key: keys.epoch(),
          onMismatch: refreshStatus,
        },
      },
    );
    this.#desiredState = desiredState;
    this.#federationMetrics = new FederationMetrics(this.telemetry.meter, {
      clusterStatus,
      targetGroups: async () => {
        const groups = new Set<string>();
        for (const binding of (await bindings.snapshot()).bindings) {
          for (const arn of targetGroupArnsOf(binding)) groups.add(arn);
        }
        return [...groups];
      },
      resolve: (arn) => desiredState.resolve(arn),
      storedEndpoints: async (clusterId) => (await store.totals(clusterId)).endpoints,
      keptBack: () => this.#reconcileQueues?.deferredGroups.length ?? 0,
    });

    const reconcileSink = this.#deps.reconcileSink ?? (await this.#startReconcileQueues(directory));
    this.#reconcileSink = reconcileSink;
    // A cold start (or a start after a Redis loss): the listed clusters that have not synced
    // against the storage epoch are about to, and their groups' reconciles wait for them.
    reconcileSink.initialSyncsExpected?.(
      directory
        .list()
        .map((c) => c.id)
        .filter((id) => clusterStatus.status(id).awaitingResync),
    );
    const sync = new SyncService(
      {
        store,
        lease: new ClusterLease(redis, { keys, ttlMs: o.leaseTtlMs }),
        epoch: new StorageEpoch(redis, keys),
        authenticator: new AgentAuthenticator({
          ...(o.agentTrustDomain === undefined ? {} : { trustDomain: o.agentTrustDomain }),
          tokenSha256: Object.fromEntries(directory.tokenHashes()),
        }),
        addressPolicy: new AddressPolicy(directory.addressPolicyOptions()),
        subscriptions,
        reconcileSink,
        sessionRecords: sessions,
        awaitingResync: (clusterId) => clusterStatus.status(clusterId).awaitingResync,
        tracer: this.telemetry.tracer(),
        onStorageLost: (_previous, epoch) => {
          refreshStatus();
          // Every cluster resyncs against the new epoch: their agents reconnect one by one.
          reconcileSink.initialSyncsExpected?.(directory.list().map((c) => c.id));
          // The bindings file and the last bindings seen (admin API ones too) are written back.
          void recovery.restore(epoch);
        },
      },
      {
        hubId: o.hubId,
        heartbeatIntervalMs: o.heartbeatIntervalMs,
        leaseTtlMs: o.leaseTtlMs,
        maxAgentStreams: o.maxAgentStreams,
        maxStandbyStreamsPerCluster: o.maxStandbyStreamsPerCluster,
        limits: {
          maxBatchesInFlight: o.maxBatchesInFlight,
          maxMessageBytes: o.maxMessageBytes,
          maxEndpointsPerService: o.maxEndpointsPerService,
          maxEndpointsPerCluster: o.maxEndpointsPerCluster,
          maxServicesPerCluster: o.maxServicesPerCluster,
        },
        logger: this.#log,
      },
    );
    this.#sync = sync;
    registerIngestMetrics(this.telemetry.meter, sync.counters);
    await sync.start();

    const queues = this.#reconcileQueues;
    const records = new TargetGroupRecords(redis, o.redisKeyPrefix);
    const clusters = new ClusterInventory({
      directory,
      store,
      redis,
      keys,
      sessions,
      disconnectedGraceMs: o.disconnectedGraceMs,
      connections: sync,
    });
    this.#cidrRejections = new CidrRejectionWindow(sync.counters);
    this.#cidrRejections.start();
    const extensions: AdminExtensions = {
      targetGroups: new DesiredTargetGroupStatus(desiredState, records),
      alerts: new HubAlertEvaluator(
        {
          clusters,
          resync: clusterStatus,
          bindings,
          desired: desiredState,
          records,
          cidrRejections: this.#cidrRejections,
        },
        { disconnectedGraceMs: o.disconnectedGraceMs, logger: this.#log },
      ),
      ...(queues === undefined
        ? {}
        : {
            reconcile: new QueueReconcileTrigger(bindings, queues, records),
            heldOperations: new QueueHeldOperationReleaser(records, queues),
          }),
      ...this.#deps.adminExtensions,
    };
    this.#admin = new AdminService({
      authenticator: new AdminAuthenticator(adminCredentials),
      bindings,
      clusters,
      extensions,
      logger: this.#log,
    });
    registerAdminMetrics(this.telemetry.meter, this.#admin.counters);

    const protoDir = this.#deps.protoDir ?? findProtoDir();
    if (protoDir === undefined) {
      this.#log.warn('proto files not found: server reflection is off');
    }
    this.#agentListener = await this.#listen({
      name: 'agent',
      address: o.agentAddress,
      serverOptions: agentServerOptions(sync.options),
      credentials: listenerCredentials(
        {
          insecure: o.insecure,
          caFile: o.agentTlsCaFile,
          certFile: o.agentTlsCertFile,
          keyFile: o.agentTlsKeyFile,
          clientCertificates: o.agentClientCertificates,
        },
        'agent',
      ),
      protoDir,
      protoFile: 'tgfed/v1/agent.proto',
      service: 'tgfed.v1.AgentService',
      add: (server) => server.addService(sync.definition, sync.handlers),
    });
    const admin = this.#admin;
    this.#adminListener = await this.#listen({
      name: 'admin',
      address: o.adminAddress,
      serverOptions: {},
      credentials: listenerCredentials(
        {
          insecure: o.insecure,
          caFile: o.adminTlsCaFile,
          certFile: o.adminTlsCertFile,
          keyFile: o.adminTlsKeyFile,
          clientCertificates: o.adminClientCertificates,
        },
        'admin',
      ),
      protoDir,
      protoFile: 'tgfed/v1/admin.proto',
      service: 'tgfed.v1.AdminService',
      add: (server) => server.addService(AdminServiceService, admin.handlers),
    });

    this.#health = await startHealthServer({
      address: o.healthAddress,
      live: () => ({ ok: this.#state !== 'failed', detail: { state: this.#state } }),
      ready: () => ({
        ok: this.#state === 'running' && this.#redis?.status === 'ready',
        detail: {
          state: this.#state,
          redis: this.#redis?.status ?? 'none',
          admittedClusters: this.#sync?.admittedClusters().length ?? 0,
        },
      }),
      metrics: this.telemetry.metricsEndpoint,
    });
    this.#log.info(
      {
        agentPort: this.agentPort,
        adminPort: this.adminPort,
        healthPort: this.healthPort,
        clusters: directory.list().length,
        bindingsFromFile: fileBindings.length,
      },
      'hub listening',
    );
  }

  /**
   * The default reconcile sink: BullMQ queues on their own connection, kept current with the
   * stored bindings (every change reloads the snapshot; reloads are serialized and coalesced).
   */
  async #startReconcileQueues(directory: ClusterDirectory): Promise<ReconcileSink> {
    const o = this.options;
    const bindings = this.#bindings;
    if (bindings === undefined) throw new Error('bindings are loaded before the reconcile queues');
    const queueRedis = createRedis(redisSettingsOf(o));
    this.#queueRedis = queueRedis;
    queueRedis.on('error', (err: unknown) =>
      this.#log.warn({ err }, 'Redis connection error (reconcile queues)'),
    );
    const sink = new BullMqReconcileSink(
      queueRedis,
      { labels: (clusterId) => directory.get(clusterId)?.labels },
      {
        keyPrefix: o.redisKeyPrefix,
        shardCount: o.reconcileShardCount,
        debounceMs: o.reconcileDebounceMs,
        initialSyncHoldMs: o.initialSyncHoldMs,
        logger: this.#log,
        tracer: this.telemetry.tracer(),
      },
    );
    this.#reconcileQueues = sink;
    let running: Promise<void> | undefined;
    let again = false;
    const reload = (): void => {
      if (running !== undefined) {
        again = true;
        return;
      }
      running = bindings
        .snapshot()
        .then((snapshot) => sink.updateBindings(snapshot))
        .then(
          (enqueued) => {
            if (enqueued.length > 0) {
              this.#log.info({ groups: enqueued.length }, 'bindings changed: reconciles enqueued');
            }
          },
          (err: unknown) => this.#log.warn({ err }, 'cannot update the reconcile bindings'),
        )
        .finally(() => {
          running = undefined;
          if (again) {
            again = false;
            reload();
          }
        });
    };
    // Watch before the first load, so that no change falls between the two.
    this.#stopQueueBindings = await bindings.watch(reload);
    await sink.updateBindings(await bindings.snapshot());
    this.#log.info(
      { shards: sink.options.shardCount, debounceMs: sink.options.debounceMs },
      'reconcile queues ready',
    );
    return sink;
  }

  async #listen(spec: {
    name: string;
    address: string;
    serverOptions: grpc.ServerOptions;
    credentials: grpc.ServerCredentials;
    protoDir: string | undefined;
    protoFile: string;
    service: string;
    add: (server: grpc.Server) => void;
  }): Promise<Listener> {
    const server = new grpc.Server(spec.serverOptions);
    spec.add(server);
    const { health } = addIntrospection(server, {
      protoDir: spec.protoDir,
      protoFiles: [spec.protoFile],
      services: [spec.service],
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(spec.address, spec.credentials, (err, p) =>
        err ? reject(new Error(`${spec.name}Address ${spec.address}: ${err.message}`)) : resolve(p),
      ),
    );
    return {
      server,
      port,
      setServing: (serving) => {
        const status = serving ? 'SERVING' : 'NOT_SERVING';
        health.setStatus('', status);
        health.setStatus(spec.service, status);
      },
    };
  }

  /**
   * Stops the hub: health turns NOT_SERVING, agent streams end (leases released, agents
   * reconnect to another replica), both listeners drain within `graceMs` and are then cut,
   * the bindings watch stops, the reconcile queues and their connection close, and Redis
   * closes last. Idempotent.
   */
  shutdown(graceMs = this.options.shutdownGraceMs): Promise<void> {
    this.#closing ??= this.#shutdown(graceMs);
    return this.#closing;
  }

  async #shutdown(graceMs: number): Promise<void> {
    if (this.#state !== 'starting') this.#setState('stopping');
    const deadline = Date.now() + graceMs;
    const steps: [string, () => Promise<void> | void][] = [
      [
        'health: not serving',
        () => {
          this.#agentListener?.setServing(false);
          this.#adminListener?.setServing(false);
        },
      ],
      ['agent streams', () => this.#sync?.close()],
      ['alert sampling', () => this.#cidrRejections?.close()],
      ['agent listener', () => drain(this.#agentListener?.server, deadline)],
      ['admin listener', () => drain(this.#adminListener?.server, deadline)],
      ['subscriptions', () => this.#stopFollowing?.()],
      ['reconcile bindings', () => this.#stopQueueBindings?.()],
      ['bindings recovery', () => this.#bindingRecovery?.stop()],
      ['bindings watch', () => this.#bindings?.close()],
      ['cluster status', () => this.#clusterStatus?.close()],
      ['reconcile queues', () => this.#reconcileQueues?.close()],
      ['reconcile queue redis', () => closeRedis(this.#queueRedis)],
      [
        'telemetry',
        () =>
          this.#deps.telemetry === undefined
            ? this.telemetry.shutdown(Math.max(telemetryMinFlushMs, deadline - Date.now()))
            : undefined,
      ],
      ['probes', () => this.#health?.close()],
      ['redis', () => closeRedis(this.#redis)],
    ];
    for (const [name, step] of steps) {
      try {
        // A step may wait on an unreachable Redis; none may hold the rest up for long.
        const finished = await withinMs(step(), Math.max(deadline - Date.now(), 0) + stepSlackMs);
        if (!finished) this.#log.warn({ step: name }, 'shutdown step timed out; going on');
      } catch (err) {
        this.#log.error({ err, step: name }, 'shutdown step failed');
      }
    }
    if (this.#state !== 'starting') this.#setState('stopped');
  }

  #setState(state: HubState): void {
    if (this.#state === state) return;
    this.#log.info({ from: this.#state, to: state }, 'hub state');
    this.#state = state;
  }
}

/** grpc-js two-stage shutdown: let calls finish until the deadline, then cut them. */
async function drain(server: grpc.Server | undefined, deadlineMs: number): Promise<void> {
  if (server === undefined) return;
  const remainingMs = Math.max(0, deadlineMs - Date.now());
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, remainingMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// Time the telemetry flush gets even when draining used the whole grace period.
const telemetryMinFlushMs = 1_000;
// Time a shutdown step gets beyond the grace deadline (cleanup after a forced stop).
const stepSlackMs = 2_000;
// How long QUIT may take before the connection is simply dropped.
const quitWaitMs = 1_000;

/** True when `work` settled within `ms`; a rejection is rethrown. */
async function withinMs(work: Promise<void> | void, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([Promise.resolve(work).then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** QUIT, or a hard disconnect when Redis does not answer (QUIT queues while reconnecting). */
async function closeRedis(redis: RedisClient | undefined): Promise<void> {
  if (redis === undefined) return;
  try {
    if (
      !(await withinMs(
        redis.quit().then(() => undefined),
        quitWaitMs,
      ))
    )
      redis.disconnect();
  } catch {
    redis.disconnect();
  }
}

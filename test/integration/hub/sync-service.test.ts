import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import type { SyncPublisherOptions } from '../../../agent/publish/sync-publisher.js';
import {
  AddressPolicy,
  AgentAuthenticator,
  RecordingReconcileSink,
  SyncService,
  agentServerOptions,
  hashAgentToken,
  type AddressPolicyOptions,
  type AgentAuthenticatorOptions,
  type StreamLimitOptions,
  type SubscriptionSource,
} from '../../../hub/ingest/index.js';
import {
  ClusterEndpointStore,
  ClusterLease,
  LeaseLostError,
  StateKeys,
  StorageEpoch,
  type RedisClient,
} from '../../../hub/state/index.js';
import {
  AgentServiceClient,
  AgentServiceService,
  BatchPhase,
  NackReason,
  Protocol,
  serviceKeyString,
  type EndpointRecord,
  type Subscription,
  type SyncResponse,
} from '../../../shared/index.js';
import { createTestCertificateAuthority, type TestKeyPair } from '../../env/test-certificates.js';
import { waitFor } from '../../env/wait-for.js';
import { endpointSlice, manyEndpointSlices } from '../../support/endpoint-slices.js';
import { TestAgent } from '../../support/test-agent.js';
import { testRedis } from '../../support/test-redis.js';

const trustDomain = 'tgfed.test';
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function redis(): RedisClient {
  return testRedis(closers);
}

/** A subscription source with everything selected, changeable by the test. */
class StaticSubscriptions implements SubscriptionSource {
  #subscription: Subscription = { version: 1, selectors: [{ namespace: '', name: '' }] };
  readonly #listeners = new Set<() => void>();
  subscriptionFor(): Subscription {
    return this.#subscription;
  }
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  set(subscription: Subscription): void {
    this.#subscription = subscription;
    for (const l of this.#listeners) l();
  }
}

interface HubOptions {
  prefix: string;
  port?: number;
  hubId?: string;
  tls?: { caPem: string; pair: TestKeyPair };
  auth?: AgentAuthenticatorOptions;
  addresses?: AddressPolicyOptions;
  limits?: StreamLimitOptions;
  /** Model a crashed replica: its leases are never released, only expire. */
  neverRelease?: boolean;
}

/** A lease whose holder never releases it (a replica killed with SIGKILL). */
class NeverReleasedLease extends ClusterLease {
  override release(): Promise<void> {
    return Promise.resolve();
  }
}

/** A real hub: SyncService on a grpc-js server on loopback, state in the run's Redis. */
interface TestHubServer {
  readonly service: SyncService;
  readonly server: grpc.Server;
  readonly store: ClusterEndpointStore;
  readonly sink: RecordingReconcileSink;
  readonly subscriptions: StaticSubscriptions;
  readonly port: number;
  readonly address: string;
  stop(): Promise<void>;
}

async function startHub(options: HubOptions): Promise<TestHubServer> {
  const client = redis();
  const keys = new StateKeys(options.prefix);
  const store = new ClusterEndpointStore(client, keys);
  const sink = new RecordingReconcileSink();
  const subscriptions = new StaticSubscriptions();
  const service = new SyncService(
    {
      store,
      lease: new (options.neverRelease === true ? NeverReleasedLease : ClusterLease)(client, {
        keys,
        ttlMs: 1_500,
      }),
      epoch: new StorageEpoch(client, keys),
      authenticator: new AgentAuthenticator(
        options.auth ?? {
          trustDomain,
          tokenSha256: Object.fromEntries(
            tokenClusters.map((id) => [id, hashAgentToken(testToken(id))]),
          ),
        },
      ),
      addressPolicy: new AddressPolicy(
        options.addresses ?? { defaultCidrs: ['0.0.0.0/0', '::/0'] },
      ),
      subscriptions,
      reconcileSink: sink,
    },
    {
      hubId: options.hubId ?? 'hub-1',
      heartbeatIntervalMs: 500,
      standbyRetryMs: 100,
      epochCheckMs: 200,
      ...(options.limits === undefined ? {} : { limits: options.limits }),
    },
  );
  await service.start();
  const server = new grpc.Server(agentServerOptions(service.options));
  server.addService(AgentServiceService, service.handlers);
  const credentials =
    options.tls === undefined
      ? grpc.ServerCredentials.createInsecure()
      : grpc.ServerCredentials.createSsl(
          Buffer.from(options.tls.caPem),
          [
            {
              cert_chain: Buffer.from(options.tls.pair.certPem),
              private_key: Buffer.from(options.tls.pair.keyPem),
            },
          ],
          true,
        );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${options.port ?? 0}`, credentials, (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const stop = async () => {
    await service.close();
    server.forceShutdown();
  };
  closers.push(stop);
  return {
    service,
    server,
    store,
    sink,
    subscriptions,
    port,
    address: `127.0.0.1:${port}`,
    stop,
  };
}

/** Clusters whose agents authenticate by bearer token on the plaintext test hubs. */
const tokenClusters = ['cidr-a', 'ha', 'killed', 'restart', 'lossy', 'raw', 'subscribed'];

function testToken(clusterId: string): string {
  return `token-of-${clusterId}`;
}

/** An agent without Kubernetes: slices go into the real aggregator and publisher. */
/** The shared test agent, authenticating with its cluster's bearer token. */
class HubTestAgent extends TestAgent {
  constructor(
    readonly clusterId: string,
    target: string,
    options: Partial<SyncPublisherOptions> = {},
  ) {
    super({
      clusterId,
      target,
      metadata: () => {
        const metadata = new grpc.Metadata();
        metadata.set('authorization', `Bearer ${testToken(clusterId)}`);
        return metadata;
      },
      ...options,
    });
    closers.push(() => this.publisher.close());
  }

  /** The agent state as normalized JSON, comparable with what Redis holds. */
  normalized(filter: (address: string) => boolean = () => true): string {
    const out: Record<string, unknown> = {};
    for (const s of this.sets.services()) {
      out[serviceKeyString(s.service)] = {
        labels: sortedObject(s.labels),
        endpoints: normalized([...s.endpoints.values()].filter((e) => filter(e.address))),
      };
    }
    return JSON.stringify(sortedObject(out));
  }
}

function sortedObject<T>(o: Readonly<Record<string, T>>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function normalized(records: Iterable<EndpointRecord>): unknown[] {
  return [...records]
    .sort((a, b) => (a.address < b.address ? -1 : 1))
    .map((e) => [
      e.address,
      e.ports.map((p) => [p.name, p.port, p.protocol, p.appProtocol]),
      e.ready,
      e.serving,
      e.terminating,
      e.zone,
      e.node,
      e.pod === undefined ? null : [e.pod.namespace, e.pod.name],
    ]);
}

async function redisSnapshot(store: ClusterEndpointStore, clusterId: string): Promise<string> {
  const out: Record<string, unknown> = {};
  for (const [key, s] of await store.loadCluster(clusterId)) {
    out[key] = { labels: sortedObject(s.labels), endpoints: normalized(s.endpoints.values()) };
  }
  return JSON.stringify(sortedObject(out));
}

async function converged(
  agent: HubTestAgent,
  store: ClusterEndpointStore,
  filter?: (address: string) => boolean,
): Promise<void> {
  const want = () => agent.normalized(filter);
  let last = '';
  await waitFor(async () => (last = await redisSnapshot(store, agent.clusterId)) === want(), {
    what: 'Redis to hold exactly the agent state',
    timeoutMs: 20_000,
  }).catch((err: unknown) => {
    throw new Error(
      `Redis differs from the agent\nredis: ${last.slice(0, 2000)}\nagent: ${want().slice(0, 2000)}`,
      { cause: err },
    );
  });
  await waitFor(() => agent.publisher.inFlight === 0 && agent.publisher.pendingServices === 0, {
    what: 'the agent to have nothing unacked',
  });
}

function uniquePrefix(): string {
  return `t-${randomBytes(4).toString('hex')}`;
}

function spiffe(clusterId: string): string {
  return `spiffe://${trustDomain}/cluster/${clusterId}`;
}

describe('SyncService with the real agent publisher', () => {
  it('holds exactly the agent state in Redis after a full sync over mutual TLS, then follows deltas', async () => {
    const ca = await createTestCertificateAuthority();
    const serverPair = await ca.issue({ commonName: 'hub', dnsNames: ['localhost'] });
    const clientPair = await ca.issue({ commonName: 'agent', uris: [spiffe('prod-a')] });
    const hub = await startHub({
      prefix: uniquePrefix(),
      tls: { caPem: ca.caPem, pair: serverPair },
    });
    const agent = new HubTestAgent('prod-a', hub.address, {
      credentials: grpc.credentials.createSsl(
        Buffer.from(ca.caPem),
        Buffer.from(clientPair.keyPem),
        Buffer.from(clientPair.certPem),
      ),
      channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
      maxEndpointsPerBatch: 500,
    });
    const web = manyEndpointSlices('shop', 'web', 1_200, 100);
    agent.upsert(
      ...web,
      endpointSlice({
        namespace: 'shop',
        service: 'cart',
        name: 'cart-v6',
        addressType: 'IPv6',
        endpoints: [{ ip: 'fd00::1', pod: 'cart-1' }],
        labels: { tier: 'front' },
      }),
    );
    agent.publisher.start();
    await converged(agent, hub.store);
    expect(hub.service.counters.admissions).toBe(1);
    expect(hub.service.counters.digestMismatches).toBe(0);
    expect(agent.publisher.stats.nacks).toBe(0);

    const changed = structuredClone(web[3]!);
    changed.endpoints![7]!.conditions = { ready: false, serving: true, terminating: true };
    agent.upsert(changed);
    agent.delete(web[5]!);
    await converged(agent, hub.store);
    expect((await hub.store.digests('prod-a')).size).toBe(2);
    expect(hub.service.counters.digestMismatches).toBe(0);
    expect(hub.sink.calls.at(-1)?.clusterId).toBe('prod-a');
  });

  it('refuses a certificate of one cluster whose hello names another with PERMISSION_DENIED', async () => {
    const ca = await createTestCertificateAuthority();
    const serverPair = await ca.issue({ commonName: 'hub', dnsNames: ['localhost'] });
    const clientPair = await ca.issue({ commonName: 'agent', uris: [spiffe('cluster-a')] });
    const hub = await startHub({
      prefix: uniquePrefix(),
      tls: { caPem: ca.caPem, pair: serverPair },
    });
    const client = new AgentServiceClient(
      hub.address,
      grpc.credentials.createSsl(
        Buffer.from(ca.caPem),
        Buffer.from(clientPair.keyPem),
        Buffer.from(clientPair.certPem),
      ),
      { 'grpc.ssl_target_name_override': 'localhost' },
    );
    closers.push(() => client.close());
    const call = client.sync();
    const responses: SyncResponse[] = [];
    call.on('data', (r: SyncResponse) => responses.push(r));
    const status = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    call.write({
      message: {
        $case: 'hello',
        hello: {
          clusterId: 'cluster-b',
          agentVersion: 'evil',
          sessionEpoch: randomBytes(16),
          capabilities: [],
        },
      },
    });
    const err = await status;
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toContain('"cluster-a"');
    expect(err.details).toContain('"cluster-b"');
    expect(responses.filter((r) => r.message?.$case === 'welcome')).toHaveLength(0);
    expect(hub.service.counters.permissionDenied).toBe(1);
  });

  it('authenticates by bearer token and answers UNAUTHENTICATED without credentials', async () => {
    const token = randomBytes(24).toString('base64url');
    const hub = await startHub({
      prefix: uniquePrefix(),
      auth: { tokenSha256: { 'token-cluster': hashAgentToken(token) } },
    });
    const good = new HubTestAgent('token-cluster', hub.address, {
      metadata: () => {
        const m = new grpc.Metadata();
        m.set('authorization', `Bearer ${token}`);
        return m;
      },
    });
    good.upsert(manyEndpointSlices('shop', 'web', 10, 10)[0]!);
    good.publisher.start();
    await converged(good, hub.store);

    const client = new AgentServiceClient(hub.address, grpc.credentials.createInsecure());
    closers.push(() => client.close());
    const call = client.sync();
    const status = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    call.write({
      message: {
        $case: 'hello',
        hello: {
          clusterId: 'token-cluster',
          agentVersion: 'x',
          sessionEpoch: randomBytes(16),
          capabilities: [],
        },
      },
    });
    expect((await status).code).toBe(grpc.status.UNAUTHENTICATED);
    expect(hub.service.counters.unauthenticated).toBe(1);
  });

  it('rejects and counts endpoints outside the allowed CIDRs while the rest applies', async () => {
    const hub = await startHub({
      prefix: uniquePrefix(),
      addresses: { clusters: { 'cidr-a': ['10.1.0.0/16'] } },
    });
    const agent = new HubTestAgent('cidr-a', hub.address);
    const inside = manyEndpointSlices('shop', 'web', 40, 40, 1);
    const outside = manyEndpointSlices('shop', 'web', 5, 5, 99).map((s) => ({
      ...s,
      metadata: { ...s.metadata, name: 'web-outside' },
    }));
    agent.upsert(...inside, ...outside, ...manyEndpointSlices('shop', 'api', 3, 3, 1));
    agent.publisher.start();
    const allowed = (address: string) => address.startsWith('10.1.');
    await converged(agent, hub.store, allowed);
    const web = await hub.store.readService('cidr-a', { namespace: 'shop', name: 'web' });
    expect(web?.endpoints.size).toBe(40);
    expect(hub.service.counters.addressesNotAllowed).toBe(5);
    expect(hub.service.counters.rejectedByCluster.get('cidr-a')).toBe(5);
    expect(agent.publisher.stats.nacksByReason.NACK_REASON_ADDRESS_NOT_ALLOWED).toBe(1);

    // A later delta of the same service still applies; the rejected ones stay out.
    const changed = structuredClone(inside[0]!);
    changed.endpoints![0]!.conditions = { ready: false, serving: false, terminating: true };
    agent.upsert(changed);
    await converged(agent, hub.store, allowed);
    expect(hub.service.counters.digestMismatches).toBe(0);
  });

  it('admits exactly one stream per cluster across two hubs and fails over when the holder dies', async () => {
    const prefix = uniquePrefix();
    const hub1 = await startHub({ prefix, hubId: 'hub-1' });
    const hub2 = await startHub({ prefix, hubId: 'hub-2' });
    const slices = manyEndpointSlices('shop', 'web', 100, 50);
    const first = new HubTestAgent('ha', hub1.address);
    first.upsert(...slices);
    first.publisher.start();
    await converged(first, hub1.store);
    const second = new HubTestAgent('ha', hub2.address);
    second.upsert(...slices);
    second.publisher.start();
    await waitFor(() => second.publisher.state === 'standby', {
      what: 'the second agent on standby',
    });
    expect(hub1.service.admittedClusters()).toEqual(['ha']);
    expect(hub2.service.admittedClusters()).toEqual([]);
    expect(hub2.service.standbyCount()).toBe(1);

    hub1.server.forceShutdown();
    await waitFor(() => hub2.service.admittedClusters().includes('ha'), {
      what: 'the standby stream to take over',
    });
    const more = endpointSlice({
      namespace: 'shop',
      service: 'web',
      name: 'web-late',
      endpoints: [{ ip: '10.1.200.1' }],
    });
    second.upsert(more);
    await converged(second, hub2.store);
    expect(hub2.service.admittedClusters()).toEqual(['ha']);
  });

  it('resumes by digest after a hub restart: only changed services are written, Redis exact', async () => {
    const prefix = uniquePrefix();
    const hub = await startHub({ prefix });
    const agent = new HubTestAgent('restart', hub.address);
    const web = manyEndpointSlices('shop', 'web', 300, 100);
    const cart = manyEndpointSlices('shop', 'cart', 50, 50, 2);
    const api = manyEndpointSlices('shop', 'api', 50, 50, 3);
    agent.upsert(...web, ...cart, ...api);
    agent.publisher.start();
    await converged(agent, hub.store);

    await hub.stop();
    await waitFor(
      () => agent.publisher.state === 'backoff' || agent.publisher.state === 'connecting',
      {
        what: 'the agent to notice the hub is gone',
      },
    );
    agent.delete(cart[0]!);
    const moved = structuredClone(api[0]!);
    moved.endpoints = moved.endpoints!.slice(0, 40);
    agent.upsert(moved);

    const restarted = await startHub({ prefix, port: hub.port });
    await converged(agent, restarted.store);
    const written = restarted.sink.calls.flatMap((c) => c.services.map(serviceKeyString)).sort();
    expect(written).toEqual(['shop/api', 'shop/cart']);
    expect(
      await restarted.store.readService('restart', { namespace: 'shop', name: 'cart' }),
    ).toBeUndefined();
  });

  it('fences off a stale lease holder: its batch writes nothing', async () => {
    const client = redis();
    const keys = new StateKeys(uniquePrefix());
    const store = new ClusterEndpointStore(client, keys);
    const lease = new ClusterLease(client, { keys, ttlMs: 200 });
    const old = await lease.acquire('fenced', 'hub-old');
    if (!old.acquired) throw new Error('first acquire must succeed');
    const service = { namespace: 'shop', name: 'web' };
    const record: EndpointRecord = {
      address: '10.0.0.1',
      ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: '' }],
      ready: true,
      serving: true,
      terminating: false,
      zone: 'a',
      node: 'n',
      pod: { namespace: 'shop', name: 'web-1' },
    };
    const meta = { digest: new Uint8Array(8), endpointCount: 1, labels: {} };
    await store.applyBatch(
      'fenced',
      old.lease.token,
      [{ kind: 'replace', service, endpoints: [record], meta }],
      {
        endpoints: 1,
        services: 1,
      },
    );

    // The old holder stalls past its TTL; another replica takes the cluster.
    const next = await waitFor(
      async () => {
        const attempt = await lease.acquire('fenced', 'hub-new');
        return attempt.acquired ? attempt.lease : undefined;
      },
      { what: 'the lease to expire and be taken over' },
    );
    expect(await lease.renew(old.lease)).toBe(false);
    await expect(
      store.applyBatch('fenced', old.lease.token, [{ kind: 'remove', service }], {
        endpoints: 0,
        services: 0,
      }),
    ).rejects.toBeInstanceOf(LeaseLostError);
    const stored = await store.readService('fenced', service);
    expect(stored?.endpoints.get('10.0.0.1')).toEqual(record);
    await lease.release(old.lease);
    expect(await lease.renew(next)).toBe(true);
  });

  it('detects a storage loss and rebuilds the cluster state from the agent', async () => {
    const prefix = uniquePrefix();
    const hub = await startHub({ prefix });
    const agent = new HubTestAgent('lossy', hub.address);
    agent.upsert(...manyEndpointSlices('shop', 'web', 200, 100));
    agent.publisher.start();
    await converged(agent, hub.store);

    // What FLUSHALL does to this installation's keys (the run's Redis is shared by tests).
    const client = redis();
    const doomed = await client.keys(`${prefix}:*`);
    await client.del(...doomed);
    await waitFor(() => hub.service.counters.storageLosses === 1, {
      what: 'the loss to be detected',
    });
    await converged(agent, hub.store);
    expect(hub.service.counters.admissions).toBeGreaterThanOrEqual(2);
  });

  it('takes over after the lease expires when the holder dies without releasing it', async () => {
    const prefix = uniquePrefix();
    const hub1 = await startHub({ prefix, hubId: 'hub-1', neverRelease: true });
    const hub2 = await startHub({ prefix, hubId: 'hub-2' });
    const slices = manyEndpointSlices('shop', 'web', 20, 20);
    const first = new HubTestAgent('killed', hub1.address);
    first.upsert(...slices);
    first.publisher.start();
    await converged(first, hub1.store);
    const second = new HubTestAgent('killed', hub2.address);
    second.upsert(...slices);
    second.publisher.start();
    await waitFor(() => second.publisher.state === 'standby', { what: 'standby' });

    const killedAt = Date.now();
    hub1.server.forceShutdown();
    await waitFor(() => hub2.service.admittedClusters().includes('killed'), {
      what: 'takeover after the lease TTL',
    });
    // Not before the dead holder's lease ran out (TTL 1.5 s, renewed every 0.5 s).
    expect(Date.now() - killedAt).toBeGreaterThan(900);
    second.upsert(
      endpointSlice({
        namespace: 'shop',
        service: 'api',
        name: 'api-1',
        endpoints: [{ ip: '10.3.0.1' }],
      }),
    );
    await converged(second, hub2.store);
  });

  it('pushes subscription changes live; the agent removes what is no longer selected', async () => {
    const hub = await startHub({ prefix: uniquePrefix() });
    const agent = new HubTestAgent('subscribed', hub.address);
    agent.upsert(
      ...manyEndpointSlices('shop', 'web', 10, 10),
      ...manyEndpointSlices('shop', 'api', 5, 5, 2),
    );
    agent.publisher.start();
    await converged(agent, hub.store);
    hub.subscriptions.set({ version: 2, selectors: [{ namespace: 'shop', name: 'web' }] });
    await waitFor(
      async () => {
        const digests = await hub.store.digests('subscribed');
        return digests.size === 1 && digests.has('shop/web');
      },
      { what: 'shop/api to be removed after the subscription changed' },
    );
  });

  describe('with a raw client speaking the protocol', () => {
    function rawStream(hub: TestHubServer, clusterId: string) {
      const client = new AgentServiceClient(hub.address, grpc.credentials.createInsecure());
      closers.push(() => client.close());
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${testToken(clusterId)}`);
      const call = client.sync(metadata);
      const responses: SyncResponse[] = [];
      let ended: grpc.ServiceError | undefined;
      call.on('data', (r: SyncResponse) => responses.push(r));
      call.on('error', (err: grpc.ServiceError) => (ended = err));
      closers.push(() => call.cancel());
      const next = async <C extends NonNullable<SyncResponse['message']>['$case']>(kind: C) =>
        waitFor(
          () => {
            const i = responses.findIndex((r) => r.message?.$case === kind);
            if (i < 0) return undefined;
            const [r] = responses.splice(i, 1);
            return r?.message as Extract<NonNullable<SyncResponse['message']>, { $case: C }>;
          },
          { what: `a ${kind} from the hub` },
        );
      return { call, next, status: () => ended };
    }

    function hello(clusterId: string) {
      return {
        message: {
          $case: 'hello' as const,
          hello: {
            clusterId,
            agentVersion: 'raw',
            sessionEpoch: randomBytes(16),
            capabilities: [],
          },
        },
      };
    }

    function replaceBatch(sequence: number, name: string, addresses: Uint8Array[]) {
      return {
        message: {
          $case: 'batch' as const,
          batch: {
            sequence,
            phase: BatchPhase.BATCH_PHASE_DELTA,
            changes: [
              {
                service: { namespace: 'shop', name },
                digest: new Uint8Array(0),
                change: {
                  $case: 'replace' as const,
                  replace: {
                    labels: {},
                    portSets: [
                      {
                        id: 1,
                        ports: [
                          {
                            name: 'http',
                            port: 80,
                            protocol: Protocol.PROTOCOL_TCP,
                            appProtocol: '',
                          },
                        ],
                      },
                    ],
                    endpoints: addresses.map((address) => ({
                      address,
                      portSet: 1,
                      ready: true,
                      serving: true,
                      terminating: false,
                      zone: 0,
                      node: 0,
                      pod: undefined,
                      observedOffsetMs: 0,
                    })),
                  },
                },
              },
            ],
            strings: [],
            observedBaseUnixMs: Date.now(),
            traceContext: undefined,
          },
        },
      };
    }

    it('answers malformed, oversized and out-of-order batches with NACKs and keeps state intact', async () => {
      const hub = await startHub({ prefix: uniquePrefix(), limits: { maxEndpointsPerService: 3 } });
      const raw = rawStream(hub, 'raw');
      raw.call.write(hello('raw'));
      await raw.next('welcome');
      raw.call.write({ message: { $case: 'synced', synced: { sequence: 1 } } });
      expect((await raw.next('ack')).ack.sequence).toBe(1);

      // A good service and one with a 5-byte address in one batch: the good one applies.
      const batch = replaceBatch(2, 'good', [Uint8Array.from([10, 0, 0, 1])]);
      const bad = replaceBatch(2, 'bad', [Uint8Array.from([10, 0, 0, 1, 9])]).message.batch
        .changes[0]!;
      batch.message.batch.changes.push(bad);
      raw.call.write(batch);
      const invalid = await raw.next('nack');
      expect(invalid.nack.reason).toBe(NackReason.NACK_REASON_INVALID);
      expect(invalid.nack.rejections.map((r) => r.service?.name)).toEqual(['bad']);
      expect((await raw.next('ack')).ack.sequence).toBe(2);
      expect(
        (await hub.store.readService('raw', { namespace: 'shop', name: 'good' }))?.endpoints.size,
      ).toBe(1);
      expect(
        await hub.store.readService('raw', { namespace: 'shop', name: 'bad' }),
      ).toBeUndefined();

      // Over the per-service limit: LIMIT_EXCEEDED, the stored service unchanged.
      raw.call.write(
        replaceBatch(
          3,
          'good',
          [1, 2, 3, 4].map((i) => Uint8Array.from([10, 0, 0, i])),
        ),
      );
      expect((await raw.next('nack')).nack.reason).toBe(NackReason.NACK_REASON_LIMIT_EXCEEDED);
      expect(
        (await hub.store.readService('raw', { namespace: 'shop', name: 'good' }))?.endpoints.size,
      ).toBe(1);

      // A gap in the sequence: NACK SEQUENCE and a resync request for what the batch touched.
      raw.call.write(replaceBatch(7, 'good', [Uint8Array.from([10, 0, 0, 2])]));
      expect((await raw.next('nack')).nack.reason).toBe(NackReason.NACK_REASON_SEQUENCE);
      expect((await raw.next('resyncRequest')).resyncRequest.services.map((s) => s.name)).toEqual([
        'good',
      ]);
      expect(
        (await hub.store.readService('raw', { namespace: 'shop', name: 'good' }))?.endpoints.has(
          '10.0.0.2',
        ),
      ).toBe(false);
      expect(hub.service.counters.sequenceErrors).toBe(1);
      expect(hub.service.counters.invalidChanges).toBe(1);
      expect(hub.service.counters.limitExceeded).toBe(1);
      expect(raw.status()).toBeUndefined();
    });

    it('ends a stream that sends a batch before its welcome with FAILED_PRECONDITION', async () => {
      const hub = await startHub({ prefix: uniquePrefix() });
      const raw = rawStream(hub, 'raw');
      raw.call.write(replaceBatch(1, 'web', [Uint8Array.from([10, 0, 0, 1])]));
      const status = await waitFor(() => raw.status(), { what: 'the stream to end' });
      expect(status.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(hub.service.counters.protocolViolations).toBe(1);
    });

    it('closes a silent stream after three heartbeat intervals', async () => {
      const hub = await startHub({ prefix: uniquePrefix() });
      const raw = rawStream(hub, 'raw');
      raw.call.write(hello('raw'));
      await raw.next('welcome');
      const status = await waitFor(() => raw.status(), { what: 'the silent stream to be closed' });
      expect(status.code).toBe(grpc.status.UNAVAILABLE);
      expect(hub.service.counters.heartbeatTimeouts).toBe(1);
      await waitFor(async () => (await hub.store.digests('raw')).size === 0, { what: 'no state' });
    });

    it('refuses a message above the size limit with RESOURCE_EXHAUSTED', async () => {
      const hub = await startHub({ prefix: uniquePrefix(), limits: { maxMessageBytes: 16_384 } });
      const raw = rawStream(hub, 'raw');
      raw.call.write(hello('raw'));
      await raw.next('welcome');
      const addresses = Array.from({ length: 2_000 }, (_, i) =>
        Uint8Array.from([10, 0, i >> 8, i & 0xff]),
      );
      raw.call.write(replaceBatch(1, 'huge', addresses));
      const status = await waitFor(() => raw.status(), { what: 'the stream to be refused' });
      expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(
        await hub.store.readService('raw', { namespace: 'shop', name: 'huge' }),
      ).toBeUndefined();
    });
  });
});

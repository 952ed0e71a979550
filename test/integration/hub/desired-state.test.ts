import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { BindingStore } from '../../../hub/federation/binding-store.js';
import type { ClusterStatus } from '../../../hub/federation/desired-targets.js';
import {
  TargetGroupDesiredState,
  type GroupDesiredState,
} from '../../../hub/federation/target-group-desired-state.js';
import {
  AddressPolicy,
  AgentAuthenticator,
  RecordingReconcileSink,
  SyncService,
  agentServerOptions,
  hashAgentToken,
} from '../../../hub/ingest/index.js';
import {
  ClusterEndpointStore,
  ClusterLease,
  StateKeys,
  StorageEpoch,
  type RedisClient,
} from '../../../hub/state/index.js';
import { AgentServiceService, type Binding, type Subscription } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { endpointSlice, type TestEndpoint } from '../../support/endpoint-slices.js';
import { TestAgent } from '../../support/test-agent.js';
import { TargetGroupRecords } from '../../../hub/reconcile/target-group-records.js';
import { testRedis } from '../../support/test-redis.js';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const CLUSTER_LABELS: Record<string, Record<string, string>> = {
  east: { env: 'prod' },
  west: { env: 'prod' },
  dev: { env: 'dev' },
};
const ROLE_A = 'arn:aws:iam::222222222222:role/tgfed-a';
const CONNECTED: ClusterStatus = { connection: 'connected', awaitingResync: false };
const token = (clusterId: string): string => `token-of-${clusterId}`;

function redis(): RedisClient {
  return testRedis(closers);
}

/** A real hub (SyncService on loopback, state in Redis) and the resolution under test. */
async function startHub(): Promise<{
  address: string;
  redis: RedisClient;
  bindings: BindingStore;
  store: ClusterEndpointStore;
  desired: TargetGroupDesiredState;
  prefix: string;
}> {
  const prefix = `t-${randomBytes(4).toString('hex')}`;
  const client = redis();
  closers.push(async () => {
    const keys = await client.keys(`${prefix}:*`);
    if (keys.length > 0) await client.del(...keys);
  });
  const keys = new StateKeys(prefix);
  const store = new ClusterEndpointStore(client, keys);
  const everything: Subscription = { version: 1, selectors: [{ namespace: '', name: '' }] };
  const service = new SyncService(
    {
      store,
      lease: new ClusterLease(client, { keys, ttlMs: 1_500 }),
      epoch: new StorageEpoch(client, keys),
      authenticator: new AgentAuthenticator({
        trustDomain: 'tgfed.test',
        tokenSha256: Object.fromEntries(
          Object.keys(CLUSTER_LABELS).map((id) => [id, hashAgentToken(token(id))]),
        ),
      }),
      addressPolicy: new AddressPolicy({ defaultCidrs: ['0.0.0.0/0', '::/0'] }),
      subscriptions: { subscriptionFor: () => everything, onChange: () => () => undefined },
      reconcileSink: new RecordingReconcileSink(),
    },
    { hubId: 'hub-1', heartbeatIntervalMs: 500, standbyRetryMs: 100, epochCheckMs: 200 },
  );
  await service.start();
  const server = new grpc.Server(agentServerOptions(service.options));
  server.addService(AgentServiceService, service.handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  closers.push(async () => {
    await service.close();
    server.forceShutdown();
  });
  const bindings = new BindingStore(client, { keyPrefix: prefix, revisionPollMs: 0 });
  closers.push(() => bindings.close());
  const desired = new TargetGroupDesiredState(
    { redis: client, store, bindings },
    {
      directory: { labels: (id) => CLUSTER_LABELS[id] },
      status: { status: () => CONNECTED },
    },
  );
  return { address: `127.0.0.1:${port}`, redis: client, bindings, store, desired, prefix };
}

/** The real agent publisher of one cluster, authenticating with its bearer token. */
function agent(clusterId: string, target: string): TestAgent {
  const a = new TestAgent({
    clusterId,
    target,
    metadata: () => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${token(clusterId)}`);
      return metadata;
    },
  });
  closers.push(() => a.publisher.close());
  a.publisher.start();
  return a;
}

function web(name: string, endpoints: TestEndpoint[]) {
  return endpointSlice({ namespace: 'shop', service: 'web', name, endpoints });
}

/** Endpoints `10.<block>.<i / 250>.<i % 250 + 1>` for i in [from, to), with pods. */
function ips(block: number, from: number, to: number): TestEndpoint[] {
  return Array.from({ length: to - from }, (_, k) => {
    const i = from + k;
    return { ip: `10.${block}.${Math.floor(i / 250)}.${(i % 250) + 1}`, pod: `web-${block}-${i}` };
  });
}

/** A binding of shop/web port `http` in `env=prod` clusters. */
function prodBinding(target: Binding['target']): Binding {
  return binding({
    clusters: { names: [], labels: { matchLabels: { env: 'prod' }, matchExpressions: [] } },
    target,
  });
}

/** A pool binding of shop/web over `arns`, each group holding at most `capacity`. */
function prodPool(arns: readonly string[], capacity: number): Binding {
  return prodBinding({
    $case: 'pool',
    pool: { groups: arns.map((arn) => targetGroup({ arn, capacity })), listenerRuleArn: '' },
  });
}

async function resolvedTo(
  desired: TargetGroupDesiredState,
  arn: string,
  done: (state: GroupDesiredState) => boolean,
): Promise<GroupDesiredState> {
  let last: GroupDesiredState | undefined;
  return waitFor(
    async () => {
      last = await desired.resolve(arn);
      return done(last) ? last : undefined;
    },
    { what: 'the desired state', timeoutMs: 20_000 },
  ).catch((err: unknown) => {
    throw new Error(`desired state: ${JSON.stringify([...(last?.targets.keys() ?? [])])}`, {
      cause: err,
    });
  });
}

describe('TargetGroupDesiredState', () => {
  it('unions the ready endpoints of two clusters on the bound port, with their sources', async () => {
    const hub = await startHub();
    const arn = targetGroupArn(1);
    await hub.bindings.apply(
      prodBinding({ $case: 'targetGroup', targetGroup: targetGroup({ arn }) }),
    );
    agent('east', hub.address).upsert(
      web('web-e', [...ips(1, 0, 3), { ip: '10.1.9.9', ready: false, pod: 'starting' }]),
      endpointSlice({ namespace: 'shop', service: 'cart', name: 'c', endpoints: ips(7, 0, 2) }),
    );
    agent('west', hub.address).upsert(web('web-w', ips(2, 0, 2)));

    const state = await resolvedTo(hub.desired, arn, (s) => s.targets.size === 5);
    expect([...state.targets.keys()]).toEqual([
      '10.1.0.1:8080',
      '10.1.0.2:8080',
      '10.1.0.3:8080',
      '10.2.0.1:8080',
      '10.2.0.2:8080',
    ]);
    expect(state.targets.get('10.2.0.2:8080')?.sources).toEqual([
      { clusterId: 'west', service: 'shop/web', podName: 'web-2-1' },
    ]);
    expect(state.bindings).toEqual(['web']);
    expect(state.conflicts).toEqual([]);
    expect(state.deregistrationsBlocked).toBe(false);
    expect(state.overflow).toEqual([]);
  });

  it('lists the clusters from the index admission writes, scanning Redis only on its first call', async () => {
    const hub = await startHub();
    const arn = targetGroupArn(90);
    await hub.bindings.apply(
      prodBinding({ $case: 'targetGroup', targetGroup: targetGroup({ arn }) }),
    );
    agent('east', hub.address).upsert(web('web-e', ips(1, 0, 2)));
    // Admission indexed it: the resolution finds it without any listed cluster.
    await resolvedTo(hub.desired, arn, (s) => s.targets.size === 2);
    expect(await hub.redis.smembers(hub.store.keys.clusters())).toEqual(['east']);

    // The indexes of many clusters are read in one pipeline, as each would be alone.
    const reads = [
      { clusterId: 'east', serviceKeys: ['shop/web', 'shop/none'] },
      { clusterId: 'east', serviceKeys: undefined },
      { clusterId: 'nowhere', serviceKeys: ['shop/web'] },
      { clusterId: 'east', serviceKeys: [] },
    ];
    const together = await hub.store.serviceMetasOfClusters(reads);
    expect(together.map((m) => [...m.keys()])).toEqual([['shop/web'], ['shop/web'], [], []]);
    expect(together).toEqual([
      await hub.store.serviceMetasOf('east', ['shop/web', 'shop/none']),
      await hub.store.serviceMetas('east'),
      new Map(),
      new Map(),
    ]);

    // Services of many clusters too, from a connection that never ran the script before (its
    // first run in a pipeline loads it), as each would be read alone.
    const unloaded = hub.redis.duplicate();
    try {
      const store = new ClusterEndpointStore(unloaded, hub.store.keys);
      const web = { namespace: 'shop', name: 'web' };
      const services = await store.readServices([
        { clusterId: 'east', service: web },
        { clusterId: 'nowhere', service: web },
        { clusterId: 'east', service: { namespace: 'shop', name: 'none' } },
        { clusterId: 'east', service: web },
      ]);
      expect(services.map((s) => [...(s?.endpoints.keys() ?? [])])).toEqual([
        ['10.1.0.1', '10.1.0.2'],
        [],
        [],
        ['10.1.0.1', '10.1.0.2'],
      ]);
      expect(services).toEqual([
        await hub.store.readService('east', web),
        undefined,
        undefined,
        await hub.store.readService('east', web),
      ]);
    } finally {
      unloaded.disconnect();
    }

    // State without an index entry (written by an older hub, or the key deleted): a new process's
    // first resolution finds it by SCAN and indexes it.
    await hub.redis.del(hub.store.keys.clusters());
    const scans = { count: 0 };
    const scan = hub.redis.scan.bind(hub.redis);
    hub.redis.scan = ((...args: Parameters<typeof scan>) => {
      scans.count++;
      return scan(...args);
    }) as typeof hub.redis.scan;
    const fresh = new TargetGroupDesiredState(
      { redis: hub.redis, store: hub.store, bindings: hub.bindings },
      { directory: { labels: (id) => CLUSTER_LABELS[id] }, status: { status: () => CONNECTED } },
    );
    expect([...(await fresh.resolve(arn)).targets.keys()]).toEqual([
      '10.1.0.1:8080',
      '10.1.0.2:8080',
    ]);
    expect(scans.count).toBeGreaterThan(0);
    expect(await hub.redis.smembers(hub.store.keys.clusters())).toEqual(['east']);

    // Later resolutions read the index alone, and see a cluster admitted since.
    const afterFirst = scans.count;
    const west = agent('west', hub.address);
    west.upsert(web('web-w', ips(2, 0, 3)));
    const state = await resolvedTo(fresh, arn, (s) => s.targets.size === 5);
    expect(new Set([...state.targets.values()].map((t) => t.sources[0]?.clusterId))).toEqual(
      new Set(['east', 'west']),
    );
    expect(scans.count).toBe(afterFirst);

    // `prepare` (a worker's start) makes that first SCAN, and the first resolution none.
    await hub.redis.del(hub.store.keys.clusters());
    const prepared = new TargetGroupDesiredState(
      { redis: hub.redis, store: hub.store, bindings: hub.bindings },
      { directory: { labels: (id) => CLUSTER_LABELS[id] }, status: { status: () => CONNECTED } },
    );
    await prepared.prepare();
    const afterPrepare = scans.count;
    expect(afterPrepare).toBeGreaterThan(afterFirst);
    expect((await prepared.resolve(arn)).targets.size).toBe(5);
    expect(scans.count).toBe(afterPrepare);
  });

  it('leaves out the endpoints of a cluster the cluster selector does not select', async () => {
    const hub = await startHub();
    const arn = targetGroupArn(2);
    await hub.bindings.apply(
      prodBinding({ $case: 'targetGroup', targetGroup: targetGroup({ arn }) }),
    );
    agent('east', hub.address).upsert(web('web-e', ips(1, 0, 2)));
    agent('west', hub.address).upsert(web('web-w', ips(2, 0, 2)));
    const dev = agent('dev', hub.address);
    dev.upsert(web('web-d', ips(3, 0, 2)));
    await waitFor(() => dev.publisher.inFlight === 0 && dev.publisher.pendingServices === 0, {
      what: 'the dev cluster to be stored',
    });

    const state = await resolvedTo(hub.desired, arn, (s) => s.targets.size === 4);
    const clusters = [...state.targets.values()].map((t) => t.sources[0]?.clusterId);
    expect(new Set(clusters)).toEqual(new Set(['east', 'west']));
    expect([...state.targets.keys()].some((k) => k.startsWith('10.3.'))).toBe(false);
  });

  it('registers an ip:port announced by two clusters once and reports one conflict', async () => {
    const hub = await startHub();
    const arn = targetGroupArn(3);
    await hub.bindings.apply(
      prodBinding({ $case: 'targetGroup', targetGroup: targetGroup({ arn }) }),
    );
    agent('east', hub.address).upsert(web('web-e', [{ ip: '10.9.0.1', pod: 'east-pod' }]));
    agent('west', hub.address).upsert(
      web('web-w', [{ ip: '10.9.0.1', pod: 'west-pod' }, ...ips(2, 0, 1)]),
    );

    const state = await resolvedTo(hub.desired, arn, (s) => s.conflicts.length === 1);
    expect([...state.targets.keys()]).toEqual(['10.2.0.1:8080', '10.9.0.1:8080']);
    expect(state.targets.get('10.9.0.1:8080')?.sources).toEqual([
      { clusterId: 'east', service: 'shop/web', podName: 'east-pod' },
    ]);
    expect(state.conflicts).toEqual([{ target: '10.9.0.1:8080', clusters: ['east', 'west'] }]);
  });

  it('merges two bindings of one group and reports their cross-binding conflict', async () => {
    const hub = await startHub();
    const arn = targetGroupArn(5);
    const target: Binding['target'] = { $case: 'targetGroup', targetGroup: targetGroup({ arn }) };
    await hub.bindings.apply(binding({ name: 'web-east', clusters: { names: ['east'] }, target }));
    await hub.bindings.apply(binding({ name: 'web-west', clusters: { names: ['west'] }, target }));
    agent('east', hub.address).upsert(web('web-e', [{ ip: '10.9.0.1', pod: 'east-pod' }]));
    agent('west', hub.address).upsert(
      web('web-w', [{ ip: '10.9.0.1', pod: 'west-pod' }, ...ips(2, 0, 1)]),
    );

    const state = await resolvedTo(hub.desired, arn, (s) => s.conflicts.length === 1);
    expect(state.bindings).toEqual(['web-east', 'web-west']);
    expect([...state.targets.keys()]).toEqual(['10.2.0.1:8080', '10.9.0.1:8080']);
    expect(state.targets.get('10.9.0.1:8080')?.sources[0]?.clusterId).toBe('east');
    expect(state.conflicts).toEqual([{ target: '10.9.0.1:8080', clusters: ['east', 'west'] }]);
  });

  it('gives a group’s definition as a resolution would, from the bindings alone', async () => {
    const hub = await startHub();
    const single = targetGroupArn(41);
    const pooled = [targetGroupArn(42), targetGroupArn(43)];
    await hub.bindings.apply({
      ...prodBinding({
        $case: 'targetGroup',
        targetGroup: targetGroup({ arn: single, capacity: 7 }),
      }),
      name: 'web-b',
    });
    // Two bindings name the same group with different roles: the first by name is the one.
    await hub.bindings.apply({
      ...prodBinding({
        $case: 'targetGroup',
        targetGroup: targetGroup({ arn: single, capacity: 7, roleArn: ROLE_A }),
      }),
      name: 'web-a',
    });
    await hub.bindings.apply({ ...prodPool(pooled, 30), name: 'web-pool' });
    agent('east', hub.address).upsert(web('web-d', ips(1, 0, 2)));
    const state = await resolvedTo(hub.desired, single, (s) => s.targets.size === 2);

    expect(await hub.desired.definition(single)).toEqual(state.targetGroup);
    expect((await hub.desired.definition(single))?.roleArn).toBe(ROLE_A);
    const second = await hub.desired.resolve(pooled[1] as string);
    expect(second.targetGroup?.capacity).toBe(30);
    expect(await hub.desired.definition(pooled[1] as string)).toEqual(second.targetGroup);
    expect(await hub.desired.definition(targetGroupArn(44))).toBeUndefined();
  });

  it('shards a pool within capacity and keeps targets in place through churn', async () => {
    const hub = await startHub();
    const arns = [targetGroupArn(11), targetGroupArn(12), targetGroupArn(13)];
    await hub.bindings.apply(prodPool(arns, 40));
    const east = agent('east', hub.address);
    east.upsert(web('web-a', ips(1, 0, 50)), web('web-b', ips(1, 50, 100)));

    const placement = async (): Promise<Map<string, string>> => {
      const byTarget = new Map<string, string>();
      for (const arn of arns) {
        const state = await hub.desired.resolve(arn);
        expect(state.targets.size).toBeLessThanOrEqual(40);
        expect(state.overflow).toEqual([]);
        for (const key of state.targets.keys()) {
          expect(byTarget.has(key)).toBe(false);
          byTarget.set(key, arn);
        }
      }
      return byTarget;
    };
    let before = new Map<string, string>();
    await waitFor(async () => (before = await placement()).size === 100, {
      what: 'all 100 endpoints placed',
    });
    expect(new Set(before.values())).toEqual(new Set(arns));
    // Each group persisted its share: that is what the next resolution keeps in place.
    const persisted = await Promise.all(
      arns.map((arn) => hub.redis.hlen(hub.desired.assignmentKey(arn))),
    );
    expect(persisted).toEqual(
      arns.map((arn) => [...before.values()].filter((a) => a === arn).length),
    );

    // One endpoint goes, one comes.
    east.upsert(web('web-b', [...ips(1, 51, 100), ...ips(1, 100, 101)]));
    let after = new Map<string, string>();
    await waitFor(
      async () => (after = await placement()).size === 100 && after.has('10.1.0.101:8080'),
      { what: 'the churn resolved' },
    );
    expect(after.has('10.1.0.51:8080')).toBe(false);
    const moved = [...after].filter(([key, arn]) => before.has(key) && before.get(key) !== arn);
    expect(moved.length).toBeLessThanOrEqual(2);
  });

  it('names the other groups of a pool that a resolution gave targets their shares lack', async () => {
    const hub = await startHub();
    const arns = [targetGroupArn(27), targetGroupArn(28), targetGroupArn(29)];
    await hub.bindings.apply(prodPool(arns, 40));
    const east = agent('east', hub.address);
    east.upsert(web('web-u', ips(1, 0, 30)));
    await waitFor(
      async () =>
        (await hub.store.readService('east', { namespace: 'shop', name: 'web' }))?.endpoints
          .size === 30,
      { what: 'the 30 endpoints stored' },
    );
    const [first, ...others] = arns as [string, ...string[]];
    // Only the first group resolved: the others' shares are still empty.
    const state = await resolvedTo(hub.desired, first, (s) => s.targets.size > 0);
    expect(state.unsettledPoolGroups).toEqual([...others].sort());
    // New targets, moved from no other group's share: the change's requests bring those groups.
    expect(state.movedIntoPoolGroups).toBeUndefined();
    // Each with a target placed there, which its share lacks: still unsettled.
    for (const arn of others) {
      expect(state.unsettledProbes.get(arn)).toBeDefined();
      expect(state.targets.has(state.unsettledProbes.get(arn) as string)).toBe(false);
    }
    expect(await hub.desired.stillUnsettled(others, state.unsettledProbes)).toEqual(others);
    // Once each has written its share, nobody lacks anything.
    const [second] = others as [string, ...string[]];
    await hub.desired.resolve(second);
    expect(await hub.desired.stillUnsettled(others, state.unsettledProbes)).toEqual(
      others.filter((arn) => arn !== second),
    );
    for (const arn of others) await hub.desired.resolve(arn);
    expect(await hub.desired.stillUnsettled(others, state.unsettledProbes)).toEqual([]);
    for (const arn of arns)
      expect((await hub.desired.resolve(arn)).unsettledPoolGroups).toEqual([]);
    expect(
      (await Promise.all(arns.map((arn) => hub.desired.resolve(arn)))).reduce(
        (n, s) => n + s.targets.size,
        0,
      ),
    ).toBe(30);
  });

  it('shares one resolution of a pool among the groups reconciled together', async () => {
    const hub = await startHub();
    const arns = [targetGroupArn(21), targetGroupArn(22), targetGroupArn(23)];
    await hub.bindings.apply(prodPool(arns, 40));
    agent('east', hub.address).upsert(web('web-a', ips(1, 0, 60)));
    const total = async (): Promise<number> => {
      const states = await Promise.all(arns.map((arn) => hub.desired.resolve(arn)));
      return states.reduce((n, s) => n + s.targets.size, 0);
    };
    await waitFor(async () => (await total()) === 60, { what: 'all 60 endpoints placed' });

    // Three reconciles that started together: one read of the pool, one assignment.
    const since = hub.desired.mark();
    const states = await Promise.all(arns.map((arn) => hub.desired.resolve(arn, since)));
    expect(hub.desired.mark()).toBe(since + 1);
    const placed = states.flatMap((s) => [...s.targets.keys()]);
    expect(placed).toHaveLength(60);
    expect(new Set(placed).size).toBe(60);
    // One after the other, each call begins its own: none started before the previous one began.
    for (const arn of arns) await hub.desired.resolve(arn);
    expect(hub.desired.mark()).toBe(since + 4);
  });

  it('never serves a reconcile from a resolution begun before it started', async () => {
    const hub = await startHub();
    const arn = targetGroupArn(24);
    await hub.bindings.apply(
      prodBinding({ $case: 'targetGroup', targetGroup: targetGroup({ arn }) }),
    );
    const east = agent('east', hub.address);
    east.upsert(web('web-e', ips(1, 0, 2)));
    await resolvedTo(hub.desired, arn, (s) => s.targets.size === 2);

    // A resolution that stops after reading the clusters, at the storage epoch check, until the
    // gate opens.
    let gate: (() => void) | undefined;
    const held = new Promise<void>((resolve) => (gate = resolve));
    let stops = 0;
    const desired = new TargetGroupDesiredState(
      { redis: hub.redis, store: hub.store, bindings: hub.bindings },
      {
        directory: { labels: (id) => CLUSTER_LABELS[id] },
        status: { status: () => CONNECTED },
        storageEpoch: {
          known: () => 'epoch',
          stored: async () => {
            if (stops++ === 0) await held;
            return 'epoch';
          },
        },
      },
    );
    const first = desired.mark();
    const old = desired.resolve(arn, first);
    await waitFor(() => stops === 1, { what: 'the first resolution to read the clusters' });
    // Begun before the first resolution: may share it.
    const early = desired.resolve(arn, first);

    // A change lands while the first resolution is held; then a reconcile starts.
    east.upsert(web('web-e', ips(1, 0, 3)));
    await waitFor(
      async () =>
        (await hub.store.readService('east', { namespace: 'shop', name: 'web' }))?.endpoints
          .size === 3,
      { what: 'the third endpoint stored' },
    );
    const late = desired.resolve(arn, desired.mark());
    gate?.();
    expect((await old).targets.size).toBe(2);
    expect((await early).targets.size).toBe(2);
    expect((await late).targets.size).toBe(3);
    expect(desired.mark()).toBe(first + 2);
  });

  it('reads the stored epoch at the guard’s key behind the states, and finds a loss there', async () => {
    const hub = await startHub();
    const arn = targetGroupArn(27);
    await hub.bindings.apply(
      prodBinding({ $case: 'targetGroup', targetGroup: targetGroup({ arn }) }),
    );
    agent('east', hub.address).upsert(web('web-e', ips(1, 0, 2)));
    await resolvedTo(hub.desired, arn, (s) => s.targets.size === 2);
    const key = hub.store.keys.epoch();
    await hub.redis.set(key, 'epoch-1');
    let mismatches = 0;
    const desired = new TargetGroupDesiredState(
      { redis: hub.redis, store: hub.store, bindings: hub.bindings },
      {
        directory: { labels: (id) => CLUSTER_LABELS[id] },
        status: { status: () => CONNECTED },
        storageEpoch: {
          known: () => 'epoch-1',
          stored: () => Promise.reject(new Error('the epoch is read at the key')),
          key,
          onMismatch: () => mismatches++,
        },
      },
    );
    const same = await desired.resolve(arn);
    expect([same.targets.size, same.deregistrationsBlocked, mismatches]).toEqual([2, false, 0]);

    // Redis lost (a new epoch, or none at all): every selected cluster awaits its resync.
    for (const stored of ['epoch-2', undefined]) {
      if (stored === undefined) await hub.redis.del(key);
      else await hub.redis.set(key, stored);
      const lost = await desired.resolve(arn);
      expect(lost.deregistrationsBlocked).toBe(true);
      expect(lost.awaitingResyncClusters).toEqual(['east']);
    }
    expect(mismatches).toBe(2);
  });

  it('reuses a finished resolution of a pool only while its inputs are unchanged', async () => {
    const hub = await startHub();
    const arns = [targetGroupArn(25), targetGroupArn(26)];
    await hub.bindings.apply(prodPool(arns, 40));
    const east = agent('east', hub.address);
    agent('west', hub.address).upsert(web('web-w', ips(2, 0, 10)));
    east.upsert(web('web-e', ips(1, 0, 10)));
    await waitFor(
      async () => {
        const states = await Promise.all(arns.map((arn) => hub.desired.resolve(arn)));
        return states.reduce((n, s) => n + s.targets.size, 0) === 20;
      },
      { what: 'the 20 endpoints of east and west stored' },
    );

    let now = 1_000_000;
    let westStatus: ClusterStatus = CONNECTED;
    const desired = new TargetGroupDesiredState(
      { redis: hub.redis, store: hub.store, bindings: hub.bindings },
      {
        directory: { labels: (id) => CLUSTER_LABELS[id] },
        status: { status: (id) => (id === 'west' ? westStatus : CONNECTED) },
        clock: () => now,
      },
    );
    const total = (states: GroupDesiredState[]): number =>
      states.reduce((n, s) => n + s.targets.size, 0);
    const one = async (arn: string): Promise<GroupDesiredState> =>
      desired.resolve(arn, desired.mark());

    // Reconciles one after another, each begun after the last resolution: nothing changed, so
    // the first resolution serves them all, and they place the pool's 20 targets once.
    const first = [await one(arns[0]!), await one(arns[1]!)];
    expect(total(first)).toBe(20);
    expect(desired.resolutions).toEqual({
      computed: 1,
      reused: 1,
      claimsAdopted: 0,
      claimsKept: 0,
    });
    // Its share written by the first group, the second no longer names it as unsettled.
    expect(first[1]?.unsettledPoolGroups).toEqual([]);

    // An endpoint change in one cluster: resolved afresh, with it.
    east.upsert(web('web-e', ips(1, 0, 11)));
    await waitFor(
      async () =>
        (await hub.store.readService('east', { namespace: 'shop', name: 'web' }))?.endpoints
          .size === 11,
      { what: 'the eleventh endpoint of east stored' },
    );
    expect(total([await one(arns[0]!), await one(arns[1]!)])).toBe(21);
    expect(desired.resolutions).toEqual({
      computed: 2,
      reused: 2,
      claimsAdopted: 0,
      claimsKept: 0,
    });

    // A cluster's status changes without any endpoint change: resolved afresh.
    westStatus = { connection: 'disconnected-within-grace', awaitingResync: false };
    const afterStatus = await one(arns[0]!);
    expect(desired.resolutions).toEqual({
      computed: 3,
      reused: 2,
      claimsAdopted: 0,
      claimsKept: 0,
    });
    expect(afterStatus.awaitingResyncClusters).toEqual([]);

    // Unchanged but older than the reuse bound: resolved afresh.
    await one(arns[1]!);
    expect(desired.resolutions).toEqual({
      computed: 3,
      reused: 3,
      claimsAdopted: 0,
      claimsKept: 0,
    });
    now += 5_001;
    await one(arns[0]!);
    expect(desired.resolutions).toEqual({
      computed: 4,
      reused: 3,
      claimsAdopted: 0,
      claimsKept: 0,
    });
  });

  it('resolves at most maxConcurrentResolutions pools at once, the others in turn', async () => {
    const hub = await startHub();
    const pools = [
      [targetGroupArn(31), targetGroupArn(32)],
      [targetGroupArn(33), targetGroupArn(34)],
    ];
    await hub.bindings.apply({ ...prodPool(pools[0]!, 40), name: 'pool-a' });
    await hub.bindings.apply({
      ...prodPool(pools[1]!, 40),
      name: 'pool-b',
      services: { namespace: 'shop', name: 'api', labels: undefined },
    });
    agent('east', hub.address).upsert(web('web-e', ips(1, 0, 4)));
    await waitFor(
      async () =>
        (await hub.store.readService('east', { namespace: 'shop', name: 'web' }))?.endpoints
          .size === 4,
      { what: 'the endpoints of east stored' },
    );
    // The occupancy is read inside a resolution: held there, the resolution holds its turn.
    let release: (() => void) | undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let asked = 0;
    const desired = new TargetGroupDesiredState(
      { redis: hub.redis, store: hub.store, bindings: hub.bindings },
      {
        directory: { labels: (id) => CLUSTER_LABELS[id] },
        status: { status: () => CONNECTED },
        maxConcurrentResolutions: 1,
        occupancy: {
          counts: async (arns) => {
            if (asked++ === 0) await held;
            return arns.map(() => 0);
          },
          targets: (arns) => Promise.resolve(arns.map(() => new Set<string>())),
        },
      },
    );
    const a = desired.resolve(pools[0]![0]!);
    await waitFor(() => asked === 1, { what: 'the first resolution inside its turn' });
    const b = desired.resolve(pools[1]![0]!);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(desired.resolutions.computed, 'the second waits for the first').toBe(1);
    release?.();
    await Promise.all([a, b]);
    expect(desired.resolutions.computed).toBe(2);
    const other = await desired.resolve(pools[0]![1]!);
    expect((await a).targets.size + other.targets.size).toBe(4);
    expect((await b).targets.size).toBe(0);
    expect(
      () =>
        new TargetGroupDesiredState(
          { redis: hub.redis, store: hub.store, bindings: hub.bindings },
          {
            directory: { labels: () => undefined },
            status: { status: () => CONNECTED },
            maxConcurrentResolutions: 0,
          },
        ),
    ).toThrow(/maxConcurrentResolutions/);
  });

  /**
   * A pool of two groups of 40 (`targetGroupArn(first)` and the next) with 20 of east's endpoints
   * (`pod` slices), and a resolution that reads the groups' occupancy from their records.
   */
  async function poolReadingOccupants(
    first: number,
    pod: string,
    onOccupantsRead?: (arns: readonly string[]) => void,
  ) {
    const hub = await startHub();
    const arns = [targetGroupArn(first), targetGroupArn(first + 1)];
    await hub.bindings.apply(prodPool(arns, 40));
    const east = agent('east', hub.address);
    east.upsert(web(pod, ips(1, 0, 20)));
    const records = new TargetGroupRecords(hub.redis, hub.prefix);
    const aware = new TargetGroupDesiredState(
      { redis: hub.redis, store: hub.store, bindings: hub.bindings },
      {
        directory: { labels: (id) => CLUSTER_LABELS[id] },
        status: { status: () => CONNECTED },
        occupancy: {
          counts: (a) => records.neededCounts(a),
          targets: (a) => {
            onOccupantsRead?.(a);
            return records.heldTargets(a);
          },
        },
      },
    );
    /** Target → group, over the pool's groups resolved together. */
    const placed = async (desired = aware): Promise<Map<string, string>> => {
      const since = desired.mark();
      const states = await Promise.all(arns.map((arn) => desired.resolve(arn, since)));
      return new Map(
        states.flatMap((s) => [...s.targets.keys()].map((k) => [k, s.targetGroupArn])),
      );
    };
    return { hub, arns, east, records, aware, placed };
  }

  it('places new targets of a pool beside the targets still draining in its groups', async () => {
    const { hub, arns, east, records, aware, placed } = await poolReadingOccupants(25, 'web-d');
    let before = new Map<string, string>();
    await waitFor(async () => (before = await placed(aware)).size === 20, {
      what: 'the 20 endpoints placed',
    });
    // AWS holds them, and the first group also drains 40 old targets: it is full.
    const [full, roomy] = arns as [string, string];
    for (const arn of arns) {
      await records.registered(
        arn,
        [...before].filter(([, a]) => a === arn).map(([k]) => k),
      );
    }
    await records.deregistered(
      full,
      Array.from({ length: 40 }, (_, i) => `10.9.0.${i}:8080`),
    );

    // Ten pods come. Placed by desired count alone, some would go to the full group and wait
    // there for the drain (the plain resolution shows it, from the same assignment).
    east.upsert(web('web-d', ips(1, 0, 30)));
    const plain = new TargetGroupDesiredState(
      { redis: hub.redis, store: hub.store, bindings: hub.bindings },
      { directory: { labels: (id) => CLUSTER_LABELS[id] }, status: { status: () => CONNECTED } },
    );
    const fresh = (m: Map<string, string>): string[] =>
      [...m].filter(([k]) => !before.has(k)).map(([, arn]) => arn);
    let after = new Map<string, string>();
    await waitFor(async () => (after = await placed(aware)).size === 30, {
      what: 'the 30 endpoints placed',
    });
    expect(fresh(after)).toEqual(Array.from({ length: 10 }, () => roomy));
    for (const [key, arn] of before) expect(after.get(key)).toBe(arn);
    // Reset the stored assignment to what it was before the ten came (the shares, and no
    // claims), then resolve plainly.
    const claims = await hub.redis.keys(`${hub.prefix}:{pool:*}:claims:*`);
    if (claims.length > 0) await hub.redis.del(...claims);
    for (const arn of arns) {
      await hub.redis.del(hub.desired.assignmentKey(arn));
      const share = [...before].filter(([, a]) => a === arn);
      await hub.redis.hset(
        hub.desired.assignmentKey(arn),
        Object.fromEntries(share.map(([k]) => [k, 'web'])),
      );
    }
    expect(fresh(await placed(plain))).toContain(full);
  });

  it('reads a pool’s occupants only when a group may run short, and places within the room left', async () => {
    const occupantReads: string[][] = [];
    const { arns, east, records, placed } = await poolReadingOccupants(27, 'web-o', (a) =>
      occupantReads.push([...a]),
    );
    let before = new Map<string, string>();
    await waitFor(async () => (before = await placed()).size === 20, {
      what: 'the 20 endpoints placed',
    });
    // Room everywhere: the occupants are never read.
    expect(occupantReads).toEqual([]);
    for (const arn of arns) {
      await records.registered(
        arn,
        [...before].filter(([, a]) => a === arn).map(([k]) => k),
      );
    }
    // The first group drains old targets: short of full by its count, but not by what it gets.
    const [tight] = arns as [string, string];
    const heldBefore = [...before.values()].filter((a) => a === tight).length;
    const draining = 38 - heldBefore;
    await records.deregistered(
      tight,
      Array.from({ length: draining }, (_, i) => `10.9.0.${i}:8080`),
    );
    expect((await records.heldCounts([tight]))[0]).toBeLessThan(40);

    east.upsert(web('web-o', ips(1, 0, 30)));
    let after = new Map<string, string>();
    await waitFor(async () => (after = await placed()).size === 30, {
      what: 'the 30 endpoints placed',
    });
    expect(occupantReads.length).toBeGreaterThan(0);
    const freshInTight = [...after].filter(([k, a]) => !before.has(k) && a === tight).length;
    // What AWS holds there plus what it gets fits its capacity: nothing waits for the drain.
    expect(heldBefore + draining + freshInTight).toBeLessThanOrEqual(40);
    for (const [key, arn] of before) expect(after.get(key)).toBe(arn);
  });

  it('moves targets waiting for room out of a group whose count alone leaves room', async () => {
    const { hub, arns, records, placed } = await poolReadingOccupants(35, 'web-w');
    let before = new Map<string, string>();
    await waitFor(async () => (before = await placed()).size === 20, {
      what: 'the 20 endpoints placed',
    });
    const [tight, roomy] = arns as [string, string];
    const inTight = [...before]
      .filter(([, a]) => a === tight)
      .map(([k]) => k)
      .sort();
    // AWS holds all but the last three of the tight group's targets, and 40 - 1 - those drain
    // there: one place is left, and its last reconcile left three targets waiting for it.
    const waiting = inTight.slice(-3);
    await records.registered(tight, inTight.slice(0, -3));
    await records.registered(
      roomy,
      [...before].filter(([, a]) => a === roomy).map(([k]) => k),
    );
    const draining = 40 - 1 - (inTight.length - 3);
    await records.deregistered(
      tight,
      Array.from({ length: draining }, (_, i) => `10.9.0.${i}:8080`),
    );
    await records.finish(tight, {
      record: {
        outcome: 'applied',
        reason: 'endpoints',
        startedAtMs: Date.now(),
        durationMs: 0,
        calls: { describe: 0, register: 1, deregister: 0 },
        registered: inTight.length - 3,
        deregistered: 0,
        desired: inTight.length,
        actual: 39,
        owned: inTight.length - 3,
        waitingForCapacity: 3,
        deregistrationsBlocked: 0,
        invalidTargets: [],
        consecutiveFailures: 0,
      },
      actualValid: true,
      held: undefined,
      nextDueAtMs: Date.now() + 60_000,
    });
    expect(await records.heldCounts([tight])).toEqual([39]);
    // Placed a while ago: none of them is settling any more.
    const claims = await hub.redis.keys(`${hub.prefix}:{pool:*}:claims:*`);
    if (claims.length > 0) await hub.redis.del(...claims);
    const resolver = (counts: (a: readonly string[]) => Promise<number[]>) =>
      new TargetGroupDesiredState(
        { redis: hub.redis, store: hub.store, bindings: hub.bindings },
        {
          directory: { labels: (id) => CLUSTER_LABELS[id] },
          status: { status: () => CONNECTED },
          occupancy: { counts, targets: (a) => records.heldTargets(a) },
        },
      );
    // By AWS's count alone the group has room, and the three would go on waiting there.
    const byCount = await placed(resolver((a) => records.heldCounts(a)));
    expect(waiting.map((k) => byCount.get(k))).toEqual([tight, tight, tight]);
    // Counting the targets waiting there too, two of them leave for the group with room, which
    // is named as given targets another group's share holds (no change request follows).
    const needing = resolver((a) => records.neededCounts(a));
    const tightState = await needing.resolve(tight);
    expect(tightState.unsettledPoolGroups).toEqual([roomy]);
    expect(tightState.movedIntoPoolGroups).toEqual([roomy]);
    expect(waiting).toContain(tightState.unsettledProbes.get(roomy));
    const byNeed = await placed(needing);
    expect(waiting.filter((k) => byNeed.get(k) === roomy)).toHaveLength(2);
    for (const [key, arn] of before) if (!waiting.includes(key)) expect(byNeed.get(key)).toBe(arn);
  });

  async function storedEndpoints(hub: { store: ClusterEndpointStore }, n: number): Promise<void> {
    await waitFor(
      async () =>
        (await hub.store.readService('east', { namespace: 'shop', name: 'web' }))?.endpoints
          .size === n,
      { what: `${n} endpoints of east stored` },
    );
  }

  /**
   * Two workers' resolutions of one pool of two groups of 40 (`targetGroupArn(first)` and the
   * next) with east's 20 endpoints: to the first, AWS fills the first group with 40 draining
   * targets; to the second, both groups are empty. `barrier` holds each resolution inside its
   * reads until both are there.
   */
  async function twoViewsOfAPool(
    first: number,
    options: { barrier?: boolean; keepMs?: number; settleMs?: number },
  ) {
    const hub = await startHub();
    const arns = [targetGroupArn(first), targetGroupArn(first + 1)] as [string, string];
    await hub.bindings.apply(prodPool(arns, 40));
    const east = agent('east', hub.address);
    east.upsert(web('web-v', ips(1, 0, 20)));
    await storedEndpoints(hub, 20);
    let arrived = 0;
    let open: () => void = () => undefined;
    const opened = new Promise<void>((resolve) => (open = resolve));
    const meet = async (): Promise<void> => {
      if (options.barrier !== true) return;
      if (++arrived === 2) open();
      await opened;
    };
    /**
     * A worker to which AWS's count fills the first group when `fullFirst`, with `drainingCount`
     * draining targets there (the count read a moment before them, when fewer).
     */
    const worker = (fullFirst: boolean, drainingCount = 40) =>
      new TargetGroupDesiredState(
        { redis: hub.redis, store: hub.store, bindings: hub.bindings },
        {
          directory: { labels: (id) => CLUSTER_LABELS[id] },
          status: { status: () => CONNECTED },
          claims: {
            ...(options.keepMs === undefined ? {} : { keepMs: options.keepMs }),
            ...(options.settleMs === undefined ? {} : { settleMs: options.settleMs }),
          },
          occupancy: {
            counts: async (a) => {
              await meet();
              return a.map((arn) => (fullFirst && arn === arns[0] ? 40 : 0));
            },
            targets: (a) =>
              Promise.resolve(
                a.map((arn) =>
                  fullFirst && arn === arns[0]
                    ? new Set(
                        Array.from({ length: drainingCount }, (_, i) => `10.9.0.${i + 1}:8080`),
                      )
                    : new Set<string>(),
                ),
              ),
          },
        },
      );
    return {
      hub,
      arns,
      east,
      draining: worker(true),
      empty: worker(false),
      drainingOnly: (n: number) => worker(true, n),
    };
  }

  it('keeps a new target where another resolution of its pool placed it, whatever this one sees', async () => {
    const { arns, draining, empty } = await twoViewsOfAPool(41, {});
    const [full, roomy] = arns;
    // The first worker sees the first group full: it places all 20 in the second, and writes
    // only the first group's (empty) share.
    const first = await draining.resolve(full);
    expect(first.targets.size).toBe(0);
    // The second worker sees room in both. Its resolution of the first group must not take
    // targets the first worker's resolution gave the second: both groups would register them.
    const second = await empty.resolve(full);
    expect([...second.targets.keys()]).toEqual([]);
    const rest = await empty.resolve(roomy);
    expect(rest.targets.size).toBe(20);
    // Placed by its own view alone, the second worker splits them (another pool, no claims).
    const emptyAgain = await twoViewsOfAPool(43, {});
    const own = await emptyAgain.empty.resolve(emptyAgain.arns[0]);
    expect(own.targets.size).toBeGreaterThan(0);
  });

  it('leaves a target another resolution placed a moment ago where it is, even short of room', async () => {
    const { arns, empty, draining } = await twoViewsOfAPool(49, {
      keepMs: 3_000,
      settleMs: 1_000,
    });
    const roomy = arns[1];
    // The second worker sees room in both groups and places the 20 across them; its reconcile
    // of the first group registers that group's share.
    const since = empty.mark();
    const [inFull] = await Promise.all(arns.map((arn) => empty.resolve(arn, since)));
    const placedInFull = [...inFull!.targets.keys()];
    expect(placedInFull.length).toBeGreaterThan(0);
    // The first worker sees the first group full of draining targets, and none of these
    // registered yet (AWS's occupants are read before that group's calls end, and a describe
    // there may have found the drain over). Moving them out for room would register them twice.
    const resolvedAt = Date.now();
    const other = await draining.resolve(roomy);
    const resolvedBy = Date.now();
    expect(placedInFull.filter((k) => other.targets.has(k))).toEqual([]);
    expect(other.targets.size).toBe(20 - placedInFull.length);
    // It says when they stop settling (about settleMs after they were claimed; the server's
    // clock is mapped to this process's when the claims' reply came, so up to its resolution's
    // end).
    expect(other.settlesAtMs).toBeGreaterThan(resolvedAt);
    expect(other.settlesAtMs).toBeLessThanOrEqual(resolvedBy + 1_000);
    // Once settled, a target the group still has no room for leaves: it would only wait there.
    // Nothing else changed: the resolution is made again all the same (not reused).
    await new Promise((resolve) => setTimeout(resolve, other.settlesAtMs! - Date.now() + 50));
    const computed = draining.resolutions.computed;
    const later = await draining.resolve(roomy);
    expect(draining.resolutions.computed).toBe(computed + 1);
    expect(placedInFull.filter((k) => later.targets.has(k))).toEqual(placedInFull);
    expect(later.settlesAtMs).toBeUndefined();
  });

  it('writes no placement when it only reports, and reports the placement workers claimed', async () => {
    const { hub, arns, draining } = await twoViewsOfAPool(51, {});
    const reader = () =>
      new TargetGroupDesiredState(
        { redis: hub.redis, store: hub.store, bindings: hub.bindings },
        {
          directory: { labels: (id) => CLUSTER_LABELS[id] },
          status: { status: () => CONNECTED },
          writesPlacements: false,
        },
      );
    const placements = async (): Promise<string[]> => [
      ...(await hub.redis.keys(`${hub.prefix}:{tg:*}:assignment`)),
      ...(await hub.redis.keys(`${hub.prefix}:{pool:*}:claims:*`)),
    ];
    const hubView = reader();
    const own = await Promise.all(arns.map((arn) => hubView.resolve(arn)));
    expect(own.reduce((n, s) => n + s.targets.size, 0)).toBe(20);
    expect(await placements()).toEqual([]);
    // A worker that sees the first group full places all 20 in the second and claims them: the
    // reader reports that placement, not its own.
    await draining.resolve(arns[0]);
    expect((await placements()).length).toBeGreaterThan(0);
    const later = reader();
    const reported = await Promise.all(arns.map((arn) => later.resolve(arn)));
    expect(reported.map((s) => s.targets.size)).toEqual([0, 20]);
  });

  it('gives a target to the group another worker claimed it for at the same moment', async () => {
    const { arns, draining, empty } = await twoViewsOfAPool(45, { barrier: true });
    const [full, roomy] = arns;
    // Both resolutions read the pool before either placed: they disagree on where the new
    // targets go, and each is used by one group.
    const [inRoomy, inFull] = await Promise.all([draining.resolve(roomy), empty.resolve(full)]);
    const both = [...inRoomy.targets.keys()].filter((k) => inFull.targets.has(k));
    expect(both, 'registered by two groups').toEqual([]);
    expect(inRoomy.targets.size + inFull.targets.size).toBe(20);
    const adopted = draining.resolutions.claimsAdopted + empty.resolutions.claimsAdopted;
    expect(adopted, 'one resolution gave way').toBeGreaterThan(0);
    expect(draining.resolutions.claimsKept + empty.resolutions.claimsKept).toBe(0);
  });

  it('releases a pool’s claims once their groups took the targets on, or the targets left', async () => {
    const { hub, arns, east, empty } = await twoViewsOfAPool(47, { keepMs: 500 });
    const claimsKey = `${hub.prefix}:{pool:${prodPool(arns, 40).name}}:claims:*`;
    const since = empty.mark();
    await Promise.all(arns.map((arn) => empty.resolve(arn, since)));
    const [key] = await hub.redis.keys(claimsKey);
    expect(key).toBeDefined();
    expect(await hub.redis.hlen(key!)).toBe(20);
    // A claim of a target gone from the pool, a pod gone, and the groups' shares written: the
    // next resolution releases every claim.
    await hub.redis.hset(key!, '10.8.0.1:8080', '0|1');
    east.upsert(web('web-v', ips(1, 0, 19)));
    await storedEndpoints(hub, 19);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await empty.resolve(arns[0], empty.mark());
    await waitFor(async () => (await hub.redis.hlen(key!)) === 0, {
      what: 'the claims released',
    });
    expect(await hub.redis.pttl(key!)).toBe(-2);
  });

  it('drops an endpoint from the desired targets as soon as it turns terminating', async () => {
    const hub = await startHub();
    const arn = targetGroupArn(4);
    await hub.bindings.apply(
      prodBinding({ $case: 'targetGroup', targetGroup: targetGroup({ arn }) }),
    );
    const east = agent('east', hub.address);
    east.upsert(web('web-e', ips(1, 0, 3)));
    await resolvedTo(hub.desired, arn, (s) => s.targets.size === 3);

    const [first, ...rest] = ips(1, 0, 3);
    east.upsert(
      web('web-e', [
        { ...(first as TestEndpoint), ready: false, serving: true, terminating: true },
        ...rest,
      ]),
    );
    const state = await resolvedTo(hub.desired, arn, (s) => s.targets.size === 2);
    expect([...state.targets.keys()]).toEqual(['10.1.0.2:8080', '10.1.0.3:8080']);
  });

  it('follows a named service and one selected by labels alike, and forgets a removed service', async () => {
    const hub = await startHub();
    const [byName, byLabel] = [targetGroupArn(5), targetGroupArn(6)];
    await hub.bindings.apply(
      prodBinding({ $case: 'targetGroup', targetGroup: targetGroup({ arn: byName }) }),
    );
    await hub.bindings.apply({
      ...prodBinding({ $case: 'targetGroup', targetGroup: targetGroup({ arn: byLabel }) }),
      name: 'by-label',
      services: {
        namespace: '',
        name: '',
        labels: { matchLabels: { app: 'web' }, matchExpressions: [] },
      },
    });
    const east = agent('east', hub.address);
    const slice = endpointSlice({
      namespace: 'shop',
      service: 'web',
      name: 'web-f',
      endpoints: ips(1, 0, 2),
      labels: { app: 'web' },
    });
    // Another service of the cluster: in its index, read by neither binding.
    east.upsert(
      slice,
      endpointSlice({
        namespace: 'shop',
        service: 'api',
        name: 'api-f',
        endpoints: ips(1, 10, 14),
      }),
    );
    for (const arn of [byName, byLabel]) {
      await resolvedTo(hub.desired, arn, (s) => s.targets.size === 2);
    }
    east.delete(slice);
    for (const arn of [byName, byLabel]) {
      await resolvedTo(hub.desired, arn, (s) => s.targets.size === 0);
    }
  });
});

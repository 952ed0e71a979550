import { afterEach, describe, expect, it } from 'vitest';
import { LabelSelectorOperator } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { endpointSlice, manyEndpointSlices } from '../../support/endpoint-slices.js';
import { TestAgent, sortedEntries, type TestAgentOptions } from '../../support/test-agent.js';
import { TestHub, type TestHubOptions, type TestHubState } from '../../support/test-hub.js';

const clusterId = 'cluster-a';
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A test agent on this file's cluster, closed after the test. */
function newAgent(hub: TestHub, options: Partial<TestAgentOptions> = {}): TestAgent {
  const agent = new TestAgent({ clusterId, target: hub.address, ...options });
  closers.push(() => agent.publisher.close());
  return agent;
}

function hubSnapshot(hub: TestHub): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, held] of hub.cluster(clusterId)) {
    out[key] = { labels: held.labels, endpoints: sortedEntries(held.endpoints) };
  }
  return out;
}

async function startHub(options: TestHubOptions = {}): Promise<TestHub> {
  const hub = await TestHub.start(options);
  closers.push(() => hub.stop());
  return hub;
}

async function converged(agent: TestAgent, hub: TestHub, filter?: (key: string) => boolean) {
  await waitFor(() => JSON.stringify(hubSnapshot(hub)) === JSON.stringify(agent.snapshot(filter)), {
    what: 'the hub to hold exactly the agent state',
    timeoutMs: 20_000,
  });
  await waitFor(() => agent.publisher.inFlight === 0 && agent.publisher.pendingServices === 0, {
    what: 'the agent to have nothing unacked',
  });
}

describe('SyncPublisher against a hub on loopback', () => {
  it('sends the full state after the welcome, then SYNCED; a service larger than a batch travels whole', async () => {
    const hub = await startHub();
    const agent = newAgent(hub, { maxEndpointsPerBatch: 500 });
    agent.upsert(
      ...manyEndpointSlices('shop', 'web', 1_200, 100),
      endpointSlice({
        namespace: 'shop',
        service: 'cart',
        name: 'cart-1',
        endpoints: [{ ip: '10.9.0.1' }],
      }),
      endpointSlice({
        namespace: 'shop',
        service: 'cart',
        name: 'cart-v6',
        addressType: 'IPv6',
        endpoints: [{ ip: 'fd00::1' }],
      }),
    );
    agent.publisher.start();

    await converged(agent, hub);
    expect(hub.cluster(clusterId).get('shop/web')?.endpoints.size).toBe(1_200);
    expect(hub.cluster(clusterId).get('shop/cart')?.endpoints.size).toBe(2);
    expect(hub.stats.synced).toBe(1);
    expect(hub.stats.digestMismatches).toBe(0);
    // One replace with every endpoint: the hub never held a truncated web.
    expect(hub.stats.replaces.get('shop/web')).toBe(1);
    expect(hub.stats.replaceSizes.get('shop/web')).toBe(1_200);
  });

  it('splits a delta larger than a batch into pieces and stays exact under churn while the window is full', async () => {
    const hub = await startHub({ holdAcks: false, maxBatchesInFlight: 2 });
    const agent = newAgent(hub, { maxEndpointsPerBatch: 100 });
    const slices = manyEndpointSlices('shop', 'web', 1_000, 100);
    agent.upsert(...slices);
    agent.publisher.start();
    await converged(agent, hub);

    const batchesBefore = hub.stats.batches;
    // 400 of 1,000 endpoints change (a delta, below the replace threshold), then churn on top.
    for (const slice of slices.slice(0, 4)) {
      const next = structuredClone(slice);
      for (const e of next.endpoints!)
        e.conditions = { ready: false, serving: true, terminating: true };
      agent.upsert(next);
    }
    for (let round = 0; round < 20; round++) {
      const next = structuredClone(slices[9]!);
      next.endpoints![round]!.conditions = {
        ready: round % 2 === 0,
        serving: true,
        terminating: false,
      };
      agent.upsert(next);
    }
    await converged(agent, hub);
    expect(hub.stats.batches - batchesBefore).toBeGreaterThanOrEqual(4);
    expect(hub.stats.digestMismatches).toBe(0);
    expect(hub.stats.replaces.get('shop/web')).toBe(1);
  });

  it('sends a service in full when a subscription drops it and selects it again before the removal went out', async () => {
    const hub = await startHub({ holdAcks: true, maxBatchesInFlight: 1 });
    const agent = newAgent(hub);
    agent.upsert(
      endpointSlice({
        namespace: 'shop',
        service: 'web',
        name: 'web-1',
        endpoints: [{ ip: '10.0.0.1' }],
      }),
      endpointSlice({
        namespace: 'shop',
        service: 'cart',
        name: 'cart-1',
        endpoints: [{ ip: '10.0.0.2' }],
      }),
    );
    agent.publisher.start();
    await waitFor(() => agent.publisher.inFlight === 1, { what: 'the window to fill' });
    const only = (name: string) => ({ namespace: 'shop', name, labels: undefined });
    hub.setSubscription({ version: 2, selectors: [only('web')] });
    await waitFor(() => agent.publisher.pendingServices > 0, { what: 'the removal to be pending' });
    hub.setSubscription({ version: 3, selectors: [only('web'), only('cart')] });
    hub.releaseAcks();
    await converged(agent, hub);
    expect([...hub.cluster(clusterId).keys()].sort()).toEqual(['shop/cart', 'shop/web']);
  });

  it('sends one endpoint record when one pod of a large service changes', async () => {
    const hub = await startHub();
    const agent = newAgent(hub);
    const slices = manyEndpointSlices('shop', 'web', 1_000, 100);
    agent.upsert(...slices);
    agent.publisher.start();
    await converged(agent, hub);

    const before = hub.stats.deltaEndpointChanges;
    const changed = structuredClone(slices[3]!);
    changed.endpoints![7]!.conditions = { ready: false, serving: true, terminating: true };
    agent.upsert(changed);
    await converged(agent, hub);

    expect(hub.stats.deltaEndpointChanges - before).toBe(1);
    const record = [...hub.cluster(clusterId).get('shop/web')!.endpoints.values()].find(
      (e) => e.terminating,
    );
    expect(record).toMatchObject({ ready: false, serving: true, terminating: true });
  });

  it('resyncs by digest after the hub restarts: only the services that changed are sent again', async () => {
    const state: TestHubState = new Map();
    const hub = await startHub({ state });
    const agent = newAgent(hub);
    const web = manyEndpointSlices('shop', 'web', 300, 100);
    const cart = manyEndpointSlices('shop', 'cart', 50, 50, 2);
    const api = manyEndpointSlices('shop', 'api', 50, 50, 3);
    agent.upsert(...web, ...cart, ...api);
    agent.publisher.start();
    await converged(agent, hub);

    hub.stop();
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

    const restarted = await startHub({ state, port: hub.port });
    await converged(agent, restarted);
    expect(restarted.stats.welcomes).toBe(1);
    // web was unchanged: nothing of it crossed the wire again.
    expect(restarted.stats.replaces.get('shop/web')).toBeUndefined();
    expect(restarted.stats.replaces.get('shop/api')).toBe(1);
    expect(restarted.stats.removals).toBe(1);
    expect(state.get(clusterId)?.has('shop/cart')).toBe(false);
  });

  it('removes services the hub holds that the agent no longer has, only after SYNCED', async () => {
    const state: TestHubState = new Map([
      [
        clusterId,
        new Map([
          [
            'old/gone',
            { service: { namespace: 'old', name: 'gone' }, labels: {}, endpoints: new Map() },
          ],
        ]),
      ],
    ]);
    const hub = await startHub({ state });
    const agent = newAgent(hub);
    agent.upsert(
      endpointSlice({
        namespace: 'shop',
        service: 'web',
        name: 'web-1',
        endpoints: [{ ip: '10.0.0.1' }],
      }),
    );
    agent.publisher.start();
    await converged(agent, hub);
    expect(hub.cluster(clusterId).has('old/gone')).toBe(false);
    expect(hub.stats.removals).toBe(1);
    expect(hub.stats.synced).toBe(1);
  });

  it('coalesces per service while the window is full, so pending state stays bounded by the services', async () => {
    const hub = await startHub({ holdAcks: true, maxBatchesInFlight: 2 });
    const agent = newAgent(hub, { maxBatchesInFlight: 8 });
    const services = ['a', 'b', 'c', 'd', 'e'].map(
      (s, i) => manyEndpointSlices('churn', s, 100, 100, 10 + i)[0]!,
    );
    agent.upsert(...services);
    agent.publisher.start();
    await waitFor(() => agent.publisher.inFlight === 2, { what: 'the window to fill' });

    for (let round = 0; round < 200; round++) {
      for (const slice of services) {
        const next = structuredClone(slice);
        for (const [i, e] of next.endpoints!.entries()) {
          const ready = (i + round) % 3 !== 0;
          e.conditions = { ready, serving: ready, terminating: false };
        }
        agent.upsert(next);
      }
      expect(agent.publisher.inFlight).toBeLessThanOrEqual(2);
      expect(agent.publisher.pendingServices).toBeLessThanOrEqual(5);
      expect(agent.publisher.pendingAddresses).toBeLessThanOrEqual(500);
    }
    expect(agent.publisher.coalesced).toBeGreaterThan(0);
    expect(hub.stats.batches).toBeLessThanOrEqual(2);

    hub.releaseAcks();
    await converged(agent, hub);
    expect(hub.stats.batches).toBeLessThan(50);
  });

  it('sends only subscribed services and applies a subscription change live', async () => {
    const hub = await startHub({
      subscription: {
        version: 1,
        selectors: [{ namespace: 'shop', name: 'web', labels: undefined }],
      },
    });
    const agent = newAgent(hub);
    agent.upsert(
      endpointSlice({
        namespace: 'shop',
        service: 'web',
        name: 'web-1',
        endpoints: [{ ip: '10.0.0.1' }],
      }),
      endpointSlice({
        namespace: 'shop',
        service: 'cart',
        name: 'cart-1',
        endpoints: [{ ip: '10.0.0.2' }],
        labels: { tier: 'backend' },
      }),
      endpointSlice({
        namespace: 'ops',
        service: 'metrics',
        name: 'metrics-1',
        endpoints: [{ ip: '10.0.0.3' }],
      }),
    );
    agent.publisher.start();
    await converged(agent, hub, (key) => key === 'shop/web');

    hub.setSubscription({
      version: 2,
      selectors: [
        {
          namespace: '',
          name: '',
          labels: {
            matchLabels: {},
            matchExpressions: [
              {
                key: 'tier',
                operator: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_IN,
                values: ['backend'],
              },
            ],
          },
        },
      ],
    });
    await converged(agent, hub, (key) => key === 'shop/cart');
    expect([...hub.cluster(clusterId).keys()]).toEqual(['shop/cart']);
  });

  it('lets a second agent of the cluster stand by and take over when the first goes away', async () => {
    const hub = await startHub();
    const first = newAgent(hub);
    const second = newAgent(hub);
    const slices = manyEndpointSlices('shop', 'web', 100, 50);
    first.upsert(...slices);
    second.upsert(...slices);
    first.publisher.start();
    await converged(first, hub);
    second.publisher.start();
    await waitFor(() => second.publisher.state === 'standby', {
      what: 'the second agent to stand by',
    });
    const batchesBefore = hub.stats.batches;

    const changed = structuredClone(slices[0]!);
    changed.endpoints = changed.endpoints!.slice(1);
    first.upsert(changed);
    second.upsert(changed);
    await converged(first, hub);
    // Only the admitted stream published: one batch for the change, no doubled traffic.
    expect(hub.stats.batches - batchesBefore).toBe(1);

    await first.publisher.close();
    await waitFor(() => second.publisher.state === 'streaming', {
      what: 'the standby to take over',
    });
    const more = structuredClone(changed);
    more.endpoints = more.endpoints!.slice(1);
    second.upsert(more);
    await converged(second, hub);
    expect(hub.stats.welcomes).toBe(2);
    expect(hub.stats.standbys).toBe(1);
    // The unchanged-digest takeover sent nothing in full again.
    expect(hub.stats.replaces.get('shop/web')).toBe(1);
  });

  it('counts NACKs and keeps publishing the other services', async () => {
    const hub = await startHub({ rejectServices: ['shop/bad'] });
    const agent = newAgent(hub);
    agent.upsert(
      endpointSlice({
        namespace: 'shop',
        service: 'bad',
        name: 'bad-1',
        endpoints: [{ ip: '10.0.0.9' }],
      }),
      endpointSlice({
        namespace: 'shop',
        service: 'good',
        name: 'good-1',
        endpoints: [{ ip: '10.0.0.1' }],
      }),
    );
    agent.publisher.start();
    await converged(agent, hub, (key) => key === 'shop/good');
    expect(agent.publisher.stats.nacks).toBeGreaterThanOrEqual(1);
    expect(agent.publisher.stats.nacksByReason['NACK_REASON_INVALID']).toBeGreaterThanOrEqual(1);
    expect(agent.publisher.state).toBe('streaming');
  });

  it('sends a service again in full when the hub finds its digest differs', async () => {
    const hub = await startHub();
    const agent = newAgent(hub);
    const slices = manyEndpointSlices('shop', 'web', 100, 100);
    agent.upsert(...slices);
    agent.publisher.start();
    await converged(agent, hub);

    // The hub's copy diverges behind the agent's back.
    const held = hub.cluster(clusterId).get('shop/web')!;
    held.endpoints.delete([...held.endpoints.keys()][0]!);
    const changed = structuredClone(slices[0]!);
    changed.endpoints![50]!.conditions = { ready: false, serving: false, terminating: true };
    agent.upsert(changed);

    await converged(agent, hub);
    expect(hub.stats.digestMismatches).toBe(1);
    expect(agent.publisher.stats.resyncRequests).toBe(1);
    expect(hub.stats.replaces.get('shop/web')).toBe(2);
  });
});

import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  type V1EndpointSlice,
} from '@kubernetes/client-node';
import { Agent } from '../../../agent/agent.js';
import { agentOptionsSchema } from '../../../agent/config/agent-options.js';
import { loadConfig } from '../../../shared/config/config-loader.js';
import { waitFor } from '../../env/wait-for.js';
import {
  endpointSlice,
  manyEndpointSlices,
  type TestSliceSpec,
} from '../../support/endpoint-slices.js';
import { TestHub, type TestHubState } from '../../support/test-hub.js';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  return kc;
}

/** A namespace of this test only (no namespace controller runs, so names are never reused). */
async function testNamespace(kc: KubeConfig): Promise<string> {
  const name = `agent-${randomUUID().slice(0, 8)}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  closers.push(() => kc.makeApiClient(CoreV1Api).deleteNamespace({ name }));
  return name;
}

async function startHub(state?: TestHubState, port?: number): Promise<TestHub> {
  const hub = await TestHub.start({ state, port, heartbeatIntervalMs: 500 });
  closers.push(() => hub.stop());
  return hub;
}

function startAgent(
  kc: KubeConfig,
  hub: TestHub,
  namespace: string,
  settings: Record<string, unknown> = {},
): Agent {
  const options = loadConfig(agentOptionsSchema, {
    env: {},
    flags: {
      clusterId: 'cluster-k',
      hubAddress: hub.address,
      insecure: true,
      namespaces: [namespace],
      healthAddress: '127.0.0.1:0',
      batchWindowMs: 10,
      reconnectInitialMs: 20,
      reconnectMaxMs: 200,
      ...settings,
    },
  });
  const agent = new Agent(options, { kubeConfig: kc, version: 'test' });
  closers.push(() => agent.shutdown(0));
  return agent;
}

/** What the hub should hold for a service, from the specs the test wrote to the API. */
type Expected = Record<string, { ready: boolean; terminating: boolean }>;

function heldBy(hub: TestHub, service: string): Expected | undefined {
  const held = hub.cluster('cluster-k').get(service);
  if (held === undefined) return undefined;
  const out: Expected = {};
  for (const [address, e] of held.endpoints)
    out[address] = { ready: e.ready, terminating: e.terminating };
  return out;
}

async function hubHolds(
  hub: TestHub,
  service: string,
  expected: Expected | undefined,
): Promise<void> {
  await waitFor(
    () => JSON.stringify(sortKeys(heldBy(hub, service))) === JSON.stringify(sortKeys(expected)),
    {
      what: `the hub to hold ${service} as the API has it`,
      timeoutMs: 20_000,
    },
  );
}

function sortKeys(o: Expected | undefined): [string, unknown][] | undefined {
  return o === undefined ? undefined : Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1));
}

function expectedOf(slices: V1EndpointSlice[]): Expected {
  const out: Expected = {};
  for (const s of slices) {
    for (const e of s.endpoints ?? []) {
      out[e.addresses[0]!] = {
        ready: e.conditions?.ready ?? true,
        terminating: e.conditions?.terminating ?? false,
      };
    }
  }
  return out;
}

describe('Agent against the real kube-apiserver', () => {
  it('delivers a service scaled past 1,000 endpoints across many slices to the hub as exactly the right set', async () => {
    const kc = kubeConfig();
    const namespace = await testNamespace(kc);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const hub = await startHub();
    const agent = startAgent(kc, hub, namespace, { maxEndpointsPerBatch: 400 });
    await agent.start();

    const slices = manyEndpointSlices(namespace, 'web', 1_500, 100);
    for (const body of slices) await discovery.createNamespacedEndpointSlice({ namespace, body });
    await hubHolds(hub, `${namespace}/web`, expectedOf(slices));
    expect(hub.stats.digestMismatches).toBe(0);

    const ready = await fetch(`http://127.0.0.1:${agent.healthPort}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ok', hub: 'streaming', endpoints: 1_500 });
  });

  it('follows an address moving between slices, terminating endpoints, dual-stack and service deletion', async () => {
    const kc = kubeConfig();
    const namespace = await testNamespace(kc);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const hub = await startHub();
    const agent = startAgent(kc, hub, namespace);
    await agent.start();
    const service = `${namespace}/api`;
    const spec = (name: string, extra: Partial<TestSliceSpec>): V1EndpointSlice =>
      endpointSlice({ namespace, service: 'api', name, endpoints: [], ...extra });

    await discovery.createNamespacedEndpointSlice({
      namespace,
      body: spec('api-a', { endpoints: [{ ip: '10.1.0.1' }, { ip: '10.1.0.2' }] }),
    });
    await discovery.createNamespacedEndpointSlice({
      namespace,
      body: spec('api-v6', { addressType: 'IPv6', endpoints: [{ ip: 'fd00::a' }] }),
    });
    await hubHolds(hub, service, {
      '10.1.0.1': { ready: true, terminating: false },
      '10.1.0.2': { ready: true, terminating: false },
      'fd00::a': { ready: true, terminating: false },
    });

    // 10.1.0.2 moves to slice b: for a moment it is in both, then only in b.
    await discovery.createNamespacedEndpointSlice({
      namespace,
      body: spec('api-b', { endpoints: [{ ip: '10.1.0.2' }] }),
    });
    await discovery.replaceNamespacedEndpointSlice({
      namespace,
      name: 'api-a',
      body: {
        ...spec('api-a', {
          endpoints: [{ ip: '10.1.0.1', ready: false, serving: true, terminating: true }],
        }),
      },
    });
    await hubHolds(hub, service, {
      '10.1.0.1': { ready: false, terminating: true },
      '10.1.0.2': { ready: true, terminating: false },
      'fd00::a': { ready: true, terminating: false },
    });

    for (const name of ['api-a', 'api-b', 'api-v6'])
      await discovery.deleteNamespacedEndpointSlice({ namespace, name });
    await hubHolds(hub, service, undefined);
    expect(agent.publisher.stats.servicesRemoved).toBe(1);
  });

  it('after the hub restarts, resyncs only the services that changed and ends with exactly the agent state', async () => {
    const kc = kubeConfig();
    const namespace = await testNamespace(kc);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const state: TestHubState = new Map();
    const hub = await startHub(state);
    const agent = startAgent(kc, hub, namespace);
    await agent.start();
    const web = manyEndpointSlices(namespace, 'web', 200, 100, 1);
    const cart = manyEndpointSlices(namespace, 'cart', 100, 100, 2);
    for (const body of [...web, ...cart])
      await discovery.createNamespacedEndpointSlice({ namespace, body });
    await hubHolds(hub, `${namespace}/web`, expectedOf(web));
    await hubHolds(hub, `${namespace}/cart`, expectedOf(cart));

    hub.stop();
    const changed = structuredClone(cart[0]!);
    changed.endpoints = changed.endpoints!.slice(0, 60);
    await discovery.replaceNamespacedEndpointSlice({
      namespace,
      name: changed.metadata!.name!,
      body: changed,
    });
    await waitFor(() => agent.sets.endpointCount === 260, { what: 'the agent to see the change' });

    const restarted = await startHub(state, hub.port);
    await hubHolds(restarted, `${namespace}/cart`, expectedOf([changed]));
    await hubHolds(restarted, `${namespace}/web`, expectedOf(web));
    expect(restarted.stats.replaces.get(`${namespace}/web`)).toBeUndefined();
    expect(restarted.stats.replaces.get(`${namespace}/cart`)).toBe(1);
  });

  it('flushes a pending change to the hub on shutdown', async () => {
    const kc = kubeConfig();
    const namespace = await testNamespace(kc);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const hub = await startHub();
    // A long batch window: the change is still pending when shutdown begins.
    const agent = startAgent(kc, hub, namespace, { batchWindowMs: 10_000 });
    await agent.start();
    await waitFor(() => agent.publisher.state === 'streaming', { what: 'the agent to stream' });

    const slice = endpointSlice({
      namespace,
      service: 'late',
      name: 'late-1',
      endpoints: [{ ip: '10.7.0.1' }],
    });
    await discovery.createNamespacedEndpointSlice({ namespace, body: slice });
    await waitFor(() => agent.publisher.pendingServices === 1, {
      what: 'the change to be pending',
    });
    expect(heldBy(hub, `${namespace}/late`)).toBeUndefined();

    await agent.shutdown(5_000);
    expect(heldBy(hub, `${namespace}/late`)).toEqual({
      '10.7.0.1': { ready: true, terminating: false },
    });
    expect(agent.state).toBe('closed');
  });
});

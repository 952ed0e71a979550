import { randomUUID } from 'node:crypto';
import {
  AuthorizationV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  KubernetesObjectApi,
} from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Agent } from '../../../agent/agent.js';
import { agentOptionsSchema } from '../../../agent/config/agent-options.js';
import { waitFor } from '../../env/wait-for.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { TestHub } from '../../support/test-hub.js';
import { containerSettings } from './chart-wiring.js';
import { charts, renderChart, type RenderedObject } from './helm-render.js';

// The agent chart's RBAC, installed for real into the test kube-apiserver (RBAC on): the agent
// runs with a token of the chart's ServiceAccount and nothing else, and must both work and be
// refused everything beyond what it uses.

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function adminKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  return kc;
}

/** Fresh namespaces for one test (no namespace controller runs: names are never reused). */
async function namespaces(admin: KubeConfig, ...prefixes: string[]): Promise<string[]> {
  const core = admin.makeApiClient(CoreV1Api);
  const suffix = randomUUID().slice(0, 8);
  const names = prefixes.map((p) => `${p}-${suffix}`);
  for (const name of names) {
    await core.createNamespace({ body: { metadata: { name } } });
    closers.push(() => core.deleteNamespace({ name }));
  }
  return names;
}

/** Creates every rendered object, as `helm install` would; deletes cluster-scoped ones after. */
async function install(admin: KubeConfig, objects: RenderedObject[]): Promise<void> {
  const client = KubernetesObjectApi.makeApiClient(admin);
  for (const object of objects) {
    await client.create(object);
    if (object.metadata.namespace === undefined) {
      closers.push(() => client.delete(object));
    }
  }
}

/**
 * A kubeconfig that authenticates as the ServiceAccount with a bound token from the TokenRequest
 * API — what the kubelet projects into the agent's pod.
 */
async function serviceAccountKubeConfig(
  admin: KubeConfig,
  namespace: string,
  name: string,
): Promise<KubeConfig> {
  const request = await admin.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 600 } },
  });
  const token = request.status?.token;
  if (token === undefined) throw new Error('TokenRequest returned no token');
  const cluster = admin.getCurrentCluster();
  if (cluster === null) throw new Error('admin kubeconfig has no cluster');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [cluster],
    users: [{ name, token }],
    contexts: [{ name, cluster: cluster.name, user: name }],
    currentContext: name,
  });
  return kc;
}

/** Starts the agent with the settings the chart renders, as the given Kubernetes identity. */
async function startChartAgent(objects: RenderedObject[], kc: KubeConfig): Promise<Agent> {
  const { settings } = await containerSettings(
    objects,
    'agent-tgfed-agent',
    'agent',
    agentOptionsSchema,
  );
  // Tests share the machine: a free port instead of the chart's fixed health port.
  const agent = new Agent(
    { ...settings, healthAddress: '127.0.0.1:0' },
    { kubeConfig: kc, version: 'rbac-test' },
  );
  closers.push(() => agent.shutdown(0));
  await agent.start();
  return agent;
}

async function startHub(): Promise<TestHub> {
  const hub = await TestHub.start({ heartbeatIntervalMs: 500 });
  closers.push(() => hub.stop());
  return hub;
}

function slice(namespace: string, service: string, ip: string) {
  return endpointSlice({
    namespace,
    service,
    name: `${service}-${randomUUID().slice(0, 5)}`,
    endpoints: [{ ip, ready: true, zone: 'eu-west-1a' }],
    ports: [{ name: 'http', port: 8080 }],
  });
}

/** Resolves once the hub holds exactly these addresses for the service. */
async function hubHolds(hub: TestHub, cluster: string, service: string, addresses: string[]) {
  await waitFor(
    () => {
      const held = hub.cluster(cluster).get(service);
      return (
        held !== undefined &&
        JSON.stringify([...held.endpoints.keys()].sort()) === JSON.stringify(addresses)
      );
    },
    { what: `the hub to hold ${service} = ${addresses.join(', ')}`, timeoutMs: 20_000 },
  );
}

const forbidden = { code: 403 };

/** The rules RBAC grants an identity in a namespace, minus the self-review ones everyone has. */
async function grantedRules(kc: KubeConfig, namespace: string) {
  const review = await kc.makeApiClient(AuthorizationV1Api).createSelfSubjectRulesReview({
    body: { spec: { namespace } },
  });
  return review.status?.resourceRules
    .filter((r) => !(r.resources ?? []).every((res) => res.startsWith('selfsubject')))
    .map((r) => ({ apiGroups: r.apiGroups, resources: r.resources, verbs: [...r.verbs].sort() }));
}

describe('tgfed-agent chart RBAC on a real API server', () => {
  it('lets a namespaced agent list and watch EndpointSlices of its namespaces and nothing else', async () => {
    const admin = adminKubeConfig();
    const [release, shop, web, other] = await namespaces(admin, 'agent', 'shop', 'web', 'other');
    const hub = await startHub();
    const objects = await renderChart(
      inject('testenv').helm,
      charts.agent,
      {
        clusterId: 'rbac-namespaced',
        hub: { address: hub.address, insecure: true },
        watch: { namespaces: [shop, web] },
      },
      { release: 'agent', namespace: release },
    );
    await install(admin, objects);
    const discovery = admin.makeApiClient(DiscoveryV1Api);
    await discovery.createNamespacedEndpointSlice({
      namespace: shop!,
      body: slice(shop!, 'web', '10.1.0.1'),
    });

    const kc = await serviceAccountKubeConfig(admin, release!, 'agent-tgfed-agent');
    const agent = await startChartAgent(objects, kc);
    // Listed before the start, then watched: a slice created afterwards arrives as an event.
    await hubHolds(hub, 'rbac-namespaced', `${shop}/web`, ['10.1.0.1']);
    await discovery.createNamespacedEndpointSlice({
      namespace: web!,
      body: slice(web!, 'api', '10.1.0.2'),
    });
    await hubHolds(hub, 'rbac-namespaced', `${web}/api`, ['10.1.0.2']);
    const ready = await fetch(`http://127.0.0.1:${agent.healthPort}/readyz`);
    expect(ready.status).toBe(200);
    expect(agent.watch.counters.errors).toBe(0);

    for (const namespace of [shop!, web!]) {
      expect(await grantedRules(kc, namespace)).toEqual([
        {
          apiGroups: ['discovery.k8s.io'],
          resources: ['endpointslices'],
          verbs: ['get', 'list', 'watch'],
        },
      ]);
    }
    expect(await grantedRules(kc, other!)).toEqual([]);

    const core = kc.makeApiClient(CoreV1Api);
    const asAgent = kc.makeApiClient(DiscoveryV1Api);
    await expect(asAgent.listNamespacedEndpointSlice({ namespace: other! })).rejects.toMatchObject(
      forbidden,
    );
    await expect(asAgent.listEndpointSliceForAllNamespaces()).rejects.toMatchObject(forbidden);
    await expect(
      asAgent.createNamespacedEndpointSlice({
        namespace: shop!,
        body: slice(shop!, 'x', '10.9.9.9'),
      }),
    ).rejects.toMatchObject(forbidden);
    await expect(core.listNamespacedPod({ namespace: shop! })).rejects.toMatchObject(forbidden);
    await expect(core.listNamespacedSecret({ namespace: shop! })).rejects.toMatchObject(forbidden);
    await expect(core.listNamespacedService({ namespace: shop! })).rejects.toMatchObject(forbidden);
    await expect(core.listNamespacedSecret({ namespace: release! })).rejects.toMatchObject(
      forbidden,
    );
  });

  it('lets an all-namespaces agent watch EndpointSlices cluster-wide and read nothing else', async () => {
    const admin = adminKubeConfig();
    const [release, shop] = await namespaces(admin, 'agent', 'shop');
    const hub = await startHub();
    const objects = await renderChart(
      inject('testenv').helm,
      charts.agent,
      { clusterId: 'rbac-cluster', hub: { address: hub.address, insecure: true } },
      { release: 'agent', namespace: release },
    );
    expect(objects.map((o) => o.kind)).toEqual(
      expect.arrayContaining(['ClusterRole', 'ClusterRoleBinding']),
    );
    await install(admin, objects);

    const kc = await serviceAccountKubeConfig(admin, release!, 'agent-tgfed-agent');
    const agent = await startChartAgent(objects, kc);
    await waitFor(() => agent.watch.synced, { what: 'the first list', timeoutMs: 20_000 });
    await admin.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
      namespace: shop!,
      body: slice(shop!, 'web', '10.2.0.1'),
    });
    await hubHolds(hub, 'rbac-cluster', `${shop}/web`, ['10.2.0.1']);
    expect(agent.watch.counters.errors).toBe(0);

    expect(await grantedRules(kc, shop!)).toEqual([
      {
        apiGroups: ['discovery.k8s.io'],
        resources: ['endpointslices'],
        verbs: ['get', 'list', 'watch'],
      },
    ]);
    const core = kc.makeApiClient(CoreV1Api);
    await expect(core.listPodForAllNamespaces()).rejects.toMatchObject(forbidden);
    await expect(core.listSecretForAllNamespaces()).rejects.toMatchObject(forbidden);
    await expect(core.listNamespace()).rejects.toMatchObject(forbidden);
    await expect(core.listNode()).rejects.toMatchObject(forbidden);
    await expect(
      kc
        .makeApiClient(DiscoveryV1Api)
        .deleteCollectionNamespacedEndpointSlice({ namespace: shop! }),
    ).rejects.toMatchObject(forbidden);
  });
});

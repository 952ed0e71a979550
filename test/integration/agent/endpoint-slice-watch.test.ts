import { randomUUID } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  type V1Endpoint,
  type V1EndpointSlice,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import {
  EndpointSliceWatch,
  type EndpointSliceHandler,
  type EndpointSliceWatchOptions,
} from '../../../agent/watch/endpoint-slice-watch.js';
import { startKubeApiserver, type KubeApiserver } from '../../env/kube-apiserver.js';
import { loadTestenvManifest } from '../../env/testenv-manifest.js';
import { waitFor } from '../../env/wait-for.js';

const serviceNameLabel = 'kubernetes.io/service-name';
const managedByLabel = 'endpointslice.kubernetes.io/managed-by';
const sliceController = 'endpointslice-controller.k8s.io';
const mirroringController = 'endpointslicemirroring-controller.k8s.io';
/** What the agent chart selects by default: slices the EndpointSlice controller manages. */
const controllerSelector = `${managedByLabel}=${sliceController}`;

/** The handler's view, rebuilt from its callbacks exactly as a consumer would. */
class SliceMirror implements EndpointSliceHandler {
  readonly slices = new Map<string, V1EndpointSlice>();
  readonly syncedScopes: (string | null)[] = [];

  onSync(scope: string | null, slices: V1EndpointSlice[]): void {
    this.syncedScopes.push(scope);
    for (const [key, slice] of this.slices) {
      if (scope === null || slice.metadata?.namespace === scope) this.slices.delete(key);
    }
    for (const slice of slices) this.slices.set(sliceKey(slice), slice);
  }

  onUpsert(slice: V1EndpointSlice): void {
    this.slices.set(sliceKey(slice), slice);
  }

  onDelete(slice: V1EndpointSlice): void {
    this.slices.delete(sliceKey(slice));
  }
}

function sliceKey(slice: V1EndpointSlice): string {
  return `${slice.metadata?.namespace ?? '?'}/${slice.metadata?.name ?? '?'}`;
}

/** `namespace/name@resourceVersion`, sorted: equal iff both sides hold the same slice versions. */
function fingerprint(slices: Iterable<V1EndpointSlice>): string[] {
  return [...slices]
    .map((slice) => `${sliceKey(slice)}@${slice.metadata?.resourceVersion ?? '?'}`)
    .sort();
}

function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

/** Test logs stay silent unless TGFED_TEST_LOG names a pino level. */
const logger = pino({ level: process.env['TGFED_TEST_LOG'] ?? 'silent' });

/** An apiserver client with the helpers the tests need, writing slices as the controller does. */
class TestCluster {
  readonly core: CoreV1Api;
  readonly discovery: DiscoveryV1Api;

  constructor(readonly kubeConfig: KubeConfig) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
  }

  /** A namespace with a unique name; deleted when the test finishes. */
  async namespace(prefix: string): Promise<string> {
    const name = `${prefix}-${randomUUID().slice(0, 8)}`;
    await this.core.createNamespace({ body: { metadata: { name } } });
    // No namespace controller runs, so it stays Terminating; nothing reuses the name.
    onTestFinished(async () => {
      await this.core.deleteNamespace({ name }).catch(() => undefined);
    });
    return name;
  }

  /** Creates a slice of service `service` with one ready pod endpoint per address. */
  async createSlice(
    namespace: string,
    name: string,
    options: { service: string; addresses: string[]; labels?: Record<string, string> },
  ): Promise<V1EndpointSlice> {
    return this.discovery.createNamespacedEndpointSlice({
      namespace,
      body: {
        metadata: {
          name,
          labels: {
            [serviceNameLabel]: options.service,
            [managedByLabel]: sliceController,
            ...options.labels,
          },
        },
        addressType: 'IPv4',
        endpoints: options.addresses.map((address, i) => podEndpoint(namespace, address, i)),
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      },
    });
  }

  /** Reads a slice, lets `change` edit it, and writes it back. */
  async updateSlice(
    namespace: string,
    name: string,
    change: (slice: V1EndpointSlice) => void,
  ): Promise<V1EndpointSlice> {
    const slice = await this.discovery.readNamespacedEndpointSlice({ namespace, name });
    change(slice);
    return this.discovery.replaceNamespacedEndpointSlice({ namespace, name, body: slice });
  }

  async deleteSlice(namespace: string, name: string): Promise<void> {
    await this.discovery.deleteNamespacedEndpointSlice({ namespace, name });
  }

  /** What the API server holds now, in the given namespaces (all when empty), by selector. */
  async listSlices(namespaces: string[], labelSelector?: string): Promise<V1EndpointSlice[]> {
    if (namespaces.length === 0) {
      return (await this.discovery.listEndpointSliceForAllNamespaces({ labelSelector })).items;
    }
    const lists = await Promise.all(
      namespaces.map((namespace) =>
        this.discovery.listNamespacedEndpointSlice({ namespace, labelSelector }),
      ),
    );
    return lists.flatMap((list) => list.items);
  }

  /** Waits until the mirror holds exactly the slice versions the API server lists. */
  async expectMirrorToConverge(
    mirror: SliceMirror,
    scope: { namespaces: string[]; labelSelector?: string },
    timeoutMs = 30_000,
  ): Promise<void> {
    let expected: string[] = [];
    try {
      await waitFor(
        async () => {
          expected = fingerprint(await this.listSlices(scope.namespaces, scope.labelSelector));
          return JSON.stringify(fingerprint(mirror.slices.values())) === JSON.stringify(expected);
        },
        { what: 'the handler state to equal the API server list', timeoutMs, intervalMs: 100 },
      );
    } finally {
      expect(fingerprint(mirror.slices.values())).toEqual(expected);
    }
  }
}

/** An endpoint as the EndpointSlice controller writes it for a ready pod. */
function podEndpoint(namespace: string, address: string, i: number): V1Endpoint {
  return {
    addresses: [address],
    conditions: { ready: true, serving: true, terminating: false },
    nodeName: `node-${i % 3}`,
    zone: `eu-west-1${'abc'[i % 3] ?? 'a'}`,
    targetRef: { kind: 'Pod', namespace, name: `web-${address.replaceAll('.', '-')}` },
  };
}

/** Marks every endpoint of a slice terminating, as when its pods are being deleted. */
function terminating(slice: V1EndpointSlice): void {
  for (const endpoint of slice.endpoints ?? []) {
    endpoint.conditions = { ready: false, serving: true, terminating: true };
  }
}

/** Starts a watch that is closed when the test finishes. */
function startWatch(
  kubeConfig: KubeConfig,
  mirror: EndpointSliceHandler,
  options: EndpointSliceWatchOptions,
): EndpointSliceWatch {
  const watch = new EndpointSliceWatch(kubeConfig, mirror, { logger, ...options });
  onTestFinished(() => watch.close());
  watch.start();
  return watch;
}

async function waitForSynced(watch: EndpointSliceWatch): Promise<void> {
  await waitFor(() => watch.synced, { what: 'the first list of every scope', timeoutMs: 30_000 });
}

/** A private etcd + kube-apiserver for a test that restarts or compacts them. */
async function privateApiserver(apiserverArgs: string[] = []): Promise<KubeApiserver> {
  const kube = await startKubeApiserver(loadTestenvManifest(), { apiserverArgs });
  onTestFinished(() => kube.stop());
  return kube;
}

/**
 * A TCP relay in front of the API server that the test can cut and restore: a network partition
 * between the agent and its API server while the API server keeps serving everyone else.
 */
class NetworkGate {
  readonly #sockets = new Set<Socket>();
  #cut = false;

  private constructor(
    readonly server: Server,
    readonly url: string,
  ) {}

  static async open(target: URL): Promise<NetworkGate> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('gate has no port');
    const gate = new NetworkGate(server, `https://127.0.0.1:${address.port}`);
    server.on('connection', (client) => gate.#relay(client, target));
    return gate;
  }

  #relay(client: Socket, target: URL): void {
    if (this.#cut) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  }

  /** Drops every open connection and refuses new ones until {@link restore}. */
  cut(): void {
    this.#cut = true;
    for (const socket of this.#sockets) socket.destroy();
  }

  restore(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A kubeconfig like `kubeConfig` whose server is reached through `serverUrl`. */
function throughServer(kubeConfig: KubeConfig, serverUrl: string): KubeConfig {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ ...cluster, server: serverUrl }],
    users: kubeConfig.users,
    contexts: kubeConfig.contexts,
    currentContext: kubeConfig.currentContext,
  });
  return kc;
}

/** POST to etcd's JSON gateway (the v3 API over HTTP, int64 values as strings). */
async function etcdCall<T>(etcdUrl: string, path: string, body: object): Promise<T> {
  const response = await fetch(`${etcdUrl}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok)
    throw new Error(`etcd ${path}: HTTP ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

/** Compacts etcd's history up to its current revision; resolves once physically done. */
async function compactEtcd(etcdUrl: string): Promise<number> {
  const range = await etcdCall<{ header?: { revision?: string } }>(etcdUrl, '/v3/kv/range', {
    key: Buffer.from('/registry/').toString('base64'),
    limit: 1,
  });
  const revision = Number(range.header?.revision);
  if (!Number.isSafeInteger(revision)) throw new Error('etcd range answered without a revision');
  await etcdCall(etcdUrl, '/v3/kv/compaction', { revision: String(revision), physical: true });
  return revision;
}

describe('EndpointSliceWatch', () => {
  it('delivers the initial list, then every change in the watched namespaces that matches the selector', async () => {
    const kubeConfig = loadKubeConfig(inject('kubeconfigPath'));
    const cluster = new TestCluster(kubeConfig);
    const [shop, billing, unwatched] = await Promise.all([
      cluster.namespace('esw-shop'),
      cluster.namespace('esw-billing'),
      cluster.namespace('esw-unwatched'),
    ]);
    const mirrored = { [managedByLabel]: mirroringController };
    await Promise.all([
      cluster.createSlice(shop, 'web-a1b2c', {
        service: 'web',
        addresses: ['10.1.0.1', '10.1.0.2'],
      }),
      cluster.createSlice(shop, 'web-d3e4f', { service: 'web', addresses: ['10.1.0.3'] }),
      cluster.createSlice(shop, 'api-g5h6i', { service: 'api', addresses: ['10.1.1.1'] }),
      cluster.createSlice(shop, 'legacy-j7k8l', {
        service: 'legacy',
        addresses: ['10.1.2.1'],
        labels: mirrored,
      }),
      cluster.createSlice(billing, 'web-m9n0p', { service: 'web', addresses: ['10.2.0.1'] }),
      cluster.createSlice(billing, 'web-q1r2s', { service: 'web', addresses: ['10.2.0.2'] }),
      cluster.createSlice(unwatched, 'web-t3u4v', { service: 'web', addresses: ['10.3.0.1'] }),
    ]);
    const scope = { namespaces: [shop, billing], labelSelector: controllerSelector };
    const mirror = new SliceMirror();
    // Page size 2 makes the first list of `shop` (three matching slices) take two pages.
    const watch = startWatch(kubeConfig, mirror, { ...scope, pageSize: 2 });

    await waitForSynced(watch);
    expect([...mirror.syncedScopes].sort()).toEqual([shop, billing].sort());
    expect(fingerprint(mirror.slices.values())).toEqual(
      fingerprint(await cluster.listSlices(scope.namespaces, scope.labelSelector)),
    );
    expect(mirror.slices.size).toBe(5);
    expect(watch.lastSyncAt).toBeDefined();

    await cluster.createSlice(shop, 'web-w5x6y', { service: 'web', addresses: ['10.1.0.4'] });
    await cluster.createSlice(billing, 'api-z7a8b', { service: 'api', addresses: ['10.2.1.1'] });
    await cluster.updateSlice(shop, 'web-a1b2c', terminating);
    await cluster.deleteSlice(billing, 'web-q1r2s');
    // Starts matching the selector: the API server sends it as ADDED to this watch.
    await cluster.updateSlice(shop, 'legacy-j7k8l', (slice) => {
      slice.metadata = {
        ...slice.metadata,
        labels: { ...slice.metadata?.labels, [managedByLabel]: sliceController },
      };
    });
    // Stops matching it: sent as DELETED.
    await cluster.updateSlice(shop, 'api-g5h6i', (slice) => {
      slice.metadata = { ...slice.metadata, labels: { ...slice.metadata?.labels, ...mirrored } };
    });
    await cluster.createSlice(unwatched, 'web-c9d0e', { service: 'web', addresses: ['10.3.0.2'] });
    await cluster.createSlice(shop, 'other-f1g2h', {
      service: 'other',
      addresses: ['10.1.3.1'],
      labels: mirrored,
    });

    await cluster.expectMirrorToConverge(mirror, scope);
    expect([...mirror.slices.keys()].sort()).toEqual(
      [
        `${shop}/web-a1b2c`,
        `${shop}/web-d3e4f`,
        `${shop}/web-w5x6y`,
        `${shop}/legacy-j7k8l`,
        `${billing}/web-m9n0p`,
        `${billing}/api-z7a8b`,
      ].sort(),
    );
    expect(mirror.slices.get(`${shop}/web-a1b2c`)?.endpoints?.map((e) => e.conditions)).toEqual([
      { ready: false, serving: true, terminating: true },
      { ready: false, serving: true, terminating: true },
    ]);
    expect(watch.state).toBe('watching');
    expect(watch.counters).toMatchObject({ lists: 2, gone410: 0, errors: 0, handlerErrors: 0 });
  });

  it('watches all namespaces as one scope when no namespace is configured', async () => {
    const kubeConfig = loadKubeConfig(inject('kubeconfigPath'));
    const cluster = new TestCluster(kubeConfig);
    const [east, west] = await Promise.all([
      cluster.namespace('esw-east'),
      cluster.namespace('esw-west'),
    ]);
    // Other test files share this API server: a label of this test's own keeps them out.
    const run = { 'tgfed.test/run': randomUUID() };
    const scope = { namespaces: [], labelSelector: `tgfed.test/run=${run['tgfed.test/run']}` };
    await cluster.createSlice(east, 'web-a1b2c', {
      service: 'web',
      addresses: ['10.4.0.1'],
      labels: run,
    });
    await cluster.createSlice(west, 'web-d3e4f', {
      service: 'web',
      addresses: ['10.5.0.1'],
      labels: run,
    });
    await cluster.createSlice(west, 'web-g5h6i', { service: 'web', addresses: ['10.5.0.2'] });
    const mirror = new SliceMirror();
    const watch = startWatch(kubeConfig, mirror, scope);

    await waitForSynced(watch);
    expect(mirror.syncedScopes).toEqual([null]);
    expect([...mirror.slices.keys()].sort()).toEqual([`${east}/web-a1b2c`, `${west}/web-d3e4f`]);

    await cluster.createSlice(east, 'api-j7k8l', {
      service: 'api',
      addresses: ['10.4.1.1'],
      labels: run,
    });
    await cluster.updateSlice(west, 'web-d3e4f', terminating);
    await cluster.deleteSlice(east, 'web-a1b2c');
    await cluster.createSlice(east, 'web-m9n0p', { service: 'web', addresses: ['10.4.0.2'] });

    await cluster.expectMirrorToConverge(mirror, scope);
    expect([...mirror.slices.keys()].sort()).toEqual([`${east}/api-j7k8l`, `${west}/web-d3e4f`]);
    expect(watch.counters).toMatchObject({ lists: 1, errors: 0 });
  });

  it('keeps delivering changes after the handler throws', async () => {
    const kubeConfig = loadKubeConfig(inject('kubeconfigPath'));
    const cluster = new TestCluster(kubeConfig);
    const namespace = await cluster.namespace('esw-throw');
    const mirror = new SliceMirror();
    let throwOnce = true;
    const flaky: EndpointSliceHandler = {
      onSync: (scope, slices) => mirror.onSync(scope, slices),
      onUpsert: (slice) => {
        if (throwOnce) {
          throwOnce = false;
          throw new Error('handler bug');
        }
        mirror.onUpsert(slice);
      },
      onDelete: (slice) => mirror.onDelete(slice),
    };
    const watch = startWatch(kubeConfig, flaky, { namespaces: [namespace] });
    await waitForSynced(watch);

    await cluster.createSlice(namespace, 'web-a1b2c', { service: 'web', addresses: ['10.6.0.1'] });
    await waitFor(() => watch.counters.handlerErrors === 1, { what: 'the handler to throw' });
    await cluster.createSlice(namespace, 'web-d3e4f', { service: 'web', addresses: ['10.6.0.2'] });
    await cluster.updateSlice(namespace, 'web-a1b2c', terminating);

    await cluster.expectMirrorToConverge(mirror, { namespaces: [namespace] });
    expect(watch.state).toBe('watching');
    expect(watch.counters).toMatchObject({ handlerErrors: 1, errors: 0, lists: 1 });
  });

  it('closes promptly while it backs off from an unreachable API server', async () => {
    const kubeConfig = loadKubeConfig(inject('kubeconfigPath'));
    const cluster = new TestCluster(kubeConfig);
    const namespace = await cluster.namespace('esw-close');
    const gate = await NetworkGate.open(new URL(kubeConfig.getCurrentCluster()?.server ?? ''));
    onTestFinished(() => gate.close());
    gate.cut();
    const watch = startWatch(throughServer(kubeConfig, gate.url), new SliceMirror(), {
      namespaces: [namespace],
      backoffInitialMs: 60_000,
      backoffMaxMs: 60_000,
    });
    await waitFor(() => watch.counters.errors >= 1 && watch.state === 'backoff', {
      what: 'the watch to back off',
    });

    const startedAt = Date.now();
    await watch.close();
    expect(Date.now() - startedAt).toBeLessThan(1_000);
    expect(watch.state).toBe('closed');
    expect(watch.synced).toBe(false);
    expect(watch.lastSyncAt).toBeUndefined();
    await watch.close();
    expect(() => watch.start()).toThrow(/close/);
  });

  it('restarts a watch that saw nothing for watchdogMs and keeps converging', async () => {
    const kubeConfig = loadKubeConfig(inject('kubeconfigPath'));
    const cluster = new TestCluster(kubeConfig);
    const namespace = await cluster.namespace('esw-watchdog');
    await cluster.createSlice(namespace, 'web-a1b2c', { service: 'web', addresses: ['10.7.0.1'] });
    const mirror = new SliceMirror();
    const watch = startWatch(kubeConfig, mirror, { namespaces: [namespace], watchdogMs: 500 });
    await waitForSynced(watch);

    const listedAt = watch.lastSyncAt ?? 0;
    // Nothing changes in the namespace, so the API server sends nothing on the watch.
    await waitFor(() => watch.counters.watchdogRestarts >= 2, {
      what: 'the watchdog to restart the silent watch twice',
      timeoutMs: 10_000,
    });
    // Each restarted watch the server accepted counts as fresh for the readiness probe.
    expect(watch.lastSyncAt).toBeGreaterThan(listedAt);
    await cluster.createSlice(namespace, 'web-d3e4f', { service: 'web', addresses: ['10.7.0.2'] });
    await cluster.updateSlice(namespace, 'web-a1b2c', terminating);
    await cluster.expectMirrorToConverge(mirror, { namespaces: [namespace] });
    const restartsBefore = watch.counters.watchdogRestarts;
    await waitFor(() => watch.counters.watchdogRestarts > restartsBefore, {
      what: 'the watchdog to restart the watch again once it is quiet',
      timeoutMs: 10_000,
    });
    await cluster.deleteSlice(namespace, 'web-d3e4f');

    await cluster.expectMirrorToConverge(mirror, { namespaces: [namespace] });
    // A watchdog restart resumes from the last resourceVersion: no relist, no error.
    expect(watch.counters).toMatchObject({ lists: 1, errors: 0, gone410: 0 });
  });

  it(
    'resumes after the API server restarts mid-stream and loses no change',
    { timeout: 240_000 },
    async () => {
      const kube = await privateApiserver();
      const kubeConfig = loadKubeConfig(kube.kubeconfigPath);
      const cluster = new TestCluster(kubeConfig);
      const namespace = await cluster.namespace('esw-restart');
      for (const [i, name] of ['web-a1b2c', 'web-d3e4f', 'web-g5h6i', 'web-j7k8l'].entries()) {
        await cluster.createSlice(namespace, name, {
          service: 'web',
          addresses: [`10.8.0.${i + 1}`],
        });
      }
      const scope = { namespaces: [namespace] };
      const mirror = new SliceMirror();
      const watch = startWatch(kubeConfig, mirror, {
        ...scope,
        backoffInitialMs: 100,
        backoffMaxMs: 1_000,
      });
      await waitForSynced(watch);
      await cluster.createSlice(namespace, 'api-m9n0p', {
        service: 'api',
        addresses: ['10.8.1.1'],
      });
      await cluster.expectMirrorToConverge(mirror, scope);

      // Changes right before the restart may or may not reach the watch before it breaks.
      await cluster.updateSlice(namespace, 'web-a1b2c', terminating);
      await cluster.deleteSlice(namespace, 'web-d3e4f');
      await kube.restartApiserver();
      await cluster.createSlice(namespace, 'api-q1r2s', {
        service: 'api',
        addresses: ['10.8.1.2'],
      });
      await cluster.updateSlice(namespace, 'web-g5h6i', terminating);
      await cluster.deleteSlice(namespace, 'api-m9n0p');

      await cluster.expectMirrorToConverge(mirror, scope, 60_000);
      expect([...mirror.slices.keys()].sort()).toEqual(
        ['web-a1b2c', 'web-g5h6i', 'web-j7k8l', 'api-q1r2s'].map((n) => `${namespace}/${n}`).sort(),
      );
      // While the API server was down the watch failed and backed off, then came back.
      expect(watch.counters.errors).toBeGreaterThanOrEqual(1);
      expect(watch.state).toBe('watching');
    },
  );

  it(
    'relists after a 410 Gone caused by etcd compaction and loses no change',
    { timeout: 240_000 },
    async () => {
      // Without the watch cache, the API server serves watches straight from etcd, so a watch
      // that resumes from a compacted revision gets etcd's answer: 410 Gone.
      const kube = await privateApiserver(['--watch-cache=false']);
      const gate = await NetworkGate.open(new URL(kube.url));
      onTestFinished(() => gate.close());
      const cluster = new TestCluster(loadKubeConfig(kube.kubeconfigPath));
      const namespace = await cluster.namespace('esw-compact');
      for (const [i, name] of ['web-a1b2c', 'web-d3e4f', 'web-g5h6i'].entries()) {
        await cluster.createSlice(namespace, name, {
          service: 'web',
          addresses: [`10.9.0.${i + 1}`],
        });
      }
      const scope = { namespaces: [namespace] };
      const mirror = new SliceMirror();
      const agentKubeConfig = throughServer(cluster.kubeConfig, gate.url);
      const watch = startWatch(agentKubeConfig, mirror, {
        ...scope,
        backoffInitialMs: 50,
        backoffMaxMs: 500,
      });
      await waitForSynced(watch);
      await cluster.updateSlice(namespace, 'web-a1b2c', terminating);
      await cluster.createSlice(namespace, 'api-j7k8l', {
        service: 'api',
        addresses: ['10.9.1.1'],
      });
      await cluster.expectMirrorToConverge(mirror, scope);
      expect(watch.counters).toMatchObject({ lists: 1, gone410: 0 });

      gate.cut();
      await waitFor(() => watch.counters.errors >= 1, {
        what: 'the watch to notice the partition',
      });
      await cluster.deleteSlice(namespace, 'web-d3e4f');
      await cluster.updateSlice(namespace, 'web-g5h6i', terminating);
      await cluster.createSlice(namespace, 'api-m9n0p', {
        service: 'api',
        addresses: ['10.9.1.2'],
      });
      await compactEtcd(kube.etcdUrl);
      gate.restore();

      await cluster.expectMirrorToConverge(mirror, scope);
      expect(mirror.slices.has(`${namespace}/web-d3e4f`)).toBe(false);
      expect(watch.counters.gone410).toBeGreaterThanOrEqual(1);
      expect(watch.counters.lists).toBeGreaterThanOrEqual(2);

      // And it watches on from the new list.
      await cluster.deleteSlice(namespace, 'api-j7k8l');
      await cluster.createSlice(namespace, 'web-p3q4r', {
        service: 'web',
        addresses: ['10.9.0.4'],
      });
      await cluster.expectMirrorToConverge(mirror, scope);
      expect([...mirror.slices.keys()].sort()).toEqual(
        ['web-a1b2c', 'web-g5h6i', 'api-m9n0p', 'web-p3q4r'].map((n) => `${namespace}/${n}`).sort(),
      );
      expect(watch.state).toBe('watching');
    },
  );
});

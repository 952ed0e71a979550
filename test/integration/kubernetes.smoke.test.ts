import { randomUUID } from 'node:crypto';
import { describe, it, expect, inject, onTestFinished } from 'vitest';
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  Watch,
  type V1EndpointSlice,
} from '@kubernetes/client-node';
import { waitFor } from '../env/wait-for.js';

interface SliceEvent {
  phase: string;
  slice: V1EndpointSlice;
}

function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  return kc;
}

/** A namespace for this test only; deleted when the test finishes. */
async function testNamespace(kc: KubeConfig): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  const name = `smoke-${randomUUID().slice(0, 8)}`;
  await core.createNamespace({ body: { metadata: { name } } });
  // No namespace controller runs, so the namespace stays Terminating; nothing reuses its name.
  onTestFinished(async () => {
    await core.deleteNamespace({ name });
  });
  return name;
}

interface SliceWatch {
  readonly events: SliceEvent[];
  /** Set when the watch stream ends, with the error if one ended it. */
  ended?: { error: unknown };
}

/** Lists the namespace's EndpointSlices, then watches from that list's resourceVersion. */
async function watchEndpointSlices(kc: KubeConfig, namespace: string): Promise<SliceWatch> {
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const list = await discovery.listNamespacedEndpointSlice({ namespace });
  const sliceWatch: SliceWatch = { events: [] };
  const abort = await new Watch(kc).watch(
    `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`,
    { resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true },
    (phase, slice) => sliceWatch.events.push({ phase, slice: slice as V1EndpointSlice }),
    (error: unknown) => (sliceWatch.ended = { error }),
  );
  onTestFinished(() => abort.abort());
  return sliceWatch;
}

describe('kube-apiserver test environment', () => {
  it('streams the creation, update and deletion of an EndpointSlice to a list-watch', async () => {
    const kc = kubeConfig();
    const namespace = await testNamespace(kc);
    const sliceWatch = await watchEndpointSlices(kc, namespace);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const name = 'web-x7k2p';
    const eventOf = (phase: string): Promise<V1EndpointSlice> =>
      waitFor(
        () => {
          if (sliceWatch.ended) throw new Error('watch ended', { cause: sliceWatch.ended.error });
          const event = sliceWatch.events.find(
            (e) => e.phase === phase && e.slice.metadata?.name === name,
          );
          return event?.slice;
        },
        { what: `${phase} event for EndpointSlice ${namespace}/${name}`, timeoutMs: 10_000 },
      );

    // Exactly what the EndpointSlice controller writes for a Service "web" with one ready pod.
    const created = await discovery.createNamespacedEndpointSlice({
      namespace,
      body: {
        metadata: {
          name,
          labels: {
            'kubernetes.io/service-name': 'web',
            'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
          },
        },
        addressType: 'IPv4',
        endpoints: [
          {
            addresses: ['10.1.2.3'],
            conditions: { ready: true, serving: true, terminating: false },
            zone: 'eu-west-1a',
          },
        ],
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      },
    });
    const added = await eventOf('ADDED');
    expect(added.metadata?.labels?.['kubernetes.io/service-name']).toBe('web');
    expect(added.endpoints).toEqual([
      {
        addresses: ['10.1.2.3'],
        conditions: { ready: true, serving: true, terminating: false },
        zone: 'eu-west-1a',
      },
    ]);
    expect(added.ports).toEqual([{ name: 'http', port: 8080, protocol: 'TCP' }]);

    const notReady = structuredClone(created);
    notReady.endpoints = [
      {
        addresses: ['10.1.2.3'],
        conditions: { ready: false, serving: false, terminating: true },
        zone: 'eu-west-1a',
      },
    ];
    await discovery.replaceNamespacedEndpointSlice({ name, namespace, body: notReady });
    const modified = await eventOf('MODIFIED');
    expect(modified.endpoints?.[0]?.conditions).toEqual({
      ready: false,
      serving: false,
      terminating: true,
    });

    await discovery.deleteNamespacedEndpointSlice({ name, namespace });
    const deleted = await eventOf('DELETED');
    expect(deleted.metadata?.uid).toBe(created.metadata?.uid);

    expect(sliceWatch.events.filter((e) => e.phase !== 'BOOKMARK').map((e) => e.phase)).toEqual([
      'ADDED',
      'MODIFIED',
      'DELETED',
    ]);
    expect(sliceWatch.ended).toBeUndefined();
  });
});

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import { freePort } from '../../env/free-port.js';
import { waitFor } from '../../env/wait-for.js';
import { endpointSlice, manyEndpointSlices } from '../../support/endpoint-slices.js';
import { TestHub } from '../../support/test-hub.js';

const root = new URL('../../../', import.meta.url).pathname;
const bundle = `${root}dist/bundle/tgfed-agent.mjs`;
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

beforeAll(() => {
  // The agent as it is deployed: the esbuild bundle of agent/main.ts.
  const built = spawnSync(process.execPath, ['scripts/bundle.mjs'], {
    cwd: root,
    encoding: 'utf8',
  });
  expect(built.status, built.stderr).toBe(0);
}, 60_000);

function runAgent(args: string[]) {
  const child = spawn(process.execPath, [bundle, ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  closers.push(() => {
    child.kill('SIGKILL');
    return exited;
  });
  return { child, exited, output: () => output };
}

describe('the bundled agent process', () => {
  it('syncs a cluster to the hub, reports ready, and flushes a pending change on SIGTERM before exiting 0', async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(inject('kubeconfigPath'));
    const namespace = `proc-${randomUUID().slice(0, 8)}`;
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    for (const body of manyEndpointSlices(namespace, 'web', 300, 100)) {
      await discovery.createNamespacedEndpointSlice({ namespace, body });
    }
    const hub = await TestHub.start({ heartbeatIntervalMs: 1_000 });
    closers.push(() => hub.stop());
    const healthPort = await freePort();
    const agent = runAgent([
      '--cluster-id=proc-test',
      `--hub-address=${hub.address}`,
      '--insecure',
      `--kubeconfig=${inject('kubeconfigPath')}`,
      `--namespaces=${namespace}`,
      `--health-address=127.0.0.1:${healthPort}`,
      // A long window: the last change is still pending when SIGTERM arrives.
      '--batch-window-ms=5000',
    ]);
    const held = () => hub.cluster('proc-test').get(`${namespace}/web`)?.endpoints.size ?? 0;
    await waitFor(() => held() === 300, { what: 'the initial sync', timeoutMs: 30_000 });
    const ready = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
    expect(ready.status).toBe(200);

    await discovery.createNamespacedEndpointSlice({
      namespace,
      body: endpointSlice({
        namespace,
        service: 'web',
        name: 'web-late',
        endpoints: [{ ip: '10.99.0.1' }],
      }),
    });
    await waitFor(
      async () => {
        const body = (await (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).json()) as {
          endpoints: number;
        };
        return body.endpoints === 301;
      },
      { what: 'the agent to see the new endpoint' },
    );
    expect(held()).toBe(300);
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(held()).toBe(301);
    expect(agent.output()).toContain('flushed every pending change');
  });

  it('refuses a bad setting with exit code 2 and a message naming it', async () => {
    const agent = runAgent([
      '--cluster-id=Not_A_Label',
      '--hub-address=hub:1',
      '--insecure',
      '--batch-window-ms=0',
    ]);
    expect(await agent.exited).toBe(2);
    expect(agent.output()).toContain('clusterId (--cluster-id)');
    expect(agent.output()).toContain('batchWindowMs (--batch-window-ms)');
  });
});

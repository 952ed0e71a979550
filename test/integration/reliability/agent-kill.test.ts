import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { freePort } from '../../env/free-port.js';
import { startManagedProcess, type ManagedProcess } from '../../env/managed-process.js';
import { waitFor } from '../../env/wait-for.js';
import { alertKeys, listAlerts } from '../../support/admin-alerts.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { agentTokenOf } from '../../support/test-hub-settings.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// The real agent as a process (agent/main.ts) on the test kube-apiserver, killed with SIGKILL
// in the middle of a scale-up and started again while the cluster keeps changing.

const repo = resolve(new URL('../../..', import.meta.url).pathname);
const namespace = `rel-akill-${randomUUID().slice(0, 8)}`;

let kc: KubeConfig;
let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let fed: TestFederation;
let tokenFile: string;
const agents: ManagedProcess[] = [];

function webSlice(hosts: readonly number[]) {
  return endpointSlice({
    namespace,
    service: 'web',
    name: 'web-1',
    endpoints: hosts.map((h) => ({ ip: webIp(1, h) })),
    ports: [{ name: 'http', port: 8080 }],
  });
}

function expected(hosts: readonly number[]): string[] {
  return hosts.map((h) => `${webIp(1, h)}:8080`).sort();
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

async function startAgent(): Promise<ManagedProcess> {
  const healthPort = await freePort();
  const agent = await startManagedProcess({
    name: 'rel-agent',
    command: process.execPath,
    args: [
      '--import',
      'tsx',
      join(repo, 'agent/main.ts'),
      '--cluster-id=east',
      `--hub-address=127.0.0.1:${fed.hub.agentPort}`,
      '--insecure',
      `--token-file=${tokenFile}`,
      `--kubeconfig=${inject('kubeconfigPath')}`,
      `--namespaces=${namespace}`,
      `--health-address=127.0.0.1:${healthPort}`,
      '--batch-window-ms=10',
      '--log-level=warn',
    ],
    cwd: repo,
    env: { ...process.env, NODE_OPTIONS: '' },
    ready: async () => {
      try {
        return (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).ok;
      } catch {
        return false;
      }
    },
  });
  agents.push(agent);
  return agent;
}

beforeAll(async () => {
  kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  simServer = await startElbv2Simulator({ simulator: sim });
  fed = new TestFederation({
    name: 'rel-akill',
    redisUrl: inject('redisUrl'),
    clusters: [{ id: 'east', block: 1 }],
    hubSettings: { disconnectedGraceMs: 60_000 },
    workerSettings: { driftIntervalMs: 600_000 },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(simServer.url, 'AKIDAGENTKILL'));
  tokenFile = join(fed.dir, 'agent-token');
  writeFileSync(tokenFile, agentTokenOf('east'));
}, 60_000);

afterAll(async () => {
  for (const agent of agents) await agent.stop(2_000).catch(() => undefined);
  await fed?.close();
  await simServer?.close();
  await kc
    ?.makeApiClient(CoreV1Api)
    .deleteNamespace({ name: namespace })
    .catch(() => undefined);
});

describe('An agent process killed with SIGKILL mid-stream', () => {
  it('keeps its targets while it is gone, and after a restart the group holds exactly what the cluster has', async () => {
    const arn = sim.createTargetGroup({
      account: ACCOUNT,
      region: REGION,
      name: 'rel-akill',
      port: 8080,
    });
    await fed.applyBinding(
      binding({
        name: 'agent-kill',
        services: { namespace, name: 'web' },
        clusters: { names: ['east'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    await discovery.createNamespacedEndpointSlice({ namespace, body: webSlice(range(1, 10)) });
    const agent = await startAgent();
    await waitFor(
      () => JSON.stringify(sim.registered(arn)) === JSON.stringify(expected(range(1, 10))),
      {
        what: 'the first ten targets',
        timeoutMs: 30_000,
      },
    );

    // Scale up one pod at a time; the agent is killed in the middle of it.
    const write = async (hosts: number[]) => {
      const current = await discovery.readNamespacedEndpointSlice({ namespace, name: 'web-1' });
      const body = webSlice(hosts);
      body.metadata = { ...body.metadata, resourceVersion: current.metadata?.resourceVersion };
      await discovery.replaceNamespacedEndpointSlice({ namespace, name: 'web-1', body });
    };
    for (let n = 11; n <= 20; n++) {
      await write(range(1, n));
      if (n === 15) await agent.kill();
    }
    // While it is gone the cluster changes more: five old pods stop.
    await write(range(6, 25));
    await waitFor(
      async () =>
        alertKeys(await listAlerts(fed.admin, fed.adminToken)).includes(
          'TgfedClusterDisconnected{cluster=east}',
        ),
      { what: 'the disconnection alert', timeoutMs: 15_000 },
    );
    // Fail-static: what had arrived before the kill stays, nothing is withdrawn, and nothing the
    // dead agent never saw appears.
    const whileGone = sim.registered(arn);
    expect(sim.deregistrations.get(arn)).toBeUndefined();
    expect(expected(range(1, 10)).filter((t) => !whileGone.includes(t))).toEqual([]);
    expect(whileGone.filter((t) => !expected(range(1, 15)).includes(t))).toEqual([]);

    await startAgent();
    await waitFor(
      () => JSON.stringify(sim.registered(arn)) === JSON.stringify(expected(range(6, 25))),
      {
        what: 'the group to hold exactly the cluster’s pods after the restart',
        timeoutMs: 30_000,
      },
    );
    expect(Object.fromEntries(sim.deregistrations.get(arn) ?? [])).toEqual(
      Object.fromEntries(expected(range(1, 5)).map((t) => [t, 1])),
    );
    expect(Object.fromEntries(sim.registrations.get(arn) ?? [])).toEqual(
      Object.fromEntries(expected(range(1, 25)).map((t) => [t, 1])),
    );
    await waitFor(
      async () =>
        alertKeys(await listAlerts(fed.admin, fed.adminToken)).every(
          (a) => !a.includes('cluster=east'),
        ),
      { what: 'the cluster alerts to clear', timeoutMs: 10_000 },
    );
  });
});

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import { Agent } from '../../../agent/agent.js';
import { agentOptionsSchema } from '../../../agent/config/agent-options.js';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { loadConfig } from '../../../shared/config/config-loader.js';
import { startKubeApiserver, type KubeApiserver } from '../../env/kube-apiserver.js';
import { loadTestenvManifest } from '../../env/testenv-manifest.js';
import { waitFor } from '../../env/wait-for.js';
import { alertKeys, listAlerts } from '../../support/admin-alerts.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { agentTokenOf } from '../../support/test-hub-settings.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// A real agent watching its own kube-apiserver (private: the test kills it), feeding a real hub,
// worker and the ELBv2 simulator. The API server is gone for a while, then comes back.

let kube: KubeApiserver;
let kc: KubeConfig;
let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let fed: TestFederation;
let agent: Agent;
let arn: string;

function webSlice(hosts: readonly number[]) {
  return endpointSlice({
    namespace: 'shop',
    service: 'web',
    name: 'web-1',
    endpoints: hosts.map((h) => ({ ip: webIp(1, h) })),
    ports: [{ name: 'http', port: 8080 }],
  });
}

function expected(hosts: readonly number[]): string[] {
  return hosts.map((h) => `${webIp(1, h)}:8080`).sort();
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

beforeAll(async () => {
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  [kube, simServer] = await Promise.all([
    startKubeApiserver(loadTestenvManifest()),
    startElbv2Simulator({ simulator: sim }),
  ]);
  kc = new KubeConfig();
  kc.loadFromFile(kube.kubeconfigPath);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'shop' } } });
  fed = new TestFederation({
    name: 'rel-kube',
    redisUrl: inject('redisUrl'),
    clusters: [{ id: 'east', block: 1 }],
    hubSettings: { disconnectedGraceMs: 60_000 },
    workerSettings: { driftIntervalMs: 600_000 },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(simServer.url, 'AKIDKUBEOUTAGE'));
  const tokenFile = join(fed.dir, 'agent-token');
  writeFileSync(tokenFile, agentTokenOf('east'));
  agent = new Agent(
    loadConfig(agentOptionsSchema, {
      env: {},
      flags: {
        clusterId: 'east',
        hubAddress: `127.0.0.1:${fed.hub.agentPort}`,
        insecure: true,
        tokenFile,
        namespaces: ['shop'],
        healthAddress: '127.0.0.1:0',
        batchWindowMs: 10,
        reconnectInitialMs: 20,
        reconnectMaxMs: 500,
        logLevel: 'silent',
      },
    }),
    { kubeConfig: kc, version: 'test' },
  );
  await agent.start();
}, 120_000);

afterAll(async () => {
  await agent?.shutdown(0).catch(() => undefined);
  await fed?.close();
  await simServer?.close();
  await kube?.stop();
});

describe('The kube-apiserver stopped for a while', () => {
  it('keeps every endpoint while it is gone and follows changes once it is back', async () => {
    arn = sim.createTargetGroup({ account: ACCOUNT, region: REGION, name: 'rel-kube', port: 8080 });
    await fed.applyBinding(
      binding({
        name: 'kube-outage',
        clusters: { names: ['east'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    await discovery.createNamespacedEndpointSlice({
      namespace: 'shop',
      body: webSlice(range(1, 10)),
    });
    await waitFor(
      () => JSON.stringify(sim.registered(arn)) === JSON.stringify(expected(range(1, 10))),
      {
        what: 'the first ten targets',
        timeoutMs: 20_000,
      },
    );

    const eastAlerts = async () =>
      alertKeys(await listAlerts(fed.admin, fed.adminToken)).filter((a) =>
        a.includes('cluster=east'),
      );
    // Synced and healthy first (the hub's view of a fresh SYNCED lags a moment).
    await waitFor(async () => (await eastAlerts()).length === 0, {
      what: 'no alert about east before the outage',
      timeoutMs: 10_000,
    });
    const connects = agent.publisher.stats.connects;
    await kube.apiserver.kill();
    // Gone for a while: longer than several hub heartbeats and reconnect attempts of the watch.
    const goneUntil = Date.now() + 5_000;
    let samples = 0;
    const problems: string[] = [];
    while (Date.now() < goneUntil) {
      samples++;
      if (JSON.stringify(sim.registered(arn)) !== JSON.stringify(expected(range(1, 10)))) {
        problems.push(`targets ${sim.registered(arn).length}`);
      }
      if (agent.sets.endpointCount !== 10) problems.push(`agent holds ${agent.sets.endpointCount}`);
      const alerts = await eastAlerts();
      if (alerts.length > 0) problems.push(alerts.join(' '));
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(samples).toBeGreaterThan(10);
    expect(problems).toEqual([]);
    expect(sim.deregistrations.get(arn)).toBeUndefined();
    // The agent kept its stream to the hub: nothing to resync.
    expect(agent.publisher.stats.connects).toBe(connects);
    expect(agent.publisher.state).toBe('streaming');

    // Back (same etcd, same port): a change made now reaches the group.
    await kube.restartApiserver();
    const current = await discovery.readNamespacedEndpointSlice({
      namespace: 'shop',
      name: 'web-1',
    });
    const changed = webSlice([...range(1, 8), 20, 21]);
    changed.metadata = { ...changed.metadata, resourceVersion: current.metadata?.resourceVersion };
    await discovery.replaceNamespacedEndpointSlice({
      namespace: 'shop',
      name: 'web-1',
      body: changed,
    });
    await waitFor(
      () =>
        JSON.stringify(sim.registered(arn)) === JSON.stringify(expected([...range(1, 8), 20, 21])),
      { what: 'the change made after the API server came back', timeoutMs: 30_000 },
    );
    expect(Object.fromEntries(sim.deregistrations.get(arn) ?? [])).toEqual(
      Object.fromEntries(expected([9, 10]).map((t) => [t, 1])),
    );
    expect(Object.fromEntries(sim.registrations.get(arn) ?? [])).toEqual(
      Object.fromEntries(expected([...range(1, 10), 20, 21]).map((t) => [t, 1])),
    );
  });
});

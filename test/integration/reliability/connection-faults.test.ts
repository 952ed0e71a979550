import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { ClusterEndpointStore, StateKeys } from '../../../hub/state/index.js';
import { waitFor } from '../../env/wait-for.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { FaultRelay } from '../../support/fault-relay.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import type { TestAgent } from '../../support/test-agent.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// The east agent reaches the hub through a relay that cuts (FIN), resets (RST), delays and
// holds its connection while the agent keeps changing; west connects directly. Every pod
// appears once and goes once, so a lost change leaves a wrong final state and a replayed one
// registers or deregisters a target twice.

const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];

let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let fed: TestFederation;
let relay: FaultRelay;
let east: TestAgent;
const hosts = new Map<string, number[]>();

function announce(clusterId: string, list: number[]): void {
  hosts.set(clusterId, list);
  fed.setEndpoints(clusterId, list);
}

function wanted(): string[] {
  return clusters
    .flatMap((c) => (hosts.get(c.id) ?? []).map((h) => `${webIp(c.block, h)}:8080`))
    .sort();
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

const streaming = (): boolean => east.publisher.state === 'streaming';

beforeAll(async () => {
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  simServer = await startElbv2Simulator({ simulator: sim });
  fed = new TestFederation({
    name: 'rel-conn',
    redisUrl: inject('redisUrl'),
    clusters,
    hubSettings: { disconnectedGraceMs: 60_000 },
    workerSettings: { driftIntervalMs: 600_000 },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(simServer.url, 'AKIDCONNFAULTS'));
  relay = new FaultRelay([fed.hub.agentPort]);
  east = fed.agent('east', await relay.listen());
});

afterAll(async () => {
  await fed?.close();
  await relay?.close();
  await simServer?.close();
});

describe('The agent–hub connection cut, reset, delayed and held', () => {
  it('loses no change and applies none twice', async () => {
    const arn = sim.createTargetGroup({
      account: ACCOUNT,
      region: REGION,
      name: 'rel-conn',
      port: 8080,
    });
    await fed.applyBinding(
      binding({
        name: 'conn-faults',
        clusters: { names: ['east', 'west'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    announce('east', range(1, 20));
    announce('west', range(1, 20));
    await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(wanted()), {
      what: 'the first targets',
      timeoutMs: 20_000,
    });

    // Churn: every 25 ms a new east pod (100, 101, …) starts and the one 12 steps older stops.
    let step = 0;
    const churn = setInterval(() => {
      step++;
      announce('east', [...range(1, 20), ...range(100 + Math.max(0, step - 12), 100 + step)]);
    }, 25);
    const faults: string[] = [];
    try {
      const fault = async (name: string, inject: () => Promise<void> | void) => {
        await waitFor(streaming, { what: `the stream back before ${name}`, timeoutMs: 15_000 });
        await new Promise((r) => setTimeout(r, 300));
        await inject();
        faults.push(name);
      };
      await fault('cut', () => relay.cut());
      await fault('reset', () => relay.reset());
      await fault('delay', async () => {
        relay.delayMs = 400;
        await new Promise((r) => setTimeout(r, 1_500));
        relay.delayMs = 0;
      });
      await fault('hold', async () => {
        relay.hold();
        await new Promise((r) => setTimeout(r, 1_000));
        relay.release();
      });
      await fault('reset again', () => relay.reset());
      await waitFor(streaming, { what: 'the stream back after the faults', timeoutMs: 15_000 });
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      clearInterval(churn);
    }
    expect(faults).toEqual(['cut', 'reset', 'delay', 'hold', 'reset again']);
    expect(step).toBeGreaterThan(50);

    await waitFor(
      () => streaming() && east.publisher.inFlight === 0 && east.publisher.pendingServices === 0,
      { what: 'every east change acknowledged', timeoutMs: 15_000 },
    );
    await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(wanted()), {
      what: 'the group to hold exactly what the agents announce',
      timeoutMs: 20_000,
    });
    // Redis holds exactly the agent's endpoints.
    const store = new ClusterEndpointStore(fed.redis, new StateKeys(fed.keyPrefix));
    const stored = [...(await store.loadCluster('east')).values()]
      .flatMap((s) => [...s.endpoints.keys()])
      .sort();
    expect(stored).toEqual((hosts.get('east') ?? []).map((h) => webIp(1, h)).sort());
    // Every pod appeared once: nothing registered or deregistered twice.
    const twice = (counts: Map<string, number> | undefined) =>
      [...(counts ?? [])].filter(([, n]) => n > 1).map(([t]) => t);
    expect(twice(sim.registrations.get(arn))).toEqual([]);
    expect(twice(sim.deregistrations.get(arn))).toEqual([]);
    // The stable pods and west were never touched.
    const stable = [
      ...range(1, 20).map((h) => `${webIp(1, h)}:8080`),
      ...range(1, 20).map((h) => `${webIp(2, h)}:8080`),
    ];
    expect(stable.filter((t) => sim.deregistrations.get(arn)?.has(t))).toEqual([]);
    expect(east.publisher.stats.connects).toBeGreaterThanOrEqual(5);
    expect(fed.agents.get('west')?.publisher.stats.connects).toBe(1);
  });
});

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { waitFor } from '../../env/wait-for.js';
import { alertKeys, listAlerts } from '../../support/admin-alerts.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { FaultRelay } from '../../support/fault-relay.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// An agent that dies without a goodbye: its connection is cut under it and it never comes back
// until the test lets it. The default stale policy applies (withdraw only what ELB reports
// unhealthy); the grace period is short so the test sees both sides of it.

const GRACE_MS = 4_000;
const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];

let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let fed: TestFederation;
let eastRelay: FaultRelay;

function targets(block: number, hosts: readonly number[]): string[] {
  return hosts.map((h) => `${webIp(block, h)}:8080`);
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

async function clusterAlerts(): Promise<string[]> {
  return alertKeys(await listAlerts(fed.admin, fed.adminToken)).filter((a) => /cluster=/.test(a));
}

/**
 * A group fed by east alone, filled; then east's connection is cut (held) and the reconcile its
 * stream end brings is awaited. Returns what the tests compare after east comes back.
 */
async function cutEastFromItsOwnGroup(name: string) {
  const arn = sim.createTargetGroup({
    account: ACCOUNT,
    region: REGION,
    name: `rel-agent-${name}`,
    port: 8080,
  });
  await fed.applyBinding(
    binding({
      name: `agent-${name}`,
      clusters: { names: ['east'], labels: undefined },
      target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
    }),
  );
  const east = targets(1, range(1, 10)).sort();
  await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(east), {
    what: 'east’s targets in the new group',
    timeoutMs: 20_000,
  });
  const lastReconcile = async () => (await fed.status(arn))?.lastReconcileUnixMs ?? 0;
  const welcomes = fed.agent('east').publisher.stats.welcomes;
  const cutAt = Date.now();
  eastRelay.hold();
  await waitFor(async () => (await lastReconcile()) > cutAt, {
    what: 'the reconcile of the ended stream',
    timeoutMs: GRACE_MS - 1_000,
  });
  return { arn, east, lastReconcile, welcomes };
}

beforeAll(async () => {
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  simServer = await startElbv2Simulator({ simulator: sim });
  fed = new TestFederation({
    name: 'rel-agent',
    redisUrl: inject('redisUrl'),
    clusters,
    hubSettings: { disconnectedGraceMs: GRACE_MS },
    workerSettings: { driftIntervalMs: 600_000 },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(simServer.url, 'AKIDAGENTLOSS'));
  eastRelay = new FaultRelay([fed.hub.agentPort]);
  fed.agent('east', await eastRelay.listen());
});

afterAll(async () => {
  await fed?.close();
  await eastRelay?.close();
  await simServer?.close();
});

describe('An agent lost mid-stream', () => {
  it('keeps its targets through the grace period, then withdraws only the ELB-unhealthy ones, and alerts', async () => {
    const arn = sim.createTargetGroup({
      account: ACCOUNT,
      region: REGION,
      name: 'rel-agent',
      port: 8080,
    });
    await fed.applyBinding(
      binding({
        name: 'agent-loss',
        clusters: { names: ['east', 'west'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    fed.setEndpoints('east', range(1, 10));
    fed.setEndpoints('west', range(1, 10));
    const everything = [...targets(1, range(1, 10)), ...targets(2, range(1, 10))].sort();
    await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(everything), {
      what: 'both clusters’ targets',
      timeoutMs: 20_000,
    });
    // Both synced and healthy first (the hub's view of a fresh SYNCED lags a moment).
    await waitFor(async () => (await clusterAlerts()).length === 0, {
      what: 'no cluster alert before the loss',
      timeoutMs: 10_000,
    });
    // ELB fails the health checks of two east targets and one west target.
    for (const h of [3, 4]) sim.setTargetHealth(arn, webIp(1, h), 8080, 'unhealthy');
    sim.setTargetHealth(arn, webIp(2, 5), 8080, 'unhealthy');

    // The east agent dies: its connection is cut and it does not come back.
    eastRelay.hold();
    const lostAt = Date.now();

    // Within the grace period: the disconnection alert fires and every target stays.
    await waitFor(
      async () => (await clusterAlerts()).includes('TgfedClusterDisconnected{cluster=east}'),
      { what: 'the disconnection alert', timeoutMs: GRACE_MS - 1_000 },
    );
    let samples = 0;
    const shrunk: string[][] = [];
    while (Date.now() < lostAt + GRACE_MS - 300) {
      const now = sim.registered(arn);
      samples++;
      if (JSON.stringify(now) !== JSON.stringify(everything)) shrunk.push(now);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(samples).toBeGreaterThan(10);
    expect(shrunk).toEqual([]);

    // After it: only east's unhealthy targets go; west's unhealthy target is not east's to lose.
    const kept = everything.filter((t) => !targets(1, [3, 4]).includes(t));
    await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(kept), {
      what: 'east’s unhealthy targets to be withdrawn',
      timeoutMs: 15_000,
    });
    expect(Date.now() - lostAt).toBeGreaterThanOrEqual(GRACE_MS);
    await waitFor(async () => (await clusterAlerts()).includes('TgfedClusterStale{cluster=east}'), {
      what: 'the stale alert',
      timeoutMs: 5_000,
    });
    expect((await clusterAlerts()).filter((a) => a.includes('cluster=west'))).toEqual([]);
    // A fresh reconcile that describes the group again withdraws nothing more.
    const triggeredAt = Date.now();
    await fed.triggerReconcile(arn, true);
    await waitFor(async () => ((await fed.status(arn))?.lastReconcileUnixMs ?? 0) > triggeredAt, {
      what: 'a fresh reconcile',
      timeoutMs: 10_000,
    });
    expect(sim.registered(arn)).toEqual(kept);
    expect(Object.fromEntries(sim.deregistrations.get(arn) ?? [])).toEqual(
      Object.fromEntries(targets(1, [3, 4]).map((t) => [t, 1])),
    );

    // The agent comes back: it resyncs, its targets return and the alerts clear.
    eastRelay.release();
    await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(everything), {
      what: 'east’s targets after it came back',
      timeoutMs: 20_000,
    });
    await waitFor(async () => (await clusterAlerts()).length === 0, {
      what: 'the cluster alerts to clear',
      timeoutMs: 10_000,
    });
  });
  it('reconciles a cluster’s groups when its stream ends, not again when it returns within the grace period', async () => {
    // The stream ends: the group is reconciled (a hub may have died between writing a batch
    // and enqueueing its reconcile).
    const { arn, east, lastReconcile, welcomes } = await cutEastFromItsOwnGroup('return');
    const afterEnd = await lastReconcile();

    // It comes back within the grace period, resyncs and finds nothing to send: no reconcile.
    eastRelay.release();
    await waitFor(() => fed.agent('east').publisher.stats.welcomes > welcomes, {
      what: 'east to be welcomed back',
      timeoutMs: 10_000,
    });
    await waitFor(() => fed.agent('east').publisher.state === 'streaming', {
      what: 'east to stream again',
      timeoutMs: 10_000,
    });
    // Long enough for the workers to read the status (every second) and a debounce window.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await lastReconcile()).toBe(afterEnd);
    expect(sim.registered(arn)).toEqual(east);
  });
  it('reconciles the return when a worker started while the cluster was away', async () => {
    // That worker never saw the stream end: a batch a dying hub wrote without enqueueing its
    // reconcile could be left to no one, so it reconciles the return instead.
    const { arn, east, lastReconcile, welcomes } = await cutEastFromItsOwnGroup('unseen');
    await fed.startWorker(simulatorWorkerDeps(simServer.url, 'AKIDAGENTLOSS'));
    const afterEnd = await lastReconcile();

    eastRelay.release();
    await waitFor(() => fed.agent('east').publisher.stats.welcomes > welcomes, {
      what: 'east to be welcomed back',
      timeoutMs: 10_000,
    });
    await waitFor(async () => (await lastReconcile()) > afterEnd, {
      what: 'the new worker to reconcile the return',
      timeoutMs: 5_000,
    });
    expect(sim.registered(arn)).toEqual(east);
  });
});

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { ReconcileOutcome } from '../../../shared/index.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { waitFor } from '../../env/wait-for.js';
import { alertKeys, listAlerts } from '../../support/admin-alerts.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// An agent that suddenly reports no endpoints at all for a service (a broken selector, an
// emptied namespace): the mass-deregistration guard holds the removal and alerts; the healthy
// fleet stays registered until the endpoints come back or an operator releases it.

const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];

let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let fed: TestFederation;

function targets(block: number, hosts: readonly number[]): string[] {
  return hosts.map((h) => `${webIp(block, h)}:8080`);
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

beforeAll(async () => {
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  simServer = await startElbv2Simulator({ simulator: sim });
  fed = new TestFederation({
    name: 'rel-guard',
    redisUrl: inject('redisUrl'),
    clusters,
    workerSettings: { driftIntervalMs: 600_000 },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(simServer.url, 'AKIDGUARD'));
});

afterAll(async () => {
  await fed?.close();
  await simServer?.close();
});

describe('An agent that suddenly reports zero endpoints', () => {
  it('trips the mass-deregistration guard: nothing is removed, TgfedDeregistrationHeld fires, and it clears when the endpoints return', async () => {
    const arn = sim.createTargetGroup({
      account: ACCOUNT,
      region: REGION,
      name: 'rel-guard',
      port: 8080,
    });
    await fed.applyBinding(
      binding({
        name: 'guard',
        clusters: { names: ['east', 'west'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    fed.setEndpoints('east', range(1, 20));
    fed.setEndpoints('west', range(1, 4));
    const everything = [...targets(1, range(1, 20)), ...targets(2, range(1, 4))].sort();
    await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(everything), {
      what: 'every target',
      timeoutMs: 20_000,
    });

    // East's slice disappears: the service has no endpoints at all.
    fed
      .agent('east')
      .delete(endpointSlice({ namespace: 'shop', service: 'web', name: 'web-1', endpoints: [] }));
    const held = await waitFor(async () => (await fed.status(arn))?.heldOperations[0], {
      what: 'the guard to hold the removal',
      timeoutMs: 20_000,
    });
    expect(held).toMatchObject({ deregistrations: 20, targetsBefore: 24 });
    const alert = `TgfedDeregistrationHeld{held_operation=${held.id},target_group=${arn}}`;
    await waitFor(
      async () => alertKeys(await listAlerts(fed.admin, fed.adminToken)).includes(alert),
      {
        what: 'the held-deregistration alert',
        timeoutMs: 10_000,
      },
    );
    expect(sim.registered(arn)).toEqual(everything);
    expect(sim.deregistrations.get(arn)).toBeUndefined();
    expect((await fed.status(arn))?.lastOutcome).toBe(ReconcileOutcome.RECONCILE_OUTCOME_HELD);

    // West goes on changing meanwhile: its new pod is registered although east's removal is held.
    fed.setEndpoints('west', range(1, 5));
    await waitFor(() => sim.registered(arn).includes(`${webIp(2, 5)}:8080`), {
      what: 'west’s new pod while east’s removal is held',
      timeoutMs: 20_000,
    });
    expect(sim.deregistrations.get(arn)).toBeUndefined();

    // The endpoints come back: nothing was ever removed, the hold and the alert go.
    fed.setEndpoints('east', range(1, 20));
    await waitFor(async () => (await fed.status(arn))?.heldOperations.length === 0, {
      what: 'the hold to end once the endpoints are back',
      timeoutMs: 20_000,
    });
    await waitFor(
      async () => !alertKeys(await listAlerts(fed.admin, fed.adminToken)).includes(alert),
      { what: 'the alert to clear', timeoutMs: 10_000 },
    );
    expect(sim.registered(arn)).toEqual([...everything, `${webIp(2, 5)}:8080`].sort());
    expect(sim.deregistrations.get(arn)).toBeUndefined();
  });
});

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { AlertSeverity, type Alert, type ListAlertsResponse } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { bearer } from '../../support/test-hub-settings.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// ListAlerts of a real hub, fed by test agents over the real protocol, with a real worker on
// tgfed's ELBv2 simulator and the test environment's Redis: the hub's own evaluation of the
// conditions the Prometheus rules watch.

const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
  { id: 'south', block: 3 },
];
const graceMs = 3_000;

let sim: Elbv2SimulatorServer;
let fed: TestFederation;
let groupCount = 0;

function newGroup(capacity?: number): string {
  groupCount++;
  return sim.simulator.createTargetGroup({
    account: ACCOUNT,
    region: REGION,
    name: `alerts-web-${groupCount}`,
    port: 8080,
    ...(capacity === undefined ? {} : { capacity }),
  });
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

function listAlerts(): Promise<Alert[]> {
  return new Promise((resolve, reject) => {
    fed.admin.listAlerts({}, bearer(fed.adminToken), (err, res: ListAlertsResponse) =>
      err ? reject(err) : resolve(res.alerts),
    );
  });
}

/** The firing alert of that name whose labels include `labels`, if any. */
async function firing(name: string, labels: Record<string, string>): Promise<Alert | undefined> {
  return (await listAlerts()).find(
    (a) => a.name === name && Object.entries(labels).every(([k, v]) => a.labels[k] === v),
  );
}

/** Names of the alerts that concern one cluster. */
async function clusterAlerts(clusterId: string): Promise<string[]> {
  return (await listAlerts()).filter((a) => a.labels['cluster'] === clusterId).map((a) => a.name);
}

async function registered(arn: string, want: string[]): Promise<void> {
  await waitFor(
    () =>
      JSON.stringify(
        sim.simulator
          .targets(arn)
          .filter((t) => t.state !== 'draining')
          .map((t) => `${t.id}:${t.port}`)
          .sort(),
      ) === JSON.stringify([...want].sort()),
    { what: `the targets of ${arn}`, timeoutMs: 20_000 },
  );
}

beforeAll(async () => {
  sim = await startElbv2Simulator({ rateLimits: false, deregistrationDelayMs: 300 });
  fed = new TestFederation({
    name: 'alerts',
    redisUrl: inject('redisUrl'),
    clusters,
    hubSettings: { disconnectedGraceMs: graceMs },
    workerSettings: { driftIntervalMs: 60_000, guardMinTargets: 5 },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(sim.url));
});

afterAll(async () => {
  await fed?.close();
  await sim?.close();
});

describe('ListAlerts', () => {
  it('reports a cluster disconnected, then stale after the grace period, and nothing once it is back', async () => {
    // Cold start: until its agent resyncs, the cluster holds deregistrations back.
    expect(await clusterAlerts('east')).toEqual(
      expect.arrayContaining(['TgfedClusterDisconnected', 'TgfedRecoveryInProgress']),
    );
    fed.setEndpoints('east', range(1, 3));
    await waitFor(async () => (await clusterAlerts('east')).length === 0, {
      what: 'east to connect and resync without alerts',
    });

    const closedAtMs = Date.now();
    await fed.agent('east').publisher.close();
    fed.agents.delete('east');
    const disconnected = await waitFor(
      () => firing('TgfedClusterDisconnected', { cluster: 'east' }),
      { what: 'TgfedClusterDisconnected for east' },
    );
    expect(disconnected.severity).toBe(AlertSeverity.ALERT_SEVERITY_WARNING);
    expect(disconnected.labels).toEqual({ cluster: 'east' });
    expect(disconnected.summary).toContain('east');
    // Last heard from around the close (heartbeats every 500 ms).
    expect(disconnected.firingSinceUnixMs).toBeGreaterThan(closedAtMs - 2_000);
    expect(disconnected.firingSinceUnixMs).toBeLessThanOrEqual(Date.now());

    const stale = await waitFor(() => firing('TgfedClusterStale', { cluster: 'east' }), {
      what: 'TgfedClusterStale for east',
      timeoutMs: graceMs + 10_000,
    });
    expect(stale.severity).toBe(AlertSeverity.ALERT_SEVERITY_CRITICAL);
    expect(stale.firingSinceUnixMs).toBe(disconnected.firingSinceUnixMs + graceMs);
    expect(await clusterAlerts('east')).toEqual(['TgfedClusterStale']);

    fed.setEndpoints('east', range(1, 3));
    await waitFor(async () => (await clusterAlerts('east')).length === 0, {
      what: 'the alerts of east to clear after it reconnects',
    });
  });

  it('reports a deregistration held by the guard until an operator releases it', async () => {
    const arn = newGroup();
    await fed.applyBinding(
      binding({
        name: 'alerts-guarded',
        clusters: { names: ['west'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    fed.setEndpoints('west', range(1, 10));
    await registered(
      arn,
      range(1, 10).map((h) => `${webIp(2, h)}:8080`),
    );
    expect(await firing('TgfedDeregistrationHeld', { target_group: arn })).toBeUndefined();

    // The agent drops eight of ten endpoints: more than the guard's share.
    fed.setEndpoints('west', [1, 2]);
    const held = await waitFor(() => firing('TgfedDeregistrationHeld', { target_group: arn }), {
      what: 'TgfedDeregistrationHeld',
      timeoutMs: 20_000,
    });
    expect(held.severity).toBe(AlertSeverity.ALERT_SEVERITY_CRITICAL);
    expect(held.summary).toContain('would remove 8 of 10 targets');
    const [operation] = (await fed.status(arn))?.heldOperations ?? [];
    expect(operation).toBeDefined();
    expect(held.labels).toEqual({ target_group: arn, held_operation: operation?.id });
    expect(held.firingSinceUnixMs).toBe(operation?.heldSinceUnixMs);

    await fed.release(operation?.id ?? '');
    await registered(
      arn,
      [1, 2].map((h) => `${webIp(2, h)}:8080`),
    );
    await waitFor(
      async () => (await firing('TgfedDeregistrationHeld', { target_group: arn })) === undefined,
      { what: 'the held alert to clear after the release' },
    );
  });

  it('reports a group that is full while targets wait for room', async () => {
    const arn = newGroup(4);
    await fed.applyBinding(
      binding({
        name: 'alerts-full',
        clusters: { names: ['south'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn, capacity: 4 }) },
      }),
    );
    fed.setEndpoints('south', range(1, 3));
    await registered(
      arn,
      range(1, 3).map((h) => `${webIp(3, h)}:8080`),
    );
    // 3 of 4: 75%, below the 90% of "near capacity".
    expect((await listAlerts()).filter((a) => a.labels['target_group'] === arn)).toEqual([]);

    fed.setEndpoints('south', range(1, 6));
    const full = await waitFor(() => firing('TgfedTargetGroupAtCapacity', { target_group: arn }), {
      what: 'TgfedTargetGroupAtCapacity',
      timeoutMs: 20_000,
    });
    expect(full.severity).toBe(AlertSeverity.ALERT_SEVERITY_CRITICAL);
    expect(full.summary).toContain('full');

    fed.setEndpoints('south', range(1, 2));
    await waitFor(
      async () => (await listAlerts()).filter((a) => a.labels['target_group'] === arn).length === 0,
      { what: 'the capacity alert to clear', timeoutMs: 20_000 },
    );
  });
});

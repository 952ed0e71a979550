import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { StateKeys } from '../../../hub/state/index.js';
import { waitFor } from '../../env/wait-for.js';
import { alertKeys, listAlerts } from '../../support/admin-alerts.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { FaultRelay } from '../../support/fault-relay.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import { RestartableRedis } from '../../support/restartable-redis.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// A private redis-server (append-only file, fsync always) that the test kills with SIGKILL and
// starts again on the same port: once with its data, once empty. Hub and worker keep running
// and reconnect; the agents reach the hub through relays the test can hold.

const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];

let redis: RestartableRedis;
let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let fed: TestFederation;
let arn: string;
const relays = new Map<string, FaultRelay>();
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

async function converged(what: string): Promise<void> {
  await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(wanted()), {
    what,
    timeoutMs: 30_000,
  }).catch(async (err: unknown) => {
    const registered = sim.registered(arn);
    const status = await fed.status(arn).catch(() => undefined);
    throw new Error(
      `${what}: extra ${JSON.stringify(registered.filter((t) => !wanted().includes(t)))}, ` +
        `missing ${JSON.stringify(wanted().filter((t) => !registered.includes(t)))}; status ${JSON.stringify(status)}`,
      { cause: err },
    );
  });
}

function registrationsOverOne(): string[] {
  return [...(sim.registrations.get(arn) ?? [])].filter(([, n]) => n > 1).map(([t]) => t);
}

beforeAll(async () => {
  redis = await RestartableRedis.start(inject('testenv').redisServer);
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  simServer = await startElbv2Simulator({ simulator: sim });
  arn = sim.createTargetGroup({ account: ACCOUNT, region: REGION, name: 'rel-redis', port: 8080 });
  fed = new TestFederation({
    name: 'rel-redis',
    redisUrl: redis.url,
    clusters,
    hubSettings: { disconnectedGraceMs: 60_000, redisCommandTimeoutMs: 1_000 },
    workerSettings: { driftIntervalMs: 600_000 },
  });
  await fed.start();
  // The test's own client sees the outages too; they are the point here, not errors.
  fed.redis.on('error', () => undefined);
  await fed.startWorker(simulatorWorkerDeps(simServer.url, 'AKIDREDISRESTART'));
  for (const c of clusters) {
    const relay = new FaultRelay([fed.hub.agentPort]);
    relays.set(c.id, relay);
    fed.agent(c.id, await relay.listen());
  }
  await fed.applyBinding(
    binding({
      name: 'redis-restart',
      clusters: { names: ['east', 'west'], labels: undefined },
      target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
    }),
  );
  announce('east', range(1, 10));
  announce('west', range(1, 10));
  await converged('both clusters’ first targets');
}, 60_000);

afterAll(async () => {
  await fed?.close().catch(() => undefined);
  for (const relay of relays.values()) await relay.close();
  await simServer?.close();
  await redis?.stop();
});

describe('Redis killed and started again', () => {
  it('with its data: changes made while it was down arrive, nothing is drained or registered twice', async () => {
    const epochKey = new StateKeys(fed.keyPrefix).epoch();
    const epoch = await fed.redis.get(epochKey);
    expect(epoch).not.toBeNull();
    await redis.kill();
    // While Redis is down the agents keep changing; nothing can be acknowledged.
    announce('east', range(1, 12));
    announce('west', range(1, 9));
    // Down for longer than the hub's Redis command timeout (1 s): its writes fail, not just wait.
    await waitFor(() => fed.redis.status !== 'ready', { what: 'the clients to lose Redis' });
    await new Promise((r) => setTimeout(r, 2_000));
    await redis.start();
    await converged('the group after Redis came back with its data');
    expect(registrationsOverOne()).toEqual([]);
    expect(Object.fromEntries(sim.deregistrations.get(arn) ?? [])).toEqual({
      [`${webIp(2, 10)}:8080`]: 1,
    });
    await waitFor(async () => (await fed.status(arn))?.inSync === true, {
      what: 'the group status in sync',
      timeoutMs: 10_000,
    });
    // The data survived, so the hub saw no loss: same storage epoch, no recovery.
    expect(await fed.redis.get(epochKey)).toBe(epoch);
    expect(fed.hub.syncService?.counters.storageLosses).toBe(0);
  });

  it('empty: deregistrations wait for every feeding cluster to resync, with TgfedRecoveryInProgress, then it converges', async () => {
    const before = wanted();
    const deregisteredBefore = Object.fromEntries(sim.deregistrations.get(arn) ?? []);
    // The agents may not come back until the test lets them.
    for (const relay of relays.values()) relay.hold();
    await redis.kill();
    redis.wipe();
    await redis.start();
    // West gains a pod while it is away: a change nobody could acknowledge yet.
    announce('west', [...range(1, 9), 20]);

    const recovering = await waitFor(
      async () => {
        const alerts = alertKeys(await listAlerts(fed.admin, fed.adminToken));
        return alerts.includes('TgfedRecoveryInProgress{cluster=east}') &&
          alerts.includes('TgfedRecoveryInProgress{cluster=west}')
          ? alerts
          : undefined;
      },
      { what: 'the recovery alert for both clusters', timeoutMs: 20_000 },
    );
    expect(recovering).toContain('TgfedRecoveryInProgress{cluster=west}');
    // A forced reconcile (described afresh) while nothing is known drains nothing.
    // (The hub writes the admin API's binding back first; until then the group is unknown.)
    const forcedAt = Date.now();
    await waitFor(() => fed.triggerReconcile(arn, true), {
      what: 'the binding to be written back and a reconcile accepted',
      timeoutMs: 15_000,
    });
    await waitFor(async () => ((await fed.status(arn))?.lastReconcileUnixMs ?? 0) > forcedAt, {
      what: 'the forced reconcile',
      timeoutMs: 15_000,
    });
    expect(sim.registered(arn)).toEqual(before);

    // East resyncs; west is still away: still nothing removed, west still awaited.
    relays.get('east')?.release();
    await waitFor(
      async () => {
        const alerts = alertKeys(await listAlerts(fed.admin, fed.adminToken));
        return (
          !alerts.includes('TgfedRecoveryInProgress{cluster=east}') &&
          alerts.includes('TgfedRecoveryInProgress{cluster=west}')
        );
      },
      { what: 'east to resync while west is away', timeoutMs: 20_000 },
    );
    const eastAt = Date.now();
    await fed.triggerReconcile(arn, true);
    await waitFor(async () => ((await fed.status(arn))?.lastReconcileUnixMs ?? 0) > eastAt, {
      what: 'a reconcile after east resynced',
      timeoutMs: 15_000,
    });
    expect(sim.registered(arn)).toEqual(before);
    expect(Object.fromEntries(sim.deregistrations.get(arn) ?? [])).toEqual(deregisteredBefore);

    // West too: its new pod arrives; still nothing removed.
    relays.get('west')?.release();
    await converged('the group after both clusters resynced');
    await waitFor(
      async () =>
        alertKeys(await listAlerts(fed.admin, fed.adminToken)).every(
          (a) => !a.startsWith('TgfedRecoveryInProgress'),
        ),
      { what: 'the recovery alert to clear', timeoutMs: 10_000 },
    );
    expect(Object.fromEntries(sim.deregistrations.get(arn) ?? [])).toEqual(deregisteredBefore);

    // Pods registered before the loss (whose ownership records the loss took) go away later:
    // tgfed still deregisters them, and only them.
    announce('east', range(1, 11));
    announce('west', [...range(1, 8), 20]);
    await converged('the removals after the recovery');
    expect(Object.fromEntries(sim.deregistrations.get(arn) ?? [])).toEqual({
      ...deregisteredBefore,
      [`${webIp(1, 12)}:8080`]: 1,
      [`${webIp(2, 9)}:8080`]: 1,
    });
    expect((await fed.status(arn))?.ownedTargets).toBe(wanted().length);
    expect(registrationsOverOne()).toEqual([]);
  });
});

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { ReconcileOutcome, type TargetGroupStatus } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// The workers against tgfed's own ELBv2 simulator, which models what moto does not: the
// target quota, health states, draining, and throttling. Every test has its own group(s).

const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];

let sim: Elbv2SimulatorServer;
let fed: TestFederation;
let groupCount = 0;

function newGroup(options: { capacity?: number; deregistrationDelayMs?: number } = {}): string {
  groupCount++;
  return sim.simulator.createTargetGroup({
    account: ACCOUNT,
    region: REGION,
    name: `sim-web-${groupCount}`,
    port: 8080,
    ...options,
  });
}

/** `ip:port` of the group's registered (not draining) targets, sorted. */
function registered(arn: string): string[] {
  return sim.simulator
    .targets(arn)
    .filter((t) => t.state !== 'draining')
    .map((t) => `${t.id}:${t.port}`)
    .sort();
}

function expected(block: number, hosts: readonly number[]): string[] {
  return hosts.map((h) => `${webIp(block, h)}:8080`).sort();
}

async function converged(arn: string, want: string[], what: string): Promise<void> {
  await waitFor(() => JSON.stringify(registered(arn)) === JSON.stringify(want), {
    what,
    timeoutMs: 20_000,
  });
}

function applied(status: TargetGroupStatus): boolean {
  return status.lastOutcome === ReconcileOutcome.RECONCILE_OUTCOME_APPLIED;
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

beforeAll(async () => {
  sim = await startElbv2Simulator({ rateLimits: false, deregistrationDelayMs: 300 });
  fed = new TestFederation({
    name: 'wsim',
    redisUrl: inject('redisUrl'),
    clusters,
    hubSettings: { disconnectedGraceMs: 1_500 },
    // A short transient-retry ceiling, so that a long storm's back-off is visible in seconds.
    workerSettings: {
      driftIntervalMs: 60_000,
      guardMinTargets: 5,
      transientRetryMaxMs: 2_000,
      capacityDescribeIntervalMs: 4_000,
    },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(sim.url));
});

afterAll(async () => {
  await fed?.close();
  await sim?.close();
});

describe('ReconcileWorker against the ELBv2 simulator', () => {
  it('coalesces many changes within a debounce window into one RegisterTargets call per chunk', async () => {
    const arn = newGroup();
    await fed.applyBinding(
      binding({
        name: 'coalesce',
        clusters: { names: ['east'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    fed.setEndpoints('east', range(1, 3));
    await converged(arn, expected(1, range(1, 3)), 'the first three targets');
    sim.simulator.resetCalls();

    // 30 changes, each its own batch, well within the 200 ms debounce window.
    for (let n = 4; n <= 33; n++) fed.setEndpoints('east', range(1, n));
    await converged(arn, expected(1, range(1, 33)), 'all 33 targets');
    const registers = sim.simulator.calls({ targetGroupArn: arn, action: 'RegisterTargets' });
    expect(registers.length).toBeLessThanOrEqual(2);
    expect(registers.reduce((n, c) => n + c.targets, 0)).toBe(30);
    expect(sim.simulator.calls({ targetGroupArn: arn, action: 'DescribeTargetHealth' })).toEqual(
      [],
    );
    const status = await fed.statusWhen(arn, (s) => s.inSync, 'the group to report in sync');
    expect(status).toMatchObject({ desiredTargets: 33, actualTargets: 33, ownedTargets: 33 });
  });

  it('never exceeds a full group’s quota: new targets wait for the old ones to drain', async () => {
    // The replaced targets drain for 5 s: the new ones wait through several reconciles.
    const arn = newGroup({ capacity: 4, deregistrationDelayMs: 5_000 });
    await fed.applyBinding(
      binding({
        name: 'quota',
        services: { namespace: 'shop', name: 'web' },
        clusters: { names: ['west'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn, capacity: 4 }) },
      }),
    );
    fed.setEndpoints('west', range(1, 4));
    await converged(arn, expected(2, range(1, 4)), 'a full group');
    // A rolling restart of two pods: two new addresses, two old ones gone.
    const restartedAtMs = Date.now();
    fed.setEndpoints('west', [1, 2, 11, 12]);
    await converged(arn, expected(2, [1, 2, 11, 12]), 'the replaced targets');
    const refused = sim.simulator.calls({ targetGroupArn: arn }).filter((c) => c.errorCode);
    expect(refused).toEqual([]);
    // While they waited, the group came back every second or two (followUpMs is 1 s here), but
    // was described at most every capacityDescribeIntervalMs (4 s here): the describe that found
    // the room was not the first one.
    const all = sim.simulator
      .calls({ targetGroupArn: arn, action: 'DescribeTargetHealth' })
      .map((c) => c.atMs);
    // From the last describe before the restart on.
    const describes = all.slice(Math.max(0, all.findIndex((atMs) => atMs >= restartedAtMs) - 1));
    expect(describes.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < describes.length; i++) {
      expect((describes[i] ?? 0) - (describes[i - 1] ?? 0)).toBeGreaterThanOrEqual(3_800);
    }
  });

  it('backs off through a throttling storm and still converges', async () => {
    const arn = newGroup();
    sim.simulator.injectFault({
      targetGroupArn: arn,
      action: 'RegisterTargets',
      code: 'Throttling',
      times: 4,
    });
    await fed.applyBinding(
      binding({
        name: 'storm',
        clusters: { names: ['east'], labels: undefined },
        port: { port: { $case: 'number', number: 8080 } },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    await converged(arn, expected(1, range(1, 33)), 'the group after the storm');
    const throttled = sim.simulator.calls({ targetGroupArn: arn, errorCode: 'Throttling' });
    expect(throttled).toHaveLength(4);
    await fed.statusWhen(arn, applied, 'the reconcile to record itself applied');
  });

  it('makes a throttled call again within the reconcile, after the penalty', async () => {
    const arn = newGroup();
    // The account's bucket as new: no penalty of an earlier test's throttles in force.
    const bucket = `${fed.keyPrefix}:{aws:${ACCOUNT}:${REGION}}:bucket:mutate`;
    await fed.redis.del(bucket);
    sim.simulator.injectFault({
      targetGroupArn: arn,
      action: 'RegisterTargets',
      code: 'Throttling',
      times: 2,
    });
    await fed.applyBinding(
      binding({
        name: 'throttled-twice',
        clusters: { names: ['east'], labels: undefined },
        port: { port: { $case: 'number', number: 8080 } },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    await converged(arn, expected(1, range(1, 33)), 'the group after two throttles');
    const calls = sim.simulator.calls({ targetGroupArn: arn, action: 'RegisterTargets' });
    expect(calls.map((c) => c.errorCode ?? 'ok')).toEqual(['Throttling', 'Throttling', 'ok']);
    // One reconcile made all three: it counts them, and did not fail. The simulator holds the
    // targets as soon as the call is made; the reconcile records itself after the response.
    const last = await waitFor(async () => (await fed.records.read(arn)).last, {
      what: 'the reconcile record',
    });
    expect(last).toMatchObject({ outcome: 'applied', consecutiveFailures: 0 });
    expect(last?.calls.register).toBe(3);
    // The penalties spaced them: 250 ms and a token's refill (4 a second) after the first
    // throttle; the second call took its token after that penalty and was throttled all the
    // same, so the second penalty was twice as long, as the account's shared bucket records.
    const gaps = [1, 2].map((i) => (calls[i]?.atMs ?? 0) - (calls[i - 1]?.atMs ?? 0));
    expect(gaps[0]).toBeGreaterThanOrEqual(500);
    expect(gaps[1]).toBeGreaterThanOrEqual(750);
    expect(await fed.redis.hget(bucket, 'penaltyMs')).toBe('500');
  });

  it('after a long storm of throttles and 5xx, retries within the transient ceiling, not the persistent one', async () => {
    const arn = newGroup();
    fed.setEndpoints('east', range(1, 33));
    // Until cleared: every RegisterTargets of this group fails, alternately throttled and 5xx.
    sim.simulator.injectFault({
      targetGroupArn: arn,
      action: 'RegisterTargets',
      code: 'Throttling',
    });
    await fed.applyBinding(
      binding({
        name: 'long-storm',
        clusters: { names: ['east'], labels: undefined },
        port: { port: { $case: 'number', number: 8080 } },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    const failed = () => sim.simulator.calls({ targetGroupArn: arn, action: 'RegisterTargets' });
    // Eight failures in a row: with doubling from 1 s and no lower ceiling this would take over a
    // minute (the last waits alone up to 64 s); under a 2 s ceiling it takes about 10 s.
    await waitFor(() => failed().length >= 4, {
      what: '4 throttled reconciles',
      timeoutMs: 20_000,
    });
    sim.simulator.clearFaults();
    sim.simulator.injectFault({
      targetGroupArn: arn,
      action: 'RegisterTargets',
      code: 'ServiceUnavailable',
    });
    await waitFor(() => failed().length >= 8, { what: '8 failed reconciles', timeoutMs: 20_000 });
    const before = await fed.status(arn);
    expect([
      ReconcileOutcome.RECONCILE_OUTCOME_THROTTLED,
      ReconcileOutcome.RECONCILE_OUTCOME_FAILED,
    ]).toContain(before?.lastOutcome);
    // AWS recovers while nothing changes in the cluster: only the retry brings the group back.
    sim.simulator.clearFaults();
    await converged(arn, expected(1, range(1, 33)), 'the group after the long storm');
    await fed.statusWhen(arn, applied, 'the reconcile to record itself applied');
  });

  it('holds a mass deregistration until an operator releases it', async () => {
    const arn = newGroup();
    await fed.applyBinding(
      binding({
        name: 'guarded',
        clusters: { names: ['west'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    fed.setEndpoints('west', range(1, 10));
    await converged(arn, expected(2, range(1, 10)), 'ten targets');
    fed.setEndpoints('west', [1, 2]);
    const held = await waitFor(async () => (await fed.status(arn))?.heldOperations[0], {
      what: 'the guard to hold the removal',
      timeoutMs: 20_000,
    });
    expect(held).toMatchObject({ deregistrations: 8, targetsBefore: 10, targetGroupArn: arn });
    expect(registered(arn)).toEqual(expected(2, range(1, 10)));
    expect((await fed.status(arn))?.lastOutcome).toBe(ReconcileOutcome.RECONCILE_OUTCOME_HELD);

    await fed.release(held.id);
    await converged(arn, expected(2, [1, 2]), 'the released removal');
    await fed.statusWhen(
      arn,
      (s) => s.heldOperations.length === 0,
      'the released operation to leave the status',
    );
  });

  it('after the grace period withdraws only the targets ELB reports unhealthy', async () => {
    const arn = newGroup();
    await fed.applyBinding(
      binding({
        name: 'stale',
        clusters: { names: ['east'], labels: undefined },
        port: { port: { $case: 'number', number: 8080 } },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    await converged(arn, expected(1, range(1, 33)), 'the east targets');
    sim.simulator.setTargetHealth(arn, webIp(1, 5), 8080, 'unhealthy');
    sim.simulator.setTargetHealth(arn, webIp(1, 6), 8080, 'unhealthy');
    await fed.agent('east').publisher.close();
    fed.agents.delete('east');
    await converged(
      arn,
      expected(
        1,
        range(1, 33).filter((h) => h !== 5 && h !== 6),
      ),
      'the unhealthy stale targets to be withdrawn',
    );
    // The healthy ones stay for good (the default policy), checked again after a follow-up.
    const reconciles = (await fed.records.read(arn)).last?.startedAtMs ?? 0;
    await waitFor(async () => ((await fed.records.read(arn)).last?.startedAtMs ?? 0) > reconciles, {
      what: 'another reconcile of the stale group',
      timeoutMs: 30_000,
    });
    expect(registered(arn)).toHaveLength(31);
  });

  // Last: it replaces east's pods, which the tests above rely on.
  it('restarts every pod of a pool without waiting for a drain when the pool has room for both', async () => {
    // Two groups of 6: room for 6 pods and their 6 replaced targets draining for a minute.
    const pool = [1, 2].map(() => newGroup({ capacity: 6, deregistrationDelayMs: 60_000 }));
    await fed.applyBinding(
      binding({
        name: 'restart-pool',
        clusters: { names: ['east'], labels: undefined },
        target: {
          $case: 'pool',
          pool: {
            groups: pool.map((arn) => targetGroup({ arn, capacity: 6 })),
            listenerRuleArn: '',
          },
        },
      }),
    );
    const union = (): string[] => pool.flatMap((arn) => registered(arn)).sort();
    fed.setEndpoints('east', range(1, 6));
    await waitFor(() => JSON.stringify(union()) === JSON.stringify(expected(1, range(1, 6))), {
      what: 'the six pods registered',
    });
    const oldShare = pool.map((arn) => registered(arn).length);

    // A rolling restart: one pod at a time, each replacement registered before the next. Each new
    // target must go where it fits beside the replaced ones, which drain in their groups for a
    // minute: placed by desired count alone, a group takes more new targets than it has room for,
    // and they wait out the drain (this test's timeout is 20 s per pod).
    const hosts = range(1, 6);
    for (let i = 0; i < 6; i++) {
      hosts[i] = 21 + i;
      fed.setEndpoints('east', hosts);
      await waitFor(() => JSON.stringify(union()) === JSON.stringify(expected(1, hosts)), {
        what: `pod ${i + 1} of 6 replaced`,
        timeoutMs: 20_000,
      });
    }
    pool.forEach((arn, i) => {
      expect(registered(arn).length).toBe(6 - (oldShare[i] ?? 0));
      expect(sim.simulator.targets(arn)).toHaveLength(6);
    });
    const refused = pool.flatMap((arn) =>
      sim.simulator.calls({ targetGroupArn: arn }).filter((c) => c.errorCode),
    );
    expect(refused).toEqual([]);
  });
});

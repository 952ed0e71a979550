import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { ReconcileOutcome } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { alertKeys, listAlerts } from '../../support/admin-alerts.js';
import { REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// AWS failing in the ways it does: a throttling storm over a whole account, 5xx errors, access
// denied in one account, a target group deleted behind tgfed's back. Two accounts; each test has
// its own cluster, so that its changes reach only its own groups.

const ACCOUNT_A = '111111111111';
const ACCOUNT_B = '222222222222';
const clusters = [
  { id: 'throttle', block: 1 },
  { id: 'fivexx', block: 2 },
  { id: 'denied', block: 3 },
  { id: 'deleted', block: 4 },
];

let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let fed: TestFederation;
let groupCount = 0;

function newGroup(account: string): string {
  groupCount++;
  return sim.createTargetGroup({
    account,
    region: REGION,
    name: `rel-aws-${groupCount}`,
    port: 8080,
  });
}

async function bind(name: string, clusterId: string, arn: string, account: string): Promise<void> {
  await fed.applyBinding(
    binding({
      name,
      clusters: { names: [clusterId], labels: undefined },
      target: {
        $case: 'targetGroup',
        targetGroup: targetGroup({ arn, roleArn: `arn:aws:iam::${account}:role/tgfed` }),
      },
    }),
  );
}

function expected(block: number, hosts: readonly number[]): string[] {
  return hosts.map((h) => `${webIp(block, h)}:8080`).sort();
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

async function converged(arn: string, want: string[], what: string, timeoutMs = 20_000) {
  await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(want), {
    what,
    timeoutMs,
  });
}

async function alerts(): Promise<string[]> {
  return alertKeys(await listAlerts(fed.admin, fed.adminToken));
}

async function alertFires(key: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => (await alerts()).includes(key), { what: `alert ${key}`, timeoutMs });
}

async function alertClears(key: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => !(await alerts()).includes(key), {
    what: `alert ${key} to clear`,
    timeoutMs,
  });
}

beforeAll(async () => {
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  simServer = await startElbv2Simulator({ simulator: sim });
  fed = new TestFederation({
    name: 'rel-aws',
    redisUrl: inject('redisUrl'),
    clusters,
    workerSettings: { driftIntervalMs: 600_000 },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(simServer.url, 'AKIDAWSFAULTS'));
});

afterAll(async () => {
  await fed?.close();
  await simServer?.close();
});

describe('AWS failures', () => {
  it('a throttling storm over one account: backs off, alerts, converges when it ends; the other account goes on', async () => {
    const a = newGroup(ACCOUNT_A);
    const b = newGroup(ACCOUNT_B);
    sim.injectFault({ account: ACCOUNT_A, code: 'Throttling' });
    await bind('storm-a', 'throttle', a, ACCOUNT_A);
    await bind('storm-b', 'throttle', b, ACCOUNT_B);
    fed.setEndpoints('throttle', range(1, 5));
    await converged(b, expected(1, range(1, 5)), 'account B’s group during the storm');
    const alert = `TgfedAwsThrottlingSustained{account=${ACCOUNT_A},region=${REGION}}`;
    await alertFires(alert);
    expect(sim.registered(a)).toEqual([]);
    // Backing off: far fewer calls than a hot loop would make in this time.
    const throttled = sim.calls({ targetGroupArn: a, errorCode: 'Throttling' }).length;
    expect(throttled).toBeGreaterThanOrEqual(3);
    expect(throttled).toBeLessThan(15);

    sim.clearFaults();
    await converged(a, expected(1, range(1, 5)), 'account A’s group after the storm', 30_000);
    await alertClears(alert);
    const status = await fed.statusWhen(
      a,
      (s) => s.lastOutcome === ReconcileOutcome.RECONCILE_OUTCOME_APPLIED,
      'account A’s group recorded applied',
    );
    expect(status.inSync).toBe(true);
  });

  it('5xx answers are retried until they pass', async () => {
    const g = newGroup(ACCOUNT_A);
    sim.injectFault({
      targetGroupArn: g,
      action: 'RegisterTargets',
      code: 'InternalFailure',
      times: 2,
    });
    sim.injectFault({
      targetGroupArn: g,
      action: 'RegisterTargets',
      code: 'ServiceUnavailable',
      times: 1,
    });
    await bind('fivexx', 'fivexx', g, ACCOUNT_A);
    fed.setEndpoints('fivexx', range(1, 5));
    await converged(g, expected(2, range(1, 5)), 'the group after three 5xx answers');
    expect(
      sim.calls({ targetGroupArn: g, action: 'RegisterTargets' }).map((c) => c.errorCode ?? 'ok'),
    ).toEqual(['InternalFailure', 'InternalFailure', 'ServiceUnavailable', 'ok']);
    expect(Object.fromEntries(sim.registrations.get(g) ?? [])).toEqual(
      Object.fromEntries(expected(2, range(1, 5)).map((t) => [t, 1])),
    );
  });

  it('access denied in one account: alerts, is not retried hot, blocks no other account, converges on the next change once allowed', async () => {
    const a = newGroup(ACCOUNT_A);
    const b = newGroup(ACCOUNT_B);
    sim.injectFault({ account: ACCOUNT_B, code: 'AccessDenied', message: 'not authorized' });
    await bind('denied-a', 'denied', a, ACCOUNT_A);
    await bind('denied-b', 'denied', b, ACCOUNT_B);
    fed.setEndpoints('denied', range(1, 5));
    await converged(a, expected(3, range(1, 5)), 'account A’s group while B is denied');
    const alert = `TgfedAwsAccessDenied{account=${ACCOUNT_B},target_group=${b}}`;
    await alertFires(alert);
    const deniedCalls = sim.calls({ targetGroupArn: b, errorCode: 'AccessDenied' }).length;
    await new Promise((r) => setTimeout(r, 3_000));
    // A persistent error waits for the long retry (or a change), not a hot loop: at most the
    // reconcile already queued when the alert fired.
    expect(
      sim.calls({ targetGroupArn: b, errorCode: 'AccessDenied' }).length - deniedCalls,
    ).toBeLessThanOrEqual(1);
    expect((await alerts()).filter((x) => x.includes(a))).toEqual([]);

    sim.clearFaults();
    fed.setEndpoints('denied', range(1, 6));
    await converged(b, expected(3, range(1, 6)), 'account B’s group once allowed');
    await converged(a, expected(3, range(1, 6)), 'account A’s group');
    await alertClears(alert);
  });

  it('a target group deleted behind tgfed’s back: TgfedTargetGroupNotFound, not retried hot, the other group goes on; re-pointing the binding recovers', async () => {
    const doomed = newGroup(ACCOUNT_A);
    const other = newGroup(ACCOUNT_A);
    await bind('deleted', 'deleted', doomed, ACCOUNT_A);
    await bind('deleted-other', 'deleted', other, ACCOUNT_A);
    fed.setEndpoints('deleted', range(1, 5));
    await converged(doomed, expected(4, range(1, 5)), 'the group before it is deleted');
    await converged(other, expected(4, range(1, 5)), 'the other group');

    sim.deleteTargetGroup(doomed);
    fed.setEndpoints('deleted', range(1, 6));
    await converged(other, expected(4, range(1, 6)), 'the other group after the deletion');
    const alert = `TgfedTargetGroupNotFound{account=${ACCOUNT_A},target_group=${doomed}}`;
    await alertFires(alert);
    const notFound = sim.calls({ targetGroupArn: doomed, errorCode: 'TargetGroupNotFound' }).length;
    expect(notFound).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(
      sim.calls({ targetGroupArn: doomed, errorCode: 'TargetGroupNotFound' }).length - notFound,
    ).toBeLessThanOrEqual(1);

    // The operator points the binding at a new group: it fills, and the alert clears.
    const replacement = newGroup(ACCOUNT_A);
    await bind('deleted', 'deleted', replacement, ACCOUNT_A);
    await converged(replacement, expected(4, range(1, 6)), 'the replacement group');
    await alertClears(alert);
  });
});

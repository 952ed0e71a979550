import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
  type SimulatedAction,
} from '../../../hub/aws/simulator/index.js';
import { ListenerWeightRecords, type ListenerWeightRecord } from '../../../hub/reconcile/index.js';
import type { TargetGroup } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { TestFederation } from '../../support/test-federation.js';

// A pool's weighted forward action against tgfed's ELBv2 simulator: ALB listeners and rules
// over the real query protocol, with AWS's forward-action checks and Modify* throttling.

const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
  { id: 'north', block: 3 },
  { id: 'south', block: 4 },
];
const WORKER = { accessKeyId: 'AKIDWORKER', secretAccessKey: 'secret' };

function workerClients(sim: Elbv2SimulatorServer) {
  return {
    awsClients: { elbv2: { endpoint: sim.url, credentials: WORKER }, sts: { endpoint: sim.url } },
  };
}

let groupCount = 0;
function newGroups(sim: Elbv2SimulatorServer, n: number, capacity: number): TargetGroup[] {
  return Array.from({ length: n }, () => {
    groupCount++;
    const arn = sim.simulator.createTargetGroup({
      account: ACCOUNT,
      region: REGION,
      name: `lw-${groupCount}`,
      port: 8080,
      protocol: 'HTTP',
      capacity,
    });
    return targetGroup({ arn, capacity });
  });
}

function forwardTo(weights: [string, number][], stickySeconds?: number): SimulatedAction {
  return {
    type: 'forward',
    forwardConfig: {
      targetGroups: weights.map(([targetGroupArn, weight]) => ({ targetGroupArn, weight })),
      ...(stickySeconds === undefined
        ? {}
        : { stickiness: { enabled: true, durationSeconds: stickySeconds } }),
    },
  };
}

/** Registered, not draining targets of a group in the simulator. */
function present(sim: Elbv2SimulatorServer, arn: string): number {
  return sim.simulator.targets(arn).filter((t) => t.state !== 'draining').length;
}

/**
 * Whether weights are proportional to target counts as tgfed keeps them: a group is at 0 exactly
 * when it has no target, and each group's share of the weight is within 2 % (the default
 * threshold) plus rounding of its share of the targets.
 */
function proportional(weights: Record<string, number>, counts: Record<string, number>): boolean {
  const arns = Object.keys(counts);
  const weightTotal = arns.reduce((n, arn) => n + (weights[arn] ?? 0), 0);
  const countTotal = arns.reduce((n, arn) => n + (counts[arn] ?? 0), 0);
  if (weightTotal === 0 || countTotal === 0) return false;
  return arns.every((arn) => {
    const w = weights[arn] ?? -1;
    const n = counts[arn] ?? 0;
    if (w === 0 || n === 0) return w === 0 && n === 0;
    return Math.abs(w / weightTotal - n / countTotal) <= 0.021;
  });
}

function poolBinding(name: string, cluster: string, groups: TargetGroup[], rule: string) {
  return binding({
    name,
    clusters: { names: [cluster], labels: undefined },
    target: { $case: 'pool', pool: { groups, listenerRuleArn: rule } },
  });
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

async function weightsFollow(
  sim: Elbv2SimulatorServer,
  rule: string,
  groups: TargetGroup[],
  targets: number,
  what: string,
): Promise<Record<string, number>> {
  let last = '';
  try {
    return await waitFor(
      () => {
        const counts = Object.fromEntries(groups.map((g) => [g.arn, present(sim, g.arn)]));
        const total = Object.values(counts).reduce((a, b) => a + b, 0);
        const have = sim.simulator.listeners.weights(rule);
        last = JSON.stringify({ counts, have });
        return total === targets && proportional(have, counts) && have;
      },
      { what, timeoutMs: 20_000, intervalMs: 100 },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen ${last}`, { cause: err });
  }
}

async function nextRecord(
  records: ListenerWeightRecords,
  rule: string,
  afterMs: number,
  what: string,
): Promise<ListenerWeightRecord> {
  return waitFor(
    async () => {
      const last = (await records.read(rule)).last;
      return last !== undefined && last.startedAtMs > afterMs && last;
    },
    { what, timeoutMs: 20_000, intervalMs: 100 },
  );
}

describe('Listener rule weights against the ELBv2 simulator', () => {
  let sim: Elbv2SimulatorServer;
  let fed: TestFederation;
  let records: ListenerWeightRecords;

  beforeAll(async () => {
    sim = await startElbv2Simulator({ rateLimits: false, deregistrationDelayMs: 200 });
    fed = new TestFederation({
      name: 'lwsim',
      redisUrl: inject('redisUrl'),
      clusters,
      // The guard is not under test: scale-downs here must never be held.
      workerSettings: {
        listenerWeightDebounceMs: 300,
        driftIntervalMs: 60_000,
        guardMinTargets: 1_000,
      },
    });
    await fed.start();
    await fed.startWorker(workerClients(sim));
    records = new ListenerWeightRecords(fed.redis, fed.keyPrefix);
  });

  afterAll(async () => {
    await fed?.close();
    await sim?.close();
  });

  it('keeps a rule’s weights proportional to each group’s targets as they change', async () => {
    const groups = newGroups(sim, 2, 6);
    const [a, b] = groups as [TargetGroup, TargetGroup];
    const listener = sim.simulator.listeners.createListener({
      account: ACCOUNT,
      region: REGION,
      defaultActions: [{ type: 'fixed-response', fixedResponse: { statusCode: '404' } }],
    });
    const rule = sim.simulator.listeners.createRule({
      listenerArn: listener,
      priority: 10,
      actions: [
        forwardTo([
          [a.arn, 1],
          [b.arn, 1],
        ]),
      ],
    });
    await fed.applyBinding(poolBinding('weighted', 'east', groups, rule));

    // One endpoint: one group holds it, the other must get weight 0.
    fed.setEndpoints('east', [1]);
    const one = await weightsFollow(sim, rule, groups, 1, 'one group weighted, the other at 0');
    expect(Object.values(one).sort()).toEqual([0, 999]);

    fed.setEndpoints('east', range(1, 9));
    const nine = await weightsFollow(sim, rule, groups, 9, 'weights of nine targets');
    expect(Object.values(nine).every((w) => w > 0)).toBe(true);
    // The admin API shows each group's weight and the ready targets it was weighed by.
    const shown = await waitFor(
      async () => {
        const weight = (await fed.status(a.arn))?.listenerWeight;
        return weight?.weight === nine[a.arn] && weight;
      },
      { what: 'the weight in GetTargetGroupStatus', timeoutMs: 20_000 },
    );
    expect(shown).toMatchObject({ listenerRuleArn: rule, readyTargets: present(sim, a.arn) });

    fed.setEndpoints('east', range(1, 4));
    await weightsFollow(sim, rule, groups, 4, 'weights after a scale-down');
    const before = sim.simulator.listeners.weights(rule);

    // No endpoint left: the rule keeps its last weights instead of all zeros.
    const t0 = Date.now();
    fed.setEndpoints('east', []);
    await waitFor(() => present(sim, a.arn) + present(sim, b.arn) === 0, {
      what: 'the pool emptied',
      timeoutMs: 20_000,
    });
    const empty = await waitFor(
      async () => {
        const last = (await records.read(rule)).last;
        return last?.outcome === 'all-zero' && last.startedAtMs > t0 && last;
      },
      { what: 'an all-zero update', timeoutMs: 20_000 },
    );
    expect(empty.calls.modify).toBe(0);
    expect(sim.simulator.listeners.weights(rule)).toEqual(before);
    // The other rule of the listener, its default action, was never touched.
    expect(sim.simulator.calls({ action: 'ModifyListener' })).toEqual([]);
    await fed.deleteBinding('weighted');
  });

  it('makes no Modify call, and no describe, when the ready targets do not change', async () => {
    const groups = newGroups(sim, 2, 6);
    const [a, b] = groups as [TargetGroup, TargetGroup];
    const listener = sim.simulator.listeners.createListener({
      account: ACCOUNT,
      region: REGION,
      defaultActions: [{ type: 'fixed-response', fixedResponse: { statusCode: '404' } }],
    });
    const rule = sim.simulator.listeners.createRule({
      listenerArn: listener,
      priority: 20,
      actions: [
        forwardTo([
          [a.arn, 1],
          [b.arn, 1],
        ]),
      ],
    });
    await fed.applyBinding(poolBinding('steady', 'west', groups, rule));
    fed.setEndpoints('west', range(1, 6));
    await weightsFollow(sim, rule, groups, 6, 'the first weights');
    // Let every reconcile and update of that change finish before counting.
    await nextRecord(records, rule, 0, 'a first record');
    const settled = await waitFor(
      async () => {
        const first = (await records.read(rule)).last?.startedAtMs ?? 0;
        const status = await Promise.all(groups.map((g) => fed.status(g.arn)));
        return status.every((s) => s?.inSync === true) && first;
      },
      { what: 'the pool in sync', timeoutMs: 20_000 },
    );
    sim.simulator.resetCalls();

    // Endpoints that are not ready change the desired state of nothing: the groups are
    // reconciled (and in sync), the rule's update finds the same ready counts.
    const t0 = Math.max(settled, Date.now());
    fed.setEndpoints('west', range(1, 6), [40, 41]);
    for (const g of groups) await fed.triggerReconcile(g.arn, false);
    const record = await nextRecord(records, rule, t0, 'an update after the reconciles');
    expect(record.outcome).toBe('unchanged');
    expect(record.calls).toEqual({ describe: 0, modify: 0 });
    expect(sim.simulator.calls({ action: 'ModifyRule' })).toEqual([]);
    expect(sim.simulator.calls({ action: 'DescribeRules' })).toEqual([]);
    await fed.deleteBinding('steady');
  });

  it('keeps a listener’s default action, leaving other groups and stickiness as found', async () => {
    const groups = newGroups(sim, 2, 6);
    const [a, b] = groups as [TargetGroup, TargetGroup];
    const [canary] = newGroups(sim, 1, 6) as [TargetGroup];
    const listener = sim.simulator.listeners.createListener({
      account: ACCOUNT,
      region: REGION,
      defaultActions: [
        forwardTo(
          [
            [a.arn, 400],
            [b.arn, 400],
            [canary.arn, 200],
          ],
          3600,
        ),
      ],
    });
    await fed.applyBinding(poolBinding('default-action', 'north', groups, listener));
    fed.setEndpoints('north', [1]);
    await waitFor(
      () => {
        const w = sim.simulator.listeners.weights(listener);
        const full = present(sim, a.arn) === 1 ? a.arn : b.arn;
        return present(sim, a.arn) + present(sim, b.arn) === 1 && w[full] === 800 && w;
      },
      { what: 'the pool’s 800 on the group holding the one target', timeoutMs: 20_000 },
    );
    const after = sim.simulator.listeners.listener(listener);
    const forward = after.defaultActions[0];
    expect(forward?.forwardConfig?.stickiness).toEqual({ enabled: true, durationSeconds: 3600 });
    expect(sim.simulator.listeners.weights(listener)[canary.arn]).toBe(200);
    expect(
      sim.simulator.calls({ action: 'ModifyListener', errorCode: null }).length,
    ).toBeGreaterThan(0);
    await fed.deleteBinding('default-action');
  });

  it('records a rule that does not exist as not found, on the rule and on each group', async () => {
    const groups = newGroups(sim, 2, 6);
    const listener = sim.simulator.listeners.createListener({
      account: ACCOUNT,
      region: REGION,
      defaultActions: [{ type: 'fixed-response', fixedResponse: { statusCode: '404' } }],
    });
    const missing = `${listener.replace(':listener/', ':listener-rule/')}/00000000deadbeef`;
    await fed.applyBinding(poolBinding('missing-rule', 'south', groups, missing));
    fed.setEndpoints('south', [1, 2]);
    const record = await nextRecord(records, missing, 0, 'the failed update');
    expect(record).toMatchObject({ outcome: 'failed', errorClass: 'not-found' });
    expect(record.error).toContain('RuleNotFound');
    const [a] = groups as [TargetGroup];
    const status = await fed.status(a.arn);
    expect(status?.listenerWeight).toMatchObject({ listenerRuleArn: missing, outcome: 'failed' });
    expect(status?.listenerWeight?.error).toContain('RuleNotFound');

    // Once no binding names the rule, its groups stop showing a weight.
    await fed.deleteBinding('missing-rule');
    const skipped = await nextRecord(records, missing, record.startedAtMs, 'the last update');
    expect(skipped.outcome).toBe('skipped');
    expect(skipped.calls).toEqual({ describe: 0, modify: 0 });
    expect((await fed.status(a.arn))?.listenerWeight).toBeUndefined();
  });
});

describe('Listener rule weights when AWS throttles Modify calls', () => {
  let sim: Elbv2SimulatorServer;
  let fed: TestFederation;

  beforeAll(async () => {
    // The simulator allows one Modify call every four seconds; tgfed's own bucket is set far
    // above it, so the throttling comes from "AWS" and tgfed must back off.
    sim = await startElbv2Simulator({
      deregistrationDelayMs: 200,
      rateLimits: { modify: { ratePerSecond: 0.25, burst: 1 } },
    });
    fed = new TestFederation({
      name: 'lwthr',
      redisUrl: inject('redisUrl'),
      clusters,
      workerSettings: {
        listenerWeightDebounceMs: 100,
        guardMinTargets: 1_000,
        awsModifyRatePerSecond: 100,
        awsModifyBurst: 100,
      },
    });
    await fed.start();
    await fed.startWorker(workerClients(sim));
  });

  afterAll(async () => {
    await fed?.close();
    await sim?.close();
  });

  it('backs off after a throttled ModifyRule and still converges', async () => {
    const groups = newGroups(sim, 2, 6);
    const [a, b] = groups as [TargetGroup, TargetGroup];
    const listener = sim.simulator.listeners.createListener({
      account: ACCOUNT,
      region: REGION,
      defaultActions: [{ type: 'fixed-response', fixedResponse: { statusCode: '404' } }],
    });
    const rule = sim.simulator.listeners.createRule({
      listenerArn: listener,
      priority: 1,
      actions: [
        forwardTo([
          [a.arn, 1],
          [b.arn, 1],
        ]),
      ],
    });
    await fed.applyBinding(poolBinding('throttled', 'east', groups, rule));
    // Changes in quick succession: each needs a ModifyRule, faster than one per second.
    for (const hosts of [[1], range(1, 3), range(1, 8), range(1, 2), range(1, 10)]) {
      fed.setEndpoints('east', hosts);
      await waitFor(() => groups.reduce((n, g) => n + present(sim, g.arn), 0) === hosts.length, {
        what: `${hosts.length} targets registered`,
        timeoutMs: 20_000,
      });
    }
    await weightsFollow(sim, rule, groups, 10, 'the weights after the throttling');
    const modifies = sim.simulator.calls({ action: 'ModifyRule' });
    const throttled = modifies.filter((c) => c.errorCode === 'Throttling');
    expect(throttled.length).toBeGreaterThan(0);
    // Modify* has its own bucket: the describes of the same updates were never throttled.
    expect(
      sim.simulator.calls({ action: 'DescribeRules', errorCode: null }).length,
    ).toBeGreaterThan(0);
    expect(sim.simulator.calls({ action: 'DescribeRules', errorCode: 'Throttling' })).toEqual([]);
    // Backing off: the call after a throttled one waits for at least the penalty.
    for (const t of throttled) {
      const next = modifies.find((c) => c.atMs > t.atMs);
      if (next !== undefined) expect(next.atMs - t.atMs).toBeGreaterThanOrEqual(900);
    }
  });
});

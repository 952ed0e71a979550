import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { waitFor } from '../../env/wait-for.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// What a worker reconciles when a cluster's status changes and no endpoint of a group does: a
// sync that ends (here a cluster's first) matters at once only to the groups that held
// something for it; the others are reconciled `followUpMs` to twice that later (spread by
// binding, a pool's groups together), a safety net for a hub that
// died between writing a batch and enqueueing its reconcile (at a cold start the hub enqueues
// them all anyway as each sync ends). Real hub, worker, agents and Redis, and the ELBv2
// simulator.

const FOLLOW_UP_MS = 60_000;

let sim: Elbv2SimulatorServer;
let fed: TestFederation;

beforeAll(async () => {
  sim = await startElbv2Simulator({ rateLimits: false });
  fed = new TestFederation({
    name: 'status-rec',
    redisUrl: inject('redisUrl'),
    clusters: [
      { id: 'east', block: 1 },
      { id: 'west', block: 2 },
    ],
    // Without the hub's initial-sync hold, which enqueues every group a cluster feeds when its
    // sync ends: what is left to see is the worker's own reaction to the status change.
    hubSettings: { initialSyncHoldMs: 0 },
    workerSettings: { followUpMs: FOLLOW_UP_MS, driftIntervalMs: 600_000 },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(sim.url));
});

afterAll(async () => {
  await fed?.close();
  await sim?.close();
});

function registered(arn: string): string[] {
  return sim.simulator
    .targets(arn)
    .map((t) => t.id)
    .sort();
}

describe('A cluster’s status change', () => {
  it('reconciles a group it feeds only later when nothing of the group waited for it', async () => {
    const arn = sim.simulator.createTargetGroup({
      account: ACCOUNT,
      region: REGION,
      name: 'status-later',
      port: 8080,
    });
    await fed.applyBinding(
      binding({
        name: 'status-later',
        clusters: { names: ['east', 'west'], labels: undefined },
        target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
      }),
    );
    // A pool of two more groups, bound after it (bindings are taken in name order), of a service
    // without pods: nothing is placed in it, so nothing else nudges its groups.
    const pool = ['status-pool-a', 'status-pool-b'].map((name) =>
      sim.simulator.createTargetGroup({ account: ACCOUNT, region: REGION, name, port: 8080 }),
    );
    await fed.applyBinding(
      binding({
        name: 'status-pool',
        services: { namespace: 'shop', name: 'none' },
        clusters: { names: ['east', 'west'], labels: undefined },
        target: {
          $case: 'pool',
          pool: { groups: pool.map((a) => targetGroup({ arn: a })), listenerRuleArn: '' },
        },
      }),
    );
    // West has not connected yet: the group fills from east (nothing to deregister, so nothing
    // is blocked, and west is not syncing, so nothing waits).
    fed.setEndpoints('east', [1, 2, 3]);
    const east = [1, 2, 3].map((h) => webIp(1, h)).sort();
    await waitFor(() => JSON.stringify(registered(arn)) === JSON.stringify(east), {
      what: 'east’s targets',
      timeoutMs: 20_000,
    });
    const lastReconcile = async () => (await fed.status(arn))?.lastReconcileUnixMs ?? 0;
    // East's sync may bring the group back once more (its status changed too): wait until no
    // reconcile follows for two seconds.
    let before = 0;
    await waitFor(
      async () => {
        const seen = await lastReconcile();
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        before = await lastReconcile();
        return seen > 0 && seen === before;
      },
      { what: 'the group’s reconciles to settle', timeoutMs: 20_000 },
    );

    // East's sync nudged its groups already (and a nudge is never moved later): forget those,
    // so that what is seen below is west's.
    await fed.redis.zrem(fed.records.nudgeKey(), arn, ...pool);
    const syncedAt = Date.now();
    // West connects and syncs, with no pod of shop/web: its status changes (connected, resynced),
    // the group's targets do not.
    fed.agent('west').upsert(
      endpointSlice({
        namespace: 'shop',
        service: 'api',
        name: 'api-1',
        endpoints: [{ ip: webIp(2, 1) }],
        ports: [{ name: 'http', port: 8080 }],
      }),
    );
    const nudgedAt = async (group: string): Promise<number | undefined> => {
      const score = await fed.redis.zscore(fed.records.nudgeKey(), group);
      return score === null ? undefined : Number(score);
    };
    const [single, first, second] = await waitFor(
      async () => {
        const scores = await Promise.all([arn, ...pool].map(nudgedAt));
        return scores.every((s) => s !== undefined) ? scores : undefined;
      },
      { what: 'the groups’ later reconciles', timeoutMs: 10_000 },
    );
    // Not sooner than followUpMs, not later than twice that; the pool's groups at one moment,
    // the other binding's group at another.
    for (const at of [single, first, second]) {
      expect(at).toBeGreaterThanOrEqual(syncedAt + FOLLOW_UP_MS);
      expect(at).toBeLessThanOrEqual(Date.now() + 2 * FOLLOW_UP_MS);
    }
    expect(first).toBe(second);
    expect(first).not.toBe(single);
    // Long enough for a reconcile requested now to have run (debounce 200 ms).
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(await lastReconcile()).toBe(before);
    expect(registered(arn)).toEqual(east);
  });
});

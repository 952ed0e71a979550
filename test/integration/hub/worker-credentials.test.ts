import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { CountingSimulator } from '../../support/counting-simulator.js';
import { reconcileShard } from '../../../hub/queue/reconcile-contract.js';
import { waitFor } from '../../env/wait-for.js';
import { REGION, binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';
import { TestFederation } from '../../support/test-federation.js';

// A worker fetches the credentials of every account its bindings name as it starts, so that
// the first call into each account (after a cold start, every group's describe) does not wait
// for STS first.

const SHARDS = 4;
let sim: Elbv2SimulatorServer | undefined;
let fed: TestFederation | undefined;

afterEach(async () => {
  await fed?.close();
  await sim?.close();
});

describe('ReconcileWorker credentials', () => {
  it('assumes every role the bindings name as it starts, before any reconcile needs one', async () => {
    const simulator = new CountingSimulator({ rateLimits: false, requireKnownRoles: true });
    sim = await startElbv2Simulator({ simulator });
    const accounts = ['111111111111', '222222222222'];
    const roleOf = (account: string): string => `arn:aws:iam::${account}:role/tgfed`;
    for (const account of accounts) simulator.allowRole(roleOf(account), { externalId: 'ext' });
    // A pool over both accounts, in shards this worker does not consume: it never reconciles
    // them, so only the warm-up can assume their roles.
    const groups = accounts.map((account, i) =>
      targetGroup({
        arn: targetGroupArn(i + 1, REGION, account),
        accountId: account,
        region: REGION,
        roleArn: roleOf(account),
        externalId: 'ext',
        capacity: 10,
      }),
    );
    const used = new Set(groups.map((g) => reconcileShard(g.arn, SHARDS)));
    const others = [...Array(SHARDS).keys()].filter((s) => !used.has(s));
    expect(others.length).toBeGreaterThan(0);

    fed = new TestFederation({
      name: 'wcred',
      redisUrl: inject('redisUrl'),
      clusters: [{ id: 'east', block: 1 }],
    });
    await fed.start();
    await fed.applyBinding(
      binding({
        name: 'pool',
        clusters: { names: ['east'], labels: undefined },
        target: { $case: 'pool', pool: { groups, listenerRuleArn: '' } },
      }),
    );
    await fed.startWorker(simulatorWorkerDeps(sim.url), {
      reconcileShardCount: SHARDS,
      workerShards: others,
    });

    await waitFor(() => accounts.every((a) => simulator.assumed.get(roleOf(a)) === 1), {
      what: 'both roles assumed',
      timeoutMs: 10_000,
    });
    expect(simulator.calls()).toEqual([]);
  });
});

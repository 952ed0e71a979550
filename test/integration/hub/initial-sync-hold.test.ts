import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { BatchPhase, ReconcileOutcome } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { agentTokenOf } from '../../support/test-hub-settings.js';
import { TestFederation } from '../../support/test-federation.js';
import { RogueAgent, batchRequest, replaceChange } from '../security/rogue-agent.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// After a cold start (or a Redis loss) every cluster streams its whole state before SYNCED.
// While it does, the workers hold registrations into its groups, so that a group fills in one
// RegisterTargets call instead of one per batch; SYNCED (or the hold running out) releases them.
// The agent here is a raw protocol client, so the test decides when SYNCED goes out.

let sim: Elbv2SimulatorServer;
let fed: TestFederation;
const agents: RogueAgent[] = [];
let groups = 0;

function addresses(block: number, from: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `10.${block}.0.${from + i}`);
}

async function boundGroup(cluster: string): Promise<string> {
  groups++;
  const arn = sim.simulator.createTargetGroup({
    account: ACCOUNT,
    region: REGION,
    name: `hold-${groups}`,
    port: 8080,
  });
  await fed.applyBinding(
    binding({
      name: `hold-${groups}`,
      clusters: { names: [cluster], labels: undefined },
      port: { port: { $case: 'number', number: 8080 } },
      target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
    }),
  );
  return arn;
}

/** A stream of `cluster` that sent hello and is streaming its resync (no SYNCED yet). */
async function resyncing(cluster: string) {
  const agent = new RogueAgent(`127.0.0.1:${fed.hub.agentPort}`, {
    token: agentTokenOf(cluster),
    ownConnection: true,
  });
  agents.push(agent);
  const stream = agent.open();
  stream.hello(cluster);
  await stream.next('welcome');
  // The workers read cluster statuses every second: wait until the worker sees the resync.
  const worker = fed.workers[0];
  await waitFor(
    () =>
      worker?.options.initialSyncHoldMs === 0 ||
      worker?.clusterStatus?.status(cluster).initialSync === true,
    { what: `the worker to see ${cluster} streaming its initial sync` },
  );
  let sequence = 0;
  return {
    /** One resync batch with the whole of shop/web; resolves once acked. */
    async send(addressList: string[]): Promise<void> {
      sequence++;
      const request = batchRequest(sequence, [replaceChange('web', addressList)]);
      if (request.message?.$case === 'batch') {
        request.message.batch.phase = BatchPhase.BATCH_PHASE_RESYNC;
      }
      stream.write(request);
      expect((await stream.next('ack')).ack.sequence).toBe(sequence);
    },
    async synced(): Promise<void> {
      sequence++;
      stream.synced(sequence);
      expect((await stream.next('ack')).ack.sequence).toBe(sequence);
    },
  };
}

function registerCalls(arn: string) {
  return sim.simulator.calls({ targetGroupArn: arn, action: 'RegisterTargets', errorCode: null });
}

function registered(arn: string): string[] {
  return sim.simulator
    .targets(arn)
    .map((t) => t.id)
    .sort();
}

beforeAll(async () => {
  sim = await startElbv2Simulator({ rateLimits: false });
  fed = new TestFederation({
    name: 'isync',
    redisUrl: inject('redisUrl'),
    clusters: [
      { id: 'held', block: 1 },
      { id: 'unheld', block: 2 },
    ],
    workerSettings: { initialSyncHoldMs: 30_000 },
  });
  await fed.start();
  await fed.startWorker(simulatorWorkerDeps(sim.url));
});

afterAll(async () => {
  for (const agent of agents) agent.close();
  await fed?.close();
  await sim?.close();
});

describe('Registrations during a cluster’s initial sync after a cold start', () => {
  it('wait until SYNCED, then fill the group in one call', async () => {
    const arn = await boundGroup('held');
    const stream = await resyncing('held');
    // Three batches, each reconciled before the next: each would have been a call of its own.
    // The first reconcile resolves and holds the 10 targets; the next ones see that the cluster
    // is still syncing and hold without resolving again (their record keeps the count it found).
    let lastStart = 0;
    for (const [n, count] of [10, 20, 30].entries()) {
      await stream.send(addresses(1, 1, count));
      const record = await waitFor(
        async () => {
          const last = (await fed.records.read(arn)).last;
          return last !== undefined &&
            last.startedAtMs > lastStart &&
            (last.waitingForSync ?? 0) > 0
            ? last
            : undefined;
        },
        { what: `a reconcile holding the targets of batch ${n + 1}` },
      );
      lastStart = record.startedAtMs;
      expect(record.waitingForSync).toBe(10);
      expect(registerCalls(arn), `after batch ${n + 1}`).toHaveLength(0);
    }
    // Reconciled (a reconcile ran for the batches) but nothing registered.
    const status = await fed.status(arn);
    expect(status?.lastOutcome).toBe(ReconcileOutcome.RECONCILE_OUTCOME_IN_SYNC);
    expect(status?.actualTargets).toBe(0);
    expect(status?.desiredTargets).toBe(30);

    await stream.synced();
    await waitFor(() => registered(arn).length === 30, { what: 'the group filled' });
    expect(registered(arn)).toEqual(addresses(1, 1, 30).sort());
    expect(registerCalls(arn)).toHaveLength(1);
  });

  it('with the hold off, registers batch by batch', async () => {
    // Hold off for this worker: a second federation would need its own hub; instead a worker
    // with initialSyncHoldMs 0 takes over the queues (the first one stops).
    await fed.workers[0]?.shutdown(0);
    fed.workers.shift();
    await fed.startWorker(simulatorWorkerDeps(sim.url), { initialSyncHoldMs: 0 });
    const arn = await boundGroup('unheld');
    const stream = await resyncing('unheld');
    await stream.send(addresses(2, 1, 10));
    await waitFor(() => registered(arn).length === 10, { what: 'the first batch registered' });
    await stream.send(addresses(2, 1, 20));
    await waitFor(() => registered(arn).length === 20, { what: 'the second batch registered' });
    expect(registerCalls(arn)).toHaveLength(2);
    await stream.synced();
  });
});

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import type { Hub } from '../../../hub/hub.js';
import { BatchPhase, ReconcileOutcome } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { scrapeMetrics } from '../../support/prometheus-text.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { agentTokenOf, type TestHubCluster } from '../../support/test-hub-settings.js';
import { TestFederation } from '../../support/test-federation.js';
import { RogueAgent, batchRequest, replaceChange } from '../security/rogue-agent.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// After a cold start (or a Redis loss) every cluster streams its whole state before SYNCED.
// While it does, the hub keeps back the reconciles of the groups it feeds, and the workers hold
// registrations into them (for a reconcile that runs anyway: another hub's stream, an operator),
// so that a group fills in one RegisterTargets call instead of one per batch; SYNCED (or the
// hold running out) releases them. The agent here is a raw protocol client, so the test decides
// when SYNCED goes out.

let sim: Elbv2SimulatorServer;
let fed: TestFederation;
const agents: RogueAgent[] = [];
let groups = 0;

function addresses(block: number, from: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `10.${block}.0.${from + i}`);
}

async function boundGroup(
  clusters: string | string[],
  federation: TestFederation = fed,
): Promise<string> {
  groups++;
  const arn = sim.simulator.createTargetGroup({
    account: ACCOUNT,
    region: REGION,
    name: `hold-${groups}`,
    port: 8080,
  });
  await federation.applyBinding(
    binding({
      name: `hold-${groups}`,
      clusters: { names: [clusters].flat(), labels: undefined },
      port: { port: { $case: 'number', number: 8080 } },
      target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
    }),
  );
  // The binding's own reconcile, out of the way of what the test counts.
  await waitFor(async () => (await federation.records.read(arn)).last !== undefined, {
    what: 'the reconcile of the new binding',
  });
  return arn;
}

/**
 * A stream of `cluster` that sent hello and is streaming its resync (no SYNCED yet).
 * @param initial whether this is the cluster's initial sync in the storage epoch
 */
async function resyncing(
  cluster: string,
  initial = true,
  federation: TestFederation = fed,
  hub: Hub = federation.hub,
) {
  const agent = new RogueAgent(`127.0.0.1:${hub.agentPort}`, {
    token: agentTokenOf(cluster),
    ownConnection: true,
  });
  agents.push(agent);
  const stream = agent.open();
  stream.hello(cluster);
  await stream.next('welcome');
  // The test hub closes a stream silent for three heartbeat intervals.
  const heartbeats = setInterval(() => stream.heartbeat(), 200).unref();
  stream.call.on('close', () => clearInterval(heartbeats));
  // The workers read cluster statuses every second: wait until the worker sees the resync.
  const worker = federation.workers[0];
  await waitFor(
    () =>
      !initial ||
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
    /** Ends the stream without SYNCED. */
    close(): void {
      clearInterval(heartbeats);
      agent.close();
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

/** A federation of `clusters` whose hub and workers hold initial syncs this long. */
function federation(
  name: string,
  clusters: TestHubCluster[],
  initialSyncHoldMs = 30_000,
): TestFederation {
  return new TestFederation({
    name,
    redisUrl: inject('redisUrl'),
    clusters,
    hubSettings: { initialSyncHoldMs },
  });
}

beforeAll(async () => {
  sim = await startElbv2Simulator({ rateLimits: false });
  fed = federation('isync', [
    { id: 'held', block: 1 },
    { id: 'second', block: 2 },
    { id: 'third', block: 3 },
  ]);
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
    const before = (await fed.records.read(arn)).last?.startedAtMs;
    const sink = fed.hub.reconcileQueues;
    // Three batches: each would have been a reconcile, and a call, of its own.
    for (const [n, count] of [10, 20, 30].entries()) {
      await stream.send(addresses(1, 1, count));
      expect(sink?.deferredGroups, `after batch ${n + 1}`).toEqual([arn]);
    }
    // No reconcile ran for the sync: the hub kept the batches' back, and the workers enqueue
    // none when a cluster begins its initial sync (its end brings the groups back).
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await fed.records.read(arn)).last?.startedAtMs).toBe(before);
    // Operators see it on the hub's /metrics.
    const keptBack = async () =>
      (await scrapeMetrics(fed.hub.healthPort)).value('tgfed_hub_reconciles_kept_back');
    expect(await keptBack()).toBe(1);
    // A reconcile that runs anyway (an operator's here; the workers' own when they see a
    // cluster's status change, another hub's stream) holds the registrations.
    await fed.triggerReconcile(arn, false);
    const record = await waitFor(
      async () => {
        const last = (await fed.records.read(arn)).last;
        return (last?.waitingForSync ?? 0) > 0 ? last : undefined;
      },
      { what: 'a reconcile holding the targets' },
    );
    expect(record.waitingForSync).toBe(30);
    expect(registerCalls(arn)).toHaveLength(0);
    const status = await fed.status(arn);
    expect(status?.lastOutcome).toBe(ReconcileOutcome.RECONCILE_OUTCOME_IN_SYNC);
    expect(status?.actualTargets).toBe(0);
    expect(status?.desiredTargets).toBe(30);

    await stream.synced();
    expect(sink?.deferredGroups).toEqual([]);
    expect(await keptBack()).toBe(0);
    await waitFor(() => registered(arn).length === 30, { what: 'the group filled' });
    expect(registered(arn)).toEqual(addresses(1, 1, 30).sort());
    expect(registerCalls(arn)).toHaveLength(1);
  });

  it('keep a group fed by two syncing clusters back until both are done or gone', async () => {
    const arn = await boundGroup(['second', 'third']);
    const sink = fed.hub.reconcileQueues;
    const second = await resyncing('second');
    const third = await resyncing('third');
    const before = (await fed.records.read(arn)).last?.startedAtMs;
    await second.send(addresses(2, 1, 5));
    await third.send(addresses(3, 1, 3));
    expect(sink?.deferredGroups).toEqual([arn]);
    // third still feeds the group: neither the hub nor the workers (who see second's status
    // change) reconcile it for second's SYNCED.
    await second.synced();
    expect(sink?.deferredGroups).toEqual([arn]);
    const worker = fed.workers[0];
    await waitFor(() => worker?.clusterStatus?.status('second').initialSync === false, {
      what: 'the worker to see the end of second’s sync',
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await fed.records.read(arn)).last?.startedAtMs).toBe(before);
    expect(registered(arn)).toEqual([]);
    // third's stream ends without SYNCED: what it kept back goes, and the group fills with both
    // clusters' endpoints (third's are kept as last seen while it is away).
    third.close();
    await waitFor(() => sink?.deferredGroups.length === 0, { what: 'the hold ended' });
    await waitFor(() => registered(arn).length === 8, { what: 'the group filled' });
    expect(registered(arn)).toEqual([...addresses(2, 1, 5), ...addresses(3, 1, 3)].sort());

    // A cluster that synced in this storage epoch is not held when it reconnects.
    second.close();
    const again = await resyncing('second', false);
    await again.send(addresses(2, 1, 6));
    expect(sink?.deferredGroups).toEqual([]);
    await waitFor(() => registered(arn).length === 9, { what: 'the reconnect registered' });
    await again.synced();
  });

  it('keep a group fed by a listed cluster that has not synced yet back until it has, here or at another replica', async () => {
    // A cold start: the hub expects every listed cluster's initial sync. Clusters reconnect one
    // after another; a group must not be reconciled in a lull between their syncs.
    const cold = federation('isync-cold', [
      { id: 'early', block: 5 },
      { id: 'late', block: 6 },
      { id: 'elsewhere', block: 7 },
    ]);
    try {
      await cold.start();
      await cold.startWorker(simulatorWorkerDeps(sim.url));
      const sink = cold.hub.reconcileQueues;
      expect(sink?.expectedSyncs).toEqual(['early', 'elsewhere', 'late']);
      const withLate = await boundGroup(['early', 'late'], cold);
      const withElsewhere = await boundGroup(['early', 'elsewhere'], cold);
      const early = await resyncing('early', true, cold);
      expect(sink?.expectedSyncs).toEqual(['elsewhere', 'late']);
      await early.send(addresses(5, 1, 4));
      await early.synced();
      // early's sync is done, but the other clusters feeding both groups have not begun theirs.
      expect(sink?.deferredGroups).toEqual([withLate, withElsewhere].sort());
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(registered(withLate)).toEqual([]);
      expect(registered(withElsewhere)).toEqual([]);

      const late = await resyncing('late', true, cold);
      await late.send(addresses(6, 1, 3));
      await late.synced();
      await waitFor(() => registered(withLate).length === 7, { what: 'the group filled' });
      expect(registered(withLate)).toEqual([...addresses(5, 1, 4), ...addresses(6, 1, 3)].sort());
      expect(registerCalls(withLate)).toHaveLength(1);
      expect(sink?.deferredGroups).toEqual([withElsewhere]);

      // elsewhere syncs at another replica: this hub sees it synced in its session record and
      // lets go of what it kept back (long before its 30 s bound).
      const replica = await cold.startReplica('isync-cold-other');
      const elsewhere = await resyncing('elsewhere', true, cold, replica);
      await elsewhere.send(addresses(7, 1, 2));
      await elsewhere.synced();
      await waitFor(() => sink?.expectedSyncs.length === 0 && sink.deferredGroups.length === 0, {
        what: 'the hub to see elsewhere synced',
        timeoutMs: 5_000,
      });
      await waitFor(() => registered(withElsewhere).length === 6, { what: 'the group filled' });
      expect(registered(withElsewhere)).toEqual(
        [...addresses(5, 1, 4), ...addresses(7, 1, 2)].sort(),
      );
      early.close();
      late.close();
      elsewhere.close();
    } finally {
      await cold.close();
    }
  });

  it('with the hold off, registers batch by batch', async () => {
    // The hold is one setting of hub and workers: a federation of its own with it off.
    const off = federation('isync-off', [{ id: 'unheld', block: 4 }], 0);
    try {
      await off.start();
      await off.startWorker(simulatorWorkerDeps(sim.url));
      const arn = await boundGroup('unheld', off);
      const stream = await resyncing('unheld', true, off);
      await stream.send(addresses(4, 1, 10));
      await waitFor(() => registered(arn).length === 10, { what: 'the first batch registered' });
      await stream.send(addresses(4, 1, 20));
      await waitFor(() => registered(arn).length === 20, { what: 'the second batch registered' });
      expect(registerCalls(arn)).toHaveLength(2);
      await stream.synced();
    } finally {
      await off.close();
    }
  });
});

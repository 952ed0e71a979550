import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Elbv2TargetGroupClients } from '../../../hub/aws/index.js';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import type { DesiredTarget } from '../../../hub/federation/desired-targets.js';
import type { GroupDesiredState } from '../../../hub/federation/target-group-desired-state.js';
import { TargetGroupReconciler, TargetGroupRecords } from '../../../hub/reconcile/index.js';
import type {
  AwsCallLimiter,
  DesiredGroupSource,
} from '../../../hub/reconcile/target-group-reconciler.js';
import type { TargetGroup } from '../../../shared/index.js';
import type { RedisClient } from '../../../hub/state/index.js';
import { waitFor } from '../../env/wait-for.js';
import { ACCOUNT, REGION, targetGroup } from '../../support/binding-fixtures.js';
import { testRedis } from '../../support/test-redis.js';

// When the reconciler does things, against the real ELBv2 simulator (over HTTP, with STS) and
// real Redis: the describe a group's records call for (no trusted cache, a drift check due)
// begins while the resolution is still under way; a reconcile that held registrations for a
// sync that ended meanwhile brings its group back at once. The desired state is a stand-in:
// the resolution's timing and the clusters' syncs are what these tests control.

const closers: (() => unknown)[] = [];
let sim: Elbv2SimulatorServer;
let groups = 0;

beforeAll(async () => {
  sim = await startElbv2Simulator({ rateLimits: false });
  closers.push(() => sim.close());
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
});

function definitionOf(arn: string, overrides: Partial<TargetGroup> = {}): TargetGroup {
  return targetGroup({
    arn,
    accountId: ACCOUNT,
    region: REGION,
    capacity: 1000,
    ...overrides,
  });
}

function desiredState(definition: TargetGroup, hosts: readonly number[]): GroupDesiredState {
  const targets = new Map<string, DesiredTarget>();
  for (const h of hosts) {
    const id = `10.7.0.${h}`;
    targets.set(`${id}:8080`, {
      id,
      port: 8080,
      sources: [{ clusterId: 'east', service: 'shop/web', podName: `web-${h}` }],
      keptFailStatic: false,
      withdrawIfUnhealthy: false,
    });
  }
  return {
    targetGroupArn: definition.arn,
    targetGroup: definition,
    bindings: ['web'],
    bindingsRevision: 1,
    targets,
    conflicts: [],
    deregistrationsBlocked: false,
    awaitingResyncClusters: [],
    initialSyncClusters: [],
    overflow: [],
    unsettledPoolGroups: [],
    resolvedAtMs: Date.now(),
    unsettledProbes: new Map(),
    basisAtMs: Date.now(),
  };
}

/**
 * A desired state whose resolutions wait until `open()`: `definition()` answers at once with
 * what the bindings say, `resolve()` with what the resolution found.
 */
function gatedDesired(
  fromBindings: TargetGroup,
  resolved: TargetGroup,
  hosts: readonly number[],
): DesiredGroupSource & { open(): void; resolutions: number } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const source = {
    resolutions: 0,
    open,
    definition: (arn: string) =>
      Promise.resolve(arn === fromBindings.arn ? fromBindings : undefined),
    resolve: async () => {
      await gate;
      source.resolutions++;
      return desiredState(resolved, hosts);
    },
  };
  return source;
}

function setUp(
  desired: DesiredGroupSource,
  records = new TargetGroupRecords(testRedis(closers), `tgfed-timing-${randomUUID()}`),
  // The rate limits are not under test (see aws-rate-limiter.test.ts).
  limiter: AwsCallLimiter = { acquire: () => Promise.resolve(), penalize: () => Promise.resolve() },
): TargetGroupReconciler {
  const clients = new Elbv2TargetGroupClients({
    elbv2: {
      endpoint: sim.url,
      credentials: { accessKeyId: 'AKIDRECONCILER', secretAccessKey: 'secret' },
    },
    sts: { endpoint: sim.url },
  });
  closers.push(() => clients.close());
  return new TargetGroupReconciler(
    {
      desired,
      records,
      aws: clients,
      limiter,
    },
    { driftIntervalMs: 600_000 },
  );
}

function newGroup(): string {
  groups++;
  return sim.simulator.createTargetGroup({
    account: ACCOUNT,
    region: REGION,
    name: `describe-${groups}`,
    port: 8080,
  });
}

function describes(arn: string): number {
  return sim.simulator.calls({ action: 'DescribeTargetHealth', targetGroupArn: arn }).length;
}

function registered(arn: string): string[] {
  return sim.simulator
    .targets(arn)
    .map((t) => `${t.id}:${t.port}`)
    .sort();
}

describe('TargetGroupReconciler describes', () => {
  it('a group it has no trusted cache of while the resolution is still under way', async () => {
    const arn = newGroup();
    const definition = definitionOf(arn);
    const desired = gatedDesired(definition, definition, [1, 2, 3]);
    const reconciler = setUp(desired);

    const reconciling = reconciler.reconcile(arn, { reason: 'endpoints' });
    await waitFor(() => describes(arn) === 1, {
      what: 'the describe made before the resolution ended',
      timeoutMs: 5_000,
    });
    expect(desired.resolutions).toBe(0);
    desired.open();
    const result = await reconciling;

    expect(result.record.outcome).toBe('applied');
    expect(result.record.calls.describe).toBe(1);
    expect(describes(arn)).toBe(1);
    expect(registered(arn)).toEqual(['10.7.0.1:8080', '10.7.0.2:8080', '10.7.0.3:8080']);
  });

  it('again, when the resolution reaches the group through another role than the bindings did', async () => {
    const arn = newGroup();
    const role = `arn:aws:iam::${ACCOUNT}:role/tgfed-describe-${groups}`;
    sim.simulator.allowRole(role, { externalId: 'current' });
    // The bindings read first still name the old external id, which STS refuses; the
    // resolution has the binding as it is now.
    const stale = definitionOf(arn, { roleArn: role, externalId: 'previous' });
    const current = definitionOf(arn, { roleArn: role, externalId: 'current' });
    const desired = gatedDesired(stale, current, [4, 5]);
    const reconciler = setUp(desired);

    desired.open();
    const result = await reconciler.reconcile(arn, { reason: 'endpoints' });

    // Had it used the early describe, STS's refusal would have failed the reconcile.
    expect(result.record.outcome).toBe('applied');
    // Both are counted; the refused one reached STS, not ELBv2.
    expect(result.record.calls.describe).toBe(2);
    expect(describes(arn)).toBe(1);
    expect(registered(arn)).toEqual(['10.7.0.4:8080', '10.7.0.5:8080']);
  });

  it('nothing when its cache is trusted and no drift check is due', async () => {
    const arn = newGroup();
    const definition = definitionOf(arn);
    const first = gatedDesired(definition, definition, [6]);
    const reconciler = setUp(first);
    first.open();
    await reconciler.reconcile(arn, { reason: 'endpoints' });
    expect(describes(arn)).toBe(1);

    const result = await reconciler.reconcile(arn, { reason: 'endpoints' });

    expect(result.record.calls.describe).toBe(0);
    expect(describes(arn)).toBe(1);
    expect(result.record.outcome).toBe('in-sync');
  });
});

describe('TargetGroupReconciler after holding registrations for a sync', () => {
  /** A group fed by a cluster in its initial sync; `holding` answers the look after the record. */
  function syncing(holding: string[]) {
    const arn = newGroup();
    const definition = definitionOf(arn);
    const desired: DesiredGroupSource = {
      definition: () => Promise.resolve(definition),
      resolve: () =>
        Promise.resolve({ ...desiredState(definition, [7, 8]), initialSyncClusters: ['west'] }),
      holdingClusters: () => Promise.resolve(holding),
    };
    const records = new TargetGroupRecords(testRedis(closers), `tgfed-timing-${randomUUID()}`);
    return { arn, reconciler: setUp(desired, records), records };
  }

  it('brings the group back at once when the sync ended while it ran', async () => {
    const { arn, reconciler, records } = syncing([]);
    const startedAt = Date.now();
    const result = await reconciler.reconcile(arn, { reason: 'endpoints' });

    expect(result.record.waitingForSync).toBe(2);
    expect(registered(arn)).toEqual([]);
    expect(await records.nudged(Date.now(), 10)).toEqual([arn]);
    expect(result.nextDueAtMs).toBeGreaterThan(startedAt + 10_000);
  });

  it('leaves it to the sync’s end while the cluster still syncs', async () => {
    const { arn, reconciler, records } = syncing(['west']);
    const result = await reconciler.reconcile(arn, { reason: 'endpoints' });

    expect(result.record.waitingForSync).toBe(2);
    expect(await records.nudged(Date.now() + 60_000, 10)).toEqual([]);
  });
});

describe('TargetGroupReconciler and the nudges of a group', () => {
  it('settles a nudge made before the reads it rests on began, not one made while it ran', async () => {
    const arn = newGroup();
    const definition = definitionOf(arn);
    const records = new TargetGroupRecords(testRedis(closers), `tgfed-timing-${randomUUID()}`);
    const basis = Date.now();
    let duringResolution = (): Promise<void> => Promise.resolve();
    const desired: DesiredGroupSource = {
      resolve: async () => {
        await duringResolution();
        return { ...desiredState(definition, [1]), basisAtMs: basis };
      },
    };
    const reconciler = setUp(desired, records);

    // Made a second before the reads began (a safety net, another group's resolution).
    await records.nudge([arn], basis + 15_000, basis - 1_000);
    await reconciler.reconcile(arn, { reason: 'endpoints' });
    expect(await records.nudged(basis + 60_000, 10)).toEqual([]);

    // Made while the reconcile ran, after its reads began: it asks for what the reconcile may
    // not have read, and stays.
    duringResolution = () => records.nudge([arn], basis + 15_000, basis + 1_000);
    await reconciler.reconcile(arn, { reason: 'endpoints' });
    expect(await records.nudged(basis + 60_000, 10)).toEqual([arn]);
  });

  it('nudges the pool groups it left unsettled only if they still are when it is done', async () => {
    const arn = newGroup();
    const definition = definitionOf(arn);
    const records = new TargetGroupRecords(testRedis(closers), `tgfed-timing-${randomUUID()}`);
    const [settledMeanwhile, stillUnsettled] = [newGroup(), newGroup()];
    const asked: string[][] = [];
    const desired: DesiredGroupSource = {
      resolve: () =>
        Promise.resolve({
          ...desiredState(definition, [1]),
          unsettledPoolGroups: [settledMeanwhile, stillUnsettled],
          unsettledProbes: new Map([
            [settledMeanwhile, '10.7.1.1:8080'],
            [stillUnsettled, '10.7.1.2:8080'],
          ]),
        }),
      stillUnsettled: (groups, probes) => {
        asked.push([...groups]);
        expect(probes.get(stillUnsettled)).toBe('10.7.1.2:8080');
        return Promise.resolve(groups.filter((g) => g !== settledMeanwhile));
      },
    };
    const startedAt = Date.now();
    await setUp(desired, records).reconcile(arn, { reason: 'endpoints' });

    expect(asked).toEqual([[settledMeanwhile, stillUnsettled]]);
    expect(await records.nudged(Date.now() + 60_000, 10)).toEqual([stillUnsettled]);
    // Not at once: within followUpMs (15 s by default).
    expect(await records.nudged(startedAt + 10_000, 10)).toEqual([]);
  });
  it('nudges at once the pool groups it moved a target into from another group', async () => {
    const arn = newGroup();
    const definition = definitionOf(arn);
    const records = new TargetGroupRecords(testRedis(closers), `tgfed-timing-${randomUUID()}`);
    const [movedInto, givenNew] = [newGroup(), newGroup()];
    let basisAtMs = Date.now();
    const desired: DesiredGroupSource = {
      resolve: () =>
        Promise.resolve({
          ...desiredState(definition, [1]),
          basisAtMs,
          unsettledPoolGroups: [givenNew, movedInto].sort(),
          unsettledProbes: new Map([
            [movedInto, '10.7.1.1:8080'],
            [givenNew, '10.7.1.2:8080'],
          ]),
          movedIntoPoolGroups: [movedInto],
        }),
      stillUnsettled: (groups) => Promise.resolve([...groups]),
    };
    const startedAt = Date.now();
    const reconciler = setUp(desired, records);
    await reconciler.reconcile(arn, { reason: 'endpoints' });

    // The moved target has no change request coming: its group is due now. The new target's
    // group gets the request of the change that brought it; the nudge is a later safety net.
    expect(await records.nudged(Date.now(), 10)).toEqual([movedInto]);
    expect(await records.nudged(startedAt + 10_000, 10)).toEqual([movedInto]);
    expect((await records.nudged(Date.now() + 60_000, 10)).sort()).toEqual(
      [givenNew, movedInto].sort(),
    );

    // Another reconcile from the same resolution (another group of the pool, say) does not
    // nudge it now again: once its first nudge is taken, the next is the safety net. (Taken
    // as a reconcile whose reads began after it would: a millisecond later.)
    const settle = (group: string) => records.settleNudge(group, Date.now() + 1);
    for (const group of [movedInto, givenNew]) await settle(group);
    await reconciler.reconcile(arn, { reason: 'endpoints' });
    expect(await records.nudged(Date.now(), 10)).toEqual([]);
    expect((await records.nudged(Date.now() + 60_000, 10)).sort()).toEqual(
      [givenNew, movedInto].sort(),
    );
    // A newer resolution that moves a target there again does.
    for (const group of [movedInto, givenNew]) await settle(group);
    basisAtMs = Date.now() + 1;
    await reconciler.reconcile(arn, { reason: 'endpoints' });
    expect(await records.nudged(Date.now() + 1_000, 10)).toEqual([movedInto]);
  });
});

describe('a group whose targets wait for room while a pool placement keeps them settling', () => {
  it('comes back as they stop settling, not after followUpMs', async () => {
    const records = new TargetGroupRecords(testRedis(closers), `tgfed-timing-${randomUUID()}`);
    const due = async (arn: string, atMs: number): Promise<boolean> =>
      (await records.due(atMs, 100)).includes(arn);
    const [settling, plain] = [newGroup(), newGroup()];
    const startedAt = Date.now();
    for (const arn of [settling, plain]) {
      // Room for one of the two desired targets: one waits.
      const definition = definitionOf(arn, { capacity: 1 });
      const desired: DesiredGroupSource = {
        resolve: () =>
          Promise.resolve({
            ...desiredState(definition, [1, 2]),
            ...(arn === settling ? { settlesAtMs: startedAt + 3_000 } : {}),
          }),
      };
      const result = await setUp(desired, records).reconcile(arn, { reason: 'endpoints' });
      expect(result.record.waitingForCapacity).toBe(1);
    }
    expect(await due(settling, startedAt + 2_000)).toBe(false);
    expect(await due(settling, startedAt + 3_200)).toBe(true);
    // Without settling targets: within followUpMs (15 s by default).
    expect(await due(plain, startedAt + 3_200)).toBe(false);
    expect(await due(plain, Date.now() + 15_100)).toBe(true);
  });
});

/**
 * Records whose `begin` (the reconcile's mark) or `described` (its describe's result) waits
 * until `open()`, or fails with `fail()`.
 */
class GatedRecords extends TargetGroupRecords {
  open!: () => void;
  fail!: (err: Error) => void;
  readonly #gated: 'begin' | 'described';
  readonly #gate = new Promise<void>((resolve, reject) => {
    this.open = resolve;
    this.fail = reject;
  });

  constructor(gated: 'begin' | 'described', redis: RedisClient, prefix: string) {
    super(redis, prefix);
    this.#gated = gated;
    // A failure is for the reconcile's write to see, whenever it asks.
    this.#gate.catch(() => undefined);
  }

  override async begin(arn: string, definition: TargetGroup | undefined): Promise<void> {
    if (this.#gated === 'begin') await this.#gate;
    return super.begin(arn, definition);
  }

  override async described(...args: Parameters<TargetGroupRecords['described']>): Promise<void> {
    if (this.#gated === 'described') await this.#gate;
    return super.described(...args);
  }
}

describe.each([
  ['marking its records under way', 'begin'],
  ['recording what its describe found', 'described'],
] as const)('TargetGroupReconciler %s', (_, gated) => {
  function setUpCounting(desired: DesiredGroupSource, records: TargetGroupRecords) {
    const limiter = {
      /** Tokens asked for calls that change the group (a describe may come first). */
      tokens: 0,
      acquire: (_account: string, _region: string, cls: string) => {
        if (cls === 'mutate') limiter.tokens++;
        return Promise.resolve();
      },
      penalize: () => Promise.resolve(),
    };
    return { reconciler: setUp(desired, records, limiter), limiter };
  }

  it('plans and asks for its token meanwhile; no call changes the group before the write', async () => {
    const arn = newGroup();
    const definition = definitionOf(arn);
    const desired = gatedDesired(definition, definition, [1, 2]);
    desired.open();
    const records = new GatedRecords(gated, testRedis(closers), `tgfed-timing-${randomUUID()}`);
    const { reconciler, limiter } = setUpCounting(desired, records);

    const reconciling = reconciler.reconcile(arn, { reason: 'endpoints' });
    await waitFor(() => limiter.tokens > 0, {
      what: 'the token asked for while the records are being written',
      timeoutMs: 5_000,
    });
    expect(sim.simulator.calls({ action: 'RegisterTargets', targetGroupArn: arn })).toEqual([]);
    records.open();
    const result = await reconciling;

    expect(result.record.outcome).toBe('applied');
    expect(registered(arn)).toEqual(['10.7.0.1:8080', '10.7.0.2:8080']);
  });

  it('fails, calling nothing, when the records cannot be written', async () => {
    const arn = newGroup();
    const definition = definitionOf(arn);
    const desired = gatedDesired(definition, definition, [3]);
    desired.open();
    const records = new GatedRecords(gated, testRedis(closers), `tgfed-timing-${randomUUID()}`);
    const { reconciler } = setUpCounting(desired, records);
    records.fail(new Error('Redis is away'));

    await expect(reconciler.reconcile(arn, { reason: 'endpoints' })).rejects.toThrow(
      'Redis is away',
    );
    expect(sim.simulator.calls({ action: 'RegisterTargets', targetGroupArn: arn })).toEqual([]);
    expect(registered(arn)).toEqual([]);
  });
});

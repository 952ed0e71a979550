import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CreateVpcCommand, EC2Client } from '@aws-sdk/client-ec2';
import {
  CreateTargetGroupCommand,
  DeregisterTargetsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  RegisterTargetsCommand,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import {
  Elbv2TargetGroupClients,
  type TargetGroupApi,
  type TargetGroupApiFactory,
  type TargetRef,
} from '../../../hub/aws/index.js';
import { ReconcileOutcome, type TargetGroup } from '../../../shared/index.js';
import {
  MOTO_REGION,
  MOTO_TEST_CREDENTIALS,
  awsClientConfig,
  uniqueAccountId,
} from '../../env/moto-server.js';
import { waitFor } from '../../env/wait-for.js';
import { binding } from '../../support/binding-fixtures.js';
import { TestFederation, webIp } from '../../support/test-federation.js';

// The workers against real moto, in two accounts reached through STS AssumeRole with an
// external id, as in production: the SDK's standard endpoint setting points them at moto.

const endpoint = inject('motoEndpoint');
const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];
const EXTERNAL_ID = 'tgfed-moto-test';
const accountA = uniqueAccountId();
const accountB = uniqueAccountId();
const awsClients = {
  elbv2: { endpoint, credentials: MOTO_TEST_CREDENTIALS },
  sts: { endpoint },
};

function roleOf(account: string): string {
  return `arn:aws:iam::${account}:role/tgfed`;
}

/** ELBv2 of an account, as the test (an outside actor) sees it. */
function elbv2Of(account: string): ElasticLoadBalancingV2Client {
  return new ElasticLoadBalancingV2Client({
    ...awsClientConfig(
      endpoint,
      fromTemporaryCredentials({
        params: { RoleArn: roleOf(account), RoleSessionName: 'test', ExternalId: EXTERNAL_ID },
        clientConfig: awsClientConfig(endpoint),
      }),
    ),
  });
}

const clients = new Map<string, ElasticLoadBalancingV2Client>();
function elbv2(account: string): ElasticLoadBalancingV2Client {
  let client = clients.get(account);
  if (client === undefined) clients.set(account, (client = elbv2Of(account)));
  return client;
}

/** An ip target group in its own VPC of the account; returns its definition for a binding. */
async function createGroup(account: string, capacity = 0): Promise<TargetGroup> {
  const ec2 = new EC2Client({
    ...awsClientConfig(
      endpoint,
      fromTemporaryCredentials({
        params: { RoleArn: roleOf(account), RoleSessionName: 'test', ExternalId: EXTERNAL_ID },
        clientConfig: awsClientConfig(endpoint),
      }),
    ),
  });
  const { Vpc } = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }));
  ec2.destroy();
  const out = await elbv2(account).send(
    new CreateTargetGroupCommand({
      Name: `moto-${randomBytes(6).toString('hex')}`,
      Protocol: 'TCP',
      Port: 8080,
      VpcId: Vpc?.VpcId,
      TargetType: 'ip',
    }),
  );
  const arn = out.TargetGroups?.[0]?.TargetGroupArn ?? '';
  return {
    arn,
    accountId: account,
    region: MOTO_REGION,
    roleArn: roleOf(account),
    externalId: EXTERNAL_ID,
    targetType: 'ip',
    capacity,
    availabilityZone: '',
  };
}

/** `ip:port` of every target moto holds in the group, sorted. */
async function targetsIn(group: TargetGroup): Promise<string[]> {
  const out = await elbv2(group.accountId).send(
    new DescribeTargetHealthCommand({ TargetGroupArn: group.arn }),
  );
  return (out.TargetHealthDescriptions ?? [])
    .map((d) => `${d.Target?.Id}:${d.Target?.Port}`)
    .sort();
}

function expected(block: number, hosts: readonly number[], extra: string[] = []): string[] {
  return [...hosts.map((h) => `${webIp(block, h)}:8080`), ...extra].sort();
}

async function converged(group: TargetGroup, want: string[], what: string): Promise<void> {
  let last: string[] = [];
  await waitFor(
    async () => {
      last = await targetsIn(group);
      return JSON.stringify(last) === JSON.stringify(want);
    },
    { what: `${what} (last seen: ${last.join(' ')})`, timeoutMs: 20_000, intervalMs: 200 },
  );
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

function groupBinding(name: string, cluster: string, group: TargetGroup) {
  return binding({
    name,
    clusters: { names: [cluster], labels: undefined },
    target: { $case: 'targetGroup', targetGroup: group },
  });
}

afterAll(() => {
  for (const client of clients.values()) client.destroy();
});

describe('ReconcileWorker against moto in two accounts', () => {
  let fed: TestFederation;

  beforeAll(async () => {
    fed = new TestFederation({
      name: 'wmoto',
      redisUrl: inject('redisUrl'),
      clusters,
      workerSettings: { driftIntervalMs: 1_000 },
    });
    await fed.start();
    await fed.startWorker({ awsClients });
  });

  afterAll(async () => {
    await fed?.close();
  });

  it('registers, deregisters and repairs drift, and leaves foreign targets in a shared group alone', async () => {
    const group = await createGroup(accountA);
    const foreign = { Id: '10.9.9.9', Port: 8080 };
    await elbv2(accountA).send(
      new RegisterTargetsCommand({ TargetGroupArn: group.arn, Targets: [foreign] }),
    );
    await fed.applyBinding(groupBinding('shared', 'east', group));
    fed.setEndpoints('east', range(1, 3));
    await converged(group, expected(1, range(1, 3), ['10.9.9.9:8080']), 'three targets');

    fed.setEndpoints('east', [1, 3]);
    await converged(group, expected(1, [1, 3], ['10.9.9.9:8080']), 'one target deregistered');

    // Someone removes a target of tgfed's behind its back: the next drift check puts it back.
    await elbv2(accountA).send(
      new DeregisterTargetsCommand({
        TargetGroupArn: group.arn,
        Targets: [{ Id: webIp(1, 1), Port: 8080 }],
      }),
    );
    await converged(group, expected(1, [1, 3], ['10.9.9.9:8080']), 'the drift repaired');
    const status = await fed.statusWhen(group.arn, (s) => s.inSync, 'the group in sync');
    expect(status).toMatchObject({ desiredTargets: 2, ownedTargets: 2, actualTargets: 3 });
  });

  it('spreads a pool over groups in two accounts within each group’s capacity', async () => {
    const groups = [await createGroup(accountA, 3), await createGroup(accountB, 3)];
    await fed.applyBinding(
      binding({
        name: 'pool',
        clusters: { names: ['west'], labels: undefined },
        target: { $case: 'pool', pool: { groups, listenerRuleArn: '' } },
      }),
    );
    fed.setEndpoints('west', range(1, 5));
    let held: string[][] = [];
    await waitFor(
      async () => {
        held = await Promise.all(groups.map((g) => targetsIn(g)));
        return held.flat().length === 5;
      },
      { what: 'five targets over the pool', timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(held.flat().sort()).toEqual(expected(2, range(1, 5)));
    for (const targets of held) expect(targets.length).toBeLessThanOrEqual(3);
  });

  it('holds a mass deregistration and applies it on the operator override', async () => {
    const group = await createGroup(accountB);
    await fed.applyBinding(groupBinding('guarded', 'east', group));
    fed.setEndpoints('east', range(1, 8));
    await converged(group, expected(1, range(1, 8)), 'eight targets');
    fed.setEndpoints('east', [1]);
    const held = await waitFor(async () => (await fed.status(group.arn))?.heldOperations[0], {
      what: 'the guard to hold the removal',
      timeoutMs: 20_000,
    });
    expect(held).toMatchObject({ deregistrations: 7, targetsBefore: 8 });
    expect(await targetsIn(group)).toEqual(expected(1, range(1, 8)));
    expect((await fed.status(group.arn))?.lastOutcome).toBe(
      ReconcileOutcome.RECONCILE_OUTCOME_HELD,
    );
    await fed.release(held.id);
    await converged(group, expected(1, [1]), 'the released removal');
  });
});

/** Real clients whose calls can be counted, or made to hang (a worker that dies mid-call). */
class ObservedClients implements TargetGroupApiFactory {
  readonly registered: string[] = [];
  hangRegistrations = false;
  hung = 0;
  readonly #real = new Elbv2TargetGroupClients(awsClients);

  forGroup(location: Parameters<TargetGroupApiFactory['forGroup']>[0]): TargetGroupApi {
    const real = this.#real.forGroup(location);
    return {
      describeTargetHealth: (signal) => real.describeTargetHealth(signal),
      deregisterTargets: (targets, signal) => real.deregisterTargets(targets, signal),
      registerTargets: async (targets: readonly TargetRef[], signal) => {
        if (this.hangRegistrations) {
          this.hung++;
          return new Promise<void>(() => undefined);
        }
        await real.registerTargets(targets, signal);
        for (const t of targets) this.registered.push(`${t.id}:${t.port}`);
      },
    };
  }

  close(): void {
    this.#real.close();
  }
}

describe('A worker killed mid-reconcile', () => {
  let fed: TestFederation;
  const dying = new ObservedClients();
  const survivor = new ObservedClients();

  beforeAll(async () => {
    fed = new TestFederation({ name: 'wkill', redisUrl: inject('redisUrl'), clusters });
    await fed.start();
  });

  afterAll(async () => {
    await fed?.close();
    dying.close();
    survivor.close();
  });

  it('is finished by another worker: no double registration, no lost change', async () => {
    const group = await createGroup(accountA);
    dying.hangRegistrations = true;
    const doomed = await fed.startWorker({ aws: dying }, { reconcileChunkSize: 2 });
    await fed.applyBinding(groupBinding('takeover', 'east', group));
    fed.setEndpoints('east', range(1, 5));
    await waitFor(() => dying.hung > 0, { what: 'the first worker to be inside RegisterTargets' });
    // The worker dies: its lock is no longer renewed and its connections are gone.
    await doomed.shutdown(0);
    // A change while nobody works on the group must not be lost either.
    fed.setEndpoints('east', range(1, 6));

    await fed.startWorker({ aws: survivor }, { reconcileChunkSize: 2 });
    await converged(group, expected(1, range(1, 6)), 'the group finished by the second worker');
    expect(dying.registered).toEqual([]);
    expect([...survivor.registered].sort()).toEqual(expected(1, range(1, 6)));
  });
});

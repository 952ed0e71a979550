import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CreateSubnetCommand, CreateVpcCommand, EC2Client } from '@aws-sdk/client-ec2';
import {
  CreateListenerCommand,
  CreateLoadBalancerCommand,
  CreateRuleCommand,
  CreateTargetGroupCommand,
  DescribeListenersCommand,
  DescribeRulesCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  type Action,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import type { TargetGroup } from '../../../shared/index.js';
import {
  MOTO_REGION,
  MOTO_TEST_CREDENTIALS,
  awsClientConfig,
  uniqueAccountId,
} from '../../env/moto-server.js';
import { waitFor } from '../../env/wait-for.js';
import { binding } from '../../support/binding-fixtures.js';
import { TestFederation } from '../../support/test-federation.js';

// The weighted forward action against real moto (5.2.5 stores and returns ForwardConfig weights
// in DescribeRules / DescribeListeners and accepts them in ModifyRule / ModifyListener; it does
// not check the 0–999 range or the 5-group limit, which the simulator tests cover). The account
// is reached through STS AssumeRole with an external id, as in production.

const endpoint = inject('motoEndpoint');
const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];
const EXTERNAL_ID = 'tgfed-moto-weights';
const account = uniqueAccountId();
const roleArn = `arn:aws:iam::${account}:role/tgfed`;

function credentials() {
  return fromTemporaryCredentials({
    params: { RoleArn: roleArn, RoleSessionName: 'test', ExternalId: EXTERNAL_ID },
    clientConfig: awsClientConfig(endpoint),
  });
}

const elbv2 = new ElasticLoadBalancingV2Client(awsClientConfig(endpoint, credentials()));
const ec2 = new EC2Client(awsClientConfig(endpoint, credentials()));

interface Alb {
  vpcId: string;
  listenerArn: string;
}

function suffix(): string {
  return randomBytes(4).toString('hex');
}

/** An internal ALB in its own VPC (two subnets in two zones) with a 404 listener. */
async function createAlb(): Promise<Alb> {
  const { Vpc } = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }));
  const vpcId = Vpc?.VpcId ?? '';
  const subnets = [];
  for (const [cidr, zone] of [
    ['10.0.1.0/24', `${MOTO_REGION}a`],
    ['10.0.2.0/24', `${MOTO_REGION}b`],
  ] as const) {
    const { Subnet } = await ec2.send(
      new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: cidr, AvailabilityZone: zone }),
    );
    subnets.push(Subnet?.SubnetId ?? '');
  }
  const lb = await elbv2.send(
    new CreateLoadBalancerCommand({
      Name: `alb-${suffix()}`,
      Subnets: subnets,
      Type: 'application',
      Scheme: 'internal',
    }),
  );
  const listener = await elbv2.send(
    new CreateListenerCommand({
      LoadBalancerArn: lb.LoadBalancers?.[0]?.LoadBalancerArn,
      Protocol: 'HTTP',
      Port: 80,
      DefaultActions: [{ Type: 'fixed-response', FixedResponseConfig: { StatusCode: '404' } }],
    }),
  );
  return { vpcId, listenerArn: listener.Listeners?.[0]?.ListenerArn ?? '' };
}

async function createGroup(vpcId: string, capacity: number): Promise<TargetGroup> {
  const out = await elbv2.send(
    new CreateTargetGroupCommand({
      Name: `lw-${suffix()}`,
      Protocol: 'HTTP',
      Port: 8080,
      VpcId: vpcId,
      TargetType: 'ip',
    }),
  );
  return {
    arn: out.TargetGroups?.[0]?.TargetGroupArn ?? '',
    accountId: account,
    region: MOTO_REGION,
    roleArn,
    externalId: EXTERNAL_ID,
    targetType: 'ip',
    capacity,
    availabilityZone: '',
  };
}

function forward(groups: TargetGroup[], weight: number): Action {
  return {
    Type: 'forward',
    ForwardConfig: {
      TargetGroups: groups.map((g) => ({ TargetGroupArn: g.arn, Weight: weight })),
    },
  };
}

async function targetCount(group: TargetGroup): Promise<number> {
  const out = await elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: group.arn }));
  return out.TargetHealthDescriptions?.length ?? 0;
}

function weightsOf(actions: Action[] | undefined): Record<string, number> {
  const fwd = actions?.find((a) => a.Type === 'forward');
  return Object.fromEntries(
    (fwd?.ForwardConfig?.TargetGroups ?? []).map((t) => [t.TargetGroupArn ?? '', t.Weight ?? 1]),
  );
}

/** A group is at 0 exactly when empty; its weight share within 2 % (+ rounding) of its targets'. */
function proportional(weights: Record<string, number>, counts: number[], groups: TargetGroup[]) {
  const weightTotal = groups.reduce((n, g) => n + (weights[g.arn] ?? 0), 0);
  const countTotal = counts.reduce((a, b) => a + b, 0);
  if (weightTotal === 0 || countTotal === 0) return false;
  return groups.every((g, i) => {
    const w = weights[g.arn] ?? -1;
    const n = counts[i] ?? 0;
    if (w === 0 || n === 0) return w === 0 && n === 0;
    return Math.abs(w / weightTotal - n / countTotal) <= 0.021;
  });
}

/** Waits until the weights follow the groups' targets (moto reports every target healthy). */
async function weightsFollowTargets(
  read: () => Promise<Record<string, number>>,
  groups: TargetGroup[],
  targets: number,
  what: string,
): Promise<Record<string, number>> {
  let last = '';
  try {
    return await waitFor(
      async () => {
        const counts = await Promise.all(groups.map(targetCount));
        const have = await read();
        last = JSON.stringify({ counts, have });
        const total = counts.reduce((a, b) => a + b, 0);
        return total === targets && proportional(have, counts, groups) && have;
      },
      { what, timeoutMs: 30_000, intervalMs: 250 },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen ${last}`, { cause: err });
  }
}

describe('Listener rule weights against moto', () => {
  let fed: TestFederation;

  beforeAll(async () => {
    fed = new TestFederation({
      name: 'lwmoto',
      redisUrl: inject('redisUrl'),
      clusters,
      // The guard is not under test here.
      workerSettings: { listenerWeightDebounceMs: 300, guardMinTargets: 1_000 },
    });
    await fed.start();
    await fed.startWorker({
      awsClients: {
        elbv2: { endpoint, credentials: MOTO_TEST_CREDENTIALS },
        sts: { endpoint },
      },
    });
  });

  afterAll(async () => {
    await fed?.close();
    elbv2.destroy();
    ec2.destroy();
  });

  it('keeps a listener rule’s forward weights proportional to the pool groups’ targets', async () => {
    const alb = await createAlb();
    const groups = [await createGroup(alb.vpcId, 4), await createGroup(alb.vpcId, 4)];
    const rule = await elbv2.send(
      new CreateRuleCommand({
        ListenerArn: alb.listenerArn,
        Priority: 10,
        Conditions: [{ Field: 'path-pattern', Values: ['/*'] }],
        Actions: [forward(groups, 1)],
      }),
    );
    const ruleArn = rule.Rules?.[0]?.RuleArn ?? '';
    const readRule = async () => {
      const out = await elbv2.send(new DescribeRulesCommand({ RuleArns: [ruleArn] }));
      return weightsOf(out.Rules?.[0]?.Actions);
    };
    await fed.applyBinding(
      binding({
        name: 'moto-weighted',
        clusters: { names: ['east'], labels: undefined },
        target: { $case: 'pool', pool: { groups, listenerRuleArn: ruleArn } },
      }),
    );
    fed.setEndpoints('east', [1]);
    const one = await weightsFollowTargets(readRule, groups, 1, 'one group at 999, one at 0');
    expect(Object.values(one).sort()).toEqual([0, 999]);
    fed.setEndpoints('east', [1, 2, 3, 4, 5, 6]);
    const six = await weightsFollowTargets(readRule, groups, 6, 'the weights of six targets');
    expect(Object.values(six).every((w) => w > 0)).toBe(true);
  });

  it('keeps a listener’s default forward action when the binding names the listener', async () => {
    const alb = await createAlb();
    const groups = [await createGroup(alb.vpcId, 3), await createGroup(alb.vpcId, 3)];
    const listener = await elbv2.send(
      new CreateListenerCommand({
        LoadBalancerArn: (
          await elbv2.send(new DescribeListenersCommand({ ListenerArns: [alb.listenerArn] }))
        ).Listeners?.[0]?.LoadBalancerArn,
        Protocol: 'HTTP',
        Port: 8080,
        DefaultActions: [forward(groups, 1)],
      }),
    );
    const listenerArn = listener.Listeners?.[0]?.ListenerArn ?? '';
    const readListener = async () => {
      const out = await elbv2.send(new DescribeListenersCommand({ ListenerArns: [listenerArn] }));
      return weightsOf(out.Listeners?.[0]?.DefaultActions);
    };
    await fed.applyBinding(
      binding({
        name: 'moto-listener',
        clusters: { names: ['west'], labels: undefined },
        target: { $case: 'pool', pool: { groups, listenerRuleArn: listenerArn } },
      }),
    );
    fed.setEndpoints('west', [1, 2, 3, 4]);
    const four = await weightsFollowTargets(readListener, groups, 4, 'the default weights');
    expect(Object.values(four).every((w) => w > 0)).toBe(true);
  });
});

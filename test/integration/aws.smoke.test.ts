import { randomBytes } from 'node:crypto';
import { describe, it, expect, inject, onTestFinished } from 'vitest';
import { CreateVpcCommand, DeleteVpcCommand, EC2Client } from '@aws-sdk/client-ec2';
import {
  CreateTargetGroupCommand,
  DeleteTargetGroupCommand,
  DeregisterTargetsCommand,
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  RegisterTargetsCommand,
  TargetGroupNotFoundException,
  type TargetDescription,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import {
  MOTO_DEFAULT_ACCOUNT_ID,
  awsClientConfig,
  uniqueAccountId,
  type AwsTestCredentials,
} from '../env/moto-server.js';

const endpoint = inject('motoEndpoint');

/** The AWS clients of one identity; destroyed when the test finishes. */
interface AccountClients {
  ec2: EC2Client;
  elbv2: ElasticLoadBalancingV2Client;
  sts: STSClient;
}

function clientsOf(credentials?: AwsTestCredentials): AccountClients {
  const config = awsClientConfig(endpoint, credentials);
  const clients = {
    ec2: new EC2Client(config),
    elbv2: new ElasticLoadBalancingV2Client(config),
    sts: new STSClient(config),
  };
  onTestFinished(() => {
    clients.ec2.destroy();
    clients.elbv2.destroy();
    clients.sts.destroy();
  });
  return clients;
}

/** How the hub reaches a target account: AssumeRole from its own (default-account) identity. */
// moto needs no role and checks neither trust policy nor ExternalId: the role ARN picks the account.
function assumeRoleCredentials(roleArn: string, externalId: string): AwsTestCredentials {
  return fromTemporaryCredentials({
    params: { RoleArn: roleArn, RoleSessionName: 'tgfed-hub', ExternalId: externalId },
    clientConfig: awsClientConfig(endpoint),
  });
}

/** A target group name no other test uses (ELBv2 allows 32 characters). */
function uniqueGroupName(): string {
  return `tgfed-smoke-${randomBytes(6).toString('hex')}`;
}

/** Creates a VPC and an ip-type TCP target group in it; both are deleted when the test finishes. */
async function createIpTargetGroup(clients: AccountClients, name: string): Promise<string> {
  const { Vpc } = await clients.ec2.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }));
  const vpcId = Vpc?.VpcId;
  if (vpcId === undefined) throw new Error('CreateVpc returned no VpcId');
  onTestFinished(async () => {
    await clients.ec2.send(new DeleteVpcCommand({ VpcId: vpcId }));
  });

  const { TargetGroups } = await clients.elbv2.send(
    new CreateTargetGroupCommand({
      Name: name,
      Protocol: 'TCP',
      Port: 8080,
      VpcId: vpcId,
      TargetType: 'ip',
    }),
  );
  const arn = TargetGroups?.[0]?.TargetGroupArn;
  if (arn === undefined) throw new Error('CreateTargetGroup returned no ARN');
  onTestFinished(async () => {
    await clients.elbv2.send(new DeleteTargetGroupCommand({ TargetGroupArn: arn }));
  });
  return arn;
}

/** The registered targets as sorted `ip:port` strings, and the health states moto reports. */
async function describedTargets(
  elbv2: ElasticLoadBalancingV2Client,
  targetGroupArn: string,
): Promise<{ targets: string[]; states: Set<string | undefined> }> {
  const { TargetHealthDescriptions = [] } = await elbv2.send(
    new DescribeTargetHealthCommand({ TargetGroupArn: targetGroupArn }),
  );
  return {
    targets: TargetHealthDescriptions.map(
      (d) => `${d.Target?.Id ?? '?'}:${String(d.Target?.Port)}`,
    ).sort(),
    states: new Set(TargetHealthDescriptions.map((d) => d.TargetHealth?.State)),
  };
}

// Pod IPs from other clusters sit outside the group's VPC, so tgfed registers them in zone `all`.
function ipTarget(ip: string, port: number): TargetDescription {
  return { Id: ip, Port: port, AvailabilityZone: 'all' };
}

describe('moto as the AWS of several accounts', () => {
  it('gives credentials assumed with an external id the account of the role', async () => {
    const accountB = uniqueAccountId();
    const roleArn = `arn:aws:iam::${accountB}:role/tgfed-target-groups`;
    const hub = clientsOf();
    const inB = clientsOf(assumeRoleCredentials(roleArn, `tgfed-${accountB}`));

    const hubIdentity = await hub.sts.send(new GetCallerIdentityCommand({}));
    const bIdentity = await inB.sts.send(new GetCallerIdentityCommand({}));

    expect(hubIdentity.Account).toBe(MOTO_DEFAULT_ACCOUNT_ID);
    expect(bIdentity.Account).toBe(accountB);
    expect(bIdentity.Arn).toBe(
      `arn:aws:sts::${accountB}:assumed-role/tgfed-target-groups/tgfed-hub`,
    );
  });

  it('registers, describes and deregisters IP targets in a target group of an assumed account', async () => {
    const accountB = uniqueAccountId();
    const inB = clientsOf(
      assumeRoleCredentials(`arn:aws:iam::${accountB}:role/tgfed-target-groups`, 'ext-register'),
    );
    const name = uniqueGroupName();
    const arn = await createIpTargetGroup(inB, name);
    expect(arn).toMatch(
      new RegExp(`^arn:aws:elasticloadbalancing:us-east-1:${accountB}:targetgroup/${name}/`),
    );

    await inB.elbv2.send(
      new RegisterTargetsCommand({
        TargetGroupArn: arn,
        Targets: [ipTarget('10.1.0.11', 8080), ipTarget('10.1.0.12', 8080)],
      }),
    );
    expect(await describedTargets(inB.elbv2, arn)).toEqual({
      targets: ['10.1.0.11:8080', '10.1.0.12:8080'],
      states: new Set(['healthy']),
    });

    await inB.elbv2.send(
      new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [ipTarget('10.1.0.13', 9090)] }),
    );
    expect((await describedTargets(inB.elbv2, arn)).targets).toEqual([
      '10.1.0.11:8080',
      '10.1.0.12:8080',
      '10.1.0.13:9090',
    ]);

    await inB.elbv2.send(
      new DeregisterTargetsCommand({
        TargetGroupArn: arn,
        Targets: [ipTarget('10.1.0.11', 8080), ipTarget('10.1.0.13', 9090)],
      }),
    );
    expect((await describedTargets(inB.elbv2, arn)).targets).toEqual(['10.1.0.12:8080']);

    await inB.elbv2.send(
      new DeregisterTargetsCommand({ TargetGroupArn: arn, Targets: [ipTarget('10.1.0.12', 8080)] }),
    );
    expect((await describedTargets(inB.elbv2, arn)).targets).toEqual([]);
  });

  it('keeps a target group of one account out of sight of another account', async () => {
    const accountB = uniqueAccountId();
    const inA = clientsOf();
    const inB = clientsOf(
      assumeRoleCredentials(`arn:aws:iam::${accountB}:role/tgfed-target-groups`, 'ext-isolation'),
    );
    // One name in both accounts: names are unique per account, not globally.
    const name = uniqueGroupName();
    const arnInA = await createIpTargetGroup(inA, name);
    const arnInB = await createIpTargetGroup(inB, name);
    expect(arnInB).not.toBe(arnInA);

    await expect(
      inA.elbv2.send(new DescribeTargetGroupsCommand({ TargetGroupArns: [arnInB] })),
    ).rejects.toBeInstanceOf(TargetGroupNotFoundException);
    await expect(
      inA.elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: arnInB })),
    ).rejects.toBeInstanceOf(TargetGroupNotFoundException);
    const { TargetGroups: byNameInA = [] } = await inA.elbv2.send(
      new DescribeTargetGroupsCommand({ Names: [name] }),
    );
    expect(byNameInA.map((g) => g.TargetGroupArn)).toEqual([arnInA]);
  });

  it('keys targets by IP only, so one IP on two ports collapses into the later registration', async () => {
    // A moto quirk (AWS keeps both); tgfed's own ELBv2 simulator covers the real semantics.
    const inB = clientsOf(
      assumeRoleCredentials(
        `arn:aws:iam::${uniqueAccountId()}:role/tgfed-target-groups`,
        'ext-ports',
      ),
    );
    const arn = await createIpTargetGroup(inB, uniqueGroupName());

    await inB.elbv2.send(
      new RegisterTargetsCommand({
        TargetGroupArn: arn,
        Targets: [ipTarget('10.1.0.21', 8080), ipTarget('10.1.0.21', 9090)],
      }),
    );

    expect((await describedTargets(inB.elbv2, arn)).targets).toEqual(['10.1.0.21:9090']);
  });
});

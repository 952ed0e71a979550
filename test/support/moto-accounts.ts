import { randomBytes } from 'node:crypto';
import { CreateVpcCommand, EC2Client } from '@aws-sdk/client-ec2';
import {
  CreateTargetGroupCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import type { TargetGroup } from '../../shared/index.js';
import { MOTO_REGION, awsClientConfig, type AwsTestCredentials } from '../env/moto-server.js';

/**
 * Accounts of a shared moto as a test (an outside actor) reaches them: through STS AssumeRole
 * of `arn:aws:iam::<account>:role/tgfed` with one external id, as tgfed's workers do. Creates
 * ip target groups and reads back what they hold.
 */
export class MotoAccounts {
  readonly #endpoint: string;
  readonly #externalId: string;
  readonly #elbv2 = new Map<string, ElasticLoadBalancingV2Client>();

  constructor(endpoint: string, externalId: string) {
    this.#endpoint = endpoint;
    this.#externalId = externalId;
  }

  /** The role tgfed assumes in `account`. */
  roleOf(account: string): string {
    return `arn:aws:iam::${account}:role/tgfed`;
  }

  /** ELBv2 of `account`, one cached client per account. */
  elbv2(account: string): ElasticLoadBalancingV2Client {
    let client = this.#elbv2.get(account);
    if (client === undefined) {
      client = new ElasticLoadBalancingV2Client(
        awsClientConfig(this.#endpoint, this.#credentials(account)),
      );
      this.#elbv2.set(account, client);
    }
    return client;
  }

  /**
   * A TCP ip target group on port 8080 in a new VPC of `account`; returns its definition for a
   * binding (role and external id included). A `capacity` of 0 means no limit.
   */
  async createTargetGroup(account: string, capacity = 0): Promise<TargetGroup> {
    const ec2 = new EC2Client(awsClientConfig(this.#endpoint, this.#credentials(account)));
    try {
      const { Vpc } = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }));
      const out = await this.elbv2(account).send(
        new CreateTargetGroupCommand({
          Name: `moto-${randomBytes(6).toString('hex')}`,
          Protocol: 'TCP',
          Port: 8080,
          VpcId: Vpc?.VpcId,
          TargetType: 'ip',
        }),
      );
      return {
        arn: out.TargetGroups?.[0]?.TargetGroupArn ?? '',
        accountId: account,
        region: MOTO_REGION,
        roleArn: this.roleOf(account),
        externalId: this.#externalId,
        targetType: 'ip',
        capacity,
        availabilityZone: '',
      };
    } finally {
      ec2.destroy();
    }
  }

  /** `ip:port` of every target moto holds in the group, sorted. */
  async targetsIn(group: Pick<TargetGroup, 'arn' | 'accountId'>): Promise<string[]> {
    const out = await this.elbv2(group.accountId).send(
      new DescribeTargetHealthCommand({ TargetGroupArn: group.arn }),
    );
    return (out.TargetHealthDescriptions ?? [])
      .map((d) => `${d.Target?.Id}:${d.Target?.Port}`)
      .sort();
  }

  /** Closes the cached clients. */
  close(): void {
    for (const client of this.#elbv2.values()) client.destroy();
    this.#elbv2.clear();
  }

  #credentials(account: string): AwsTestCredentials {
    return fromTemporaryCredentials({
      params: {
        RoleArn: this.roleOf(account),
        RoleSessionName: 'test',
        ExternalId: this.#externalId,
      },
      clientConfig: awsClientConfig(this.#endpoint),
    });
  }
}

import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import {
  CreateTargetGroupCommand,
  DeleteTargetGroupCommand,
  DeregisterTargetsCommand,
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  DuplicateTargetGroupNameException,
  ElasticLoadBalancingV2Client,
  InvalidTargetException,
  RegisterTargetsCommand,
  TargetGroupNotFoundException,
  TooManyTargetsException,
  type ElasticLoadBalancingV2ClientConfig,
  type TargetDescription,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
  type Elbv2SimulatorServerOptions,
} from '../../../hub/aws/simulator/index.js';

const REGION = 'eu-west-1';
const HUB_ACCOUNT = '123456789012';
const MASTER = { accessKeyId: 'AKIDTEST', secretAccessKey: 'x' };
const ROLE_B = 'arn:aws:iam::222222222222:role/tgfed';

// The credential types of the SDK, without a direct dependency on @aws-sdk/types.
type Credentials = NonNullable<ElasticLoadBalancingV2ClientConfig['credentials']>;
type AssumedCredentials = ReturnType<typeof fromTemporaryCredentials>;

async function started(options: Elbv2SimulatorServerOptions = {}): Promise<Elbv2SimulatorServer> {
  const server = await startElbv2Simulator(options);
  onTestFinished(() => server.close());
  return server;
}

function elbv2Of(
  server: Elbv2SimulatorServer,
  credentials: Credentials = MASTER,
): ElasticLoadBalancingV2Client {
  // maxAttempts 1: the SDK's own retries would hide throttling.
  const client = new ElasticLoadBalancingV2Client({
    endpoint: server.url,
    region: REGION,
    credentials,
    maxAttempts: 1,
  });
  onTestFinished(() => client.destroy());
  return client;
}

function stsOf(server: Elbv2SimulatorServer, credentials: Credentials = MASTER): STSClient {
  const client = new STSClient({
    endpoint: server.url,
    region: REGION,
    credentials,
    maxAttempts: 1,
  });
  onTestFinished(() => client.destroy());
  return client;
}

/** How the hub reaches another account: AssumeRole with an external id from its own identity. */
function assumed(
  server: Elbv2SimulatorServer,
  roleArn: string,
  externalId: string,
): AssumedCredentials {
  return fromTemporaryCredentials({
    params: { RoleArn: roleArn, ExternalId: externalId, RoleSessionName: 'tgfed-hub' },
    masterCredentials: MASTER,
    clientConfig: { endpoint: server.url, region: REGION, maxAttempts: 1 },
  });
}

async function createGroup(elbv2: ElasticLoadBalancingV2Client, name: string): Promise<string> {
  const { TargetGroups } = await elbv2.send(
    new CreateTargetGroupCommand({
      Name: name,
      Protocol: 'TCP',
      Port: 8080,
      VpcId: 'vpc-0abc',
      TargetType: 'ip',
    }),
  );
  const arn = TargetGroups?.[0]?.TargetGroupArn;
  if (arn === undefined) throw new Error('CreateTargetGroup returned no ARN');
  return arn;
}

function ipTarget(ip: string, port = 8080): TargetDescription {
  return { Id: ip, Port: port, AvailabilityZone: 'all' };
}

async function healthOf(
  elbv2: ElasticLoadBalancingV2Client,
  arn: string,
  targets?: TargetDescription[],
): Promise<string[]> {
  const { TargetHealthDescriptions = [] } = await elbv2.send(
    new DescribeTargetHealthCommand({ TargetGroupArn: arn, Targets: targets }),
  );
  return TargetHealthDescriptions.map(
    (d) =>
      `${d.Target?.Id}:${d.Target?.Port}@${d.Target?.AvailabilityZone}=${d.TargetHealth?.State}` +
      (d.TargetHealth?.Reason === undefined ? '' : `/${d.TargetHealth.Reason}`),
  ).sort();
}

/** The rejection of a call, for asserting its name, code and status. */
async function failureOf(
  call: Promise<unknown>,
): Promise<{ name: string; code: unknown; status: unknown; message: string }> {
  try {
    await call;
  } catch (err) {
    const e = err as Error & { Code?: unknown; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, code: e.Code, status: e.$metadata?.httpStatusCode, message: e.message };
  }
  throw new Error('expected the call to fail');
}

describe('Elbv2SimulatorServer', () => {
  let server: Elbv2SimulatorServer;
  beforeAll(async () => {
    server = await startElbv2Simulator({ healthyAfterMs: 0, deregistrationDelayMs: 60_000 });
    server.simulator.allowRole(ROLE_B, { externalId: 'ext' });
  });
  afterAll(() => server.close());

  it('tells the hub identity and an assumed role apart by their access keys', async () => {
    const hub = await stsOf(server).send(new GetCallerIdentityCommand({}));
    const inB = await stsOf(server, assumed(server, ROLE_B, 'ext')).send(
      new GetCallerIdentityCommand({}),
    );
    expect(hub.Account).toBe(HUB_ACCOUNT);
    expect(inB.Account).toBe('222222222222');
    expect(inB.Arn).toBe('arn:aws:sts::222222222222:assumed-role/tgfed/tgfed-hub');
  });

  it('registers, describes and deregisters targets in groups of two accounts', async () => {
    const inA = elbv2Of(server);
    const inB = elbv2Of(server, assumed(server, ROLE_B, 'ext'));
    const arnA = await createGroup(inA, 'tg-register');
    const arnB = await createGroup(inB, 'tg-register');
    expect(arnA).toMatch(
      /^arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup\/tg-register\/[0-9a-f]{16}$/,
    );
    expect(arnB).toMatch(
      /^arn:aws:elasticloadbalancing:eu-west-1:222222222222:targetgroup\/tg-register\//,
    );

    await inB.send(
      new RegisterTargetsCommand({
        TargetGroupArn: arnB,
        Targets: [ipTarget('192.168.0.1'), ipTarget('192.168.0.1', 9090)],
      }),
    );
    await inB.send(
      new RegisterTargetsCommand({
        TargetGroupArn: arnB,
        Targets: [{ Id: '10.0.0.7', Port: 8080 }],
      }),
    );
    expect(await healthOf(inB, arnB)).toEqual([
      '10.0.0.7:8080@undefined=healthy',
      '192.168.0.1:8080@all=healthy',
      '192.168.0.1:9090@all=healthy',
    ]);
    expect(await healthOf(inA, arnA)).toEqual([]);

    await inB.send(
      new DeregisterTargetsCommand({
        TargetGroupArn: arnB,
        Targets: [ipTarget('192.168.0.1', 9090)],
      }),
    );
    expect(await healthOf(inB, arnB)).toEqual([
      '10.0.0.7:8080@undefined=healthy',
      '192.168.0.1:8080@all=healthy',
      '192.168.0.1:9090@all=draining/Target.DeregistrationInProgress',
    ]);
    expect(await healthOf(inB, arnB, [ipTarget('192.168.0.1'), ipTarget('192.168.0.99')])).toEqual([
      '192.168.0.1:8080@all=healthy',
      '192.168.0.99:8080@all=unused/Target.NotRegistered',
    ]);

    server.simulator.setTargetHealth(arnB, '10.0.0.7', 8080, 'unhealthy');
    expect(await healthOf(inB, arnB, [{ Id: '10.0.0.7', Port: 8080 }])).toEqual([
      '10.0.0.7:8080@undefined=unhealthy/Target.FailedHealthChecks',
    ]);
    expect(
      server.simulator.calls({ account: '222222222222', action: 'RegisterTargets' }),
    ).toHaveLength(2);
  });

  it('describes target groups by name and ARN, and deletes them', async () => {
    const inA = elbv2Of(server);
    const arn = await createGroup(inA, 'tg-describe');
    const byName = await inA.send(new DescribeTargetGroupsCommand({ Names: ['tg-describe'] }));
    expect(
      byName.TargetGroups?.map((g) => [g.TargetGroupArn, g.TargetGroupName, g.Port, g.TargetType]),
    ).toEqual([[arn, 'tg-describe', 8080, 'ip']]);
    const byArn = await inA.send(new DescribeTargetGroupsCommand({ TargetGroupArns: [arn] }));
    expect(byArn.TargetGroups?.[0]?.LoadBalancerArns).toHaveLength(1);
    await expect(
      inA.send(new CreateTargetGroupCommand({ Name: 'tg-describe', TargetType: 'ip' })),
    ).rejects.toBeInstanceOf(DuplicateTargetGroupNameException);
    await inA.send(new DeleteTargetGroupCommand({ TargetGroupArn: arn }));
    await expect(
      inA.send(new DescribeTargetGroupsCommand({ TargetGroupArns: [arn] })),
    ).rejects.toBeInstanceOf(TargetGroupNotFoundException);
  });

  it('keeps a target group of one account out of sight of another', async () => {
    const inA = elbv2Of(server);
    const inB = elbv2Of(server, assumed(server, ROLE_B, 'ext'));
    const arnA = await createGroup(inA, 'tg-isolation');
    for (const call of [
      inB.send(new DescribeTargetGroupsCommand({ TargetGroupArns: [arnA] })),
      inB.send(new DescribeTargetHealthCommand({ TargetGroupArn: arnA })),
      inB.send(
        new RegisterTargetsCommand({ TargetGroupArn: arnA, Targets: [ipTarget('192.168.0.1')] }),
      ),
    ]) {
      const failure = await failureOf(call);
      expect(failure).toMatchObject({
        name: 'TargetGroupNotFoundException',
        code: 'TargetGroupNotFound',
        status: 400,
      });
    }
    expect(await healthOf(inA, arnA)).toEqual([]);
  });

  it('refuses a registration beyond the quota as TooManyTargets', async () => {
    const inA = elbv2Of(server);
    const arn = server.simulator.createTargetGroup({
      account: HUB_ACCOUNT,
      region: REGION,
      name: 'tg-quota',
      capacity: 2,
    });
    const call = inA.send(
      new RegisterTargetsCommand({
        TargetGroupArn: arn,
        Targets: [ipTarget('192.168.0.1'), ipTarget('192.168.0.2'), ipTarget('192.168.0.3')],
      }),
    );
    await expect(call).rejects.toBeInstanceOf(TooManyTargetsException);
    expect(await failureOf(call)).toMatchObject({ code: 'TooManyTargets', status: 400 });
    expect(await healthOf(inA, arn)).toEqual([]);
  });

  it('refuses an invalid target as InvalidTarget, naming it', async () => {
    const inA = elbv2Of(server);
    const arn = await createGroup(inA, 'tg-invalid');
    const call = inA.send(
      new RegisterTargetsCommand({
        TargetGroupArn: arn,
        Targets: [ipTarget('192.168.0.1'), { Id: '172.16.0.9', Port: 80 }],
      }),
    );
    await expect(call).rejects.toBeInstanceOf(InvalidTargetException);
    const failure = await failureOf(call);
    expect(failure).toMatchObject({ code: 'InvalidTarget', status: 400 });
    expect(failure.message).toContain('172.16.0.9:80');
  });

  it('throttles with the Throttling code and HTTP 400 once the bucket is empty', async () => {
    const throttled = await started({ rateLimits: { mutate: { ratePerSecond: 0.01, burst: 2 } } });
    const inA = elbv2Of(throttled);
    const arn = await createGroup(inA, 'tg-throttle');
    const register = (ip: string) =>
      inA.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [ipTarget(ip)] }));
    await register('192.168.0.1');
    await register('192.168.0.2');
    expect(await failureOf(register('192.168.0.3'))).toEqual({
      name: 'Throttling',
      code: 'Throttling',
      status: 400,
      message: 'Rate exceeded',
    });
    expect(await healthOf(inA, arn)).toHaveLength(2);
  });

  it('answers injected faults with their code and status', async () => {
    const inA = elbv2Of(server);
    const arn = await createGroup(inA, 'tg-faults');
    const describeHealth = () => inA.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn }));
    server.simulator.injectFault({ targetGroupArn: arn, code: 'AccessDenied', times: 1 });
    server.simulator.injectFault({ targetGroupArn: arn, code: 'ServiceUnavailable', times: 1 });
    expect(await failureOf(describeHealth())).toMatchObject({ name: 'AccessDenied', status: 403 });
    expect(await failureOf(describeHealth())).toMatchObject({
      name: 'ServiceUnavailable',
      status: 503,
    });
    await describeHealth();
  });

  it('denies AssumeRole with a wrong external id for a declared role', async () => {
    const inB = elbv2Of(server, assumed(server, ROLE_B, 'wrong'));
    const failure = await failureOf(inB.send(new DescribeTargetGroupsCommand({})));
    expect(failure).toMatchObject({ name: 'AccessDenied', status: 403 });
  });

  it('answers requests without SigV4 credentials, unknown actions and oversized bodies with errors', async () => {
    const small = await started({ maxBodyBytes: 1024 });
    const post = (body: string, headers: Record<string, string> = {}) =>
      fetch(small.url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body,
      });
    const auth = {
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/eu-west-1/elasticloadbalancing/aws4_request, SignedHeaders=host, Signature=0',
    };

    const unsigned = await post('Action=DescribeTargetGroups&Version=2015-12-01');
    expect(unsigned.status).toBe(403);
    expect(await unsigned.text()).toContain('<Code>MissingAuthenticationToken</Code>');

    const unknown = await post('Action=DescribeLoadBalancers&Version=2015-12-01', auth);
    expect(unknown.status).toBe(400);
    expect(await unknown.text()).toContain('<Code>InvalidAction</Code>');

    const huge = await post(`Action=DescribeTargetGroups&Names.member.1=${'x'.repeat(4096)}`, auth);
    expect(huge.status).toBe(413);

    const escaped = await post('Action=DescribeTargetGroups&Names.member.1=%3Cb%3E%26', auth);
    expect(escaped.status).toBe(400);
    expect(await escaped.text()).toContain('&#60;b&#62;&#38;');
  });

  it('is reached through the standard endpoint environment variables', async () => {
    vi.stubEnv('AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2', server.url);
    vi.stubEnv('AWS_ENDPOINT_URL_STS', server.url);
    onTestFinished(() => {
      vi.unstubAllEnvs();
    });
    const elbv2 = new ElasticLoadBalancingV2Client({
      region: REGION,
      credentials: MASTER,
      maxAttempts: 1,
    });
    const sts = new STSClient({ region: REGION, credentials: MASTER, maxAttempts: 1 });
    onTestFinished(() => {
      elbv2.destroy();
      sts.destroy();
    });
    expect((await sts.send(new GetCallerIdentityCommand({}))).Account).toBe(HUB_ACCOUNT);
    const arn = await createGroup(elbv2, 'tg-env');
    expect(server.simulator.targets(arn)).toEqual([]);
  });

  it('reports a new target initial until it passes its health checks', async () => {
    const slow = await started({ healthyAfterMs: 3_600_000 });
    const inA = elbv2Of(slow);
    const arn = await createGroup(inA, 'tg-initial');
    await inA.send(
      new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [ipTarget('192.168.0.1')] }),
    );
    expect(await healthOf(inA, arn)).toEqual([
      '192.168.0.1:8080@all=initial/Elb.RegistrationInProgress',
    ]);
  });

  it('closes idempotently', async () => {
    const extra = await startElbv2Simulator();
    await Promise.all([extra.close(), extra.close()]);
    await extra.close();
    expect(extra.state).toBe('closed');
  });
});

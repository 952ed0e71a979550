import { describe, expect, it } from 'vitest';
import {
  Elbv2Simulator,
  Elbv2SimulatorError,
  type Elbv2Caller,
  type Elbv2SimulatorOptions,
  type SimulatedTargetDescription,
} from '../../../hub/aws/simulator/index.js';

const A: Elbv2Caller = { account: '111111111111', region: 'eu-west-1' };
const B: Elbv2Caller = { account: '222222222222', region: 'eu-west-1' };

/** A clock the test moves by hand. */
function fakeClock(startMs = 1_700_000_000_000): {
  now: () => number;
  advance: (ms: number) => void;
} {
  let nowMs = startMs;
  return {
    now: () => nowMs,
    advance: (ms) => {
      nowMs += ms;
    },
  };
}

function setup(options: Elbv2SimulatorOptions = {}) {
  const clock = fakeClock();
  const sim = new Elbv2Simulator({ clock: clock.now, rateLimits: false, ...options });
  return { sim, clock };
}

function outside(ip: string, port = 8080): SimulatedTargetDescription {
  return { id: ip, port, availabilityZone: 'all' };
}

function register(
  sim: Elbv2Simulator,
  arn: string,
  targets: SimulatedTargetDescription[],
  caller = A,
): void {
  sim.handle(caller, { action: 'RegisterTargets', targetGroupArn: arn, targets });
}

function deregister(
  sim: Elbv2Simulator,
  arn: string,
  targets: SimulatedTargetDescription[],
  caller = A,
): void {
  sim.handle(caller, { action: 'DeregisterTargets', targetGroupArn: arn, targets });
}

function states(sim: Elbv2Simulator, arn: string): string[] {
  return sim
    .targets(arn)
    .map((t) => `${t.id}:${t.port}=${t.state}${t.reason === undefined ? '' : `/${t.reason}`}`)
    .sort();
}

/** The AWS error code a call fails with. */
function errorCodeOf(call: () => unknown): string {
  try {
    call();
  } catch (err) {
    if (err instanceof Elbv2SimulatorError) return err.code;
    throw err;
  }
  throw new Error('expected the call to fail');
}

describe('Elbv2Simulator', () => {
  it('names target groups with ARNs of their account and region', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg-web' });
    expect(arn).toMatch(
      /^arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup\/tg-web\/[0-9a-f]{16}$/,
    );
  });

  it('refuses a second target group of the same name in one account and region', () => {
    const { sim } = setup();
    sim.createTargetGroup({ ...A, name: 'tg-web' });
    expect(errorCodeOf(() => sim.createTargetGroup({ ...A, name: 'tg-web' }))).toBe(
      'DuplicateTargetGroupName',
    );
    expect(() => sim.createTargetGroup({ ...B, name: 'tg-web' })).not.toThrow();
  });

  it('reports a new target initial until healthyAfterMs has passed, then healthy', () => {
    const { sim, clock } = setup({ healthyAfterMs: 10_000 });
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    register(sim, arn, [outside('192.168.1.1')]);
    expect(states(sim, arn)).toEqual(['192.168.1.1:8080=initial/Elb.RegistrationInProgress']);
    clock.advance(9_999);
    expect(states(sim, arn)).toEqual(['192.168.1.1:8080=initial/Elb.RegistrationInProgress']);
    clock.advance(1);
    expect(states(sim, arn)).toEqual(['192.168.1.1:8080=healthy']);
  });

  it('keeps one IP on two ports as two targets', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    register(sim, arn, [outside('192.168.1.1', 80), outside('192.168.1.1', 443)]);
    expect(states(sim, arn)).toEqual(['192.168.1.1:443=healthy', '192.168.1.1:80=healthy']);
  });

  it('drains a deregistered target for the deregistration delay, then forgets it', () => {
    const { sim, clock } = setup({ deregistrationDelayMs: 300_000 });
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    register(sim, arn, [outside('192.168.1.1'), outside('192.168.1.2')]);
    deregister(sim, arn, [outside('192.168.1.1')]);
    expect(states(sim, arn)).toEqual([
      '192.168.1.1:8080=draining/Target.DeregistrationInProgress',
      '192.168.1.2:8080=healthy',
    ]);
    clock.advance(300_000);
    expect(states(sim, arn)).toEqual(['192.168.1.2:8080=healthy']);
  });

  it('registers a draining target again as a new registration', () => {
    const { sim, clock } = setup({ healthyAfterMs: 5_000 });
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    register(sim, arn, [outside('192.168.1.1')]);
    clock.advance(5_000);
    deregister(sim, arn, [outside('192.168.1.1')]);
    register(sim, arn, [outside('192.168.1.1')]);
    expect(states(sim, arn)).toEqual(['192.168.1.1:8080=initial/Elb.RegistrationInProgress']);
  });

  it('leaves an already registered target untouched when it is registered again', () => {
    const { sim, clock } = setup({ healthyAfterMs: 5_000 });
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    register(sim, arn, [outside('192.168.1.1')]);
    clock.advance(5_000);
    register(sim, arn, [outside('192.168.1.1')]);
    expect(states(sim, arn)).toEqual(['192.168.1.1:8080=healthy']);
  });

  it('accepts deregistering a target that is not registered without changing anything', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    deregister(sim, arn, [outside('192.168.1.9')]);
    expect(sim.targets(arn)).toEqual([]);
  });

  it('reports a target unhealthy while a health override says so, per port or for every port', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    register(sim, arn, [outside('192.168.1.1', 80), outside('192.168.1.1', 443)]);
    sim.setTargetHealth(arn, '192.168.1.1', 80, 'unhealthy');
    expect(states(sim, arn)).toEqual([
      '192.168.1.1:443=healthy',
      '192.168.1.1:80=unhealthy/Target.FailedHealthChecks',
    ]);
    sim.setTargetHealth(arn, '192.168.1.1', 80, undefined);
    sim.setTargetHealth(arn, '192.168.1.1', undefined, 'unhealthy');
    expect(states(sim, arn)).toEqual([
      '192.168.1.1:443=unhealthy/Target.FailedHealthChecks',
      '192.168.1.1:80=unhealthy/Target.FailedHealthChecks',
    ]);
    sim.setTargetHealth(arn, '192.168.1.1', undefined, undefined);
    expect(states(sim, arn)).toEqual(['192.168.1.1:443=healthy', '192.168.1.1:80=healthy']);
  });

  it('reports targets unused while the target group is not attached to a load balancer', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg', attached: false });
    register(sim, arn, [outside('192.168.1.1')]);
    expect(states(sim, arn)).toEqual(['192.168.1.1:8080=unused/Target.NotInUse']);
    expect(
      sim.handle(A, { action: 'DescribeTargetGroups', targetGroupArns: [arn] }).targetGroups[0]
        ?.loadBalancerArns,
    ).toEqual([]);
  });

  it('describes named targets that are not registered as unused', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    register(sim, arn, [outside('192.168.1.1')]);
    const { targetHealthDescriptions } = sim.handle(A, {
      action: 'DescribeTargetHealth',
      targetGroupArn: arn,
      targets: [outside('192.168.1.1'), outside('192.168.1.2')],
    });
    expect(targetHealthDescriptions.map((d) => [d.id, d.state, d.reason])).toEqual([
      ['192.168.1.1', 'healthy', undefined],
      ['192.168.1.2', 'unused', 'Target.NotRegistered'],
    ]);
  });

  it('refuses a registration that would exceed the capacity, changing nothing', () => {
    const { sim } = setup({ targetsPerGroup: 3 });
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    register(sim, arn, [outside('192.168.1.1'), outside('192.168.1.2')]);
    expect(
      errorCodeOf(() => register(sim, arn, [outside('192.168.1.3'), outside('192.168.1.4')])),
    ).toBe('TooManyTargets');
    expect(sim.targets(arn)).toHaveLength(2);
    // Already registered targets and duplicates within the call do not count twice.
    register(sim, arn, [outside('192.168.1.1'), outside('192.168.1.3'), outside('192.168.1.3')]);
    expect(sim.targets(arn)).toHaveLength(3);
  });

  it('counts draining targets toward the quota unless told otherwise', () => {
    const counting = setup({ targetsPerGroup: 2 });
    const arn = counting.sim.createTargetGroup({ ...A, name: 'tg' });
    register(counting.sim, arn, [outside('192.168.1.1'), outside('192.168.1.2')]);
    deregister(counting.sim, arn, [outside('192.168.1.1')]);
    expect(errorCodeOf(() => register(counting.sim, arn, [outside('192.168.1.3')]))).toBe(
      'TooManyTargets',
    );
    counting.clock.advance(300_000);
    register(counting.sim, arn, [outside('192.168.1.3')]);

    const lenient = setup({ targetsPerGroup: 2, drainingCountsTowardQuota: false });
    const arn2 = lenient.sim.createTargetGroup({ ...A, name: 'tg' });
    register(lenient.sim, arn2, [outside('192.168.1.1'), outside('192.168.1.2')]);
    deregister(lenient.sim, arn2, [outside('192.168.1.1')]);
    register(lenient.sim, arn2, [outside('192.168.1.3')]);
    expect(states(lenient.sim, arn2)).toEqual([
      '192.168.1.1:8080=draining/Target.DeregistrationInProgress',
      '192.168.1.2:8080=healthy',
      '192.168.1.3:8080=healthy',
    ]);
  });

  it.each([
    ['an Id that is not an IP', { id: 'i-0123456789', port: 80 }, 'i-0123456789'],
    ['port 0', { id: '192.168.1.1', port: 0, availabilityZone: 'all' }, '192.168.1.1:0'],
    [
      'port 65536',
      { id: '192.168.1.1', port: 65536, availabilityZone: 'all' },
      '192.168.1.1:65536',
    ],
    ['an IP outside the VPC without zone all', { id: '192.168.1.1', port: 80 }, '192.168.1.1:80'],
    [
      'zone all for an IP inside the VPC',
      { id: '10.1.2.3', port: 80, availabilityZone: 'all' },
      '10.1.2.3:80',
    ],
    ['an IPv6 address outside the VPC without zone all', { id: 'fd00::1', port: 80 }, 'fd00::1:80'],
  ])('refuses %s as InvalidTarget naming the target, changing nothing', (_what, bad, named) => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    let message = '';
    try {
      register(sim, arn, [outside('192.168.1.1'), bad]);
    } catch (err) {
      expect(err).toBeInstanceOf(Elbv2SimulatorError);
      expect((err as Elbv2SimulatorError).code).toBe('InvalidTarget');
      message = (err as Elbv2SimulatorError).message;
    }
    expect(message).toContain(named);
    expect(sim.targets(arn)).toEqual([]);
  });

  it('accepts IPv6 targets inside an IPv6 VPC and outside it in zone all', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg', vpcCidr: '2001:db8::/56' });
    register(sim, arn, [
      { id: '2001:db8::5', port: 80, availabilityZone: 'eu-west-1a' },
      outside('fd00::1', 80),
    ]);
    expect(sim.targets(arn)).toHaveLength(2);
  });

  it('refuses an empty target list and an unknown or foreign target group', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    expect(errorCodeOf(() => register(sim, arn, []))).toBe('ValidationError');
    expect(errorCodeOf(() => register(sim, arn, [outside('192.168.1.1')], B))).toBe(
      'TargetGroupNotFound',
    );
    expect(
      errorCodeOf(() =>
        register(sim, arn, [outside('192.168.1.1')], { ...A, region: 'us-east-1' }),
      ),
    ).toBe('TargetGroupNotFound');
    sim.deleteTargetGroup(arn);
    expect(errorCodeOf(() => register(sim, arn, [outside('192.168.1.1')]))).toBe(
      'TargetGroupNotFound',
    );
  });

  it('describes target groups by name within the caller account and region only', () => {
    const { sim } = setup();
    const arnA = sim.createTargetGroup({ ...A, name: 'tg' });
    sim.createTargetGroup({ ...B, name: 'tg' });
    const { targetGroups } = sim.handle(A, { action: 'DescribeTargetGroups', names: ['tg'] });
    expect(targetGroups.map((g) => g.targetGroupArn)).toEqual([arnA]);
    expect(
      errorCodeOf(() => sim.handle(A, { action: 'DescribeTargetGroups', names: ['nope'] })),
    ).toBe('TargetGroupNotFound');
  });

  it('throttles by token bucket: the burst at once, then the refill rate', () => {
    const { sim, clock } = setup({ rateLimits: { mutate: { ratePerSecond: 4, burst: 20 } } });
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    for (let i = 0; i < 20; i++) register(sim, arn, [outside(`192.168.1.${i + 1}`)]);
    expect(errorCodeOf(() => register(sim, arn, [outside('192.168.2.1')]))).toBe('Throttling');
    // The throttled call changed nothing.
    expect(sim.targets(arn)).toHaveLength(20);
    clock.advance(250);
    register(sim, arn, [outside('192.168.2.1')]);
    expect(errorCodeOf(() => register(sim, arn, [outside('192.168.2.2')]))).toBe('Throttling');
    clock.advance(1_000);
    for (let i = 0; i < 4; i++) register(sim, arn, [outside(`192.168.3.${i + 1}`)]);
    expect(errorCodeOf(() => register(sim, arn, [outside('192.168.2.2')]))).toBe('Throttling');
  });

  it('keeps separate buckets per account, region and operation class', () => {
    const { sim } = setup({ rateLimits: { mutate: { ratePerSecond: 1, burst: 1 } } });
    const arnA = sim.createTargetGroup({ ...A, name: 'tg' });
    const arnB = sim.createTargetGroup({ ...B, name: 'tg' });
    const east = { ...A, region: 'us-east-1' };
    const arnEast = sim.createTargetGroup({ ...east, name: 'tg' });
    register(sim, arnA, [outside('192.168.1.1')]);
    expect(errorCodeOf(() => register(sim, arnA, [outside('192.168.1.2')]))).toBe('Throttling');
    register(sim, arnB, [outside('192.168.1.1')], B);
    register(sim, arnEast, [outside('192.168.1.1')], east);
    // Describe calls draw from their own (default AWS) bucket.
    expect(
      sim.handle(A, { action: 'DescribeTargetHealth', targetGroupArn: arnA })
        .targetHealthDescriptions,
    ).toHaveLength(1);
  });

  it('fails matching calls with an injected fault the given number of times', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    sim.injectFault({
      account: A.account,
      action: 'RegisterTargets',
      code: 'InternalFailure',
      times: 2,
    });
    let status = 0;
    try {
      register(sim, arn, [outside('192.168.1.1')]);
    } catch (err) {
      status = (err as Elbv2SimulatorError).httpStatus;
    }
    expect(status).toBe(500);
    expect(errorCodeOf(() => register(sim, arn, [outside('192.168.1.1')]))).toBe('InternalFailure');
    register(sim, arn, [outside('192.168.1.1')]);
    expect(sim.targets(arn)).toHaveLength(1);
  });

  it('keeps an unlimited fault until the faults are cleared, and only for its target group', () => {
    const { sim } = setup();
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    const other = sim.createTargetGroup({ ...A, name: 'tg-other' });
    sim.injectFault({ targetGroupArn: arn, code: 'AccessDenied' });
    for (let i = 0; i < 5; i++)
      expect(errorCodeOf(() => register(sim, arn, [outside('192.168.1.1')]))).toBe('AccessDenied');
    register(sim, other, [outside('192.168.1.1')]);
    sim.clearFaults();
    register(sim, arn, [outside('192.168.1.1')]);
  });

  it('logs every call with its outcome and keeps only the newest maxCallLog entries', () => {
    const { sim, clock } = setup({ maxCallLog: 3 });
    const arn = sim.createTargetGroup({ ...A, name: 'tg' });
    register(sim, arn, [outside('192.168.1.1'), outside('192.168.1.2')]);
    clock.advance(1);
    errorCodeOf(() => register(sim, arn, [{ id: 'bad' }]));
    clock.advance(1);
    sim.handle(A, { action: 'DescribeTargetHealth', targetGroupArn: arn });
    clock.advance(1);
    deregister(sim, arn, [outside('192.168.1.1')]);
    const calls = sim.calls();
    expect(calls.map((c) => [c.action, c.targets, c.errorCode])).toEqual([
      ['RegisterTargets', 1, 'InvalidTarget'],
      ['DescribeTargetHealth', 0, undefined],
      ['DeregisterTargets', 1, undefined],
    ]);
    expect(calls[0]).toMatchObject({ account: A.account, region: A.region, targetGroupArn: arn });
    expect(sim.calls({ errorCode: null }).map((c) => c.action)).toEqual([
      'DescribeTargetHealth',
      'DeregisterTargets',
    ]);
    sim.resetCalls();
    expect(sim.calls()).toEqual([]);
  });

  it('issues credentials for the account of the role and checks the external id of a declared role', () => {
    const { sim } = setup();
    const role = 'arn:aws:iam::333333333333:role/tgfed';
    sim.allowRole(role, { externalId: 'ext' });
    const credentials = sim.assumeRole({ roleArn: role, externalId: 'ext', sessionName: 'hub' });
    expect(sim.accountOfAccessKey(credentials.accessKeyId)).toBe('333333333333');
    expect(sim.identityOf(credentials.accessKeyId).arn).toBe(
      'arn:aws:sts::333333333333:assumed-role/tgfed/hub',
    );
    expect(
      errorCodeOf(() => sim.assumeRole({ roleArn: role, externalId: 'wrong', sessionName: 'hub' })),
    ).toBe('AccessDenied');
    expect(sim.accountOfAccessKey('AKIDUNKNOWN')).toBe('123456789012');
  });

  it('refuses undeclared roles only when known roles are required', () => {
    const role = 'arn:aws:iam::444444444444:role/any';
    expect(() => setup().sim.assumeRole({ roleArn: role, sessionName: 'hub' })).not.toThrow();
    const strict = setup({ requireKnownRoles: true }).sim;
    expect(errorCodeOf(() => strict.assumeRole({ roleArn: role, sessionName: 'hub' }))).toBe(
      'AccessDenied',
    );
  });

  it('picks latencies uniformly within the configured range', () => {
    const values = [0, 0.5, 0.75];
    const sim = new Elbv2Simulator({
      latencyMs: { min: 10, max: 20 },
      random: () => values.shift() ?? 0,
    });
    expect([sim.latencyFor(), sim.latencyFor(), sim.latencyFor()]).toEqual([10, 15, 17.5]);
  });

  it('fails fast on an invalid option, naming it', () => {
    expect(() => new Elbv2Simulator({ targetsPerGroup: 0 })).toThrow(/targetsPerGroup/);
    expect(() => new Elbv2Simulator({ defaultAccount: '42' })).toThrow(/defaultAccount/);
    expect(() => new Elbv2Simulator({ latencyMs: { min: 5, max: 1 } })).toThrow(/latencyMs/);
  });
});

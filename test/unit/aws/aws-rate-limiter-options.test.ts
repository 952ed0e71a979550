import { describe, expect, it } from 'vitest';
import {
  AwsRateLimiter,
  AwsRateLimiterOptionsError,
  compileAwsRateLimiterOptions,
  DEFAULT_AWS_RATE_LIMITS,
  operationClassOf,
  type AwsOperationClass,
} from '../../../hub/aws/aws-rate-limiter.js';
import type { RedisClient } from '../../../hub/state/index.js';

// Enough of a client for the parts that do not talk to Redis.
const offlineRedis = { defineCommand: () => undefined } as unknown as RedisClient;

describe('compileAwsRateLimiterOptions', () => {
  it('fills the ELBv2 defaults', () => {
    const compiled = compileAwsRateLimiterOptions();
    expect(compiled.keyPrefix).toBe('tgfed');
    expect(compiled.maxWaitMs).toBe(60_000);
    expect(compiled.limits).toEqual({
      mutate: { ratePerSecond: 4, burst: 20 },
      describe: { ratePerSecond: 50, burst: 200 },
      modify: { ratePerSecond: 3, burst: 20 },
    });
    expect(compiled.limits).toEqual(DEFAULT_AWS_RATE_LIMITS);
    expect(compiled.overrides).toEqual([]);
    expect(compiled.nowMicros).toBeUndefined();
  });

  it('keeps the defaults of classes a partial limits option leaves out', () => {
    const compiled = compileAwsRateLimiterOptions({
      limits: { describe: { ratePerSecond: 10, burst: 40 } },
    });
    expect(compiled.limits.describe).toEqual({ ratePerSecond: 10, burst: 40 });
    expect(compiled.limits.mutate).toEqual(DEFAULT_AWS_RATE_LIMITS.mutate);
  });

  it.each([
    [{ keyPrefix: '' }, 'keyPrefix'],
    [{ keyPrefix: 'a{b}' }, 'keyPrefix'],
    [{ maxWaitMs: -1 }, 'maxWaitMs'],
    [{ maxWaitMs: 1.5 }, 'maxWaitMs'],
    [{ limits: { mutate: { ratePerSecond: 0, burst: 20 } } }, 'limits.mutate.ratePerSecond'],
    [{ limits: { modify: { ratePerSecond: 3, burst: 0 } } }, 'limits.modify.burst'],
    [{ limits: { describe: { ratePerSecond: 3, burst: 2.5 } } }, 'limits.describe.burst'],
    [{ limits: { list: { ratePerSecond: 3, burst: 2 } } }, 'limits.list'],
    [{ overrides: [{ account: 'a:b', ratePerSecond: 1, burst: 1 }] }, 'overrides[0].account'],
    [{ overrides: [{ region: '{x}', ratePerSecond: 1, burst: 1 }] }, 'overrides[0].region'],
    [{ overrides: [{ class: 'register', ratePerSecond: 1, burst: 1 }] }, 'overrides[0].class'],
    [
      { overrides: [{ account: '1', ratePerSecond: Number.NaN, burst: 1 }] },
      'overrides[0].ratePerSecond',
    ],
    [
      {
        overrides: [
          { account: '1', ratePerSecond: 1, burst: 1 },
          { account: '1', ratePerSecond: 2, burst: 2 },
        ],
      },
      'overrides[1]',
    ],
  ])('rejects %j naming %s', (options, setting) => {
    const compile = () => compileAwsRateLimiterOptions(options as never);
    expect(compile).toThrow(AwsRateLimiterOptionsError);
    expect(compile).toThrow(setting);
  });
});

describe('AwsRateLimiter.limitFor', () => {
  const limiter = new AwsRateLimiter(offlineRedis, {
    overrides: [
      { class: 'mutate', ratePerSecond: 1, burst: 1 },
      { region: 'us-east-1', ratePerSecond: 2, burst: 2 },
      { region: 'us-east-1', class: 'mutate', ratePerSecond: 3, burst: 3 },
      { account: '111111111111', ratePerSecond: 4, burst: 4 },
      { account: '111111111111', region: 'us-east-1', ratePerSecond: 5, burst: 5 },
    ],
  });
  const burstOf = (account: string, region: string, cls: AwsOperationClass) =>
    limiter.limitFor(account, region, cls).burst;

  it('takes the most specific override, the account before the region before the class', () => {
    expect(burstOf('999999999999', 'eu-west-1', 'describe')).toBe(200);
    expect(burstOf('999999999999', 'eu-west-1', 'mutate')).toBe(1);
    expect(burstOf('999999999999', 'us-east-1', 'describe')).toBe(2);
    expect(burstOf('999999999999', 'us-east-1', 'mutate')).toBe(3);
    expect(burstOf('111111111111', 'eu-west-1', 'mutate')).toBe(4);
    expect(burstOf('111111111111', 'us-east-1', 'mutate')).toBe(5);
  });

  it('names bucket keys with one hash tag per account and region', () => {
    expect(limiter.bucketKey('111111111111', 'eu-west-1', 'modify')).toBe(
      'tgfed:{aws:111111111111:eu-west-1}:bucket:modify',
    );
    expect(() => limiter.bucketKey('1{1}', 'eu-west-1', 'modify')).toThrow(RangeError);
  });

  it('refuses more tokens than the burst before asking Redis', async () => {
    await expect(
      limiter.acquire('999999999999', 'eu-west-1', 'mutate', { tokens: 2 }),
    ).rejects.toThrow(RangeError);
  });
});

describe('operationClassOf', () => {
  it.each([
    ['RegisterTargets', 'mutate'],
    ['DeregisterTargetsCommand', 'mutate'],
    ['DescribeTargetHealth', 'describe'],
    ['DescribeTargetGroupsCommand', 'describe'],
    ['ModifyTargetGroupAttributes', 'modify'],
    ['CreateTargetGroup', 'modify'],
    ['DeleteTargetGroup', 'modify'],
    ['AddTags', 'modify'],
    ['RemoveTags', 'modify'],
    ['SetSecurityGroups', 'modify'],
    ['SomethingNew', 'modify'],
  ])('puts %s in %s', (action, cls) => {
    expect(operationClassOf(action)).toBe(cls);
  });
});

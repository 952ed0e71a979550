import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { PoolPlacementClaims } from '../../../hub/federation/pool-placement-claims.js';
import type { RedisClient } from '../../../hub/state/index.js';
import { targetGroupArn } from '../../support/binding-fixtures.js';
import { testRedis } from '../../support/test-redis.js';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const ARNS = [targetGroupArn(2), targetGroupArn(1), targetGroupArn(3)];
const [A, B, C] = [...ARNS].sort() as [string, string, string];

function setUp(options: { keepMs?: number } = {}): {
  redis: RedisClient;
  claims: PoolPlacementClaims;
  key: string;
} {
  const redis = testRedis(closers);
  const prefix = `t-${randomBytes(4).toString('hex')}`;
  const claims = new PoolPlacementClaims(redis, prefix, options);
  const key = claims.key('web', ARNS);
  closers.push(() => redis.del(key));
  return { redis, claims, key };
}

describe('PoolPlacementClaims', () => {
  it('keys a pool by its binding under its own hash tag, and by its set of groups', () => {
    const { claims, key } = setUp();
    expect(key).toMatch(/^t-[0-9a-f]{8}:\{pool:web\}:claims:[0-9a-f]{16}$/);
    expect(claims.key('web', [...ARNS].reverse())).toBe(key);
    expect(claims.key('web', [A, B])).not.toBe(key);
    expect(claims.key('api', ARNS)).not.toBe(key);
  });

  it('gives each target to the first claim, and names the group that holds a lost one', async () => {
    const { redis, claims, key } = setUp();
    const before = await claims.read('web', ARNS);
    expect(before.size).toBe(0);
    const first = await claims.claim('web', ARNS, [
      { target: '10.0.0.1:80', read: undefined, arn: A },
      { target: '10.0.0.2:80', read: undefined, arn: B },
    ]);
    expect(first.size).toBe(0);
    // A second resolution that read the pool before: the same group agrees, another loses.
    const second = await claims.claim('web', ARNS, [
      { target: '10.0.0.1:80', read: undefined, arn: A },
      { target: '10.0.0.2:80', read: undefined, arn: C },
      { target: '10.0.0.3:80', read: undefined, arn: C },
    ]);
    expect(second).toEqual(new Map([['10.0.0.2:80', B]]));
    const read = await claims.read('web', ARNS);
    expect(new Map([...read].map(([t, c]) => [t, c.arn]))).toEqual(
      new Map([
        ['10.0.0.1:80', A],
        ['10.0.0.2:80', B],
        ['10.0.0.3:80', C],
      ]),
    );
    const serverMs = Number((await redis.time())[0]) * 1000;
    for (const claim of read.values()) expect(Math.abs(claim.atMs - serverMs)).toBeLessThan(5_000);
    expect(await redis.pttl(key)).toBeGreaterThan(3_500_000);
    // A resolution that read the claim moves the target on; one that read an older one loses.
    const moved = await claims.claim('web', ARNS, [
      { target: '10.0.0.2:80', read: read.get('10.0.0.2:80'), arn: A },
    ]);
    expect(moved.size).toBe(0);
    const stale = await claims.claim('web', ARNS, [
      { target: '10.0.0.2:80', read: read.get('10.0.0.2:80'), arn: C },
    ]);
    expect(stale).toEqual(new Map([['10.0.0.2:80', A]]));
  });

  it('refuses a group outside the pool, and leaves out claims it cannot read', async () => {
    const { redis, claims, key } = setUp();
    await expect(
      claims.claim('web', ARNS, [
        { target: '10.0.0.1:80', read: undefined, arn: targetGroupArn(9) },
      ]),
    ).rejects.toThrow(/not a group of the pool/);
    await redis.hset(key, '10.0.0.1:80', '7|1', '10.0.0.2:80', 'x', '10.0.0.3:80', '1|5');
    expect([...(await claims.read('web', ARNS))]).toEqual([
      ['10.0.0.3:80', { arn: B, value: '1|5', atMs: 5 }],
    ]);
  });

  it('releases settled claims only when older than keepMs and still as read', async () => {
    const { redis, claims, key } = setUp({ keepMs: 60_000 });
    await claims.claim('web', ARNS, [
      { target: '10.0.0.1:80', read: undefined, arn: A },
      { target: '10.0.0.2:80', read: undefined, arn: B },
    ]);
    const fresh = await claims.read('web', ARNS);
    expect(await claims.release('web', ARNS, fresh, () => true)).toBe(0);
    expect(await redis.hlen(key)).toBe(2);
    // Old claims (by the server's clock), one of them replaced since it was read.
    await redis.hset(
      key,
      '10.0.0.1:80',
      '0|1000',
      '10.0.0.2:80',
      '1|1000',
      '10.0.0.3:80',
      '2|1000',
    );
    const old = await claims.read('web', ARNS);
    await redis.hset(key, '10.0.0.2:80', '2|1001');
    const settled = (target: string): boolean => target !== '10.0.0.3:80';
    expect(await claims.release('web', ARNS, old, settled)).toBe(1);
    expect(await redis.hgetall(key)).toEqual({ '10.0.0.2:80': '2|1001', '10.0.0.3:80': '2|1000' });
  });

  it('claims and releases thousands of targets in chunks', async () => {
    const { redis, claims, key } = setUp({ keepMs: 0 });
    const wanted = Array.from({ length: 2_500 }, (_, i) => ({
      target: `10.1.${i >> 8}.${i & 255}:80`,
      read: undefined,
      arn: ARNS[i % 3] as string,
    }));
    expect((await claims.claim('web', ARNS, wanted)).size).toBe(0);
    expect(await redis.hlen(key)).toBe(2_500);
    const lost = await claims.claim(
      'web',
      ARNS,
      wanted.map((w, i) => ({ ...w, arn: ARNS[(i + 1) % 3] as string })),
    );
    expect(lost.size).toBe(2_500);
    expect(lost.get(wanted[1_999]!.target)).toBe(wanted[1_999]!.arn);
    const read = await claims.read('web', ARNS);
    expect(await claims.release('web', ARNS, read, () => true)).toBe(2_500);
    expect(await redis.exists(key)).toBe(0);
  });
});

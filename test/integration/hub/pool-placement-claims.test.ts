import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  NO_CLAIMS,
  PoolPlacementClaims,
  StaleClaimsError,
  type PoolClaims,
} from '../../../hub/federation/pool-placement-claims.js';
import type { RedisClient } from '../../../hub/state/index.js';
import { targetGroupArn } from '../../support/binding-fixtures.js';
import { testRedis } from '../../support/test-redis.js';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const ARNS = [targetGroupArn(2), targetGroupArn(1), targetGroupArn(3)];
const [A, B, C] = [...ARNS].sort() as [string, string, string];

function setUp(options: { keepMs?: number; settleMs?: number } = {}): {
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

const groupsOf = (read: PoolClaims): Map<string, string> =>
  new Map([...read.byTarget].map(([t, c]) => [t, c.arn]));

async function serverMs(redis: RedisClient): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

describe('PoolPlacementClaims', () => {
  it('keys a pool by its binding under its own hash tag, and by its set of groups', () => {
    const { claims, key } = setUp();
    expect(key).toMatch(/^t-[0-9a-f]{8}:\{pool:web\}:claims:[0-9a-f]{16}$/);
    expect(claims.key('web', [...ARNS].reverse())).toBe(key);
    expect(claims.key('web', [A, B])).not.toBe(key);
    expect(claims.key('api', ARNS)).not.toBe(key);
    expect(() => setUp({ keepMs: 0 })).toThrow(/keepMs must be a positive integer/);
    expect(() => setUp({ keepMs: 1_000, settleMs: 2_000 })).toThrow(/must not exceed keepMs/);
  });

  it('gives each target to the first claim, and names the group that holds a lost one', async () => {
    const { redis, claims, key } = setUp();
    const before = await claims.read('web', ARNS);
    expect(before.byTarget.size).toBe(0);
    expect(Math.abs(before.readAtMs - (await serverMs(redis)))).toBeLessThan(1_000);
    const first = await claims.claim('web', ARNS, before, [
      { target: '10.0.0.1:80', read: undefined, arn: A },
      { target: '10.0.0.2:80', read: undefined, arn: B },
    ]);
    expect(first.size).toBe(0);
    // A second resolution that read the pool before: the same group agrees, another loses.
    const second = await claims.claim('web', ARNS, before, [
      { target: '10.0.0.1:80', read: undefined, arn: A },
      { target: '10.0.0.2:80', read: undefined, arn: C },
      { target: '10.0.0.3:80', read: undefined, arn: C },
    ]);
    expect(second).toEqual(new Map([['10.0.0.2:80', B]]));
    const read = await claims.read('web', ARNS);
    expect(groupsOf(read)).toEqual(
      new Map([
        ['10.0.0.1:80', A],
        ['10.0.0.2:80', B],
        ['10.0.0.3:80', C],
      ]),
    );
    for (const claim of read.byTarget.values()) {
      expect(read.readAtMs - claim.atMs).toBeGreaterThanOrEqual(0);
      expect(read.readAtMs - claim.atMs).toBeLessThan(5_000);
    }
    expect(claims.settling(read)).toEqual(new Set(read.byTarget.keys()));
    expect(await redis.pttl(key)).toBeGreaterThan(3_500_000);
    // A resolution that read the claim moves the target on; one that read an older one loses.
    const moved = await claims.claim('web', ARNS, read, [
      { target: '10.0.0.2:80', read: read.byTarget.get('10.0.0.2:80'), arn: A },
    ]);
    expect(moved.size).toBe(0);
    const stale = await claims.claim('web', ARNS, read, [
      { target: '10.0.0.2:80', read: read.byTarget.get('10.0.0.2:80'), arn: C },
    ]);
    expect(stale).toEqual(new Map([['10.0.0.2:80', A]]));
  });

  it('refuses to claim against claims read keepMs ago or longer, and writes nothing then', async () => {
    const { redis, claims, key } = setUp({ keepMs: 60_000 });
    const read = await claims.read('web', ARNS);
    const old: PoolClaims = { ...read, readAtMs: read.readAtMs - 60_000 };
    await expect(
      claims.claim('web', ARNS, old, [{ target: '10.0.0.1:80', read: undefined, arn: A }]),
    ).rejects.toBeInstanceOf(StaleClaimsError);
    expect(await redis.exists(key)).toBe(0);
    // A pool without claims read (NO_CLAIMS) cannot claim either.
    await expect(
      claims.claim('web', ARNS, NO_CLAIMS, [{ target: '10.0.0.1:80', read: undefined, arn: A }]),
    ).rejects.toThrow(/read too long ago/);
  });

  it('refuses a group outside the pool, and takes what is no claim for none', async () => {
    const { redis, claims, key } = setUp();
    const read = await claims.read('web', ARNS);
    await expect(
      claims.claim('web', ARNS, read, [
        { target: '10.0.0.1:80', read: undefined, arn: targetGroupArn(9) },
      ]),
    ).rejects.toThrow(/not a group of the pool/);
    await redis.hset(key, '10.0.0.1:80', '7|1', '10.0.0.2:80', 'x', '10.0.0.3:80', '1|5');
    await redis.hset(key, '10.0.0.4:80', '01|5', '10.0.0.5:80', '1|');
    const again = await claims.read('web', ARNS);
    expect([...again.byTarget]).toEqual([['10.0.0.3:80', { arn: B, value: '1|5', atMs: 5 }]]);
    // A value that is not a claim at all is overwritten, as if there were none.
    const lost = await claims.claim('web', ARNS, again, [
      { target: '10.0.0.2:80', read: undefined, arn: C },
      { target: '10.0.0.5:80', read: undefined, arn: C },
    ]);
    expect(lost.size).toBe(0);
    expect(groupsOf(await claims.read('web', ARNS)).get('10.0.0.2:80')).toBe(C);
  });

  it('releases settled claims only when older than keepMs by the server, and still as read', async () => {
    const { redis, claims, key } = setUp({ keepMs: 60_000 });
    const first = await claims.read('web', ARNS);
    await claims.claim('web', ARNS, first, [
      { target: '10.0.0.1:80', read: undefined, arn: A },
      { target: '10.0.0.2:80', read: undefined, arn: B },
    ]);
    const fresh = await claims.read('web', ARNS);
    expect(await claims.release('web', ARNS, fresh, () => true)).toBe(0);
    // Sent anyway (as a reader whose read looks a minute later would): the script keeps them.
    const later: PoolClaims = { ...fresh, readAtMs: fresh.readAtMs + 61_000 };
    expect(await claims.release('web', ARNS, later, () => true)).toBe(0);
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
    expect(claims.settling(old)).toEqual(new Set());
    await redis.hset(key, '10.0.0.2:80', '2|1001');
    const settled = (target: string): boolean => target !== '10.0.0.3:80';
    expect(await claims.release('web', ARNS, old, settled)).toBe(1);
    expect(await redis.hgetall(key)).toEqual({
      '10.0.0.2:80': '2|1001',
      '10.0.0.3:80': '2|1000',
    });
  });

  it('claims and releases thousands of targets in chunks', async () => {
    const { redis, claims, key } = setUp();
    const wanted = Array.from({ length: 2_500 }, (_, i) => ({
      target: `10.1.${i >> 8}.${i & 255}:80`,
      read: undefined,
      arn: ARNS[i % 3] as string,
    }));
    const read = await claims.read('web', ARNS);
    expect((await claims.claim('web', ARNS, read, wanted)).size).toBe(0);
    expect(await redis.hlen(key)).toBe(2_500);
    const lost = await claims.claim(
      'web',
      ARNS,
      read,
      wanted.map((w, i) => ({ ...w, arn: ARNS[(i + 1) % 3] as string })),
    );
    expect(lost.size).toBe(2_500);
    expect(lost.get(wanted[1_999]!.target)).toBe(wanted[1_999]!.arn);
    // Released by a process that keeps claims a millisecond (the same key).
    const brief = new PoolPlacementClaims(redis, key.slice(0, key.indexOf(':')), { keepMs: 1 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const all = await brief.read('web', ARNS);
    expect(all.byTarget.size).toBe(2_500);
    // A second release of the pool while the first is in flight sends nothing.
    const commands = redis as unknown as Record<string, (...args: unknown[]) => unknown>;
    const script = commands.tgfedPoolClaimRelease!;
    let calls = 0;
    commands.tgfedPoolClaimRelease = function (this: unknown, ...args: unknown[]) {
      calls++;
      return script.apply(this, args);
    };
    const [released, again] = await Promise.all([
      brief.release('web', ARNS, all, () => true),
      brief.release('web', ARNS, all, () => true),
    ]);
    commands.tgfedPoolClaimRelease = script;
    expect([released, again]).toEqual([2_500, 0]);
    expect(calls, 'three chunks, once').toBe(3);
    expect(await redis.exists(key)).toBe(0);
  });
});

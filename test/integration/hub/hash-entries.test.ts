import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { hashEntries, type RedisClient } from '../../../hub/state/index.js';
import { testRedis } from '../../support/test-redis.js';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function redis(): RedisClient {
  return testRedis(closers);
}

describe('hashEntries', () => {
  it('reads every field and value of a hash, HGETALL alike, into a Map', async () => {
    const client = redis();
    const key = `t-${randomBytes(4).toString('hex')}:hash`;
    closers.push(() => client.del(key));
    const fields = new Map<string, string>([
      ['10.1.0.1:8080', 'healthy'],
      ['[fd00::1]:8080', 'draining'],
      // Names a plain object treats specially, and an empty value.
      ['__proto__', 'a'],
      ['constructor', 'b'],
      ['empty', ''],
    ]);
    for (let i = 0; i < 5_000; i++) fields.set(`10.2.${i >> 8}.${i & 255}:80`, `v${i}`);
    await client.hset(key, Object.fromEntries(fields));

    const read = await hashEntries(client, key);
    expect(read).toEqual(fields);
    expect(new Map(Object.entries(await client.hgetall(key)))).toEqual(read);
  });

  it('reads a missing hash as empty', async () => {
    const client = redis();
    expect(await hashEntries(client, `t-${randomBytes(4).toString('hex')}:none`)).toEqual(
      new Map(),
    );
  });
});

import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  hashEntries,
  hashFieldChunks,
  sameValueFieldChunks,
  type RedisClient,
} from '../../../hub/state/index.js';
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

describe('hashFieldChunks', () => {
  it('gives HSET argument lists of at most 1,000 fields that write every entry', async () => {
    const client = redis();
    const key = `t-${randomBytes(4).toString('hex')}:hash`;
    closers.push(() => client.del(key));
    const fields = new Map<string, string>([
      ['__proto__', 'a'],
      ['constructor', 'b'],
      ['empty', ''],
    ]);
    for (let i = 0; i < 2_497; i++) fields.set(`10.3.${i >> 8}.${i & 255}:80`, `v${i}`);

    const chunks = hashFieldChunks(fields);
    expect(chunks.map((c) => c.length)).toEqual([2_000, 2_000, 1_000]);
    expect(chunks[0]?.slice(0, 4)).toEqual(['__proto__', 'a', 'constructor', 'b']);
    for (const chunk of chunks) await client.hset(key, ...chunk);
    expect(await hashEntries(client, key)).toEqual(fields);
  });

  it('gives no list for no entries, and one value for every field', () => {
    expect(hashFieldChunks(new Map())).toEqual([]);
    expect(sameValueFieldChunks([], 'initial')).toEqual([]);
    expect(hashFieldChunks([['a', '1']], 1)).toEqual([['a', '1']]);
    const keys = Array.from({ length: 1_001 }, (_, i) => `10.4.0.${i}:80`);
    const chunks = sameValueFieldChunks(keys, 'draining');
    expect(chunks.map((c) => c.length)).toEqual([2_000, 2]);
    expect(chunks.flat().filter((_, i) => i % 2 === 1)).toEqual(keys.map(() => 'draining'));
    expect(chunks.flat().filter((_, i) => i % 2 === 0)).toEqual(keys);
  });
});

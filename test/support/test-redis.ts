import { inject } from 'vitest';
import { createRedis, type RedisClient } from '../../hub/state/index.js';

/** A client of the test environment's Redis, quit by the test's closers. */
export function testRedis(closers: (() => unknown)[]): RedisClient {
  const client = createRedis({ mode: 'standalone', url: inject('redisUrl') });
  closers.push(() => client.quit());
  return client;
}

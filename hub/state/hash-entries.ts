import type { RedisClient } from './redis-connection.js';

// HGETALL's reply as Redis sends it: a flat field, value, field, value... array.
const hashEntriesLua = `return redis.call('HGETALL', KEYS[1])`;
const hashEntriesCommand = 'tgfedHashEntries';
type ScriptCommand = (key: string) => Promise<unknown>;
const defined = new WeakSet<RedisClient>();

/**
 * A hash's fields and values as a Map, in one round trip: HGETALL run as a script, so that the
 * client hands back Redis's flat array. ioredis's own `hgetall` builds a plain object first
 * (checking every field against the ones already set), and callers turned it into a Map again:
 * for the hashes of thousands of targets that workers read at every reconcile (a group's actual
 * targets, a pool's assignment), that conversion was about a tenth of a worker's CPU.
 */
export async function hashEntries(redis: RedisClient, key: string): Promise<Map<string, string>> {
  if (!defined.has(redis)) {
    redis.defineCommand(hashEntriesCommand, { lua: hashEntriesLua, numberOfKeys: 1 });
    defined.add(redis);
  }
  const command = (redis as unknown as Record<string, ScriptCommand>)[hashEntriesCommand];
  const flat = (await command?.call(redis, key)) as string[];
  const entries = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2)
    entries.set(flat[i] as string, flat[i + 1] as string);
  return entries;
}

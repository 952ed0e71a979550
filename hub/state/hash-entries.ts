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

/** Fields per HSET that {@link hashFieldChunks} puts in one argument list. */
export const HSET_CHUNK_FIELDS = 1_000;

/**
 * HSET's `field value field value ...` arguments for `entries`, at most `chunkFields` fields
 * per list (none when there are no entries). ioredis's object form costs what `hgetall`'s did
 * (see {@link hashEntries}): `Object.fromEntries` over thousands of target keys made each key a
 * property name first, about 4 µs a target in a busy worker, and writing the shares and the
 * actual targets that way was a tenth of the workers' CPU after a cold start's sync.
 */
export function hashFieldChunks(
  entries: Iterable<readonly [string, string]>,
  chunkFields = HSET_CHUNK_FIELDS,
): string[][] {
  return argumentChunks(entries, chunkFields, (args, [field, value]) => args.push(field, value));
}

/** {@link hashFieldChunks} of `fields`, each set to `value`. */
export function sameValueFieldChunks(fields: Iterable<string>, value: string): string[][] {
  return argumentChunks(fields, HSET_CHUNK_FIELDS, (args, field) => args.push(field, value));
}

/** Argument lists of `chunkFields` field/value pairs at most, each item adding one pair. */
function argumentChunks<T>(
  items: Iterable<T>,
  chunkFields: number,
  add: (args: string[], item: T) => void,
): string[][] {
  const chunks: string[][] = [];
  let chunk: string[] = [];
  for (const item of items) {
    add(chunk, item);
    if (chunk.length >= 2 * chunkFields) {
      chunks.push(chunk);
      chunk = [];
    }
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

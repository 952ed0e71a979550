import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { FieldViolation, Logger } from '../../shared/index.js';
import { Binding, silentLogger } from '../../shared/index.js';
import { validateBinding, type NormalizedBinding } from './binding-validation.js';

/** A binding failed validation; `violations` say which fields and why. */
export class BindingValidationError extends Error {
  override readonly name = 'BindingValidationError';
  constructor(readonly violations: readonly FieldViolation[]) {
    super(`invalid binding: ${violations.map((v) => `${v.field}: ${v.description}`).join('; ')}`);
  }
}

/** A compare-and-set lost: the binding's version is not the one the caller expected. */
export class BindingVersionConflictError extends Error {
  override readonly name = 'BindingVersionConflictError';
  constructor(
    readonly bindingName: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super(
      `binding ${bindingName} has version ${actualVersion === 0 ? '(none: absent)' : actualVersion}, not ${expectedVersion}`,
    );
  }
}

/** Options of {@link BindingStore}. */
export interface BindingStoreOptions {
  /**
   * Prefix of every key and of the change channel.
   * @default 'tgfed'
   */
  keyPrefix?: string;
  /**
   * How often a watching store compares the stored revision with the last one it announced, to
   * catch changes whose pub/sub message was lost (pub/sub is at-most-once). 0 disables polling.
   * @default 10_000
   */
  revisionPollMs?: number;
  /** @default Date.now */
  clock?: () => number;
  /** @default silentLogger() */
  logger?: Logger;
}

/** Conditions of {@link BindingStore.apply} and {@link BindingStore.delete}. */
export interface BindingWriteOptions {
  /**
   * Write only if the binding's current version is this one; 0 means "only if absent". Undefined
   * writes unconditionally. (The admin API's `version: 0` means unconditional: map it to undefined.)
   */
  expectedVersion?: number | undefined;
}

/** Outcome of {@link BindingStore.apply}. */
export interface AppliedBinding {
  binding: NormalizedBinding;
  /** False when the stored content was already equal: nothing was written, version unchanged. */
  changed: boolean;
}

/** All bindings at one bindings revision. */
export interface BindingSnapshot {
  revision: number;
  bindings: NormalizedBinding[];
  /**
   * Which stored bindings these are: a random id the first write to an empty store sets. It only
   * changes when Redis lost the bindings, so a different one means revisions may have restarted
   * (and may compare lower); '' means nothing was written since the store was created or lost.
   */
  generation: string;
}

/** Outcome of {@link BindingStore.restore}. */
export interface RestoredBindings {
  /** False when another replica already restored the bindings after this storage epoch. */
  performed: boolean;
  /** Names written back (absent from the store), sorted. */
  restored: string[];
  /** Names left alone because the store already held them (written since the loss), sorted. */
  present: string[];
  /** The revision of the restored bindings; 0 when nothing was written. */
  revision: number;
}

/** One change announced to watchers. `resync` means "changes may have been missed: reload". */
export type BindingChange =
  | { kind: 'applied' | 'deleted'; revision: number; name: string }
  | { kind: 'resync'; revision: number };

type WatchState = 'idle' | 'subscribing' | 'watching' | 'closed';

// Versions are bindings revisions (like Kubernetes resourceVersion or etcd mod_revision): a
// deleted and re-created binding never reuses a version a stale client might still hold.
// A revision is max(previous + 1, now in ms), so it keeps increasing after a Redis loss resets
// the counter, and agents' logs never show an older subscription version for newer bindings.
// KEYS[5] is the generation: set by the first write to an empty store (see BindingSnapshot).
const NEXT_REVISION = `
local function next_revision(key, now_ms)
  local revision = redis.call('INCR', key)
  if revision < tonumber(now_ms) then
    redis.call('SET', key, now_ms)
    revision = tonumber(now_ms)
  end
  return revision
end`;

const APPLY_SCRIPT = `${NEXT_REVISION}
local name, content, expected = ARGV[1], ARGV[2], ARGV[3]
local version = tonumber(redis.call('HGET', KEYS[2], name) or '0')
if expected ~= '' and tonumber(expected) ~= version then
  return {'conflict', version, 0}
end
if redis.call('HGET', KEYS[1], name) == content then
  return {'unchanged', version, tonumber(redis.call('HGET', KEYS[3], name) or '0')}
end
local revision = next_revision(KEYS[4], ARGV[4])
redis.call('SET', KEYS[5], ARGV[6], 'NX')
redis.call('HSET', KEYS[1], name, content)
redis.call('HSET', KEYS[2], name, revision)
redis.call('HSET', KEYS[3], name, ARGV[4])
redis.call('PUBLISH', ARGV[5], 'applied ' .. string.format('%d', revision) .. ' ' .. name)
return {'changed', revision, tonumber(ARGV[4])}
`;

const DELETE_SCRIPT = `${NEXT_REVISION}
local name, expected = ARGV[1], ARGV[2]
local version = tonumber(redis.call('HGET', KEYS[2], name) or '0')
if expected ~= '' and tonumber(expected) ~= version then
  return {'conflict', version}
end
if version == 0 then
  return {'absent', 0}
end
local revision = next_revision(KEYS[4], ARGV[3])
redis.call('SET', KEYS[5], ARGV[5], 'NX')
redis.call('HDEL', KEYS[1], name)
redis.call('HDEL', KEYS[2], name)
redis.call('HDEL', KEYS[3], name)
redis.call('PUBLISH', ARGV[4], 'deleted ' .. string.format('%d', revision) .. ' ' .. name)
return {'deleted', revision}
`;

// Writes back bindings Redis lost, once per storage epoch (KEYS[6] holds the epoch of the last
// restore): a script runs alone, so replicas restoring at once take turns and only the first
// writes. Only absent names are written: one present was written since the loss, so it is newer.
// ARGV: epoch, now, revision floor, channel, generation, then name and content pairs.
const RESTORE_SCRIPT = `${NEXT_REVISION}
if redis.call('GET', KEYS[6]) == ARGV[1] then
  return {'done', 0, {}, {}}
end
local revision = 0
local restored, present = {}, {}
for i = 6, #ARGV, 2 do
  local name, content = ARGV[i], ARGV[i + 1]
  if redis.call('HEXISTS', KEYS[1], name) == 1 then
    present[#present + 1] = name
  else
    if revision == 0 then
      revision = next_revision(KEYS[4], string.format('%d', math.max(tonumber(ARGV[2]), tonumber(ARGV[3]))))
    end
    redis.call('HSET', KEYS[1], name, content)
    redis.call('HSET', KEYS[2], name, revision)
    redis.call('HSET', KEYS[3], name, ARGV[2])
    restored[#restored + 1] = name
  end
end
redis.call('SET', KEYS[5], ARGV[5], 'NX')
redis.call('SET', KEYS[6], ARGV[1])
for _, name in ipairs(restored) do
  redis.call('PUBLISH', ARGV[4], 'applied ' .. string.format('%d', revision) .. ' ' .. name)
end
return {'restored', revision, restored, present}
`;

function newGeneration(): string {
  return randomBytes(8).toString('hex');
}

/** The content that makes two bindings equal: everything but the store's version and time. */
function contentOf(binding: NormalizedBinding): string {
  return JSON.stringify(Binding.toJSON({ ...binding, version: 0, updatedUnixMs: 0 }));
}

function fromStored(content: string, version: number, updatedUnixMs: number): NormalizedBinding {
  // Only validated bindings are written, so what comes back is normalized.
  const binding = Binding.fromJSON(JSON.parse(content)) as NormalizedBinding;
  return { ...binding, version, updatedUnixMs };
}

function parseChange(message: string): BindingChange | undefined {
  const [kind, revision, name] = message.split(' ');
  if ((kind !== 'applied' && kind !== 'deleted') || name === undefined) return undefined;
  const n = Number(revision);
  return Number.isSafeInteger(n) ? { kind, revision: n, name } : undefined;
}

/**
 * Bindings in Redis with a version each, compare-and-set writes, and change notifications that
 * reach every hub replica (a pub/sub channel plus a bindings revision to catch lost messages).
 *
 * Keys share the hash tag `{bindings}`: unlike endpoint state, bindings are few (hundreds), small
 * and always read as a whole, and each write must move the record, its version and the global
 * revision together, and a snapshot must read all of them at one revision. One slot makes both
 * atomic; the load is a write per operator change and a read per change notification, so that
 * slot is never hot.
 */
export class BindingStore {
  readonly #redis: Redis | Cluster;
  readonly #keys: {
    content: string;
    versions: string;
    updated: string;
    revision: string;
    generation: string;
    restoredEpoch: string;
  };
  readonly #channel: string;
  readonly #revisionPollMs: number;
  readonly #clock: () => number;
  readonly #logger: Logger;
  readonly #listeners = new Set<(change: BindingChange) => void>();
  #subscriber: Redis | Cluster | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #watchState: WatchState = 'idle';
  #lastRevision = 0;

  constructor(redis: Redis | Cluster, options: BindingStoreOptions = {}) {
    this.#redis = redis;
    const base = `${options.keyPrefix ?? 'tgfed'}:{bindings}`;
    this.#keys = {
      content: `${base}:content`,
      versions: `${base}:versions`,
      updated: `${base}:updated`,
      revision: `${base}:revision`,
      generation: `${base}:generation`,
      restoredEpoch: `${base}:restored-epoch`,
    };
    this.#channel = `${base}:changes`;
    this.#revisionPollMs = options.revisionPollMs ?? 10_000;
    this.#clock = options.clock ?? Date.now;
    this.#logger = options.logger ?? silentLogger();
  }

  /**
   * Validates and stores a binding. Equal content leaves the stored binding, its version and the
   * revision alone (`changed: false`). Throws {@link BindingValidationError} or
   * {@link BindingVersionConflictError}.
   */
  async apply(binding: Binding, options: BindingWriteOptions = {}): Promise<AppliedBinding> {
    const result = validateBinding(binding);
    if (!result.ok) throw new BindingValidationError(result.violations);
    const content = contentOf(result.binding);
    const reply = (await this.#redis.eval(
      APPLY_SCRIPT,
      5,
      this.#keys.content,
      this.#keys.versions,
      this.#keys.updated,
      this.#keys.revision,
      this.#keys.generation,
      result.binding.name,
      content,
      options.expectedVersion === undefined ? '' : String(options.expectedVersion),
      String(this.#clock()),
      this.#channel,
      newGeneration(),
    )) as [string, number, number];
    const [outcome, version, updatedUnixMs] = reply;
    if (outcome === 'conflict') {
      throw new BindingVersionConflictError(
        result.binding.name,
        options.expectedVersion ?? 0,
        version,
      );
    }
    return {
      binding: { ...result.binding, version, updatedUnixMs },
      changed: outcome === 'changed',
    };
  }

  /**
   * Deletes a binding; false when there was none. Throws {@link BindingVersionConflictError} when
   * `expectedVersion` is given and differs.
   */
  async delete(name: string, options: BindingWriteOptions = {}): Promise<boolean> {
    const reply = (await this.#redis.eval(
      DELETE_SCRIPT,
      5,
      this.#keys.content,
      this.#keys.versions,
      this.#keys.updated,
      this.#keys.revision,
      this.#keys.generation,
      name,
      options.expectedVersion === undefined ? '' : String(options.expectedVersion),
      String(this.#clock()),
      this.#channel,
      newGeneration(),
    )) as [string, number];
    const [outcome, version] = reply;
    if (outcome === 'conflict') {
      throw new BindingVersionConflictError(name, options.expectedVersion ?? 0, version);
    }
    return outcome === 'deleted';
  }

  /**
   * After a Redis loss detected at storage epoch `epoch`, writes back the bindings the store no
   * longer holds, all at one revision of at least `revisionFloor` (versions restart), unless a
   * replica already restored after this epoch. Bindings are validated first (throws
   * {@link BindingValidationError}); names the store holds again are left alone.
   */
  async restore(
    epoch: string,
    bindings: readonly Binding[],
    revisionFloor = 0,
  ): Promise<RestoredBindings> {
    const args: string[] = [];
    for (const binding of bindings) {
      const result = validateBinding(binding);
      if (!result.ok) throw new BindingValidationError(result.violations);
      args.push(result.binding.name, contentOf(result.binding));
    }
    const reply = (await this.#redis.eval(
      RESTORE_SCRIPT,
      6,
      this.#keys.content,
      this.#keys.versions,
      this.#keys.updated,
      this.#keys.revision,
      this.#keys.generation,
      this.#keys.restoredEpoch,
      epoch,
      String(this.#clock()),
      String(revisionFloor),
      this.#channel,
      newGeneration(),
      ...args,
    )) as [string, number, string[], string[]];
    const [outcome, revision, restored, present] = reply;
    return {
      performed: outcome === 'restored',
      restored: [...restored].sort(),
      present: [...present].sort(),
      revision,
    };
  }

  /** The binding of that name, or undefined. */
  async get(name: string): Promise<NormalizedBinding | undefined> {
    const results = await this.#redis
      .multi()
      .hget(this.#keys.content, name)
      .hget(this.#keys.versions, name)
      .hget(this.#keys.updated, name)
      .exec();
    const [content, version, updated] = (results ?? []).map(([err, value]) => {
      if (err !== null) throw err;
      return value as string | null;
    });
    if (content === null || content === undefined) return undefined;
    return fromStored(content, Number(version ?? 0), Number(updated ?? 0));
  }

  /** Every binding, sorted by name, with the revision they are consistent with. */
  async snapshot(): Promise<BindingSnapshot> {
    const results = await this.#redis
      .multi()
      .get(this.#keys.revision)
      .hgetall(this.#keys.content)
      .hgetall(this.#keys.versions)
      .hgetall(this.#keys.updated)
      .get(this.#keys.generation)
      .exec();
    const values = (results ?? []).map(([err, value]) => {
      if (err !== null) throw err;
      return value;
    });
    const revision = Number((values[0] as string | null) ?? 0);
    const contents = (values[1] ?? {}) as Record<string, string>;
    const versions = (values[2] ?? {}) as Record<string, string>;
    const updated = (values[3] ?? {}) as Record<string, string>;
    const bindings = Object.keys(contents)
      .sort()
      .map((name) =>
        fromStored(contents[name] ?? '{}', Number(versions[name] ?? 0), Number(updated[name] ?? 0)),
      );
    return { revision, bindings, generation: (values[4] as string | null) ?? '' };
  }

  /** Every binding, sorted by name. */
  async list(): Promise<NormalizedBinding[]> {
    return (await this.snapshot()).bindings;
  }

  /**
   * The revision and generation alone (two small reads): a snapshot taken at the same pair holds
   * the same bindings, because every write moves the revision and a loss the generation.
   */
  async position(): Promise<{ revision: number; generation: string }> {
    // One MGET (the keys share the {bindings} hash tag): read at one instant, and cheaper than a
    // MULTI, which ioredis builds as a pipeline copying every script on the connection.
    const [revision, generation] = await this.#redis.mget(
      this.#keys.revision,
      this.#keys.generation,
    );
    return { revision: Number(revision ?? 0), generation: generation ?? '' };
  }

  /** The bindings revision: changes with every write; 0 when Redis holds none. */
  async revision(): Promise<number> {
    return Number((await this.#redis.get(this.#keys.revision)) ?? 0);
  }

  /**
   * Calls `listener` for every change any replica makes, and with `resync` when messages may
   * have been missed (subscriber reconnected, or the polled revision moved without a message).
   * Resolves once subscribed; returns the function that stops this listener.
   */
  async watch(listener: (change: BindingChange) => void): Promise<() => void> {
    if (this.#watchState === 'closed') throw new Error('BindingStore is closed');
    this.#listeners.add(listener);
    const stop = (): void => {
      this.#listeners.delete(listener);
    };
    if (this.#watchState === 'idle') {
      this.#watchState = 'subscribing';
      const subscriber = this.#redis.duplicate();
      this.#subscriber = subscriber;
      // ioredis reconnects by itself; without a listener it prints every failure to stderr.
      subscriber.on('error', (err: Error) =>
        this.#logger.warn({ err }, 'bindings subscriber: Redis connection failed'),
      );
      subscriber.on('message', (channel: string, message: string) => {
        if (channel !== this.#channel) return;
        const change = parseChange(message);
        if (change === undefined) {
          this.#logger.warn({ message }, 'ignoring malformed bindings change message');
          return;
        }
        this.#lastRevision = Math.max(this.#lastRevision, change.revision);
        this.#emit(change);
      });
      // ioredis resubscribes after a reconnect; whatever was published meanwhile is lost.
      subscriber.on('ready', () => {
        if (this.#watchState === 'watching') this.#checkRevision();
      });
      await subscriber.subscribe(this.#channel);
      this.#lastRevision = await this.revision();
      this.#watchState = 'watching';
      this.#logger.debug({ revision: this.#lastRevision }, 'watching bindings');
      if (this.#revisionPollMs > 0) {
        this.#pollTimer = setInterval(() => this.#checkRevision(), this.#revisionPollMs);
        this.#pollTimer.unref();
      }
    }
    return stop;
  }

  /** Stops watching. Idempotent; the caller owns (and closes) the Redis connection it passed in. */
  async close(): Promise<void> {
    if (this.#watchState === 'closed') return;
    this.#watchState = 'closed';
    this.#listeners.clear();
    if (this.#pollTimer !== undefined) clearInterval(this.#pollTimer);
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    if (subscriber !== undefined) {
      try {
        await subscriber.quit();
      } catch {
        subscriber.disconnect();
      }
    }
  }

  #checkRevision(): void {
    const before = this.#lastRevision;
    this.revision().then(
      (revision) => {
        // A message that arrived meanwhile is newer than this read; the next check looks again.
        if (this.#watchState !== 'watching' || this.#lastRevision !== before) return;
        // Lower counts too: the revision only goes back when Redis lost the bindings.
        if (revision === before) return;
        this.#logger.info(
          { revision, lastRevision: this.#lastRevision },
          'bindings revision moved without a message; resyncing',
        );
        this.#lastRevision = revision;
        this.#emit({ kind: 'resync', revision });
      },
      (err: unknown) => this.#logger.warn({ err }, 'cannot read the bindings revision'),
    );
  }

  #emit(change: BindingChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (err) {
        this.#logger.error({ err, change }, 'bindings change listener failed');
      }
    }
  }
}

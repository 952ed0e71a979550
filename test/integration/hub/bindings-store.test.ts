import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  BindingStore,
  BindingValidationError,
  BindingVersionConflictError,
  type BindingChange,
  type BindingStoreOptions,
} from '../../../hub/federation/binding-store.js';
import { BindingSubscriptionResolver } from '../../../hub/federation/subscription-resolver.js';
import { waitFor } from '../../env/wait-for.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';

/** Things to close after each test, newest first. */
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function connection(): Redis {
  const redis = new Redis(inject('redisUrl'));
  closers.push(() => redis.quit());
  return redis;
}

/** Two stores as two hub replicas would have them: own connections, one key prefix. */
function stores(count: number, options: BindingStoreOptions = {}): BindingStore[] {
  const keyPrefix = options.keyPrefix ?? `tgfed-test-${randomUUID()}`;
  closers.push(async () => {
    const redis = new Redis(inject('redisUrl'));
    const keys = await redis.keys(`${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });
  return Array.from({ length: count }, () => {
    const store = new BindingStore(connection(), { ...options, keyPrefix });
    closers.push(() => store.close());
    return store;
  });
}

function one(): BindingStore {
  const [store] = stores(1);
  if (store === undefined) throw new Error('no store');
  return store;
}

describe('BindingStore on the real Redis', () => {
  it('stores a binding normalized, with a version, and reads it back', async () => {
    const store = one();
    const { binding: stored, changed } = await store.apply(binding());
    expect(changed).toBe(true);
    expect(stored.version).toBeGreaterThan(0);
    expect(stored.updatedUnixMs).toBeGreaterThan(0);
    expect(await store.get('web')).toEqual(stored);
    expect(await store.list()).toEqual([stored]);
    expect(await store.get('nope')).toBeUndefined();
  });

  it('does not bump the version or the revision when the content is unchanged', async () => {
    const store = one();
    const first = await store.apply(binding());
    const revision = await store.revision();
    // Same content, spelled differently: defaults omitted in one, filled in the other.
    const again = await store.apply(
      binding({
        target: {
          $case: 'targetGroup',
          targetGroup: targetGroup({ capacity: 1000, targetType: 'ip', region: 'eu-west-1' }),
        },
      }),
    );
    expect(again.changed).toBe(false);
    expect(again.binding.version).toBe(first.binding.version);
    expect(again.binding.updatedUnixMs).toBe(first.binding.updatedUnixMs);
    expect(await store.revision()).toBe(revision);
  });

  it('increases the version on every change', async () => {
    const store = one();
    const v1 = (await store.apply(binding())).binding.version;
    const v2 = (
      await store.apply(binding({ policy: { includeNotReady: true, keepTerminating: false } }))
    ).binding.version;
    const v3 = (await store.apply(binding({ port: { port: { $case: 'number', number: 80 } } })))
      .binding.version;
    expect(v2).toBeGreaterThan(v1);
    expect(v3).toBeGreaterThan(v2);
    expect(await store.revision()).toBe(v3);
  });

  it('applies with an expected version only while the binding still has it', async () => {
    const store = one();
    const created = await store.apply(binding(), { expectedVersion: 0 });
    await expect(store.apply(binding(), { expectedVersion: 0 })).rejects.toBeInstanceOf(
      BindingVersionConflictError,
    );
    const changed = binding({ port: { port: { $case: 'number', number: 80 } } });
    const updated = await store.apply(changed, { expectedVersion: created.binding.version });
    expect(updated.changed).toBe(true);
    // A second writer holding the old version loses and learns the current one.
    const lost = store.apply(binding({ port: { port: { $case: 'number', number: 81 } } }), {
      expectedVersion: created.binding.version,
    });
    await expect(lost).rejects.toMatchObject({
      name: 'BindingVersionConflictError',
      expectedVersion: created.binding.version,
      actualVersion: updated.binding.version,
    });
    expect((await store.get('web'))?.port).toEqual({ port: { $case: 'number', number: 80 } });
  });

  it('lets exactly one of many concurrent compare-and-set writers win', async () => {
    const store = one();
    const { version } = (await store.apply(binding())).binding;
    const results = await Promise.allSettled(
      [81, 82, 83, 84, 85].map((number) =>
        store.apply(binding({ port: { port: { $case: 'number', number } } }), {
          expectedVersion: version,
        }),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(
      results.filter(
        (r) => r.status === 'rejected' && r.reason instanceof BindingVersionConflictError,
      ),
    ).toHaveLength(4);
  });

  it('rejects an invalid binding with field violations and stores nothing', async () => {
    const store = one();
    const bad = binding({
      target: {
        $case: 'pool',
        pool: {
          groups: [targetGroup({ arn: targetGroupArn(1) }), targetGroup({ arn: 'x' })],
          listenerRuleArn: '',
        },
      },
    });
    const error = await store.apply(bad).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(BindingValidationError);
    expect((error as BindingValidationError).violations.map((v) => v.field)).toEqual([
      'pool.groups[1].arn',
    ]);
    expect(await store.list()).toEqual([]);
    expect(await store.revision()).toBe(0);
  });

  it('deletes, with and without an expected version', async () => {
    const store = one();
    const web = await store.apply(binding());
    await store.apply(binding({ name: 'api' }));
    await expect(
      store.delete('web', { expectedVersion: web.binding.version + 1 }),
    ).rejects.toBeInstanceOf(BindingVersionConflictError);
    expect(await store.delete('web', { expectedVersion: web.binding.version })).toBe(true);
    expect(await store.delete('web')).toBe(false);
    expect(await store.delete('api')).toBe(true);
    expect(await store.list()).toEqual([]);
  });

  it('never gives a re-created binding a version it had before', async () => {
    const store = one();
    const first = await store.apply(binding());
    await store.delete('web');
    const again = await store.apply(binding());
    expect(again.binding.version).toBeGreaterThan(first.binding.version);
  });

  it('lists bindings sorted by name with the revision they belong to', async () => {
    const store = one();
    await store.apply(binding({ name: 'zeta' }));
    const last = await store.apply(binding({ name: 'alpha' }));
    const snapshot = await store.snapshot();
    expect(snapshot.bindings.map((b) => b.name)).toEqual(['alpha', 'zeta']);
    expect(snapshot.revision).toBe(last.binding.version);
  });

  it('tells every replica of applies and deletes', async () => {
    const [writer, reader] = stores(2);
    if (writer === undefined || reader === undefined) throw new Error('no stores');
    const seen: BindingChange[] = [];
    await reader.watch((change) => seen.push(change));
    const applied = await writer.apply(binding());
    await writer.apply(binding()); // unchanged: no message
    await writer.delete('web');
    await waitFor(() => seen.length >= 2, { what: 'both changes to be seen' });
    const revision = await writer.revision();
    expect(seen).toEqual([
      { kind: 'applied', name: 'web', revision: applied.binding.version },
      { kind: 'deleted', name: 'web', revision },
    ]);
  });

  it('asks watchers to resync when the revision moves without a message', async () => {
    const keyPrefix = `tgfed-test-${randomUUID()}`;
    const [reader] = stores(1, { keyPrefix, revisionPollMs: 50 });
    if (reader === undefined) throw new Error('no store');
    await reader.apply(binding());
    const seen: BindingChange[] = [];
    await reader.watch((change) => seen.push(change));
    // A Redis loss: bindings and revision gone, and nobody published anything.
    const redis = connection();
    await redis.del(...(await redis.keys(`${keyPrefix}:*`)));
    await waitFor(() => seen.length > 0, { what: 'a change to be seen' });
    expect(seen).toEqual([{ kind: 'resync', revision: 0 }]);
    expect(await reader.list()).toEqual([]);
  });

  it('keeps a subscription resolver current on another replica', async () => {
    const [writer, reader] = stores(2);
    if (writer === undefined || reader === undefined) throw new Error('no stores');
    await writer.apply(binding({ name: 'web', clusters: { names: ['eu-1'] } }));
    const resolver = new BindingSubscriptionResolver();
    const stop = await resolver.follow(reader);
    closers.push(() => Promise.resolve(stop()));
    expect(resolver.subscriptionFor('eu-1', {}).selectors).toHaveLength(1);
    expect(resolver.subscriptionFor('us-1', {}).selectors).toHaveLength(0);
    const api = await writer.apply(
      binding({
        name: 'api',
        services: { namespace: 'shop', name: 'api' },
        clusters: { names: ['us-1'] },
      }),
    );
    await waitFor(() => resolver.revision === api.binding.version, {
      what: 'the resolver to reach the applied revision',
    });
    expect(resolver.subscriptionFor('us-1', {})).toEqual({
      version: api.binding.version,
      selectors: [{ namespace: 'shop', name: 'api', labels: undefined }],
    });
  });
});

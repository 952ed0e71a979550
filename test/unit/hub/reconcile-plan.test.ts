import { describe, expect, it } from 'vitest';
import type { TargetHealthState } from '../../../hub/aws/index.js';
import type { DesiredTarget } from '../../../hub/federation/desired-targets.js';
import {
  chunk,
  parseTargetKey,
  planReconcile,
  type ReconcilePlanInput,
} from '../../../hub/reconcile/index.js';

function desired(keys: string[], flags: Partial<DesiredTarget> = {}): Map<string, DesiredTarget> {
  return new Map(
    keys.map((key) => {
      const { id, port } = parseTargetKey(key);
      return [
        key,
        {
          id,
          port,
          sources: [{ clusterId: 'east', service: 'shop/web', podName: '' }],
          keptFailStatic: false,
          withdrawIfUnhealthy: false,
          ...flags,
        },
      ];
    }),
  );
}

function actual(entries: Record<string, TargetHealthState>): Map<string, TargetHealthState> {
  return new Map(Object.entries(entries));
}

function ips(from: number, count: number, port = 80): string[] {
  return Array.from(
    { length: count },
    (_, i) => `10.0.${Math.floor((from + i) / 250)}.${((from + i) % 250) + 1}:${port}`,
  );
}

function input(over: Partial<ReconcilePlanInput>): ReconcilePlanInput {
  return {
    desired: new Map(),
    actual: new Map(),
    owned: new Set(),
    capacity: 1000,
    availabilityZone: '',
    deregistrationsBlocked: false,
    drainingCountsTowardCapacity: true,
    guard: { maxShare: 0.5, minTargets: 5 },
    ...over,
  };
}

const keys = (targets: { key: string }[]): string[] => targets.map((t) => t.key);

describe('planReconcile', () => {
  it('registers desired targets that are absent and leaves present ones alone', () => {
    const plan = planReconcile(
      input({
        desired: desired(['10.0.0.1:80', '10.0.0.2:80']),
        actual: actual({ '10.0.0.1:80': 'healthy' }),
        owned: new Set(['10.0.0.1:80']),
      }),
    );
    expect(keys(plan.registerFirst)).toEqual(['10.0.0.2:80']);
    expect(plan.deregister).toEqual([]);
  });

  it('registers a desired target again while it drains', () => {
    const plan = planReconcile(
      input({
        desired: desired(['10.0.0.1:80']),
        actual: actual({ '10.0.0.1:80': 'draining' }),
      }),
    );
    expect(keys(plan.registerFirst)).toEqual(['10.0.0.1:80']);
  });

  it('deregisters only owned targets, so foreign targets in a shared group stay', () => {
    const plan = planReconcile(
      input({
        desired: desired([]),
        actual: actual({ '10.0.0.1:80': 'healthy', '10.9.9.9:80': 'healthy' }),
        owned: new Set(['10.0.0.1:80']),
      }),
    );
    expect(keys(plan.deregister)).toEqual(['10.0.0.1:80']);
  });

  it('adopts desired targets found in the group without ownership, never undesired ones', () => {
    // After a Redis loss the ownership records are gone while the targets are still there.
    const plan = planReconcile(
      input({
        desired: desired(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']),
        actual: actual({
          '10.0.0.1:80': 'healthy',
          '10.0.0.2:80': 'draining',
          '10.9.9.9:80': 'healthy',
        }),
        owned: new Set(),
      }),
    );
    expect(plan.adopt).toEqual(['10.0.0.1:80']);
    expect(keys(plan.registerFirst)).toEqual(['10.0.0.2:80', '10.0.0.3:80']);
    expect(plan.deregister).toEqual([]);
  });

  it('sets the group availability zone on every target, and parses IPv6 keys', () => {
    const plan = planReconcile(
      input({
        desired: desired(['[fd00::1]:443']),
        availabilityZone: 'all',
      }),
    );
    expect(plan.registerFirst).toEqual([
      { key: '[fd00::1]:443', id: 'fd00::1', port: 443, availabilityZone: 'all' },
    ]);
  });

  it('holds a mass deregistration above the share', () => {
    const owned = ips(0, 10);
    const plan = planReconcile(
      input({
        desired: desired(owned.slice(0, 4)),
        actual: actual(Object.fromEntries(owned.map((k) => [k, 'healthy' as const]))),
        owned: new Set(owned),
      }),
    );
    expect(plan.deregister).toEqual([]);
    expect(plan.held).toEqual({ deregistrations: 6, targetsBefore: 10 });
  });

  it('weighs the net shrink: a rolling restart replacing every target is not held', () => {
    const old = ips(0, 10);
    const replacements = ips(100, 10);
    const restart = planReconcile(
      input({
        desired: desired(replacements),
        actual: actual(Object.fromEntries(old.map((k) => [k, 'healthy' as const]))),
        owned: new Set(old),
      }),
    );
    expect(restart.held).toBeUndefined();
    expect(keys(restart.registerFirst).sort()).toEqual([...replacements].sort());
    expect(keys(restart.deregister).sort()).toEqual([...old].sort());

    // Replacements that cannot be registered now (the group is full) do not offset removals.
    const full = planReconcile(
      input({
        desired: desired(replacements),
        actual: actual(Object.fromEntries(old.map((k) => [k, 'healthy' as const]))),
        owned: new Set(old),
        capacity: 10,
      }),
    );
    expect(full.held).toEqual({ deregistrations: 10, targetsBefore: 10 });

    // Half replaced, most of the rest gone: 8 removed, 2 registered, a net loss of 6 of 10.
    const shrink = planReconcile(
      input({
        desired: desired(replacements.slice(0, 2)),
        actual: actual(Object.fromEntries(old.map((k) => [k, 'healthy' as const]))),
        owned: new Set(old.slice(0, 8)),
      }),
    );
    expect(shrink.held).toEqual({ deregistrations: 8, targetsBefore: 8 });
  });

  it('lets removals below the share or below the minimum count through', () => {
    const owned = ips(0, 10);
    const five = planReconcile(
      input({
        desired: desired(owned.slice(0, 5)),
        actual: actual(Object.fromEntries(owned.map((k) => [k, 'healthy' as const]))),
        owned: new Set(owned),
      }),
    );
    expect(five.held).toBeUndefined();
    expect(five.deregister).toHaveLength(5);
    const small = ips(0, 4);
    const all = planReconcile(
      input({
        desired: desired([]),
        actual: actual(Object.fromEntries(small.map((k) => [k, 'healthy' as const]))),
        owned: new Set(small),
      }),
    );
    expect(all.held).toBeUndefined();
    expect(all.deregister).toHaveLength(4);
  });

  it('applies a held removal after a binding deletion or an operator release', () => {
    const owned = ips(0, 10);
    for (const bypass of ['binding-deleted', 'released'] as const) {
      const plan = planReconcile(
        input({
          desired: desired([]),
          actual: actual(Object.fromEntries(owned.map((k) => [k, 'healthy' as const]))),
          owned: new Set(owned),
          bypass,
        }),
      );
      expect(plan.held).toBeUndefined();
      expect(plan.deregister).toHaveLength(10);
    }
  });

  it('plans no deregistration while clusters have not resynced, even with a bypass', () => {
    const plan = planReconcile(
      input({
        desired: desired(['10.0.0.3:80']),
        actual: actual({ '10.0.0.1:80': 'healthy', '10.0.0.2:80': 'healthy' }),
        owned: new Set(['10.0.0.1:80', '10.0.0.2:80']),
        deregistrationsBlocked: true,
        bypass: 'binding-deleted',
      }),
    );
    expect(plan.deregister).toEqual([]);
    expect(plan.blockedDeregistrations).toBe(2);
    expect(keys(plan.registerFirst)).toEqual(['10.0.0.3:80']);
  });

  it('withdraws a stale cluster target only when ELB reports it unhealthy', () => {
    const plan = planReconcile(
      input({
        desired: desired(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80'], {
          withdrawIfUnhealthy: true,
        }),
        actual: actual({
          '10.0.0.1:80': 'healthy',
          '10.0.0.2:80': 'unhealthy',
          '10.0.0.3:80': 'initial',
        }),
        owned: new Set(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']),
      }),
    );
    expect(keys(plan.deregister)).toEqual(['10.0.0.2:80']);
    expect(plan.withdrawnUnhealthy).toEqual(['10.0.0.2:80']);
    expect(plan.watchedForHealth).toBe(3);
  });

  it('does not register a stale cluster target again once it is gone', () => {
    const plan = planReconcile(
      input({
        desired: desired(['10.0.0.1:80', '10.0.0.2:80'], { withdrawIfUnhealthy: true }),
        actual: actual({ '10.0.0.1:80': 'healthy', '10.0.0.2:80': 'draining' }),
        owned: new Set(['10.0.0.1:80']),
      }),
    );
    expect(plan.registerFirst).toEqual([]);
    expect(plan.deregister).toEqual([]);
  });

  it('never plans a group over its capacity: a full group waits for room', () => {
    const present = ips(0, 8);
    const plan = planReconcile(
      input({
        capacity: 10,
        desired: desired([...present.slice(0, 6), ...ips(100, 5)]),
        actual: actual(Object.fromEntries(present.map((k) => [k, 'healthy' as const]))),
        owned: new Set(present),
      }),
    );
    // 8 present + 2 new = 10 before the 2 removals; the other 3 wait (draining counts).
    expect(plan.registerFirst).toHaveLength(2);
    expect(plan.deregister).toHaveLength(2);
    expect(plan.registerAfter).toHaveLength(0);
    expect(plan.waitingForCapacity).toBe(3);
  });

  it('registers into the room deregistrations free when draining targets do not count', () => {
    const present = ips(0, 10);
    const plan = planReconcile(
      input({
        capacity: 10,
        drainingCountsTowardCapacity: false,
        desired: desired([...present.slice(0, 7), ...ips(100, 3)]),
        actual: actual(Object.fromEntries(present.map((k) => [k, 'healthy' as const]))),
        owned: new Set(present),
      }),
    );
    expect(plan.registerFirst).toHaveLength(0);
    expect(plan.deregister).toHaveLength(3);
    expect(plan.registerAfter).toHaveLength(3);
    expect(plan.waitingForCapacity).toBe(0);
  });

  it('counts foreign targets against the capacity', () => {
    const plan = planReconcile(
      input({
        capacity: 3,
        desired: desired(ips(0, 3)),
        actual: actual({ '10.9.9.9:80': 'healthy', '10.9.9.8:80': 'draining' }),
      }),
    );
    expect(plan.registerFirst).toHaveLength(1);
    expect(plan.waitingForCapacity).toBe(2);
  });

  it('drops ownership of targets that vanished and are not desired', () => {
    const plan = planReconcile(
      input({
        desired: desired(['10.0.0.2:80']),
        owned: new Set(['10.0.0.1:80', '10.0.0.2:80']),
      }),
    );
    expect(plan.disown).toEqual(['10.0.0.1:80']);
    expect(keys(plan.registerFirst)).toEqual(['10.0.0.2:80']);
  });
});

describe('chunk', () => {
  it('splits into calls of at most the chunk size, keeping order', () => {
    expect(chunk([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(chunk([], 500)).toEqual([]);
  });
});

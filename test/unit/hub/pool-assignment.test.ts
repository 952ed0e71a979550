import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assignToPool, type PoolGroupCapacity } from '../../../hub/federation/pool-assignment.js';

const targetArb = fc
  .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 65535 }))
  .map(([octet, port]) => `10.0.${octet}.${octet % 7}:${port}`);
const targetsArb = fc.uniqueArray(targetArb, { maxLength: 120 });
const groupsArb = fc
  .uniqueArray(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 6 })
  .chain((ids) =>
    fc.tuple(
      ...ids.map((id) =>
        fc.integer({ min: 0, max: 60 }).map((capacity) => ({ arn: `tg-${id}`, capacity })),
      ),
    ),
  );

function movedBetween(
  before: ReadonlyMap<string, string>,
  after: ReadonlyMap<string, string>,
): string[] {
  return [...before].filter(([t, arn]) => after.has(t) && after.get(t) !== arn).map(([t]) => t);
}

function totalCapacity(groups: readonly PoolGroupCapacity[]): number {
  return groups.reduce((n, g) => n + g.capacity, 0);
}

describe('assignToPool', () => {
  it('never puts more targets in a group than its capacity, and places or reports every target', () => {
    fc.assert(
      fc.property(targetsArb, groupsArb, (targets, groups) => {
        const result = assignToPool(targets, groups);
        for (const g of groups)
          expect(result.counts.get(g.arn) ?? 0).toBeLessThanOrEqual(g.capacity);
        expect(result.assignment.size + result.overflow.length).toBe(targets.length);
        for (const t of result.overflow) expect(result.assignment.has(t)).toBe(false);
        expect(result.overflow.length).toBe(Math.max(0, targets.length - totalCapacity(groups)));
      }),
    );
  });

  it('gives the same assignment for the same inputs in any order', () => {
    fc.assert(
      fc.property(targetsArb, groupsArb, (targets, groups) => {
        const a = assignToPool(targets, groups);
        const b = assignToPool([...targets].reverse(), [...groups].reverse());
        expect([...b.assignment].sort()).toEqual([...a.assignment].sort());
        expect(b.overflow).toEqual(a.overflow);
      }),
    );
  });

  it('moves no other target when one target is added or removed', () => {
    fc.assert(
      fc.property(targetsArb, groupsArb, targetArb, (targets, groups, extra) => {
        const before = assignToPool(targets, groups).assignment;
        const added = assignToPool([...targets, extra], groups, before);
        expect(movedBetween(before, added.assignment)).toEqual([]);
        const removedTarget = targets[0];
        if (removedTarget === undefined) return;
        const removed = assignToPool(targets.slice(1), groups, before);
        expect(movedBetween(before, removed.assignment)).toEqual([]);
        expect(removed.moved).toBe(0);
      }),
    );
  });

  it('moves only the removed group’s targets when the others have room', () => {
    fc.assert(
      fc.property(targetsArb, groupsArb, (targets, groups) => {
        fc.pre(groups.length >= 2);
        const before = assignToPool(targets, groups).assignment;
        const [gone, ...rest] = groups;
        if (gone === undefined) return;
        fc.pre(before.size <= totalCapacity(rest));
        const after = assignToPool(targets, rest, before);
        const moved = movedBetween(before, after.assignment);
        for (const t of moved) expect(before.get(t)).toBe(gone.arn);
        for (const [t, arn] of before)
          if (arn === gone.arn) expect(after.assignment.get(t)).not.toBe(gone.arn);
        expect(after.overflow.filter((t) => before.has(t))).toEqual([]);
      }),
    );
  });

  it('keeps the highest-scoring targets when a group’s capacity shrinks and moves only the excess', () => {
    const targets = Array.from({ length: 40 }, (_, i) => `10.1.0.${i}:80`);
    const groups = [
      { arn: 'a', capacity: 30 },
      { arn: 'b', capacity: 30 },
    ];
    const before = assignToPool(targets, groups).assignment;
    const inA = [...before].filter(([, arn]) => arn === 'a').length;
    const shrunk = assignToPool(
      targets,
      [
        { arn: 'a', capacity: 10 },
        { arn: 'b', capacity: 30 },
      ],
      before,
    );
    expect(shrunk.counts.get('a')).toBe(Math.min(10, inA));
    expect(shrunk.moved).toBe(Math.max(0, inA - 10));
  });

  it('spreads targets over groups in proportion to capacity when none is full', () => {
    const targets = Array.from({ length: 3000 }, (_, i) => `10.2.${i >> 8}.${i & 255}:8080`);
    const result = assignToPool(targets, [
      { arn: 'small', capacity: 2000 },
      { arn: 'large', capacity: 4000 },
    ]);
    const small = result.counts.get('small') ?? 0;
    expect(small).toBeGreaterThan(800);
    expect(small).toBeLessThan(1200);
  });

  it('reports targets beyond the total capacity as overflow without displacing placed ones', () => {
    const targets = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80'];
    const first = assignToPool(targets.slice(0, 2), [{ arn: 'only', capacity: 2 }]);
    const second = assignToPool(targets, [{ arn: 'only', capacity: 2 }], first.assignment);
    expect(second.overflow).toEqual(['10.0.0.3:80']);
    expect([...second.assignment.keys()].sort()).toEqual(targets.slice(0, 2));
  });

  describe('with the targets AWS holds in each group (occupied)', () => {
    /**
     * A rolling restart of every pod, one at a time, in a pool with room for live plus draining
     * targets: the old target drains in its group (keeping its place in the quota), the new one is
     * placed. Returns how many new targets landed in a group without room counting the draining
     * ones, i.e. would wait for a drain.
     */
    function restartAll(useOccupancy: boolean): number {
      const groups = ['a', 'b', 'c', 'd'].map((arn) => ({ arn, capacity: 100 }));
      let live = Array.from({ length: 200 }, (_, i) => `10.3.0.${i}:80`);
      let assignment = assignToPool(live, groups).assignment;
      const held = new Map(groups.map((g) => [g.arn, new Set<string>()]));
      for (const [t, arn] of assignment) held.get(arn)?.add(t);
      let waiting = 0;
      for (let i = 0; i < 200; i++) {
        const fresh = `10.4.0.${i}:80`;
        live = [...live.slice(1), fresh];
        const result = assignToPool(live, groups, assignment, useOccupancy ? held : undefined);
        assignment = result.assignment;
        const arn = assignment.get(fresh) as string;
        const group = held.get(arn) as Set<string>;
        // Held in AWS: the draining old targets plus everything live there.
        if (group.size + 1 > 100) waiting++;
        else group.add(fresh);
      }
      return waiting;
    }

    it('places every new target of a full rolling restart where it fits beside the draining ones', () => {
      expect(restartAll(true)).toBe(0);
      // Placed by desired count alone, some land in groups full of draining targets.
      expect(restartAll(false)).toBeGreaterThan(0);
    });

    it('never reports overflow because of draining targets, and never exceeds a capacity', () => {
      const heldArb = fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), targetArb), {
        maxLength: 150,
      });
      fc.assert(
        fc.property(targetsArb, groupsArb, heldArb, (targets, groups, heldList) => {
          const occupied = new Map<string, Set<string>>();
          for (const [i, t] of heldList) {
            const arn = groups[i % groups.length]?.arn as string;
            const set = occupied.get(arn) ?? new Set<string>();
            occupied.set(arn, set.add(t));
          }
          const previous = assignToPool(targets.slice(0, targets.length >> 1), groups).assignment;
          const result = assignToPool(targets, groups, previous, occupied);
          for (const g of groups)
            expect(result.counts.get(g.arn) ?? 0).toBeLessThanOrEqual(g.capacity);
          expect(result.assignment.size + result.overflow.length).toBe(targets.length);
          expect(result.overflow.length).toBe(Math.max(0, targets.length - totalCapacity(groups)));
          // Draining targets decide where targets go, never which ones overflow.
          expect(result.overflow).toEqual(assignToPool(targets, groups, previous).overflow);
          const again = assignToPool([...targets].reverse(), groups, previous, occupied);
          expect([...again.assignment].sort()).toEqual([...result.assignment].sort());
        }),
      );
    });

    it('lets the same kept targets leave a group full of draining ones, whatever the input order', () => {
      fc.assert(
        fc.property(
          targetsArb,
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 0, max: 40 }),
          fc.nat(),
          (targets, capacity, drainingCount, rotation) => {
            const groups = [
              { arn: 'a', capacity },
              { arn: 'b', capacity },
            ];
            // Every target was placed in `a`, none registered yet, beside targets still draining.
            const previous = new Map(targets.map((t) => [t, 'a']));
            const draining = Array.from(
              { length: Math.min(drainingCount, capacity) },
              (_, i) => `192.0.2.${i}:1`,
            );
            const occupied = new Map([['a', new Set(draining)]]);
            const result = assignToPool(targets, groups, previous, occupied);
            const r = targets.length === 0 ? 0 : rotation % targets.length;
            const reordered = [...targets.slice(r), ...targets.slice(0, r)].reverse();
            const again = assignToPool(reordered, groups, previous, occupied);
            expect([...again.assignment].sort()).toEqual([...result.assignment].sort());
            expect(again.overflow).toEqual(result.overflow);
          },
        ),
      );
    });

    it('leaves a target where AWS already holds it, when that group has room', () => {
      const groups = [
        { arn: 'a', capacity: 10 },
        { arn: 'b', capacity: 10 },
      ];
      const target = '10.5.0.1:80';
      const plain = assignToPool([target], groups).assignment.get(target) as string;
      const other = plain === 'a' ? 'b' : 'a';
      const held = new Map([[other, new Set([target])]]);
      expect(assignToPool([target], groups, undefined, held).assignment.get(target)).toBe(other);
    });

    it('moves a kept target not registered yet out of a group full of draining targets', () => {
      const groups = [
        { arn: 'a', capacity: 10 },
        { arn: 'b', capacity: 10 },
      ];
      const target = '10.6.0.1:80';
      const draining = Array.from({ length: 10 }, (_, i) => `10.6.1.${i}:80`);
      const previous = new Map([[target, 'a']]);
      const full = new Map([['a', new Set(draining)]]);
      const result = assignToPool([target], groups, previous, full);
      expect(result.assignment.get(target)).toBe('b');
      expect(result.moved).toBe(1);
      // Registered there already, it stays: moving it would cost two calls and free nothing.
      const registered = new Map([['a', new Set([...draining.slice(1), target])]]);
      expect(assignToPool([target], groups, previous, registered).assignment.get(target)).toBe('a');
    });

    it('keeps a settling target in its group, and lets other waiting ones leave first', () => {
      const groups = [
        { arn: 'a', capacity: 3 },
        { arn: 'b', capacity: 10 },
      ];
      // Three kept in `a`, none registered yet; `a` still holds two draining targets: one fits.
      const kept = ['10.9.0.1:80', '10.9.0.2:80', '10.9.0.3:80'];
      const previous = new Map(kept.map((t) => [t, 'a']));
      const draining = new Map([['a', new Set(['10.9.1.1:80', '10.9.1.2:80'])]]);
      const unsettled = assignToPool(kept, groups, previous, draining);
      expect(kept.filter((t) => unsettled.assignment.get(t) === 'a')).toEqual(['10.9.0.1:80']);
      // The last two were placed there a moment ago (their group may be registering them): they
      // stay and take the room, and the first leaves instead.
      const settling = new Set(kept.slice(1));
      const result = assignToPool(kept, groups, previous, draining, settling);
      expect(kept.map((t) => result.assignment.get(t))).toEqual(['b', 'a', 'a']);
      expect(result.moved).toBe(1);
      // Settling targets stay even beyond the room: they never leave for room.
      const all = assignToPool(kept, groups, previous, draining, new Set(kept));
      expect(kept.map((t) => all.assignment.get(t))).toEqual(['a', 'a', 'a']);
      expect(all.moved).toBe(0);
      // Those held beyond the room are named: only settling keeps them there.
      expect(unsettled.heldForSettling).toEqual([]);
      expect(result.heldForSettling).toEqual(kept.slice(1));
      expect(all.heldForSettling).toEqual(kept);
      const roomy = new Map([['a', new Set(['10.9.1.1:80'])]]);
      expect(assignToPool(kept, groups, previous, roomy, settling).heldForSettling).toEqual([]);
    });

    it('keeps a waiting target in its group when no group has room counting draining targets', () => {
      const groups = [
        { arn: 'a', capacity: 2 },
        { arn: 'b', capacity: 2 },
      ];
      const target = '10.8.0.1:80';
      const plain = assignToPool([target], groups).assignment.get(target) as string;
      const waitingIn = plain === 'a' ? 'b' : 'a';
      const full = new Map([
        ['a', new Set(['10.8.1.1:80', '10.8.1.2:80'])],
        ['b', new Set(['10.8.1.3:80', '10.8.1.4:80'])],
      ]);
      const result = assignToPool([target], groups, new Map([[target, waitingIn]]), full);
      expect(result.assignment.get(target)).toBe(waitingIn);
      expect(result.moved).toBe(0);
    });

    it('still places by capacity alone when no group has room counting draining targets', () => {
      const groups = [
        { arn: 'a', capacity: 2 },
        { arn: 'b', capacity: 2 },
      ];
      const draining = new Map([
        ['a', new Set(['10.7.0.1:80', '10.7.0.2:80'])],
        ['b', new Set(['10.7.0.3:80', '10.7.0.4:80'])],
      ]);
      const targets = ['10.7.1.1:80', '10.7.1.2:80', '10.7.1.3:80'];
      const result = assignToPool(targets, groups, undefined, draining);
      expect(result.overflow).toEqual([]);
      expect(result.assignment).toEqual(assignToPool(targets, groups).assignment);
    });
  });
});

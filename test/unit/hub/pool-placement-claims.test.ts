import { describe, expect, it } from 'vitest';
import type {
  DesiredGroup,
  DesiredTarget,
  DesiredTargets,
} from '../../../hub/federation/desired-targets.js';
import { adoptClaims } from '../../../hub/federation/pool-placement-claims.js';
import { targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';

const [A, B, C] = [targetGroupArn(1), targetGroupArn(2), targetGroupArn(3)] as const;

function target(key: string): DesiredTarget {
  const [id = '', port = '0'] = key.split(':');
  return {
    id,
    port: Number(port),
    sources: [{ clusterId: 'east', service: 'shop/web', podName: `web-${id}` }],
    keptFailStatic: false,
    withdrawIfUnhealthy: false,
  };
}

function group(
  arn: string,
  capacity: number,
  keys: string[],
  conflicted: string[] = [],
): DesiredGroup {
  return {
    targetGroup: targetGroup({ arn, capacity }),
    targets: new Map(keys.map((k) => [k, target(k)])),
    conflicts: conflicted.map((k) => ({ target: k, clusters: ['east', 'west'] })),
    deregistrationsBlocked: false,
    awaitingResyncClusters: [],
    initialSyncClusters: [],
  };
}

function pool(...groups: DesiredGroup[]): DesiredTargets {
  return {
    groups: new Map(groups.map((g) => [g.targetGroup.arn, g])),
    overflow: [],
    clusters: ['east'],
  };
}

const keysOf = (d: DesiredTargets, arn: string): string[] => [
  ...(d.groups.get(arn)?.targets.keys() ?? []),
];

describe('adoptClaims', () => {
  it('moves a target lost to another claim into the claimed group, in key order, conflict and all', () => {
    const placed = pool(
      group(A, 4, ['10.0.0.1:80', '10.0.0.5:80'], ['10.0.0.5:80']),
      group(B, 4, ['10.0.0.2:80', '10.0.0.9:80']),
      group(C, 4, ['10.0.0.3:80']),
    );
    const { desired, kept } = adoptClaims(placed, new Map([['10.0.0.5:80', B]]));
    expect(kept).toEqual([]);
    expect(keysOf(desired, A)).toEqual(['10.0.0.1:80']);
    expect(keysOf(desired, B)).toEqual(['10.0.0.2:80', '10.0.0.5:80', '10.0.0.9:80']);
    expect(desired.groups.get(A)?.conflicts).toEqual([]);
    expect(desired.groups.get(B)?.conflicts.map((c) => c.target)).toEqual(['10.0.0.5:80']);
    // Untouched groups are the same objects; the input is not changed.
    expect(desired.groups.get(C)).toBe(placed.groups.get(C));
    expect(keysOf(placed, A)).toEqual(['10.0.0.1:80', '10.0.0.5:80']);
    expect([...desired.groups.keys()]).toEqual([A, B, C]);
  });

  it('keeps a target where it is when the claimed group has no room by its capacity', () => {
    const placed = pool(
      group(A, 2, ['10.0.0.1:80', '10.0.0.2:80']),
      group(B, 2, ['10.0.0.3:80', '10.0.0.4:80']),
    );
    const lost = new Map([
      ['10.0.0.3:80', A],
      ['10.0.0.4:80', A],
    ]);
    const { desired, kept } = adoptClaims(placed, lost);
    expect(kept).toEqual(['10.0.0.3:80', '10.0.0.4:80']);
    expect(desired.groups).toEqual(placed.groups);
  });

  it('fills the claimed group up to its capacity, then keeps the rest', () => {
    const placed = pool(group(A, 1, []), group(B, 4, ['10.0.0.3:80', '10.0.0.4:80']));
    const { desired, kept } = adoptClaims(
      placed,
      new Map([
        ['10.0.0.3:80', A],
        ['10.0.0.4:80', A],
      ]),
    );
    expect(keysOf(desired, A)).toEqual(['10.0.0.3:80']);
    expect(keysOf(desired, B)).toEqual(['10.0.0.4:80']);
    expect(kept).toEqual(['10.0.0.4:80']);
  });

  it('moves lost targets in any order: the room one leaves is there for another', () => {
    // B first in the binding's order; A holds its only place with one target B claimed.
    const placed = pool(group(B, 4, ['10.0.0.1:80']), group(A, 1, ['10.0.0.2:80']));
    const lost = new Map([
      ['10.0.0.1:80', A],
      ['10.0.0.2:80', B],
    ]);
    for (const order of [lost, new Map([...lost].reverse())]) {
      const { desired, kept } = adoptClaims(placed, order);
      expect(kept).toEqual([]);
      expect(keysOf(desired, A)).toEqual(['10.0.0.1:80']);
      expect(keysOf(desired, B)).toEqual(['10.0.0.2:80']);
    }
  });

  it('ignores claims of targets it did not place, of groups not in the pool, and its own', () => {
    const placed = pool(group(A, 4, ['10.0.0.1:80']), group(B, 4, []));
    const { desired, kept } = adoptClaims(
      placed,
      new Map([
        ['10.0.0.7:80', B],
        ['10.0.0.1:80', targetGroupArn(9)],
      ]),
    );
    expect(kept).toEqual([]);
    expect(desired.groups).toEqual(placed.groups);
    expect(adoptClaims(placed, new Map([['10.0.0.1:80', A]])).desired.groups).toEqual(
      placed.groups,
    );
  });
});

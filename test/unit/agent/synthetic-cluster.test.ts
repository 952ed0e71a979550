import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { SyntheticCluster } from '../../../agent/synthetic/synthetic-cluster.js';

const web = { namespace: 'shop', name: 'web' };

function zones(cluster: SyntheticCluster): Map<string, string> {
  const endpoints = [...(cluster.sets.get(web)?.endpoints.values() ?? [])];
  return new Map(endpoints.map((e) => [e.address, e.zone]));
}

describe('SyntheticCluster', () => {
  it('keeps every other pod as it was when one pod leaves its slice', () => {
    // The benchmarks' rolling restarts go through this: a pod that left its slice used to shift
    // the zone of every pod after it, so each restart changed half the service.
    const cluster = new SyntheticCluster(
      {
        namespace: 'shop',
        services: [{ name: 'web', pods: 12 }],
        addressPrefix: '10.1',
        terminationMs: 0,
      },
      {
        clusterId: 'c1',
        agentVersion: 'test',
        target: '127.0.0.1:1',
        credentials: grpc.credentials.createInsecure(),
      },
    );
    const before = zones(cluster);
    expect(new Set(before.values())).toEqual(new Set(['zone-a', 'zone-b', 'zone-c']));

    const restarted = [cluster.restartOldest('web'), cluster.restartOldest('web')];
    cluster.flush(); // the old pods turn terminating
    cluster.flush(); // and leave their slice (terminationMs 0)
    const after = zones(cluster);

    const gone = restarted.map((r) => r?.old);
    expect(after.size).toBe(12);
    for (const [address, zone] of before) {
      if (gone.includes(address)) expect(after.has(address)).toBe(false);
      else expect(after.get(address)).toBe(zone);
    }
  });
});

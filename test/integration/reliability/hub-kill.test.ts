import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import { workerOptionsSchema } from '../../../hub/config/index.js';
import { ReconcileWorker } from '../../../hub/reconcile-worker.js';
import { ClusterEndpointStore, StateKeys } from '../../../hub/state/index.js';
import type { AdminServiceClient } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { adminClient, alertKeys, listAlerts } from '../../support/admin-alerts.js';
import { ACCOUNT, REGION } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { FaultRelay } from '../../support/fault-relay.js';
import { RecordingSimulator } from '../../support/recording-simulator.js';
import { TestAgent } from '../../support/test-agent.js';
import { webIp } from '../../support/test-federation.js';
import { agentTokenOf, bearer, testHubSettings } from '../../support/test-hub-settings.js';
import { startTgfedProcess, type TgfedProcess } from '../../support/tgfed-process.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// Two hub replicas as real processes on one Redis, agents behind a relay that sends each new
// connection to the first replica that accepts it (a load balancer). Replica A is killed with
// SIGKILL while the agents stream changes to it.

const clusters = [
  { id: 'east', block: 1 },
  { id: 'west', block: 2 },
];
const keyPrefix = `rel-hkill-${process.pid}`;
const adminToken = 'rel-hkill-admin';

let dir: string;
let redis: Redis;
let sim: RecordingSimulator;
let simServer: Elbv2SimulatorServer;
let worker: ReconcileWorker;
let admin: AdminServiceClient | undefined;
let arn: string;
const hubs: TgfedProcess[] = [];
const relays = new Map<string, FaultRelay>();
const agents = new Map<string, TestAgent>();
/** Hosts each cluster announces: `10.<block>.x.y` for h in the list. */
const hosts = new Map<string, number[]>();

function announce(clusterId: string, list: number[]): void {
  const block = clusters.find((c) => c.id === clusterId)?.block as number;
  hosts.set(clusterId, list);
  agents.get(clusterId)?.upsert(
    endpointSlice({
      namespace: 'shop',
      service: 'web',
      name: 'web-1',
      endpoints: list.map((h) => ({ ip: webIp(block, h) })),
      ports: [{ name: 'http', port: 8080 }],
    }),
  );
}

/** Every target the agents announce now, as the group should hold them. */
function wanted(): string[] {
  return clusters
    .flatMap((c) => (hosts.get(c.id) ?? []).map((h) => `${webIp(c.block, h)}:8080`))
    .sort();
}

/** The addresses Redis holds for a cluster's `shop/web`. */
async function stored(clusterId: string): Promise<Set<string>> {
  const store = new ClusterEndpointStore(redis, new StateKeys(keyPrefix));
  const services = await store.loadCluster(clusterId);
  return new Set([...services.values()].flatMap((s) => [...s.endpoints.keys()]));
}

function allAcked(): boolean {
  return [...agents.values()].every(
    (a) =>
      a.publisher.state === 'streaming' &&
      a.publisher.inFlight === 0 &&
      a.publisher.pendingServices === 0,
  );
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tgfed-rel-hkill-'));
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  sim = new RecordingSimulator({ rateLimits: false, deregistrationDelayMs: 300 });
  simServer = await startElbv2Simulator({ simulator: sim });
  arn = sim.createTargetGroup({ account: ACCOUNT, region: REGION, name: 'rel-hkill', port: 8080 });
  const files = testHubSettings({
    hubId: 'files-only',
    dir,
    clusters,
    adminToken,
    bindingsFile: {
      bindings: [
        {
          name: 'web-everywhere',
          services: { namespace: 'shop', name: 'web' },
          port: { name: 'http' },
          clusters: { names: clusters.map((c) => c.id) },
          targetGroup: { arn, roleArn: `arn:aws:iam::${ACCOUNT}:role/tgfed` },
        },
      ],
    },
    settings: { redisUrl: inject('redisUrl') },
  });
  const state = {
    redisUrl: inject('redisUrl'),
    redisKeyPrefix: keyPrefix,
    clustersFile: files.clustersFile,
    reconcileShardCount: 4,
    reconcileDebounceMs: 200,
    shutdownGraceMs: 1_000,
  };
  const hubSettings = {
    ...state,
    insecure: true,
    agentClientCertificates: 'optional',
    adminClientCertificates: 'none',
    adminTokensFile: files.adminTokensFile,
    bindingsFile: files.bindingsFile,
    heartbeatIntervalMs: 500,
    leaseTtlMs: 3_000,
    disconnectedGraceMs: 60_000,
  };
  hubs.push(
    ...(await Promise.all(
      ['rel-hkill-a', 'rel-hkill-b'].map((name) =>
        startTgfedProcess({ kind: 'hub', name, dir, settings: hubSettings }),
      ),
    )),
  );
  worker = new ReconcileWorker(
    workerOptionsSchema.parse({
      ...state,
      workerId: 'rel-hkill-worker',
      healthAddress: '127.0.0.1:0',
      lockDurationMs: 2_000,
      followUpMs: 1_000,
      driftIntervalMs: 600_000,
    }),
    simulatorWorkerDeps(simServer.url, 'AKIDHKILL'),
  );
  await worker.start();
  for (const c of clusters) {
    const relay = new FaultRelay(hubs.map((h) => h.agentPort as number));
    relays.set(c.id, relay);
    const agent = new TestAgent({
      clusterId: c.id,
      target: `127.0.0.1:${await relay.listen()}`,
      metadata: () => bearer(agentTokenOf(c.id)),
    });
    agents.set(c.id, agent);
    announce(c.id, range(1, 10));
    agent.publisher.start();
  }
}, 90_000);

afterAll(async () => {
  for (const agent of agents.values()) await agent.publisher.close().catch(() => undefined);
  for (const relay of relays.values()) await relay.close().catch(() => undefined);
  await worker?.shutdown(0).catch(() => undefined);
  admin?.close();
  for (const hub of hubs) await hub.process.stop(2_000).catch(() => undefined);
  const keys = await redis.keys(`${keyPrefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis?.quit();
  await simServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('A hub replica killed with SIGKILL mid-stream', () => {
  it('loses no acknowledged change: the agents move to the other replica and the group converges', async () => {
    const [hubA, hubB] = hubs as [TgfedProcess, TgfedProcess];
    await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(wanted()), {
      what: 'the first 20 targets through replica A',
      timeoutMs: 20_000,
    });
    for (const relay of relays.values()) {
      expect([...relay.connections.keys()]).toEqual([hubA.agentPort]);
    }

    // Churn (additions only, one host per cluster every 15 ms) up to host 25, all acknowledged:
    // that is the floor of what Redis must hold after the kill.
    let next = 11;
    let stopAt = 25;
    const churn = setInterval(() => {
      if (next > stopAt) return;
      for (const c of clusters) announce(c.id, range(1, next));
      next++;
    }, 15);
    try {
      await waitFor(() => next > stopAt && allAcked(), { what: 'the first churn acknowledged' });
      const acked = new Map(
        clusters.map((c) => [c.id, new Set(range(1, stopAt).map((h) => webIp(c.block, h)))]),
      );
      // More churn, and the kill in the middle of it.
      stopAt = 60;
      await waitFor(() => next >= 35, { what: 'the second churn to be under way' });
      await hubA.process.kill();
      for (const relay of relays.values()) relay.hold();
      clearInterval(churn);
      expect(next).toBeLessThan(60);

      // Acknowledged ⊆ stored ⊆ announced, for every cluster, before anyone could resync.
      for (const c of clusters) {
        const inRedis = await stored(c.id);
        const announced = new Set((hosts.get(c.id) ?? []).map((h) => webIp(c.block, h)));
        expect([...(acked.get(c.id) ?? [])].filter((x) => !inRedis.has(x))).toEqual([]);
        expect([...inRedis].filter((x) => !announced.has(x))).toEqual([]);
      }
    } finally {
      clearInterval(churn);
    }

    // The agents come back through replica B (after A's lease runs out) and keep changing.
    for (const relay of relays.values()) relay.release();
    await waitFor(allAcked, { what: 'the agents to stream to replica B', timeoutMs: 20_000 });
    announce('east', [...range(1, next + 2)]);
    announce('west', [...range(2, next + 2)]);
    await waitFor(() => JSON.stringify(sim.registered(arn)) === JSON.stringify(wanted()), {
      what: 'the group to converge through replica B',
      timeoutMs: 30_000,
    });
    for (const relay of relays.values()) {
      expect(relay.connections.get(hubB.agentPort as number) ?? 0).toBeGreaterThan(0);
    }
    for (const c of clusters) {
      const inRedis = [...(await stored(c.id))].sort();
      expect(inRedis).toEqual((hosts.get(c.id) ?? []).map((h) => webIp(c.block, h)).sort());
    }
    // Every target registered exactly once; the only removal is the one west asked for.
    const registrations = sim.registrations.get(arn) ?? new Map<string, number>();
    expect([...registrations.values()].filter((n) => n !== 1)).toEqual([]);
    expect([...registrations.keys()].sort()).toEqual([...wanted(), `${webIp(2, 1)}:8080`].sort());
    expect(Object.fromEntries(sim.deregistrations.get(arn) ?? [])).toEqual({
      [`${webIp(2, 1)}:8080`]: 1,
    });

    // Replica B reports both clusters connected: no disconnection or recovery alert remains.
    admin = adminClient(hubB.adminPort as number);
    const client = admin;
    await waitFor(
      async () => {
        const alerts = alertKeys(await listAlerts(client, adminToken));
        return alerts.every((a) => !/^TgfedCluster|^TgfedRecovery/.test(a)) ? alerts : undefined;
      },
      { what: 'no cluster alert on replica B', timeoutMs: 10_000 },
    );
  });
});

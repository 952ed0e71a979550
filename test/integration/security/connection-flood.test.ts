import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { ClusterEndpointStore, StateKeys } from '../../../hub/state/index.js';
import type { SyncService } from '../../../hub/ingest/index.js';
import type { ListClustersRequest, ListClustersResponse } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { TestFederation } from '../../support/test-federation.js';
import { agentTokenOf, bearer } from '../../support/test-hub-settings.js';
import { RogueAgent, type RogueStream } from './rogue-agent.js';

// Thousands of streams against a real hub (issue #9, hostile input): 2,000 concurrent Sync
// streams from one process over ten connections. 1,000 carry no credentials (refused at once,
// UNAUTHENTICATED); 200 carry a rogue cluster's token and say hello (one admitted, a few on
// standby, the rest refused); 800 carry the token but never say hello (they hold a slot until
// the hello deadline, or are refused once the hub is full). The hub never holds more than maxAgentStreams, never more standby streams
// per cluster than maxStandbyStreamsPerCluster, stays responsive for the honest cluster's agent
// and the admin API, and frees everything once the flood is gone.

const HEARTBEAT_MS = 1_000;
const MAX_STREAMS = 600;
const MAX_STANDBY = 4;
const PER_CONNECTION = 200;

let fed: TestFederation;
let store: ClusterEndpointStore;
const rogues: RogueAgent[] = [];

function sync(): SyncService {
  const s = fed.hub.syncService;
  if (s === undefined) throw new Error('hub not started');
  return s;
}

function listClusters(): Promise<ListClustersResponse> {
  return new Promise((resolve, reject) =>
    fed.admin.listClusters({} satisfies ListClustersRequest, bearer(fed.adminToken), (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

function apiSlice(hosts: readonly number[]) {
  return endpointSlice({
    namespace: 'shop',
    service: 'api',
    name: 'api-1',
    endpoints: hosts.map((h) => ({ ip: `10.2.9.${h}` })),
    ports: [{ name: 'http', port: 8080 }],
  });
}

async function storedApi(): Promise<number> {
  return (
    (await store.readService('honest', { namespace: 'shop', name: 'api' }))?.endpoints.size ?? 0
  );
}

beforeAll(async () => {
  fed = new TestFederation({
    name: 'tflood',
    redisUrl: inject('redisUrl'),
    clusters: [
      { id: 'honest', block: 2 },
      { id: 'rogue-flood', block: 20 },
    ],
    hubSettings: {
      heartbeatIntervalMs: HEARTBEAT_MS,
      maxAgentStreams: MAX_STREAMS,
      maxStandbyStreamsPerCluster: MAX_STANDBY,
    },
  });
  await fed.start();
  store = new ClusterEndpointStore(fed.redis, new StateKeys(fed.keyPrefix));
  // The hub asks agents only for services that bindings select.
  await fed.applyBinding(
    binding({
      name: 'flood-api',
      services: { namespace: 'shop', name: 'api' },
      clusters: { names: ['honest'], labels: undefined },
      target: { $case: 'targetGroup', targetGroup: targetGroup({ arn: targetGroupArn(951) }) },
    }),
  );
  fed.agent('honest').upsert(apiSlice([1]));
  await waitFor(async () => (await storedApi()) === 1, { what: 'the honest agent to sync' });
});

afterAll(async () => {
  for (const r of rogues.splice(0)) r.close();
  await fed?.close();
});

describe('The hub under a connection flood', () => {
  it('refuses unauthenticated streams at once, caps open and standby streams, serves the honest agent and the admin API throughout, and frees every stream afterwards', async () => {
    const target = `127.0.0.1:${fed.hub.agentPort}`;
    const c = sync().counters;
    const before = { refused: c.streamsRefused, unauthenticated: c.unauthenticated };
    let peak = 0;
    let peakStandby = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, sync().openStreams);
      peakStandby = Math.max(peakStandby, sync().standbyCount());
    }, 5);
    const streams: RogueStream[] = [];
    const anonymous: RogueStream[] = [];
    const silent: RogueStream[] = [];
    for (let connection = 0; connection < 10; connection++) {
      const authenticated = connection >= 5;
      const agent = new RogueAgent(target, {
        token: authenticated ? agentTokenOf('rogue-flood') : undefined,
        ownConnection: true,
      });
      rogues.push(agent);
      for (let i = 0; i < PER_CONNECTION; i++) {
        const stream = agent.open();
        if (!authenticated) {
          // Half say hello, half only send heartbeats: neither gets anywhere.
          if (i % 2 === 0) stream.hello('rogue-flood');
          else stream.heartbeat();
          anonymous.push(stream);
        } else if (connection === 5) {
          stream.hello('rogue-flood');
        } else {
          stream.heartbeat();
          silent.push(stream);
        }
        streams.push(stream);
      }
    }
    const heartbeats = setInterval(() => {
      for (const s of streams) if (s.status === undefined) s.heartbeat();
    }, HEARTBEAT_MS / 2);
    try {
      // Every stream got an answer: a refusal, an admission, a standby, or (later) an end.
      await waitFor(
        () =>
          streams.every(
            (s) =>
              s.status !== undefined ||
              silent.includes(s) ||
              s.responses.some((r) => ['welcome', 'standby'].includes(r.message?.$case ?? '')),
          ),
        { what: 'every flood stream to be answered', timeoutMs: 20_000 },
      );
      for (const s of anonymous) expect(s.status?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(c.unauthenticated - before.unauthenticated).toBe(anonymous.length);
      const refused = () =>
        streams.filter((s) => s.status?.code === grpc.status.RESOURCE_EXHAUSTED);
      const overCap = () =>
        refused().filter((s) => s.status?.details.includes(`at most ${MAX_STREAMS}`)).length;
      // Each refusal the hub counted reaches its client.
      await waitFor(() => overCap() > 0 && overCap() === c.streamsRefused - before.refused, {
        what: 'the refusals over maxAgentStreams to arrive',
      });
      expect(refused().some((s) => s.status?.details.includes('on standby'))).toBe(true);
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(MAX_STREAMS);
      expect(peakStandby).toBeLessThanOrEqual(MAX_STANDBY);

      // The honest agent, connected before the flood, still gets a change through promptly,
      // and the admin API answers.
      const started = Date.now();
      fed.agent('honest').upsert(apiSlice([1, 2, 3, 4]));
      await waitFor(async () => (await storedApi()) === 4, {
        what: 'the honest change to reach Redis during the flood',
        timeoutMs: 5_000,
      });
      expect(Date.now() - started).toBeLessThan(5_000);
      const listed = await listClusters();
      expect(listed.clusters.map((cluster) => cluster.id).sort()).toEqual([
        'honest',
        'rogue-flood',
      ]);
      expect(sync().admittedClusters()).toContain('honest');

      // Streams without a hello do not outlive the hello deadline, heartbeats or not.
      const holding = silent.filter((s) => s.status?.code !== grpc.status.RESOURCE_EXHAUSTED);
      expect(holding.length).toBeGreaterThan(0);
      await waitFor(() => holding.every((s) => s.status !== undefined), {
        what: 'streams without a hello to be closed',
        timeoutMs: 10 * HEARTBEAT_MS,
      });
      for (const s of holding) expect(s.status?.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      clearInterval(heartbeats);
      clearInterval(sampler);
      for (const r of rogues.splice(0)) r.close();
    }

    // The flood is gone: no standby left, and the cap has room for a new agent.
    await waitFor(() => sync().openStreams === 1, { what: 'every flood stream to go' });
    expect(sync().standbyCount()).toBe(0);
    await waitFor(() => !sync().admittedClusters().includes('rogue-flood'), {
      what: 'the rogue lease to go',
    });
    const after = new RogueAgent(target, { token: agentTokenOf('rogue-flood') });
    rogues.push(after);
    await after.open().admit('rogue-flood');
    expect(sync().admittedClusters().sort()).toEqual(['honest', 'rogue-flood']);
  });
});

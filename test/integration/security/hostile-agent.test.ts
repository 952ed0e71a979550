import { connect, constants as h2 } from 'node:http2';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { ClusterEndpointStore, StateKeys } from '../../../hub/state/index.js';
import type { IngestCounters } from '../../../hub/ingest/index.js';
import { NackReason, SyncRequest, type SyncResponse } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { scrapeMetrics } from '../../support/prometheus-text.js';
import { sortedEntries } from '../../support/test-agent.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import { agentTokenOf } from '../../support/test-hub-settings.js';
import {
  RogueAgent,
  addressesIn,
  batchRequest,
  deltaChange,
  encodeRequest,
  replaceChange,
  type RogueStream,
} from './rogue-agent.js';

// Hostile input on the agent listener (issue #9, item 3): a rogue agent — its own grpc-js client,
// or raw HTTP/2 — attacks a real hub (real Redis) while an honest cluster is connected. Every
// test ends by checking that the honest cluster's endpoints in Redis and its desired targets are
// exactly what they were, and that its stream is still the admitted one.

const HEARTBEAT_MS = 500;
const LIMITS = {
  maxMessageBytes: 65_536,
  maxEndpointsPerService: 50,
  maxEndpointsPerCluster: 120,
  maxServicesPerCluster: 4,
  maxBatchesInFlight: 4,
};
const REJECTED = 'tgfed_hub_endpoints_rejected_total';

const clusters = [
  { id: 'honest', block: 2 },
  { id: 'rogue-auth', block: 10 },
  { id: 'rogue-cidr', block: 11 },
  { id: 'rogue-seq', block: 12 },
  { id: 'rogue-big', block: 13 },
  { id: 'rogue-limits', block: 14 },
  { id: 'rogue-garbage', block: 15 },
  { id: 'rogue-slow', block: 16 },
  { id: 'rogue-labels', block: 17 },
];
const arn = targetGroupArn(901);
const honestHosts = Array.from({ length: 20 }, (_, i) => i + 1);

let fed: TestFederation;
let store: ClusterEndpointStore;
let honestBefore: string;
const rogues: RogueAgent[] = [];

function counters(): IngestCounters {
  const sync = fed.hub.syncService;
  if (sync === undefined) throw new Error('hub not started');
  return sync.counters;
}

function rogue(clusterId: string | undefined, ownConnection = false): RogueAgent {
  const agent = new RogueAgent(`127.0.0.1:${fed.hub.agentPort}`, {
    token: clusterId === undefined ? undefined : agentTokenOf(clusterId),
    ownConnection,
  });
  rogues.push(agent);
  return agent;
}

/** What the honest cluster has: its endpoints in Redis, its desired targets, its admission. */
async function honestState(): Promise<string> {
  const stored = await store.loadCluster('honest');
  const desired = await fed.hub.desiredState!.resolve(arn);
  return JSON.stringify({
    stored: sortedEntries(stored).map(([key, s]) => [key, sortedEntries(s.endpoints)]),
    targets: [...desired.targets.values()]
      .filter((t) => t.sources.some((s) => s.clusterId === 'honest'))
      .map((t) => `${t.id}:${t.port}`),
    conflicts: desired.conflicts,
    admitted: fed.hub.syncService!.admittedClusters().includes('honest'),
  });
}

async function rejectedMetric(clusterId: string, reason: string): Promise<number> {
  return (
    (await scrapeMetrics(fed.hub.healthPort)).value(REJECTED, { cluster: clusterId, reason }) ?? 0
  );
}

/** `tgfed_hub_agent_streams_rejected_total{reason}` on the hub's /metrics. */
async function streamRejections(reason: string): Promise<number> {
  return (
    (await scrapeMetrics(fed.hub.healthPort)).value('tgfed_hub_agent_streams_rejected_total', {
      reason,
    }) ?? 0
  );
}

async function storedAddresses(clusterId: string, name: string): Promise<string[]> {
  const service = await store.readService(clusterId, { namespace: 'shop', name });
  return [...(service?.endpoints.keys() ?? [])].sort();
}

function kinds(responses: readonly SyncResponse[]): string[] {
  return responses.map((r) => r.message?.$case ?? 'none');
}

beforeAll(async () => {
  fed = new TestFederation({
    name: 'tsec',
    redisUrl: inject('redisUrl'),
    clusters,
    hubSettings: { ...LIMITS, heartbeatIntervalMs: HEARTBEAT_MS },
  });
  await fed.start();
  store = new ClusterEndpointStore(fed.redis, new StateKeys(fed.keyPrefix));
  // The honest cluster and one rogue feed the same group: whatever the rogue gets stored would
  // show up next to the honest targets.
  await fed.applyBinding(
    binding({
      name: 'sec-web',
      clusters: { names: ['honest', 'rogue-cidr'], labels: undefined },
      target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
    }),
  );
  fed.setEndpoints('honest', honestHosts);
  await waitFor(
    async () => (await fed.hub.desiredState!.resolve(arn)).targets.size === honestHosts.length,
    { what: 'the honest targets to be desired' },
  );
  honestBefore = await honestState();
});

afterEach(async () => {
  for (const r of rogues.splice(0)) r.close();
  expect(await honestState()).toBe(honestBefore);
});

afterAll(async () => {
  for (const r of rogues.splice(0)) r.close();
  await fed?.close();
});

describe('The hub under a rogue agent', () => {
  it('refuses a hello naming another cluster (PERMISSION_DENIED) and streams without a known token (UNAUTHENTICATED), counting each', async () => {
    const denied = counters().permissionDenied;
    const unauthenticated = counters().unauthenticated;
    const deniedMetric = await streamRejections('permission_denied');
    const unauthenticatedMetric = await streamRejections('unauthenticated');

    const impostor = rogue('rogue-auth').open();
    impostor.hello('honest');
    const status = await impostor.ended();
    expect(status.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(status.details).toContain('"rogue-auth"');
    expect(status.details).toContain('"honest"');
    expect(kinds(impostor.responses)).not.toContain('welcome');
    expect(kinds(impostor.responses)).not.toContain('standby');
    expect(counters().permissionDenied).toBe(denied + 1);

    // No token, a token nobody has, a malformed authorization header.
    for (const token of [undefined, 'token-of-nobody', 'two words']) {
      const agent = new RogueAgent(`127.0.0.1:${fed.hub.agentPort}`, { token });
      rogues.push(agent);
      const stream = agent.open();
      stream.hello('honest');
      expect((await stream.ended()).code).toBe(grpc.status.UNAUTHENTICATED);
      expect(kinds(stream.responses)).not.toContain('welcome');
    }
    expect(counters().unauthenticated).toBe(unauthenticated + 3);
    // Exported as well, for the operator's dashboards and alerts.
    expect(await streamRejections('permission_denied')).toBe(deniedMetric + 1);
    expect(await streamRejections('unauthenticated')).toBe(unauthenticatedMetric + 3);
  });

  it('NACKs addresses outside the cluster’s CIDRs, counts them in tgfed_hub_endpoints_rejected_total and never stores or targets them', async () => {
    const metricBefore = await rejectedMetric('rogue-cidr', 'address_not_allowed');
    const countedBefore = counters().addressesNotAllowed;
    const stream = rogue('rogue-cidr').open();
    await stream.admit('rogue-cidr');

    const outside = [
      webIp(2, 3), // an honest endpoint
      '8.8.8.8',
      '169.254.169.254', // instance metadata
      '::ffff:10.11.0.2', // IPv4-mapped: an IPv6 address, outside the IPv4 range
      'fd00::1',
    ];
    stream.batch(2, [replaceChange('web', ['10.11.0.1', ...outside])]);
    const nack = await stream.next('nack');
    expect(nack.nack.sequence).toBe(2);
    expect(nack.nack.reason).toBe(NackReason.NACK_REASON_ADDRESS_NOT_ALLOWED);
    expect(nack.nack.rejections).toHaveLength(outside.length);
    expect(
      nack.nack.rejections.every((r) => r.reason === NackReason.NACK_REASON_ADDRESS_NOT_ALLOWED),
    ).toBe(true);
    expect((await stream.next('ack')).ack.sequence).toBe(2);

    // A delta and a service made only of outside addresses fare no better.
    stream.batch(3, [
      deltaChange('web', ['10.11.0.3', webIp(2, 4)]),
      replaceChange('api', ['1.1.1.1']),
    ]);
    expect((await stream.next('nack')).nack.rejections).toHaveLength(2);
    expect((await stream.next('ack')).ack.sequence).toBe(3);

    expect(await storedAddresses('rogue-cidr', 'web')).toEqual(['10.11.0.1', '10.11.0.3']);
    expect(await storedAddresses('rogue-cidr', 'api')).toEqual([]);
    const desired = await fed.hub.desiredState!.resolve(arn);
    const fromRogue = [...desired.targets.values()]
      .filter((t) => t.sources.some((s) => s.clusterId === 'rogue-cidr'))
      .map((t) => `${t.id}:${t.port}`)
      .sort();
    expect(fromRogue).toEqual(['10.11.0.1:8080', '10.11.0.3:8080']);
    expect(desired.conflicts).toEqual([]);

    expect(counters().addressesNotAllowed).toBe(countedBefore + outside.length + 2);
    await waitFor(
      async () =>
        (await rejectedMetric('rogue-cidr', 'address_not_allowed')) ===
        metricBefore + outside.length + 2,
      { what: 'the rejections in /metrics' },
    );
    expect(stream.status).toBeUndefined();
  });

  it('refuses replayed sequences without applying them again, and re-aligns forward on a gap with a resync request', async () => {
    const c = counters();
    const sequenceErrors = c.sequenceErrors;
    const stream = rogue('rogue-seq').open();
    await stream.admit('rogue-seq');
    const [a, x, b, late] = addressesIn(12, 4);
    const replace = batchRequest(2, [replaceChange('web', [a!])]);
    const upsertX = batchRequest(3, [deltaChange('web', [x!])]);
    const removeX = batchRequest(4, [deltaChange('web', [], [x!])]);
    for (const [request, sequence] of [
      [replace, 2],
      [upsertX, 3],
      [removeX, 4],
    ] as const) {
      stream.write(request);
      expect((await stream.next('ack')).ack.sequence).toBe(sequence);
    }
    expect(await storedAddresses('rogue-seq', 'web')).toEqual([a]);

    // Replays of batches 2 and 3: both refused; the removed endpoint must not come back.
    for (const [request, sequence] of [
      [replace, 2],
      [upsertX, 3],
    ] as const) {
      stream.write(request);
      const nack = await stream.next('nack');
      expect(nack.nack.sequence).toBe(sequence);
      expect(nack.nack.reason).toBe(NackReason.NACK_REASON_SEQUENCE);
      expect(
        (await stream.next('resyncRequest')).resyncRequest.services.map((s) => s.name),
      ).toEqual(['web']);
    }
    expect(await storedAddresses('rogue-seq', 'web')).toEqual([a]);

    // The replays did not move the expected sequence back: the stream goes on at 5.
    stream.batch(5, [deltaChange('web', [b!])]);
    expect((await stream.next('ack')).ack.sequence).toBe(5);
    expect(await storedAddresses('rogue-seq', 'web')).toEqual([a, b].sort());

    // A gap (9 after 5): refused, a resync asked for, the stream re-aligns on 10.
    stream.batch(9, [deltaChange('web', [late!])]);
    const gap = await stream.next('nack');
    expect(gap.nack.reason).toBe(NackReason.NACK_REASON_SEQUENCE);
    expect(gap.nack.message).toContain('expected 6');
    await stream.next('resyncRequest');
    expect(await storedAddresses('rogue-seq', 'web')).not.toContain(late);
    stream.batch(10, [replaceChange('web', [a!, b!, late!])]);
    expect((await stream.next('ack')).ack.sequence).toBe(10);
    expect(await storedAddresses('rogue-seq', 'web')).toEqual([a, b, late].sort());

    expect(c.sequenceErrors).toBe(sequenceErrors + 3);
    expect(c.byCluster.get('rogue-seq')?.batchesRejected).toBe(3);
    expect(stream.status).toBeUndefined();
  });

  it('ends a stream whose message is over maxMessageBytes with RESOURCE_EXHAUSTED, stores nothing of it and keeps serving', async () => {
    const agent = rogue('rogue-big');
    const stream = agent.open();
    await stream.admit('rogue-big');
    const huge = batchRequest(2, [replaceChange('huge', addressesIn(13, 8_000))]);
    expect(encodeRequest(huge).length).toBeGreaterThan(LIMITS.maxMessageBytes);
    stream.write(huge);
    const status = await stream.ended();
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(await storedAddresses('rogue-big', 'huge')).toEqual([]);

    // The lease went with the stream: the next stream of the cluster is admitted at once.
    const again = agent.open();
    await again.admit('rogue-big');
    again.batch(2, [replaceChange('small', addressesIn(13, 3))]);
    expect((await again.next('ack')).ack.sequence).toBe(2);
    expect(await storedAddresses('rogue-big', 'small')).toHaveLength(3);
  });

  it('answers undecodable protobuf with INTERNAL, random bytes with a clear status, and keeps serving', async () => {
    const malformed = counters().malformedMessages;
    const agent = rogue('rogue-garbage');
    // A length-delimited field claiming 4 GiB.
    const claim = agent.openRaw();
    claim.call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    expect((await claim.ended()).code).toBe(grpc.status.INTERNAL);

    // An admitted stream whose batch is cut short: ended, the lease released.
    const cut = agent.openRaw();
    cut.call.write(
      encodeRequest({
        message: {
          $case: 'hello',
          hello: {
            clusterId: 'rogue-garbage',
            agentVersion: 'rogue',
            sessionEpoch: randomBytes(16),
            capabilities: [],
          },
        },
      }),
    );
    await waitFor(() => cut.responses().some((r) => r.message?.$case === 'welcome'), {
      what: 'the welcome',
    });
    const batch = encodeRequest(batchRequest(1, [replaceChange('web', addressesIn(15, 20))]));
    cut.call.write(batch.subarray(0, batch.length - 3));
    expect((await cut.ended()).code).toBe(grpc.status.INTERNAL);
    expect(await storedAddresses('rogue-garbage', 'web')).toEqual([]);
    expect(counters().malformedMessages).toBe(malformed + 2);

    // Random bytes: whatever they decode to (nothing, a hello for a random cluster, a batch
    // before the welcome) or not, each stream ends with a clear status; none crashes the hub.
    const clear = new Set([
      grpc.status.INTERNAL,
      grpc.status.PERMISSION_DENIED,
      grpc.status.FAILED_PRECONDITION,
      grpc.status.UNAVAILABLE,
    ]);
    const garbage = Array.from({ length: 40 }, (_, i) => randomBytes(1 + ((i * 37) % 400)));
    const undecodable = garbage.filter((bytes) => {
      try {
        SyncRequest.decode(bytes);
        return false;
      } catch {
        return true;
      }
    }).length;
    const streams = garbage.map((bytes) => {
      const raw = agent.openRaw();
      raw.call.write(bytes);
      return raw;
    });
    const statuses = await Promise.all(streams.map((s) => s.ended()));
    for (const status of statuses) expect(clear, `status ${status.code}`).toContain(status.code);
    expect(statuses.filter((s) => s.code === grpc.status.INTERNAL)).toHaveLength(undecodable);
    expect(counters().malformedMessages).toBe(malformed + 2 + undecodable);

    const stream = agent.open();
    await stream.admit('rogue-garbage');
    stream.batch(2, [replaceChange('web', addressesIn(15, 2))]);
    expect((await stream.next('ack')).ack.sequence).toBe(2);
  });

  it('enforces every size limit with LIMIT_EXCEEDED NACKs or RESOURCE_EXHAUSTED, counted, stored totals never above the limits', async () => {
    const c = counters();
    const limitBefore = c.limitExceeded;
    const metricBefore = await rejectedMetric('rogue-limits', 'limit_exceeded');
    const stream = rogue('rogue-limits').open();
    await stream.admit('rogue-limits');
    let sequence = 1;
    const send = async (change: ReturnType<typeof replaceChange>): Promise<number[]> => {
      stream.batch(++sequence, [change]);
      const ack = await stream.next('ack');
      expect(ack.ack.sequence).toBe(sequence);
      return stream.responses
        .splice(0)
        .flatMap((r) => (r.message?.$case === 'nack' ? [r.message.nack.reason] : []));
    };
    const exceeded = [NackReason.NACK_REASON_LIMIT_EXCEEDED];

    // Endpoints per service: 51 of 50.
    expect(await send(replaceChange('web', addressesIn(14, 51)))).toEqual(exceeded);
    expect(await storedAddresses('rogue-limits', 'web')).toEqual([]);
    // Endpoints per cluster: 50 + 50 + 50 of 120.
    expect(await send(replaceChange('s1', addressesIn(14, 50, 1)))).toEqual([]);
    expect(await send(replaceChange('s2', addressesIn(14, 50, 101)))).toEqual([]);
    expect(await send(replaceChange('s3', addressesIn(14, 50, 201)))).toEqual(exceeded);
    expect(await storedAddresses('rogue-limits', 's3')).toEqual([]);
    // Services per cluster: a fifth of 4.
    expect(await send(replaceChange('s3', addressesIn(14, 10, 201)))).toEqual([]);
    expect(await send(replaceChange('s4', addressesIn(14, 1, 301)))).toEqual([]);
    expect(await send(replaceChange('s5', addressesIn(14, 1, 401)))).toEqual(exceeded);
    // A delta past the per-service limit.
    expect(await send(deltaChange('s1', addressesIn(14, 1, 60)))).toEqual(exceeded);

    // One batch as large as the hub accepts: thousands of endpoints in one service.
    let count = 4_000;
    while (
      encodeRequest(
        batchRequest(sequence + 1, [replaceChange('big', addressesIn(14, count + 100, 1_000))]),
      ).length <= LIMITS.maxMessageBytes
    ) {
      count += 100;
    }
    const big = replaceChange('big', addressesIn(14, count, 1_000));
    expect(encodeRequest(batchRequest(sequence + 1, [big])).length).toBeLessThanOrEqual(
      LIMITS.maxMessageBytes,
    );
    expect(await send(big)).toEqual(exceeded);

    const totals = await store.totals('rogue-limits');
    expect(totals).toMatchObject({ endpoints: 111, services: 4 });
    expect(totals.endpoints).toBeLessThanOrEqual(LIMITS.maxEndpointsPerCluster);
    expect(c.limitExceeded).toBe(limitBefore + 5);
    await waitFor(
      async () => (await rejectedMetric('rogue-limits', 'limit_exceeded')) === metricBefore + 5,
      { what: 'the limit rejections in /metrics' },
    );
    expect(stream.status).toBeUndefined();

    // More batches in flight than the welcome allowed: the stream is ended.
    const violations = c.protocolViolations;
    for (let i = 0; i < 50; i++) {
      stream.batch(++sequence, [deltaChange('s4', [], addressesIn(14, 1, 301))]);
    }
    const status = await stream.ended();
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toContain('batches in flight');
    expect(c.protocolViolations).toBe(violations + 1);
    expect((await store.totals('rogue-limits')).endpoints).toBeLessThanOrEqual(111);
  });

  it('refuses service labels beyond what Kubernetes allows (count, key and value length) with an INVALID NACK', async () => {
    const invalid = counters().invalidChanges;
    const stream = rogue('rogue-labels').open();
    await stream.admit('rogue-labels');
    const withLabels = (name: string, labels: Record<string, string>) => {
      const change = replaceChange(name, addressesIn(17, 2));
      if (change.change?.$case === 'replace') change.change.replace.labels = labels;
      return change;
    };
    const many = Object.fromEntries(Array.from({ length: 1_000 }, (_, i) => [`k${i}`, 'v']));
    const cases: [string, Record<string, string>][] = [
      ['many', many],
      ['long-value', { tier: 'x'.repeat(64) }],
      ['long-key', { ['k'.repeat(400)]: 'v' }],
    ];
    let sequence = 1;
    for (const [name, labels] of cases) {
      stream.batch(++sequence, [withLabels(name, labels)]);
      const nack = await stream.next('nack');
      expect(nack.nack.reason, name).toBe(NackReason.NACK_REASON_INVALID);
      expect(nack.nack.rejections.map((r) => r.service?.name)).toEqual([name]);
      expect((await stream.next('ack')).ack.sequence).toBe(sequence);
      expect(await store.readService('rogue-labels', { namespace: 'shop', name })).toBeUndefined();
    }
    // Labels as Kubernetes allows them apply, by replace and by delta.
    const fine = { 'app.kubernetes.io/name': 'web', tier: 'x'.repeat(63) };
    stream.batch(++sequence, [withLabels('fine', fine)]);
    expect((await stream.next('ack')).ack.sequence).toBe(sequence);
    expect(kinds(stream.responses)).not.toContain('nack');
    expect(
      (await store.readService('rogue-labels', { namespace: 'shop', name: 'fine' }))?.labels,
    ).toEqual(fine);
    const delta = deltaChange('fine', []);
    if (delta.change?.$case === 'delta') delta.change.delta.labels = { labels: many };
    stream.batch(sequence + 1, [delta]);
    expect((await stream.next('nack')).nack.reason).toBe(NackReason.NACK_REASON_INVALID);
    expect((await stream.next('ack')).ack.sequence).toBe(sequence + 1);
    expect(
      (await store.readService('rogue-labels', { namespace: 'shop', name: 'fine' }))?.labels,
    ).toEqual(fine);
    expect(counters().invalidChanges).toBe(invalid + cases.length + 1);
  });

  describe('slow and silent streams', () => {
    it('closes an authenticated stream that never says hello after three heartbeat intervals', async () => {
      const timeouts = counters().heartbeatTimeouts;
      const stream = rogue('rogue-slow').open();
      const opened = Date.now();
      const status = await stream.ended();
      expect(status.code).toBe(grpc.status.UNAVAILABLE);
      expect(Date.now() - opened).toBeGreaterThanOrEqual(3 * HEARTBEAT_MS - 100);
      expect(counters().heartbeatTimeouts).toBe(timeouts + 1);
    });

    it('closes a stream that keeps sending heartbeats but never a hello; one without credentials at once', async () => {
      const timeouts = counters().heartbeatTimeouts;
      const unauthenticated = counters().unauthenticated;
      for (const clusterId of ['rogue-slow', undefined]) {
        const stream: RogueStream = rogue(clusterId).open();
        const opened = Date.now();
        const ticker = setInterval(() => stream.heartbeat(), HEARTBEAT_MS / 5);
        try {
          const status = await stream.ended(8 * HEARTBEAT_MS);
          if (clusterId === undefined) {
            expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
            expect(Date.now() - opened).toBeLessThan(HEARTBEAT_MS);
          } else {
            expect(status.code).toBe(grpc.status.UNAVAILABLE);
            expect(status.details).toContain('hello');
            expect(Date.now() - opened).toBeGreaterThanOrEqual(3 * HEARTBEAT_MS - 100);
            expect(Date.now() - opened).toBeLessThan(6 * HEARTBEAT_MS);
          }
        } finally {
          clearInterval(ticker);
        }
      }
      expect(counters().heartbeatTimeouts).toBe(timeouts + 1);
      expect(counters().unauthenticated).toBe(unauthenticated + 1);
    });

    it('closes a raw HTTP/2 stream that trickles one byte at a time, with or without a token', async () => {
      for (const token of [agentTokenOf('rogue-slow'), undefined]) {
        const session = connect(`http://127.0.0.1:${fed.hub.agentPort}`);
        const request = session.request({
          [h2.HTTP2_HEADER_METHOD]: 'POST',
          [h2.HTTP2_HEADER_PATH]: '/tgfed.v1.AgentService/Sync',
          [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
          te: 'trailers',
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        });
        const opened = Date.now();
        const trailers = new Promise<Record<string, unknown>>((resolve) => {
          request.on('trailers', (t: Record<string, unknown>) => resolve(t));
          request.on('response', (headers) => {
            // A trailers-only response carries the status in the headers.
            if (headers['grpc-status'] !== undefined) resolve(headers);
          });
        });
        request.on('error', () => undefined);
        request.resume();
        // A message prefix announcing 4 KiB, then one byte every 100 ms.
        request.write(Buffer.from([0, 0, 0, 0x10, 0]));
        const trickle = setInterval(() => {
          if (!request.closed) request.write(Buffer.from([0x0a]));
        }, 100);
        try {
          const ended = await Promise.race([
            trailers,
            new Promise<undefined>((resolve) =>
              setTimeout(() => resolve(undefined), 10 * HEARTBEAT_MS),
            ),
          ]);
          if (token === undefined) {
            // No credentials in the headers: refused before the first byte of a message.
            expect(ended?.['grpc-status']).toBe(String(grpc.status.UNAUTHENTICATED));
            expect(Date.now() - opened).toBeLessThan(HEARTBEAT_MS);
          } else {
            expect(ended?.['grpc-status']).toBe(String(grpc.status.UNAVAILABLE));
            expect(Date.now() - opened).toBeGreaterThanOrEqual(3 * HEARTBEAT_MS - 100);
            expect(Date.now() - opened).toBeLessThan(8 * HEARTBEAT_MS);
          }
        } finally {
          clearInterval(trickle);
          request.close();
          session.close();
        }
      }
    });
  });
});

import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { ServiceEndpointSets } from '../../../agent/aggregate/service-endpoint-sets.js';
import { registerPublisherMetrics } from '../../../agent/publish/publisher-metrics.js';
import { SyncPublisher } from '../../../agent/publish/sync-publisher.js';
import { AdminCounters, registerAdminMetrics } from '../../../hub/admin/index.js';
import { InstrumentedTargetGroupApis, withObservedChanges } from '../../../hub/aws/index.js';
import type { TargetGroupApi, TargetGroupApiFactory } from '../../../hub/aws/index.js';
import { FederationMetrics } from '../../../hub/federation/federation-metrics.js';
import type { ClusterStatus } from '../../../hub/federation/desired-targets.js';
import type { GroupDesiredState } from '../../../hub/federation/target-group-desired-state.js';
import { IngestCounters, registerIngestMetrics } from '../../../hub/ingest/index.js';
import {
  ReconcileMetrics,
  TargetGroupGauges,
  type ReconcileResult,
  type TargetGroupSummary,
  type TargetGroupSummarySource,
} from '../../../hub/reconcile/index.js';
import {
  startHealthServer,
  startTelemetry,
  type HealthServer,
  type Telemetry,
} from '../../../shared/index.js';
import { PrometheusScrape } from '../../support/prometheus-text.js';
import { contractMetrics } from '../alerts/contract-metrics.js';

// The exposed names and types of the metrics contract, which the alert rules and the dashboard
// are written against. Queue gauges need Redis: the integration test covers them.
const CONTRACT = Object.fromEntries(
  Object.entries(contractMetrics).filter(([name]) => !name.startsWith('tgfed_queue_')),
);

const ARN = 'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/0123456789abcdef';
const FULL =
  'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/full/0123456789abcdef';
const NEW = 'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/new/0123456789abcdef';

/** Stored records of three groups: one held and released, one held now, one never reconciled. */
function summaries(): TargetGroupSummarySource {
  const held = {
    id: 'h1',
    targetGroupArn: FULL,
    deregistrations: 8,
    targetsBefore: 10,
    reason: 'test',
    heldSinceMs: 0,
  };
  const groups: Record<string, TargetGroupSummary> = {
    [ARN]: {
      last: reconcileResult().record,
      held: { ...held, targetGroupArn: ARN, releasedBy: 'ops' },
      definition: { capacity: 0 } as TargetGroupSummary['definition'],
    },
    [FULL]: {
      last: reconcileResult({ actual: 10, outcome: 'held' }).record,
      held,
      definition: { capacity: 10 } as TargetGroupSummary['definition'],
    },
    [NEW]: { last: undefined, held: undefined, definition: undefined },
  };
  return {
    groups: () => Promise.resolve(Object.keys(groups)),
    summary: (arn) => Promise.resolve(groups[arn] as TargetGroupSummary),
  };
}

/** An ELBv2 group that throttles the calls named in `throttle`. */
function fakeAws(throttle: Set<string>): TargetGroupApiFactory {
  const fail = (operation: string): Promise<void> => {
    if (!throttle.has(operation)) return Promise.resolve();
    const err = Object.assign(new Error('Rate exceeded'), {
      name: 'Throttling',
      $metadata: { httpStatusCode: 400 },
    });
    return Promise.reject(err);
  };
  const api: TargetGroupApi = {
    describeTargetHealth: async () => {
      await fail('DescribeTargetHealth');
      return [];
    },
    registerTargets: () => fail('RegisterTargets'),
    deregisterTargets: () => fail('DeregisterTargets'),
  };
  return { forGroup: () => api };
}

function reconcileResult(overrides: Partial<ReconcileResult['record']> = {}): ReconcileResult {
  return {
    targetGroupArn: ARN,
    held: undefined,
    driftFound: 2,
    nextDueAtMs: 0,
    record: {
      outcome: 'applied',
      reason: 'endpoints',
      startedAtMs: 0,
      durationMs: 250,
      calls: { describe: 1, register: 1, deregister: 0 },
      registered: 3,
      deregistered: 0,
      desired: 3,
      actual: 3,
      owned: 3,
      waitingForCapacity: 0,
      deregistrationsBlocked: 0,
      invalidTargets: [],
      consecutiveFailures: 0,
      ...overrides,
    },
  };
}

let telemetry: Telemetry | undefined;
let health: HealthServer | undefined;

afterEach(async () => {
  await health?.close();
  await telemetry?.shutdown();
  health = undefined;
  telemetry = undefined;
});

async function scrape(t: Telemetry): Promise<PrometheusScrape> {
  health ??= await startHealthServer({
    address: '127.0.0.1:0',
    live: () => ({ ok: true, detail: {} }),
    ready: () => ({ ok: true, detail: {} }),
    metrics: t.metricsEndpoint,
  });
  const response = await fetch(`http://127.0.0.1:${health.port}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  return new PrometheusScrape(await response.text());
}

describe('tgfed instruments on /metrics', () => {
  it('are exposed with exactly the names and types of the metrics contract', async () => {
    telemetry = startTelemetry({ serviceName: 'tgfed-test', env: {} });
    const meter = telemetry.meter;

    const publisher = new SyncPublisher(new ServiceEndpointSets(), {
      clusterId: 'a',
      agentVersion: 'test',
      target: '127.0.0.1:1',
      credentials: grpc.credentials.createInsecure(),
    });
    publisher.stats.nacksByReason['NACK_REASON_ADDRESS_NOT_ALLOWED'] = 2;
    registerPublisherMetrics(meter, { clusterId: 'a', publisher, endpoints: () => 5 });

    const counters = new IngestCounters();
    registerIngestMetrics(meter, counters);
    counters.batchAcked('a', 'applied', 4, 12);
    counters.endpointsRejected('a', 'address_not_allowed', 1);
    registerAdminMetrics(meter, new AdminCounters());

    const statuses: Record<string, ClusterStatus> = {
      a: { connection: 'connected', awaitingResync: false },
      b: { connection: 'stale', awaitingResync: true },
    };
    const federation = new FederationMetrics(meter, {
      clusterStatus: {
        clusters: () => Object.keys(statuses),
        status: (id) => statuses[id] as ClusterStatus,
      },
      targetGroups: () => Promise.resolve([ARN]),
      resolve: () => Promise.resolve({ conflicts: [{}, {}] } as unknown as GroupDesiredState),
      storedEndpoints: (id) => Promise.resolve(id === 'a' ? 5 : 9),
    });
    federation.recoveryTimedOut();

    const reconciles = new ReconcileMetrics(meter);
    reconciles.record(reconcileResult());
    reconciles.record(
      reconcileResult({ outcome: 'failed', errorClass: 'access-denied', registered: 0 }),
    );
    reconciles.claimsLost(1, 0);
    new TargetGroupGauges(meter, summaries());

    const aws = new InstrumentedTargetGroupApis(fakeAws(new Set(['DeregisterTargets'])), meter, {
      limits: { limitFor: () => ({ ratePerSecond: 4, burst: 20 }) },
    });
    const api = aws.forGroup({
      arn: ARN,
      accountId: '111111111111',
      region: 'eu-west-1',
      roleArn: '',
      externalId: '',
    });
    await withObservedChanges(Date.now() - 1500, () =>
      api.registerTargets([{ id: '10.0.0.1', port: 80 }]),
    );
    await expect(api.deregisterTargets([{ id: '10.0.0.1', port: 80 }])).rejects.toThrow();

    const text = (await scrape(telemetry)).text;
    const types = new Map(
      [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name = '', type = '']) => [name, type]),
    );
    types.delete('target_info');
    // A histogram appears with its first recording; the ack latency needs a hub's ack (the
    // integration test scrapes it).
    const { tgfed_agent_ack_latency_seconds: ackLatency, ...recorded } = CONTRACT;
    expect(ackLatency).toBe('histogram');
    expect(Object.fromEntries(types)).toEqual(recorded);
    await publisher.close();
  });

  it('carry the contract labels and the values recorded', async () => {
    telemetry = startTelemetry({ serviceName: 'tgfed-test', env: {} });
    const meter = telemetry.meter;
    const reconciles = new ReconcileMetrics(meter);
    reconciles.record(reconcileResult());
    reconciles.record(
      reconcileResult({
        outcome: 'failed',
        errorClass: 'access-denied',
        registered: 0,
        invalidTargets: ['10.0.0.9:80'],
      }),
    );
    const aws = new InstrumentedTargetGroupApis(fakeAws(new Set(['DeregisterTargets'])), meter);
    const api = aws.forGroup({
      arn: ARN,
      accountId: '111111111111',
      region: 'eu-west-1',
      roleArn: '',
      externalId: '',
    });
    await withObservedChanges(Date.now() - 1500, () =>
      api.registerTargets([{ id: '10.0.0.1', port: 80 }]),
    );
    // No observation time: a binding change, not an endpoint change; no latency recorded.
    await api.registerTargets([{ id: '10.0.0.2', port: 80 }]);
    await expect(api.deregisterTargets([{ id: '10.0.0.1', port: 80 }])).rejects.toThrow();
    await api.describeTargetHealth();

    const s = await scrape(telemetry);
    const account = { account: '111111111111' };
    expect(s.value('tgfed_reconciles_total', { ...account, outcome: 'applied' })).toBe(1);
    expect(s.value('tgfed_reconciles_total', { ...account, outcome: 'failed' })).toBe(1);
    expect(s.value('tgfed_reconcile_duration_seconds_sum', { outcome: 'applied' })).toBe(0.25);
    expect(
      s.value('tgfed_reconcile_errors_total', {
        ...account,
        target_group: ARN,
        error: 'access_denied',
      }),
    ).toBe(1);
    expect(
      s.value('tgfed_reconcile_errors_total', {
        ...account,
        target_group: ARN,
        error: 'invalid_target',
      }),
    ).toBe(1);
    expect(s.value('tgfed_targets_changed_total', { ...account, change: 'registered' })).toBe(3);
    expect(s.value('tgfed_drift_repairs_total', { target_group: ARN })).toBe(2);
    reconciles.claimsLost(3, 0);
    reconciles.claimsLost(1, 2);
    const claims = await scrape(telemetry);
    expect(claims.value('tgfed_pool_placement_claims_lost_total', { outcome: 'adopted' })).toBe(4);
    expect(claims.value('tgfed_pool_placement_claims_lost_total', { outcome: 'kept' })).toBe(2);

    const where = { ...account, region: 'eu-west-1' };
    expect(
      s.value('tgfed_aws_calls_total', { ...where, operation: 'RegisterTargets', result: 'ok' }),
    ).toBe(2);
    expect(
      s.value('tgfed_aws_calls_total', {
        ...where,
        operation: 'DeregisterTargets',
        result: 'throttled',
      }),
    ).toBe(1);
    expect(s.value('tgfed_aws_throttles_total', where)).toBe(1);
    expect(
      s.value('tgfed_aws_call_duration_seconds_count', { operation: 'DescribeTargetHealth' }),
    ).toBe(1);
    expect(s.value('tgfed_propagation_latency_seconds_count')).toBe(1);
    const latency = s.value('tgfed_propagation_latency_seconds_sum') ?? 0;
    expect(latency).toBeGreaterThanOrEqual(1.5);
    expect(latency).toBeLessThan(5);
    expect(s.value('tgfed_propagation_latency_seconds_bucket', { le: '1' })).toBe(0);
    expect(s.value('tgfed_propagation_latency_seconds_bucket', { le: '+Inf' })).toBe(1);
    // No rate-limit source given: the gauge is not reported.
    expect(s.find('tgfed_aws_rate_limit_per_second')).toEqual([]);
  });

  it('show each group’s stored targets, capacity and unreleased hold', async () => {
    telemetry = startTelemetry({ serviceName: 'tgfed-test', env: {} });
    new TargetGroupGauges(telemetry.meter, summaries());
    const s = await scrape(telemetry);
    expect(s.value('tgfed_target_group_targets', { target_group: ARN })).toBe(3);
    expect(s.value('tgfed_target_group_capacity', { target_group: ARN })).toBe(1000);
    expect(s.value('tgfed_held_operations', { target_group: ARN })).toBe(0);
    expect(s.value('tgfed_target_group_targets', { target_group: FULL })).toBe(10);
    expect(s.value('tgfed_target_group_capacity', { target_group: FULL })).toBe(10);
    expect(s.value('tgfed_held_operations', { target_group: FULL })).toBe(1);
    expect(s.value('tgfed_held_operations', { target_group: NEW })).toBe(0);
    expect(s.find('tgfed_target_group_targets', { target_group: NEW })).toEqual([]);
  });
});

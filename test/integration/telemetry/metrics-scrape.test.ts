import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { registerPublisherMetrics } from '../../../agent/publish/publisher-metrics.js';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
} from '../../../hub/aws/simulator/index.js';
import {
  ATTR_TGFED_CLUSTER_ID,
  SERVICE_NAMES,
  startHealthServer,
  startTelemetry,
  tgfedVersion,
  type HealthServer,
  type Telemetry,
} from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { ACCOUNT, REGION, binding, targetGroup } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { scrapeMetrics, type PrometheusScrape } from '../../support/prometheus-text.js';
import { TestFederation, webIp } from '../../support/test-federation.js';
import type { TestAgent } from '../../support/test-agent.js';
import { simulatorWorkerDeps } from '../../support/simulator-worker.js';

// A scripted scenario on a real hub, a test agent speaking the real protocol and a real worker
// on the ELBv2 simulator (real Redis), then each component's /metrics scraped over HTTP: the
// series of the metrics contract (.scratch/metrics-contract.md) with the values the scenario
// implies.

const N = 7;
const clusters = [
  { id: 'a', block: 1 },
  { id: 'b', block: 2 },
];

let sim: Elbv2SimulatorServer;
let fed: TestFederation;
let arn: string;
let agent: TestAgent;
let agentTelemetry: Telemetry;
let agentHealth: HealthServer;
let workerPort: number;

function hosts(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i + 1);
}

function registered(): string[] {
  return sim.simulator
    .targets(arn)
    .filter((t) => t.state !== 'draining')
    .map((t) => `${t.id}:${t.port}`)
    .sort();
}

/** Scrapes until `check` passes (values of observable series follow the components' state). */
async function scrapeUntil(
  port: number,
  what: string,
  check: (scrape: PrometheusScrape) => boolean,
): Promise<PrometheusScrape> {
  return waitFor(
    async () => {
      const scrape = await scrapeMetrics(port);
      return check(scrape) ? scrape : undefined;
    },
    { what, timeoutMs: 20_000, intervalMs: 100 },
  );
}

beforeAll(async () => {
  sim = await startElbv2Simulator({ rateLimits: false, deregistrationDelayMs: 300 });
  arn = sim.simulator.createTargetGroup({
    account: ACCOUNT,
    region: REGION,
    name: 'metrics-web',
    port: 8080,
  });
  fed = new TestFederation({
    name: 'tmetrics',
    redisUrl: inject('redisUrl'),
    clusters,
    hubSettings: { disconnectedGraceMs: 1_500 },
    workerSettings: { driftIntervalMs: 60_000 },
  });
  await fed.start();
  const worker = await fed.startWorker(simulatorWorkerDeps(sim.url));
  workerPort = worker.healthPort;
  await fed.applyBinding(
    binding({
      name: 'metrics',
      clusters: { names: ['a'], labels: undefined },
      target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
    }),
  );

  // The test agent is the real publisher and aggregator; its telemetry is wired as agent.ts does.
  agent = fed.agent('a');
  agentTelemetry = startTelemetry({
    serviceName: SERVICE_NAMES.agent,
    attributes: { [ATTR_TGFED_CLUSTER_ID]: 'a' },
    env: {},
  });
  registerPublisherMetrics(agentTelemetry.meter, {
    clusterId: 'a',
    publisher: agent.publisher,
    endpoints: () => agent.sets.endpointCount,
  });
  agentHealth = await startHealthServer({
    address: '127.0.0.1:0',
    live: () => ({ ok: true, detail: {} }),
    ready: () => ({ ok: true, detail: {} }),
    metrics: agentTelemetry.metricsEndpoint,
  });

  // The scenario: N endpoints reach the group; then one address outside cluster a's CIDR.
  fed.setEndpoints('a', hosts(N));
  const want = hosts(N)
    .map((h) => `${webIp(1, h)}:8080`)
    .sort();
  await waitFor(() => JSON.stringify(registered()) === JSON.stringify(want), {
    what: `${N} targets registered`,
    timeoutMs: 20_000,
  });
  agent.upsert(
    endpointSlice({
      namespace: 'shop',
      service: 'web',
      name: 'web-2',
      endpoints: [{ ip: webIp(2, 1) }],
      ports: [{ name: 'http', port: 8080 }],
    }),
  );
  await waitFor(() => agent.publisher.stats.nacks > 0, { what: 'the NACK of the foreign address' });
});

afterAll(async () => {
  await agentHealth?.close();
  await agentTelemetry?.shutdown();
  await fed?.close();
  await sim?.close();
});

describe('Prometheus /metrics after a scripted scenario', () => {
  it('the hub reports the connected cluster, its batches, changes and the rejected address', async () => {
    const hub = await scrapeUntil(fed.hub.healthPort, 'hub series', (s) => {
      return (
        s.value('tgfed_hub_endpoints_rejected_total', {
          cluster: 'a',
          reason: 'address_not_allowed',
        }) === 1 && s.value('tgfed_hub_cluster_connected', { cluster: 'a' }) === 1
      );
    });
    expect(hub.value('tgfed_hub_cluster_connected', { cluster: 'a' })).toBe(1);
    expect(hub.value('tgfed_hub_cluster_connected', { cluster: 'b' })).toBe(0);
    expect(hub.value('tgfed_hub_cluster_stale', { cluster: 'a' })).toBe(0);
    expect(hub.value('tgfed_hub_clusters', { state: 'connected' })).toBe(1);
    expect(hub.value('tgfed_hub_cluster_endpoints', { cluster: 'a' })).toBe(N);
    expect(hub.value('tgfed_hub_cluster_endpoints', { cluster: 'b' })).toBe(0);
    // Received: the N endpoints, then the batch that carried the foreign address.
    expect(hub.value('tgfed_hub_endpoint_changes_total', { cluster: 'a' })).toBe(N + 1);
    expect(
      hub.value('tgfed_hub_batches_total', { cluster: 'a', result: 'applied' }),
    ).toBeGreaterThanOrEqual(1);
    expect(hub.value('tgfed_hub_batches_total', { cluster: 'a', result: 'rejected' })).toBe(1);
    expect(
      hub.value('tgfed_hub_endpoints_rejected_total', { cluster: 'a', reason: 'limit_exceeded' }),
    ).toBe(0);
    expect(hub.value('tgfed_hub_apply_duration_seconds_count')).toBeGreaterThanOrEqual(2);
    expect(hub.value('tgfed_hub_binding_conflicts')).toBe(0);
    // A cold start: cluster b never resynced, so deregistrations of what it feeds wait.
    expect(hub.value('tgfed_hub_recovery_in_progress')).toBe(1);
    expect(hub.value('tgfed_hub_recovery_timeouts_total')).toBe(0);
    expect(
      hub.find('target_info', {
        service_name: 'tgfed-hub',
        service_instance_id: 'tmetrics-hub',
        service_version: tgfedVersion(),
      }),
    ).toHaveLength(1);
  });

  it('the worker reports the reconciles, the AWS calls, the targets and the propagation latency', async () => {
    const worker = await scrapeUntil(
      workerPort,
      'worker series',
      (s) => s.value('tgfed_target_group_targets', { target_group: arn }) === N,
    );
    expect(
      worker.value('tgfed_targets_changed_total', { account: ACCOUNT, change: 'registered' }),
    ).toBe(N);
    expect(
      worker.value('tgfed_targets_changed_total', { account: ACCOUNT, change: 'deregistered' }),
    ).toBeUndefined();
    expect(
      worker.value('tgfed_reconciles_total', { account: ACCOUNT, outcome: 'applied' }),
    ).toBeGreaterThanOrEqual(1);
    expect(worker.value('tgfed_reconcile_duration_seconds_count', { outcome: 'applied' })).toBe(
      worker.value('tgfed_reconciles_total', { account: ACCOUNT, outcome: 'applied' }),
    );
    expect(
      worker.value('tgfed_aws_calls_total', {
        account: ACCOUNT,
        region: REGION,
        operation: 'RegisterTargets',
        result: 'ok',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      worker.value('tgfed_aws_call_duration_seconds_count', { operation: 'RegisterTargets' }),
    ).toBeGreaterThanOrEqual(1);
    expect(worker.value('tgfed_propagation_latency_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(worker.value('tgfed_propagation_latency_seconds_sum')).toBeLessThan(20);
    expect(worker.value('tgfed_target_group_capacity', { target_group: arn })).toBe(1000);
    expect(worker.value('tgfed_held_operations', { target_group: arn })).toBe(0);
    expect(
      worker.value('tgfed_aws_rate_limit_per_second', {
        account: ACCOUNT,
        region: REGION,
        class: 'mutate',
      }),
    ).toBe(4);
    for (const shard of ['0', '1', '2', '3']) {
      for (const state of ['waiting', 'active', 'delayed']) {
        expect(worker.value('tgfed_queue_jobs', { shard, state })).toBeGreaterThanOrEqual(0);
      }
      expect(worker.value('tgfed_queue_oldest_job_age_seconds', { shard })).toBeGreaterThanOrEqual(
        0,
      );
    }
    expect(worker.find('target_info', { service_name: 'tgfed-worker' })).toHaveLength(1);
  });

  it('the agent reports its stream, endpoints, batches, bytes, the NACK and ack latencies', async () => {
    const scrape = await scrapeMetrics(agentHealth.port);
    const cluster = { cluster: 'a' };
    expect(scrape.value('tgfed_agent_hub_connected', cluster)).toBe(1);
    expect(scrape.value('tgfed_agent_endpoints', cluster)).toBe(N + 1);
    expect(scrape.value('tgfed_agent_batches_sent_total', cluster)).toBe(
      agent.publisher.stats.batchesSent,
    );
    expect(scrape.value('tgfed_agent_endpoint_changes_sent_total', cluster)).toBe(N + 1);
    expect(scrape.value('tgfed_agent_bytes_sent_total', cluster)).toBeGreaterThan(0);
    expect(
      scrape.value('tgfed_agent_nacks_total', { ...cluster, reason: 'address_not_allowed' }),
    ).toBe(1);
    expect(scrape.value('tgfed_agent_resyncs_total', cluster)).toBe(1);
    expect(scrape.value('tgfed_agent_ack_latency_seconds_count', cluster)).toBeGreaterThanOrEqual(
      1,
    );
    expect(
      scrape.find('target_info', { service_name: 'tgfed-agent', tgfed_cluster_id: 'a' }),
    ).toHaveLength(1);
  });

  it('after the cluster disconnects, the hub reports it disconnected, then stale', async () => {
    await agent.publisher.close();
    fed.agents.delete('a');
    const agentScrape = await scrapeMetrics(agentHealth.port);
    expect(agentScrape.value('tgfed_agent_hub_connected', { cluster: 'a' })).toBe(0);
    const hub = await scrapeUntil(
      fed.hub.healthPort,
      'cluster a stale',
      (s) => s.value('tgfed_hub_cluster_stale', { cluster: 'a' }) === 1,
    );
    expect(hub.value('tgfed_hub_cluster_connected', { cluster: 'a' })).toBe(0);
    expect(hub.value('tgfed_hub_clusters', { state: 'connected' })).toBe(0);
    expect(hub.value('tgfed_hub_clusters', { state: 'stale' })).toBe(2);
    // Fail-static: the hub keeps a disconnected cluster's endpoints.
    expect(hub.value('tgfed_hub_cluster_endpoints', { cluster: 'a' })).toBe(N);
  });
});

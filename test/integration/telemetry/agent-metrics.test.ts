import { randomUUID } from 'node:crypto';
import { CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Agent } from '../../../agent/agent.js';
import { agentOptionsSchema } from '../../../agent/config/agent-options.js';
import { loadConfig } from '../../../shared/index.js';
import { waitFor } from '../../env/wait-for.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { scrapeMetrics } from '../../support/prometheus-text.js';
import { TestHub } from '../../support/test-hub.js';

// The real agent process object (watch → aggregate → publish) on the real kube-apiserver: its
// own telemetry, set up by agent.ts, on its health listener.

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe('Agent telemetry', () => {
  it('serves its metrics and resource on /metrics, and shuts its telemetry down with it', async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(inject('kubeconfigPath'));
    const namespace = `tm-${randomUUID().slice(0, 8)}`;
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    closers.push(() => kc.makeApiClient(CoreV1Api).deleteNamespace({ name: namespace }));
    const hub = await TestHub.start({ heartbeatIntervalMs: 500 });
    closers.push(() => hub.stop());

    const options = loadConfig(agentOptionsSchema, {
      env: {},
      flags: {
        clusterId: 'cluster-m',
        hubAddress: hub.address,
        insecure: true,
        namespaces: [namespace],
        healthAddress: '127.0.0.1:0',
        batchWindowMs: 10,
      },
    });
    const agent = new Agent(options, { kubeConfig: kc, version: 'test' });
    closers.push(() => agent.shutdown(0));
    await agent.start();
    await kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
      namespace,
      body: endpointSlice({
        namespace,
        service: 'web',
        name: 'web-1',
        endpoints: [{ ip: '10.9.0.1' }, { ip: '10.9.0.2' }, { ip: '10.9.0.3' }],
        ports: [{ name: 'http', port: 8080 }],
      }),
    });
    await waitFor(() => hub.cluster('cluster-m').get(`${namespace}/web`)?.endpoints.size === 3, {
      what: 'the hub to hold the three endpoints',
      timeoutMs: 20_000,
    });

    const scrape = await waitFor(
      async () => {
        const s = await scrapeMetrics(agent.healthPort ?? 0);
        return (s.value('tgfed_agent_ack_latency_seconds_count', { cluster: 'cluster-m' }) ?? 0) > 0
          ? s
          : undefined;
      },
      { what: 'an acked batch in the metrics' },
    );
    const cluster = { cluster: 'cluster-m' };
    expect(scrape.value('tgfed_agent_hub_connected', cluster)).toBe(1);
    expect(scrape.value('tgfed_agent_endpoints', cluster)).toBe(3);
    expect(scrape.value('tgfed_agent_endpoint_changes_sent_total', cluster)).toBe(3);
    expect(scrape.value('tgfed_agent_resyncs_total', cluster)).toBe(1);
    expect(
      scrape.find('target_info', { service_name: 'tgfed-agent', tgfed_cluster_id: 'cluster-m' }),
    ).toHaveLength(1);

    await agent.shutdown(1_000);
    expect(agent.telemetry.state).toBe('closed');
  });
});

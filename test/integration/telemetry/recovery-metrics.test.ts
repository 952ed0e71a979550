import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { waitFor } from '../../env/wait-for.js';
import { scrapeMetrics } from '../../support/prometheus-text.js';
import { TestFederation } from '../../support/test-federation.js';

// A hub cold start: deregistrations wait until every listed cluster has resynced, or the
// resync timeout passed (DESIGN.md, Safety). The hub's /metrics shows both.

let fed: TestFederation;

beforeAll(async () => {
  fed = new TestFederation({
    name: 'trecovery',
    redisUrl: inject('redisUrl'),
    clusters: [
      { id: 'a', block: 1 },
      { id: 'b', block: 2 },
    ],
    hubSettings: { resyncTimeoutMs: 3_000 },
  });
  await fed.start();
});

afterAll(async () => {
  await fed?.close();
});

describe('hub recovery metrics', () => {
  it('report the recovery in progress until the resync wait times out, and count the timeout', async () => {
    fed.agent('a');
    const during = await waitFor(
      async () => {
        const s = await scrapeMetrics(fed.hub.healthPort);
        return s.value('tgfed_hub_cluster_connected', { cluster: 'a' }) === 1 ? s : undefined;
      },
      { what: 'cluster a connected', timeoutMs: 2_500, intervalMs: 50 },
    );
    expect(during.value('tgfed_hub_recovery_in_progress')).toBe(1);
    expect(during.value('tgfed_hub_recovery_timeouts_total')).toBe(0);

    // Cluster b never connects: its wait ends by timeout, once.
    const after = await waitFor(
      async () => {
        const s = await scrapeMetrics(fed.hub.healthPort);
        return s.value('tgfed_hub_recovery_timeouts_total') === 1 ? s : undefined;
      },
      { what: 'the resync timeout of cluster b', timeoutMs: 10_000, intervalMs: 100 },
    );
    expect(after.value('tgfed_hub_recovery_in_progress')).toBe(0);
    expect(after.value('tgfed_hub_cluster_connected', { cluster: 'a' })).toBe(1);
  });
});

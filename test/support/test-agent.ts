import * as grpc from '@grpc/grpc-js';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { ServiceEndpointSets } from '../../agent/aggregate/service-endpoint-sets.js';
import { SyncPublisher, type SyncPublisherOptions } from '../../agent/publish/sync-publisher.js';
import { serviceKeyString } from '../../shared/index.js';

/** Options for {@link TestAgent}: the publisher's, with test-friendly defaults. */
export type TestAgentOptions = Partial<SyncPublisherOptions> & {
  clusterId: string;
  target: string;
};

/**
 * An agent without Kubernetes: test slices go straight into the real aggregator and the real
 * publisher, which talks to whatever hub `target` names. Close it with `publisher.close()`.
 */
export class TestAgent {
  readonly sets = new ServiceEndpointSets();
  readonly publisher: SyncPublisher;

  constructor(options: TestAgentOptions) {
    this.publisher = new SyncPublisher(this.sets, {
      agentVersion: 'test',
      credentials: grpc.credentials.createInsecure(),
      batchWindowMs: 5,
      reconnectInitialMs: 20,
      reconnectMaxMs: 200,
      heartbeatIntervalMs: 500,
      ...options,
    });
  }

  upsert(...slices: V1EndpointSlice[]): void {
    for (const slice of slices) {
      for (const change of this.sets.upsertSlice(slice, Date.now())) this.publisher.notify(change);
    }
  }

  delete(slice: V1EndpointSlice): void {
    for (const change of this.sets.deleteSlice(slice, Date.now())) this.publisher.notify(change);
  }

  /** The agent's services as `{ key: { labels, endpoints: [address, record][] } }`, sorted. */
  snapshot(filter: (key: string) => boolean = () => true): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const s of this.sets.services()) {
      const key = serviceKeyString(s.service);
      if (filter(key))
        out[key] = { labels: { ...s.labels }, endpoints: sortedEntries(s.endpoints) };
    }
    return out;
  }
}

/** Map entries sorted by key, for comparing states. */
export function sortedEntries<V>(map: ReadonlyMap<string, V>): [string, V][] {
  return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

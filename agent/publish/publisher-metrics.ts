import type { BatchObservableResult, Meter } from '@opentelemetry/api';
import { LATENCY_BUCKETS_SECONDS, MetricLabel, MetricName } from '../../shared/index.js';
import type { SyncPublisher } from './sync-publisher.js';

/** What the agent's instruments read. */
export interface PublisherMetricsSource {
  readonly clusterId: string;
  readonly publisher: SyncPublisher;
  /** Endpoints the agent holds now (the aggregator's count). */
  endpoints(): number;
}

/** `NACK_REASON_ADDRESS_NOT_ALLOWED` → `address_not_allowed`. */
function reasonLabel(reason: string): string {
  return reason.replace(/^NACK_REASON_/, '').toLowerCase();
}

/**
 * The agent's instruments (metrics contract, Agent): observable ones read the publisher's
 * counters when scraped or exported, so publishing pays nothing for them; the ack latency is
 * recorded per acked batch. Returns the function that detaches them.
 */
export function registerPublisherMetrics(meter: Meter, source: PublisherMetricsSource): () => void {
  const { publisher } = source;
  const cluster = { [MetricLabel.CLUSTER]: source.clusterId };
  const connected = meter.createObservableGauge(MetricName.AGENT_HUB_CONNECTED, {
    description: '1 while a stream to the hub is active (not standby)',
  });
  const endpoints = meter.createObservableGauge(MetricName.AGENT_ENDPOINTS, {
    description: 'Endpoints the agent currently holds',
    unit: '{endpoint}',
  });
  const batches = meter.createObservableCounter(MetricName.AGENT_BATCHES_SENT, {
    description: 'Batches sent to the hub',
    unit: '{batch}',
  });
  const changes = meter.createObservableCounter(MetricName.AGENT_ENDPOINT_CHANGES_SENT, {
    description: 'Endpoint upserts and removals sent to the hub',
    unit: '{change}',
  });
  const bytes = meter.createObservableCounter(MetricName.AGENT_BYTES_SENT, {
    description: 'Serialized bytes of every message sent to the hub',
    unit: 'By',
  });
  const nacks = meter.createObservableCounter(MetricName.AGENT_NACKS, {
    description: 'Batches the hub rejected content of, by reason',
  });
  const resyncs = meter.createObservableCounter(MetricName.AGENT_RESYNCS, {
    description: 'Resyncs: by digest after each welcome, and of services the hub asked for again',
  });
  const ackLatency = meter.createHistogram(MetricName.AGENT_ACK_LATENCY, {
    description: 'Time from sending a batch to its acknowledgement by the hub',
    unit: 's',
    advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_SECONDS] },
  });

  const observe = (result: BatchObservableResult): void => {
    const stats = publisher.stats;
    const state = publisher.state;
    result.observe(connected, state === 'resyncing' || state === 'streaming' ? 1 : 0, cluster);
    result.observe(endpoints, source.endpoints(), cluster);
    result.observe(batches, stats.batchesSent, cluster);
    result.observe(changes, stats.endpointChangesSent, cluster);
    result.observe(bytes, stats.bytesSent, cluster);
    result.observe(resyncs, stats.welcomes + stats.resyncRequests, cluster);
    for (const [reason, count] of Object.entries(stats.nacksByReason)) {
      result.observe(nacks, count, { ...cluster, [MetricLabel.REASON]: reasonLabel(reason) });
    }
  };
  const observables = [connected, endpoints, batches, changes, bytes, nacks, resyncs];
  meter.addBatchObservableCallback(observe, observables);
  const removeAckListener = publisher.onAck((latencyMs) =>
    ackLatency.record(latencyMs / 1000, cluster),
  );
  return () => {
    meter.removeBatchObservableCallback(observe, observables);
    removeAckListener();
  };
}

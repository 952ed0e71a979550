import type { BatchObservableResult, Meter } from '@opentelemetry/api';
import { LATENCY_BUCKETS_SECONDS, MetricLabel, MetricName } from '../../shared/index.js';
import type { IngestCounters } from './ingest-counters.js';

/**
 * The ingest's instruments (metrics contract, Hub): per-cluster batches, endpoint changes
 * received and rejections, read from the ingest's counters when collected, and the apply
 * duration of every batch. Returns the function that detaches them.
 */
export function registerIngestMetrics(meter: Meter, counters: IngestCounters): () => void {
  const batches = meter.createObservableCounter(MetricName.HUB_BATCHES, {
    description: 'Batches received, by cluster and whether any content was rejected',
    unit: '{batch}',
  });
  const changes = meter.createObservableCounter(MetricName.HUB_ENDPOINT_CHANGES, {
    description: 'Endpoint changes received in batches, by cluster',
    unit: '{change}',
  });
  const rejected = meter.createObservableCounter(MetricName.HUB_ENDPOINTS_REJECTED, {
    description: 'Endpoints and service changes rejected, by cluster and reason',
  });
  const applyDuration = meter.createHistogram(MetricName.HUB_APPLY_DURATION, {
    description: 'Batch received → ack sent (validated, written to Redis, reconcile enqueued)',
    unit: 's',
    advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_SECONDS] },
  });

  const observe = (result: BatchObservableResult): void => {
    for (const [clusterId, counts] of counters.byCluster) {
      const cluster = { [MetricLabel.CLUSTER]: clusterId };
      result.observe(batches, counts.batchesApplied, {
        ...cluster,
        [MetricLabel.RESULT]: 'applied',
      });
      result.observe(batches, counts.batchesRejected, {
        ...cluster,
        [MetricLabel.RESULT]: 'rejected',
      });
      result.observe(changes, counts.endpointChanges, cluster);
      for (const [reason, count] of Object.entries(counts.rejectedByReason)) {
        result.observe(rejected, count, {
          ...cluster,
          [MetricLabel.REASON]: reason,
        });
      }
    }
  };
  const observables = [batches, changes, rejected];
  meter.addBatchObservableCallback(observe, observables);
  counters.onBatchApplied = (durationMs) => applyDuration.record(durationMs / 1000);
  return () => {
    meter.removeBatchObservableCallback(observe, observables);
    counters.onBatchApplied = undefined;
  };
}

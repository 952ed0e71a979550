import type { BatchObservableResult, Meter } from '@opentelemetry/api';
import {
  LATENCY_BUCKETS_SECONDS,
  MetricLabel,
  MetricName,
  type AgentStreamRejectionReason,
} from '../../shared/index.js';
import type { IngestCounters } from './ingest-counters.js';

/** The ingest counter behind each `reason` of `tgfed_hub_agent_streams_rejected_total`. */
const STREAM_REJECTIONS: Readonly<
  Record<AgentStreamRejectionReason, (c: IngestCounters) => number>
> = {
  too_many_streams: (c) => c.streamsRefused,
  unauthenticated: (c) => c.unauthenticated,
  permission_denied: (c) => c.permissionDenied,
  malformed: (c) => c.malformedMessages,
  protocol_violation: (c) => c.protocolViolations,
  sequence: (c) => c.sequenceErrors,
  digest_mismatch: (c) => c.digestMismatches,
  heartbeat_timeout: (c) => c.heartbeatTimeouts,
};

/**
 * The ingest's instruments (metrics contract, Hub): per-cluster batches, endpoint changes
 * received and rejections, agent streams opened and refused (by reason; no cluster label, as a
 * refused stream may not have proven one), read from the ingest's counters when collected, and
 * the apply duration of every batch. Returns the function that detaches them.
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
  const streams = meter.createObservableCounter(MetricName.HUB_AGENT_STREAMS, {
    description: 'Agent streams opened on this hub replica',
    unit: '{stream}',
  });
  const streamsRejected = meter.createObservableCounter(MetricName.HUB_AGENT_STREAMS_REJECTED, {
    description: 'Agent streams ended, or batches refused, for a protocol or security reason',
  });
  const applyDuration = meter.createHistogram(MetricName.HUB_APPLY_DURATION, {
    description: 'Batch received → ack sent (validated, written to Redis, reconcile enqueued)',
    unit: 's',
    advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_SECONDS] },
  });

  const observe = (result: BatchObservableResult): void => {
    result.observe(streams, counters.streams);
    for (const [reason, count] of Object.entries(STREAM_REJECTIONS)) {
      result.observe(streamsRejected, count(counters), { [MetricLabel.REASON]: reason });
    }
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
  const observables = [batches, changes, rejected, streams, streamsRejected];
  meter.addBatchObservableCallback(observe, observables);
  counters.onBatchApplied = (durationMs) => applyDuration.record(durationMs / 1000);
  return () => {
    meter.removeBatchObservableCallback(observe, observables);
    counters.onBatchApplied = undefined;
  };
}

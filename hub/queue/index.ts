/** Reconcile queues: the hub ↔ worker contract and the ingest's BullMQ sink. */
export {
  BullMqReconcileSink,
  ReconcileEnqueueError,
  type BindingsSnapshot,
  type BullMqReconcileSinkOptions,
  type EnqueuedReconcile,
} from './bullmq-reconcile-sink.js';
export {
  MAX_TRACE_LINKS,
  OBSERVED_AT_MEMBER,
  RECONCILE_JOB_ATTEMPTS,
  RECONCILE_JOB_NAME,
  RECONCILE_QUEUE_NAME,
  ReconcileQueueOptionsError,
  compileReconcileQueueOptions,
  newReconcileJobId,
  observedAtKey,
  reconcileDeduplicationId,
  reconcileJobOptions,
  reconcileQueueAddress,
  reconcileQueueAddresses,
  reconcileQueueFor,
  reconcileShard,
  takeObservedAt,
  takeTraceLinks,
  traceLinksKey,
  type CompiledReconcileQueueOptions,
  type ReconcileQueueAddress,
  type ReconcileQueueOptions,
  type ReconcileReason,
  type ReconcileRequest,
} from './reconcile-contract.js';
export { QueueMetrics, type QueueMetricsOptions } from './queue-metrics.js';

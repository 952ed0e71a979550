/** Reconcile: workers that keep each target group's targets equal to the desired ones. */
export {
  ReconcileConsumer,
  type GroupReconciler,
  type ReconcileConsumerOptions,
  type ReconcileConsumerState,
  type ReconcileJobResult,
} from './reconcile-consumer.js';
export { ReconcileMetrics, accountOfArn } from './reconcile-metrics.js';
export {
  TargetGroupGauges,
  type TargetGroupGaugesOptions,
  type TargetGroupSummarySource,
} from './target-group-gauges.js';
export {
  chunk,
  parseTargetKey,
  planReconcile,
  type DeregistrationGuard,
  type GuardBypass,
  type PlannedTarget,
  type ReconcilePlan,
  type ReconcilePlanInput,
} from './reconcile-plan.js';
export {
  ReconcileScheduler,
  type ReconcileRequester,
  type ReconcileSchedulerOptions,
} from './reconcile-scheduler.js';
export {
  TargetGroupRecords,
  newHeldOperationId,
  type HeldDeregistration,
  type ReconcileCalls,
  type ReconcileOutcomeKind,
  type ReconcileRecord,
  type TargetGroupRecord,
  type TargetGroupSummary,
} from './target-group-records.js';
export {
  ReconcilerOptionsError,
  TargetGroupReconciler,
  compileTargetGroupReconcilerOptions,
  type AwsCallClass,
  type AwsCallLimiter,
  type CompiledTargetGroupReconcilerOptions,
  type DesiredGroupSource,
  type ReconcileContext,
  type ReconcileResult,
  type TargetGroupReconcilerOptions,
} from './target-group-reconciler.js';

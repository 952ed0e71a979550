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
  MAX_FORWARD_WEIGHT,
  countReadyTargets,
  forwardTargetGroups,
  isReadyTarget,
  planForwardWeights,
  type ForwardWeightsInput,
  type ForwardWeightsPlan,
  type PlannedForwardWeight,
} from './forward-weights.js';
export {
  ListenerWeightRecords,
  type GroupListenerWeight,
  type ListenerGroupWeight,
  type ListenerRuleState,
  type ListenerWeightErrorClass,
  type ListenerWeightOutcome,
  type ListenerWeightRecord,
} from './listener-weight-records.js';
export {
  ListenerWeightConfigurationError,
  ListenerWeightUpdater,
  listenerRuleLocation,
  weightedPoolGroups,
  type ListenerWeightResult,
  type ListenerWeightUpdaterOptions,
  type ReadyTargetSource,
  type WeightedBindingSource,
} from './listener-weight-updater.js';
export {
  LISTENER_WEIGHTS_QUEUE_NAME,
  ListenerWeights,
  type ActualTargetKeys,
  type ListenerWeightReason,
  type ListenerWeightsOptions,
  type ListenerWeightsState,
  type WeightedBindingStore,
} from './listener-weights.js';
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

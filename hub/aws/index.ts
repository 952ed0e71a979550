/** AWS: the ELBv2 calls of a reconcile, their shared rate limits and their error classes. */
export { awsTracingPlugin } from './aws-tracing-plugin.js';
export {
  InstrumentedTargetGroupApis,
  withObservedChanges,
  type AwsCallMetricsOptions,
  type RateLimitSource,
} from './aws-call-metrics.js';
export {
  AwsCallError,
  PERSISTENT_AWS_ERRORS,
  awsErrorCode,
  classifyAwsError,
  type AwsErrorClass,
} from './aws-errors.js';
export {
  AWS_OPERATION_CLASSES,
  AwsRateLimiter,
  AwsRateLimiterOptionsError,
  DEFAULT_AWS_RATE_LIMITS,
  RateLimitTimeoutError,
  compileAwsRateLimiterOptions,
  operationClassOf,
  type AcquireOptions,
  type AwsOperationClass,
  type AwsRateLimit,
  type AwsRateLimitOverride,
  type AwsRateLimitWait,
  type AwsRateLimiterOptions,
  type CompiledAwsRateLimiterOptions,
  type TryAcquireResult,
} from './aws-rate-limiter.js';
export {
  Elbv2TargetGroupClients,
  type Elbv2TargetGroupClientsOptions,
} from './elbv2-target-group-clients.js';
export {
  Elbv2ListenerRuleClients,
  ListenerRuleMissingError,
  writableAction,
  type Elbv2ClientSource,
} from './elbv2-listener-rule-clients.js';
export {
  parseListenerRuleArn,
  type ListenerRuleApi,
  type ListenerRuleApiFactory,
  type ListenerRuleLocation,
} from './listener-rule-api.js';
export {
  isPresent,
  targetHealthState,
  type ObservedTarget,
  type TargetGroupApi,
  type TargetGroupApiFactory,
  type TargetGroupLocation,
  type TargetHealthState,
  type TargetRef,
} from './target-group-api.js';

/** Hub alerts: the conditions of deploy/alerts evaluated from the hub's own state (ListAlerts). */
export {
  CidrRejectionWindow,
  type CidrRejectionWindowOptions,
  type RecentCidrRejection,
  type RejectionCounters,
} from './cidr-rejection-window.js';
export {
  HubAlertEvaluator,
  type AlertClusterSource,
  type AlertTargetGroupRecords,
  type HubAlertEvaluatorDeps,
  type HubAlertEvaluatorOptions,
} from './hub-alert-evaluator.js';
export {
  hubAlertDefinitions,
  wireSeverityOf,
  type HubAlertName,
  type HubAlertSeverity,
} from './hub-alert-definitions.js';

import { AlertSeverity } from '../../shared/index.js';

/** Severity as the Prometheus rules label it. */
export type HubAlertSeverity = 'warning' | 'critical';

/**
 * The alerts the hub evaluates itself (ListAlerts), with the name and severity of the Prometheus
 * rule in deploy/alerts/tgfed-rules.yaml that watches the same condition (a unit test keeps the
 * two in step). Rules whose data only the workers have (propagation latency, drift repairs,
 * queue depth and age, resync timeouts) are Prometheus-only.
 */
export const hubAlertDefinitions = {
  TgfedClusterDisconnected: { severity: 'warning' },
  TgfedClusterStale: { severity: 'critical' },
  TgfedReconcileFailures: { severity: 'warning' },
  TgfedAwsThrottlingSustained: { severity: 'warning' },
  TgfedAwsAccessDenied: { severity: 'critical' },
  TgfedTargetGroupNotFound: { severity: 'critical' },
  TgfedDeregistrationHeld: { severity: 'critical' },
  TgfedTargetGroupNearCapacity: { severity: 'warning' },
  TgfedTargetGroupAtCapacity: { severity: 'critical' },
  TgfedBindingConflicts: { severity: 'warning' },
  TgfedEndpointsRejectedByCidr: { severity: 'warning' },
  TgfedRecoveryInProgress: { severity: 'warning' },
} as const satisfies Record<string, { severity: HubAlertSeverity }>;

/** Name of an alert the hub evaluates. */
export type HubAlertName = keyof typeof hubAlertDefinitions;

/** The wire severity of an alert the hub evaluates. */
export function wireSeverityOf(name: HubAlertName): AlertSeverity {
  return hubAlertDefinitions[name].severity === 'critical'
    ? AlertSeverity.ALERT_SEVERITY_CRITICAL
    : AlertSeverity.ALERT_SEVERITY_WARNING;
}

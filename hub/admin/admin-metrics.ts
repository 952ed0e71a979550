import type { Meter, ObservableResult } from '@opentelemetry/api';
import { MetricLabel, MetricName, type AdminCallRejectionReason } from '../../shared/index.js';
import type { AdminCounters } from './admin-service.js';

const REJECTIONS: Readonly<Record<AdminCallRejectionReason, (c: AdminCounters) => number>> = {
  unauthenticated: (c) => c.unauthenticated,
  permission_denied: (c) => c.permissionDenied,
  invalid_argument: (c) => c.invalidArguments,
};

/**
 * `tgfed_hub_admin_calls_rejected_total{reason}` (metrics contract, Hub): admin calls refused for
 * their credentials, their role or their arguments, read from the admin API's counters when
 * collected. Returns the function that detaches it.
 */
export function registerAdminMetrics(meter: Meter, counters: AdminCounters): () => void {
  const rejected = meter.createObservableCounter(MetricName.HUB_ADMIN_CALLS_REJECTED, {
    description: 'Admin API calls refused: no or bad credentials, a missing role, bad arguments',
    unit: '{call}',
  });
  const observe = (result: ObservableResult): void => {
    for (const [reason, count] of Object.entries(REJECTIONS)) {
      result.observe(count(counters), { [MetricLabel.REASON]: reason });
    }
  };
  rejected.addCallback(observe);
  return () => rejected.removeCallback(observe);
}

import type { Meter } from '@opentelemetry/api';
import {
  LATENCY_BUCKETS_SECONDS,
  MetricLabel,
  MetricName,
  type PlacementClaimOutcome,
  type ReconcileErrorLabel,
  type ReconcileOutcomeLabel,
} from '../../shared/index.js';
import type { AwsErrorClass } from '../aws/aws-errors.js';
import type { ReconcileOutcomeKind } from './target-group-records.js';
import type { ReconcileResult } from './target-group-reconciler.js';

const OUTCOME_LABELS: Record<ReconcileOutcomeKind, ReconcileOutcomeLabel> = {
  'in-sync': 'in_sync',
  applied: 'applied',
  held: 'held',
  throttled: 'throttled',
  failed: 'failed',
};

// `unknown` errors are retried like transient ones, and alerted the same way.
const ERROR_LABELS: Record<AwsErrorClass, ReconcileErrorLabel> = {
  'access-denied': 'access_denied',
  'not-found': 'not_found',
  'quota-exceeded': 'quota_exceeded',
  'invalid-target': 'invalid_target',
  throttling: 'throttling',
  transient: 'transient',
  unknown: 'transient',
};

/** The account of an ELBv2 ARN (`arn:aws:elasticloadbalancing:<region>:<account>:…`). */
export function accountOfArn(arn: string): string {
  return arn.split(':')[4] || 'unknown';
}

/**
 * The worker's reconcile instruments (metrics contract, Worker), fed by every reconcile's
 * result: outcome counts and duration, errors by class, drift repairs and targets changed.
 * The per-group gauges are {@link TargetGroupGauges}.
 */
export class ReconcileMetrics {
  readonly #reconciles;
  readonly #duration;
  readonly #errors;
  readonly #driftRepairs;
  readonly #targetsChanged;
  readonly #claimsLost;

  constructor(meter: Meter) {
    this.#reconciles = meter.createCounter(MetricName.RECONCILES, {
      description: 'Reconciles by account and outcome',
      unit: '{reconcile}',
    });
    this.#duration = meter.createHistogram(MetricName.RECONCILE_DURATION, {
      description: 'Duration of one target group reconcile, by outcome',
      unit: 's',
      advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_SECONDS] },
    });
    this.#errors = meter.createCounter(MetricName.RECONCILE_ERRORS, {
      description: 'Reconciles that ended in an AWS error, and targets ELB refused, by class',
    });
    this.#driftRepairs = meter.createCounter(MetricName.DRIFT_REPAIRS, {
      description: 'Drift checks that found and repaired a difference',
    });
    this.#targetsChanged = meter.createCounter(MetricName.TARGETS_CHANGED, {
      description: 'Targets registered and deregistered, by account',
      unit: '{target}',
    });
    this.#claimsLost = meter.createCounter(MetricName.POOL_PLACEMENT_CLAIMS_LOST, {
      description:
        'Pool targets a resolution placed that another had claimed for another group meanwhile',
      unit: '{target}',
    });
  }

  /**
   * Records a pool resolution's placements lost to claims made meanwhile: `adopted` went to the
   * claimed group, `kept` stayed where this resolution put them (the claimed group had no room).
   */
  claimsLost(adopted: number, kept: number): void {
    const add = (n: number, outcome: PlacementClaimOutcome): void => {
      if (n > 0) this.#claimsLost.add(n, { [MetricLabel.OUTCOME]: outcome });
    };
    add(adopted, 'adopted');
    add(kept, 'kept');
  }

  /** Records one reconcile. */
  record(result: ReconcileResult): void {
    const arn = result.targetGroupArn;
    const { record } = result;
    const account = { [MetricLabel.ACCOUNT]: accountOfArn(arn) };
    const outcome = OUTCOME_LABELS[record.outcome];
    this.#reconciles.add(1, { ...account, [MetricLabel.OUTCOME]: outcome });
    this.#duration.record(record.durationMs / 1000, { [MetricLabel.OUTCOME]: outcome });
    const group = { ...account, [MetricLabel.TARGET_GROUP]: arn };
    if (record.errorClass !== undefined) {
      this.#errors.add(1, { ...group, [MetricLabel.ERROR]: ERROR_LABELS[record.errorClass] });
    }
    if (record.invalidTargets.length > 0) {
      this.#errors.add(record.invalidTargets.length, {
        ...group,
        [MetricLabel.ERROR]: 'invalid_target',
      });
    }
    if (result.driftFound > 0) this.#driftRepairs.add(1, { [MetricLabel.TARGET_GROUP]: arn });
    if (record.registered > 0) {
      this.#targetsChanged.add(record.registered, {
        ...account,
        [MetricLabel.CHANGE]: 'registered',
      });
    }
    if (record.deregistered > 0) {
      this.#targetsChanged.add(record.deregistered, {
        ...account,
        [MetricLabel.CHANGE]: 'deregistered',
      });
    }
  }
}

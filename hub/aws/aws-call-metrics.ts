import { AsyncLocalStorage } from 'node:async_hooks';
import type { BatchObservableResult, Histogram, Meter } from '@opentelemetry/api';
import {
  LATENCY_BUCKETS_SECONDS,
  MetricLabel,
  MetricName,
  type AwsCallResult,
} from '../../shared/index.js';
import { classifyAwsError } from './aws-errors.js';
import {
  AWS_OPERATION_CLASSES,
  type AwsOperationClass,
  type AwsRateLimit,
} from './aws-rate-limiter.js';
import type {
  ObservedTarget,
  TargetGroupApi,
  TargetGroupApiFactory,
  TargetGroupLocation,
  TargetRef,
} from './target-group-api.js';

/** The configured limits, for the rate-limit gauge (an `AwsRateLimiter`). */
export interface RateLimitSource {
  limitFor(account: string, region: string, cls: AwsOperationClass): AwsRateLimit;
}

/** Options of {@link InstrumentedTargetGroupApis}. */
export interface AwsCallMetricsOptions {
  /** Reports `tgfed_aws_rate_limit_per_second` for every account and region called. */
  limits?: RateLimitSource;
  /** @default Date.now */
  clock?: () => number;
}

/** What the changes applied by the current reconcile are known to carry. */
interface AppliedChanges {
  /** When an agent observed the earliest of them (agent clock, Unix ms). */
  readonly observedAtMs: number;
}

const appliedChanges = new AsyncLocalStorage<AppliedChanges>();

/**
 * Runs a reconcile with the observation time of the changes it applies: every
 * RegisterTargets / DeregisterTargets call that succeeds within it records the propagation
 * latency (agent observed the change → the AWS call that applied it returned). Without a time
 * (a reconcile not caused by endpoint changes), nothing is recorded.
 */
export function withObservedChanges<T>(
  observedAtMs: number | undefined,
  work: () => Promise<T>,
): Promise<T> {
  if (observedAtMs === undefined) return work();
  return appliedChanges.run({ observedAtMs }, work);
}

/**
 * A {@link TargetGroupApiFactory} that measures every ELBv2 call of the groups it gives:
 * `tgfed_aws_calls_total` by account, region, operation and result (`ok`, `throttled`, `error`
 * as `classifyAwsError` sees it), the call duration, throttles, the propagation latency of
 * mutating calls (see {@link withObservedChanges}) and the configured rate limits.
 */
export class InstrumentedTargetGroupApis implements TargetGroupApiFactory {
  readonly #inner: TargetGroupApiFactory;
  readonly #clock: () => number;
  readonly #calls;
  readonly #duration: Histogram;
  readonly #throttles;
  readonly #propagation: Histogram;
  /** `account\tregion` pairs called, for the rate-limit gauge. */
  readonly #seen = new Set<string>();

  constructor(inner: TargetGroupApiFactory, meter: Meter, options: AwsCallMetricsOptions = {}) {
    this.#inner = inner;
    this.#clock = options.clock ?? Date.now;
    this.#calls = meter.createCounter(MetricName.AWS_CALLS, {
      description: 'ELBv2 calls by account, region, operation and result',
      unit: '{call}',
    });
    this.#duration = meter.createHistogram(MetricName.AWS_CALL_DURATION, {
      description: 'Duration of ELBv2 calls (without the wait for rate-limit tokens)',
      unit: 's',
      advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_SECONDS] },
    });
    this.#throttles = meter.createCounter(MetricName.AWS_THROTTLES, {
      description: 'ELBv2 calls AWS throttled, by account and region',
      unit: '{call}',
    });
    this.#propagation = meter.createHistogram(MetricName.PROPAGATION_LATENCY, {
      description:
        'Agent observed an endpoint change → the RegisterTargets/DeregisterTargets call that applied it returned',
      unit: 's',
      advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_SECONDS] },
    });
    const limits = options.limits;
    if (limits !== undefined) {
      const gauge = meter.createObservableGauge(MetricName.AWS_RATE_LIMIT, {
        description: 'Configured ELBv2 call rate per account, region and operation class',
        unit: '{call}/s',
      });
      meter.addBatchObservableCallback(
        (result: BatchObservableResult) => {
          for (const pair of this.#seen) {
            const [account = '', region = ''] = pair.split('\t');
            for (const cls of AWS_OPERATION_CLASSES) {
              result.observe(gauge, limits.limitFor(account, region, cls).ratePerSecond, {
                [MetricLabel.ACCOUNT]: account,
                [MetricLabel.REGION]: region,
                [MetricLabel.CLASS]: cls,
              });
            }
          }
        },
        [gauge],
      );
    }
  }

  forGroup(location: TargetGroupLocation): TargetGroupApi {
    const api = this.#inner.forGroup(location);
    this.#seen.add(`${location.accountId}\t${location.region}`);
    return {
      describeTargetHealth: (signal?: AbortSignal): Promise<ObservedTarget[]> =>
        this.#measure(location, 'DescribeTargetHealth', () => api.describeTargetHealth(signal)),
      registerTargets: (targets: readonly TargetRef[], signal?: AbortSignal): Promise<void> =>
        this.#measure(
          location,
          'RegisterTargets',
          () => api.registerTargets(targets, signal),
          true,
        ),
      deregisterTargets: (targets: readonly TargetRef[], signal?: AbortSignal): Promise<void> =>
        this.#measure(
          location,
          'DeregisterTargets',
          () => api.deregisterTargets(targets, signal),
          true,
        ),
    };
  }

  async #measure<T>(
    location: TargetGroupLocation,
    operation: string,
    call: () => Promise<T>,
    appliesChanges = false,
  ): Promise<T> {
    const startedAtMs = this.#clock();
    let result: AwsCallResult = 'ok';
    try {
      const value = await call();
      const changes = appliedChanges.getStore();
      if (appliesChanges && changes !== undefined) {
        this.#propagation.record(Math.max(0, this.#clock() - changes.observedAtMs) / 1000);
      }
      return value;
    } catch (err) {
      result = classifyAwsError(err) === 'throttling' ? 'throttled' : 'error';
      throw err;
    } finally {
      const where = {
        [MetricLabel.ACCOUNT]: location.accountId,
        [MetricLabel.REGION]: location.region,
      };
      this.#calls.add(1, {
        ...where,
        [MetricLabel.OPERATION]: operation,
        [MetricLabel.RESULT]: result,
      });
      this.#duration.record((this.#clock() - startedAtMs) / 1000, {
        [MetricLabel.OPERATION]: operation,
      });
      if (result === 'throttled') this.#throttles.add(1, where);
    }
  }
}

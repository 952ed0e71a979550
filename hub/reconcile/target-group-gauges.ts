import type { BatchObservableResult, Meter } from '@opentelemetry/api';
import { CachedSample, MetricLabel, MetricName } from '../../shared/index.js';
import type { TargetGroupSummary } from './target-group-records.js';

/** Where the per-group gauges read (a `TargetGroupRecords`). */
export interface TargetGroupSummarySource {
  /** Every group reconciled or scheduled. */
  groups(): Promise<string[]>;
  summary(arn: string): Promise<TargetGroupSummary>;
}

/** Options of {@link TargetGroupGauges}. */
export interface TargetGroupGaugesOptions {
  /**
   * How long one reading answers scrapes (one HMGET per group).
   * @default 5000
   */
  maxAgeMs?: number;
}

interface GroupSample {
  readonly arn: string;
  readonly targets: number | undefined;
  readonly capacity: number | undefined;
  readonly held: number;
}

// The default capacity the reconcile plans with when a definition leaves it 0 (AWS's quota).
const DEFAULT_CAPACITY = 1000;

/**
 * The per-group gauges (metrics contract, Worker): targets present after the last reconcile,
 * capacity, held deregistrations. They are read from the groups' records in Redis, which every
 * reconcile's outcome updates, rather than from this worker's own outcomes: with several
 * workers each group is reconciled by whichever takes its job, and an exported gauge keeps its
 * last value, so a worker reporting its own last outcome would show a released hold as held
 * forever. Every worker reports the same latest values; rules take `max by (target_group)`.
 */
export class TargetGroupGauges {
  readonly #detach: () => void;

  constructor(
    meter: Meter,
    source: TargetGroupSummarySource,
    options: TargetGroupGaugesOptions = {},
  ) {
    const held = meter.createObservableGauge(MetricName.HELD_OPERATIONS, {
      description: 'Deregistrations held by the mass-deregistration guard (0 or 1 per group)',
      unit: '{operation}',
    });
    const targets = meter.createObservableGauge(MetricName.TARGET_GROUP_TARGETS, {
      description: 'Targets present (not draining) after the last reconcile',
      unit: '{target}',
    });
    const capacity = meter.createObservableGauge(MetricName.TARGET_GROUP_CAPACITY, {
      description: "The group's capacity (targets quota)",
      unit: '{target}',
    });
    const sample = new CachedSample(
      async () => {
        const arns = await source.groups();
        return Promise.all(
          arns.map(async (arn): Promise<GroupSample> => {
            const s = await source.summary(arn);
            const quota = s.definition?.capacity;
            return {
              arn,
              targets: s.last?.actual,
              capacity: s.definition === undefined ? undefined : quota || DEFAULT_CAPACITY,
              held: s.held !== undefined && s.held.releasedBy === undefined ? 1 : 0,
            };
          }),
        );
      },
      { maxAgeMs: options.maxAgeMs ?? 5_000 },
    );
    const observe = async (result: BatchObservableResult): Promise<void> => {
      for (const g of await sample.get()) {
        const group = { [MetricLabel.TARGET_GROUP]: g.arn };
        result.observe(held, g.held, group);
        if (g.targets !== undefined) result.observe(targets, g.targets, group);
        if (g.capacity !== undefined) result.observe(capacity, g.capacity, group);
      }
    };
    const observables = [held, targets, capacity];
    meter.addBatchObservableCallback(observe, observables);
    this.#detach = () => meter.removeBatchObservableCallback(observe, observables);
  }

  /** Stops reporting. */
  detach(): void {
    this.#detach();
  }
}

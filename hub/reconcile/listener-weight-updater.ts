import type { Action } from '@aws-sdk/client-elastic-load-balancing-v2';
import type { Binding, Logger, TargetGroup } from '../../shared/index.js';
import { silentLogger } from '../../shared/index.js';
import { AwsCallError, PERSISTENT_AWS_ERRORS } from '../aws/aws-errors.js';
import {
  DEFAULT_THROTTLE_PENALTY_MAX_MS,
  DEFAULT_THROTTLE_PENALTY_MS,
  type AwsOperationClass,
} from '../aws/aws-rate-limiter.js';
import {
  parseListenerRuleArn,
  type ListenerRuleApi,
  type ListenerRuleApiFactory,
  type ListenerRuleLocation,
} from '../aws/listener-rule-api.js';
import { planForwardWeights, type ForwardWeightsPlan } from './forward-weights.js';
import type {
  ListenerGroupWeight,
  ListenerWeightErrorClass,
  ListenerWeightOutcome,
  ListenerWeightRecord,
  ListenerWeightRecords,
} from './listener-weight-records.js';
import type { AwsCallLimiter } from './target-group-reconciler.js';

/** The bindings as the updater reads them (a `BindingStore`). */
export interface WeightedBindingSource {
  snapshot(): Promise<{ readonly revision: number; readonly bindings: readonly Binding[] }>;
}

/** Ready targets of a group, from the workers' cache of its actual targets. */
export interface ReadyTargetSource {
  readyTargets(targetGroupArn: string): Promise<number>;
}

/** Options of {@link ListenerWeightUpdater}. */
export interface ListenerWeightUpdaterOptions {
  /**
   * Least change of a pool group's share of the pool's traffic (0–1) that is worth a
   * ModifyRule call (the Modify* budget is ~3 calls/s per account, shared with every other
   * tool); a group going to or from weight 0 always is.
   * @default 0.02
   */
  minShareChange?: number;
  /**
   * How long the rule's weights are trusted without a describe while the ready counts stay the
   * same as at the last check; after it, the next update describes the rule and repairs weights
   * changed outside tgfed.
   * @default 300000
   */
  checkIntervalMs?: number;
  /**
   * How long the account's bucket stays empty after AWS throttled a call anyway; doubled for
   * each throttle of a call that took its token after the last penalty, up to
   * `throttlePenaltyMaxMs` (see `AwsRateLimiter.penalize`). @default 250
   */
  throttlePenaltyMs?: number;
  /** The longest penalty a throttling that goes on reaches. @default 8000 */
  throttlePenaltyMaxMs?: number;
  /** @default Date.now */
  clock?: () => number;
  /** @default silentLogger() */
  logger?: Logger;
}

/** The result of one update: its record, and whether a retry with backoff may help. */
export interface ListenerWeightResult {
  readonly record: ListenerWeightRecord;
  /** Throttling, transient and unknown errors: retry soon. Persistent ones wait for a change. */
  readonly retry: boolean;
}

/** The weighted pool's configuration is unusable (recorded as class `configuration`). */
export class ListenerWeightConfigurationError extends Error {
  override readonly name = 'ListenerWeightConfigurationError';
}

/** The pool groups of every binding that names the rule, in binding-name then pool order. */
export function weightedPoolGroups(bindings: readonly Binding[], ruleArn: string): TargetGroup[] {
  const groups = new Map<string, TargetGroup>();
  const naming = bindings
    .filter((b) => b.target?.$case === 'pool' && b.target.pool.listenerRuleArn === ruleArn)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const binding of naming) {
    if (binding.target?.$case !== 'pool') continue;
    for (const g of binding.target.pool.groups) if (!groups.has(g.arn)) groups.set(g.arn, g);
  }
  return [...groups.values()];
}

/**
 * Where the rule is reached from: its own account and region (from the ARN), with the role and
 * external id of the first pool group in that account and region. ALB forwards only to groups
 * of its own account (binding validation checks it), so a weighted pool always has one; if not,
 * the update fails with a configuration error rather than guess a role.
 */
export function listenerRuleLocation(
  ruleArn: string,
  groups: readonly TargetGroup[],
): ListenerRuleLocation {
  const parsed = parseListenerRuleArn(ruleArn);
  if (parsed === undefined) {
    throw new ListenerWeightConfigurationError(
      `${ruleArn} is not an ALB listener rule or listener ARN`,
    );
  }
  const group = groups.find(
    (g) =>
      (g.accountId === parsed.accountId || g.arn.split(':')[4] === parsed.accountId) &&
      (g.region === '' || g.region === parsed.region),
  );
  if (group === undefined) {
    throw new ListenerWeightConfigurationError(
      `no group of the pool is in account ${parsed.accountId} of listener rule ${ruleArn}: no role to reach it`,
    );
  }
  return {
    ruleArn,
    accountId: parsed.accountId,
    region: parsed.region,
    roleArn: group.roleArn,
    externalId: group.externalId,
  };
}

function readyKeyOf(ready: ReadonlyMap<string, number>): string {
  return [...ready].map(([arn, n]) => `${arn}=${n}`).join('\n');
}

class StopUpdate extends Error {
  override readonly name = 'StopUpdate';
  constructor(
    readonly errorClass: ListenerWeightErrorClass,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/**
 * One weights update of one listener rule (DESIGN.md, Pools): the rule's forward action weighs
 * each pool group by its ready targets. It reads the ready counts from the workers' records
 * (no AWS call); when they are the same as at the last check and the check is recent, it stops
 * there. Otherwise it describes the rule (Describe* bucket), plans with
 * {@link planForwardWeights}, and writes with ModifyRule / ModifyListener (Modify* bucket) only
 * when a share moves by more than `minShareChange` or a group goes to or from 0 — never all-zero
 * weights. Every AWS call waits for a token of the rule account's shared bucket; a throttled one
 * empties that bucket for everyone. Errors are classified like the reconcile's and recorded.
 * Callers make sure one rule is updated by one worker at a time (the weights queue's dedup).
 */
export class ListenerWeightUpdater {
  readonly #bindings: WeightedBindingSource;
  readonly #ready: ReadyTargetSource;
  readonly #rules: ListenerRuleApiFactory;
  readonly #limiter: AwsCallLimiter;
  readonly #records: ListenerWeightRecords;
  readonly #minShareChange: number;
  readonly #checkIntervalMs: number;
  readonly #throttlePenaltyMs: number;
  readonly #throttlePenaltyMaxMs: number;
  readonly #clock: () => number;
  readonly #log: Logger;

  constructor(
    deps: {
      bindings: WeightedBindingSource;
      ready: ReadyTargetSource;
      rules: ListenerRuleApiFactory;
      limiter: AwsCallLimiter;
      records: ListenerWeightRecords;
    },
    options: ListenerWeightUpdaterOptions = {},
  ) {
    this.#bindings = deps.bindings;
    this.#ready = deps.ready;
    this.#rules = deps.rules;
    this.#limiter = deps.limiter;
    this.#records = deps.records;
    const minShareChange = options.minShareChange ?? 0.02;
    if (!(minShareChange >= 0 && minShareChange <= 1)) {
      throw new RangeError(`minShareChange must be from 0 to 1, got ${minShareChange}`);
    }
    this.#minShareChange = minShareChange;
    this.#checkIntervalMs = options.checkIntervalMs ?? 300_000;
    this.#throttlePenaltyMs = options.throttlePenaltyMs ?? DEFAULT_THROTTLE_PENALTY_MS;
    this.#throttlePenaltyMaxMs = Math.max(
      this.#throttlePenaltyMs,
      options.throttlePenaltyMaxMs ?? DEFAULT_THROTTLE_PENALTY_MAX_MS,
    );
    this.#clock = options.clock ?? Date.now;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'listener-weights' });
  }

  async update(
    ruleArn: string,
    context: { reason: string; signal?: AbortSignal },
  ): Promise<ListenerWeightResult> {
    const startedAtMs = this.#clock();
    const calls = { describe: 0, modify: 0 };
    const previous = await this.#records.read(ruleArn);
    const { bindings } = await this.#bindings.snapshot();
    const pool = weightedPoolGroups(bindings, ruleArn);
    const finish = async (
      outcome: ListenerWeightOutcome,
      groups: ListenerGroupWeight[],
      extra: { missingGroups?: string[]; failure?: StopUpdate; described?: string } = {},
    ): Promise<ListenerWeightResult> => {
      const failure = extra.failure;
      const record: ListenerWeightRecord = {
        listenerRuleArn: ruleArn,
        outcome,
        reason: context.reason,
        startedAtMs,
        durationMs: this.#clock() - startedAtMs,
        calls,
        groups,
        missingGroups: extra.missingGroups ?? [],
        consecutiveFailures:
          failure === undefined ? 0 : (previous.last?.consecutiveFailures ?? 0) + 1,
        ...(failure === undefined ? {} : { errorClass: failure.errorClass, error: failure.detail }),
      };
      await this.#records.write(
        record,
        extra.described === undefined
          ? undefined
          : { readyKey: extra.described, atMs: startedAtMs },
      );
      const log =
        failure === undefined ? this.#log.debug.bind(this.#log) : this.#log.warn.bind(this.#log);
      log(
        {
          listenerRuleArn: ruleArn,
          outcome,
          reason: context.reason,
          calls,
          weights: Object.fromEntries(groups.map((g) => [g.targetGroupArn, g.weight])),
          ...(failure === undefined
            ? {}
            : { errorClass: failure.errorClass, error: failure.detail }),
        },
        'listener rule weights updated',
      );
      const retry =
        failure !== undefined &&
        failure.errorClass !== 'configuration' &&
        !PERSISTENT_AWS_ERRORS.has(failure.errorClass) &&
        failure.errorClass !== 'invalid-target';
      return { record, retry };
    };

    if (pool.length === 0) {
      // No binding names the rule any more: its former groups stop showing a weight.
      await this.#records.forgetGroups(previous.last?.groups.map((g) => g.targetGroupArn) ?? []);
      return finish('skipped', []);
    }
    const ready = new Map<string, number>();
    for (const group of pool) ready.set(group.arn, await this.#ready.readyTargets(group.arn));
    const readyKey = readyKeyOf(ready);
    const last = previous.last;
    const trusted =
      last !== undefined &&
      (last.outcome === 'applied' || last.outcome === 'unchanged' || last.outcome === 'all-zero') &&
      previous.readyKey === readyKey &&
      startedAtMs - previous.checkedAtMs < this.#checkIntervalMs;
    if (trusted) {
      return finish(
        last.outcome === 'all-zero' ? 'all-zero' : 'unchanged',
        last.groups.map((g) => ({ ...g, readyTargets: ready.get(g.targetGroupArn) ?? 0 })),
        { missingGroups: last.missingGroups },
      );
    }
    // A failed update leaves the weights as the last one knew them.
    const known = new Map(last?.groups.map((g) => [g.targetGroupArn, g.weight]) ?? []);
    const bare = pool.map((g): ListenerGroupWeight => {
      const weight = known.get(g.arn);
      const readyTargets = ready.get(g.arn) ?? 0;
      return weight === undefined
        ? { targetGroupArn: g.arn, readyTargets }
        : { targetGroupArn: g.arn, readyTargets, weight };
    });

    let location: ListenerRuleLocation;
    let api: ListenerRuleApi;
    try {
      location = listenerRuleLocation(ruleArn, pool);
      api = this.#rules.forRule(location);
    } catch (err) {
      if (!(err instanceof ListenerWeightConfigurationError)) throw err;
      return finish('failed', bare, { failure: new StopUpdate('configuration', err.message) });
    }

    let plan: ForwardWeightsPlan;
    try {
      calls.describe++;
      const operation =
        parseListenerRuleArn(ruleArn)?.kind === 'listener' ? 'DescribeListeners' : 'DescribeRules';
      const actions = await this.#call(location, 'describe', operation, context.signal, () =>
        api.describeActions(context.signal),
      );
      plan = planForwardWeights({
        actions,
        pool: pool.map((g) => g.arn),
        ready,
        minShareChange: this.#minShareChange,
      });
      if (plan.kind === 'no-forward-action') {
        throw new StopUpdate('configuration', `${ruleArn} has no forward action`);
      }
      if (plan.kind === 'no-pool-group') {
        throw new StopUpdate(
          'configuration',
          `the forward action of ${ruleArn} names none of the pool's target groups`,
        );
      }
      if (plan.missing.length > 0) {
        this.#log.warn(
          { listenerRuleArn: ruleArn, missing: plan.missing },
          'pool groups missing from the forward action get no traffic from the rule',
        );
      }
      if (plan.kind === 'modify') {
        calls.modify++;
        const modify = operation === 'DescribeListeners' ? 'ModifyListener' : 'ModifyRule';
        const write: readonly Action[] = plan.actions;
        await this.#call(location, 'modify', modify, context.signal, () =>
          api.modifyActions(write, context.signal),
        );
      }
    } catch (err) {
      if (!(err instanceof StopUpdate)) throw err;
      return finish(err.errorClass === 'throttling' ? 'throttled' : 'failed', bare, {
        failure: err,
      });
    }
    const groups = plan.weights.map((w) => ({
      targetGroupArn: w.targetGroupArn,
      readyTargets: w.readyTargets,
      weightBefore: w.weightBefore,
      weight: plan.kind === 'modify' ? w.weight : w.weightBefore,
    }));
    const outcome: ListenerWeightOutcome = plan.kind === 'modify' ? 'applied' : plan.kind;
    return finish(outcome, groups, { missingGroups: plan.missing, described: readyKey });
  }

  async #call<T>(
    location: ListenerRuleLocation,
    cls: AwsOperationClass,
    operation: string,
    signal: AbortSignal | undefined,
    call: () => Promise<T>,
  ): Promise<T> {
    await this.#limiter.acquire(location.accountId, location.region, cls, { signal });
    const tokenAtMs = this.#clock();
    try {
      return await call();
    } catch (err) {
      if (signal?.aborted === true) throw err;
      const failure = new AwsCallError(operation, err);
      if (failure.errorClass === 'throttling') {
        await this.#limiter.penalize(
          location.accountId,
          location.region,
          cls,
          this.#throttlePenaltyMs,
          {
            maxMs: this.#throttlePenaltyMaxMs,
            tokenTakenMsAgo: Math.max(0, this.#clock() - tokenAtMs),
          },
        );
      }
      throw new StopUpdate(failure.errorClass, failure.message);
    }
  }
}

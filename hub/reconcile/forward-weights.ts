import type { Action, TargetGroupTuple } from '@aws-sdk/client-elastic-load-balancing-v2';
import type { TargetHealthState } from '../aws/target-group-api.js';

/** The largest weight ELB accepts in a forward action (weights are integers 0–999). */
export const MAX_FORWARD_WEIGHT = 999;

/**
 * Whether a target takes its share of a group's traffic, as far as tgfed knows without a
 * describe: registered and not draining (`initial`, `healthy`, or `unavailable` when health
 * checks are off), and not reported unhealthy or unused by the last describe. `initial` counts:
 * the agent only sends Kubernetes-ready endpoints, so a new target is expected healthy within a
 * health-check interval, and waiting for `healthy` would take a DescribeTargetHealth per group
 * and update (or lag until the next drift check). ALB itself only routes to healthy targets
 * within a group, so the weight only has to follow the group's serving capacity.
 */
export function isReadyTarget(state: TargetHealthState): boolean {
  return state === 'initial' || state === 'healthy' || state === 'unavailable';
}

/** Ready targets among a group's cached states. */
export function countReadyTargets(states: Iterable<string>): number {
  let n = 0;
  for (const state of states) if (isReadyTarget(state as TargetHealthState)) n++;
  return n;
}

/** What {@link planForwardWeights} starts from. */
export interface ForwardWeightsInput {
  /** The rule's (or listener's default) actions as described. */
  readonly actions: readonly Action[];
  /** The pool's target group ARNs. */
  readonly pool: readonly string[];
  /** Ready targets per pool group (absent counts as 0). */
  readonly ready: ReadonlyMap<string, number>;
  /**
   * Least change of any pool group's share of the pool's traffic (0–1) worth a Modify call.
   * A group whose weight goes to or from 0 is always worth one.
   */
  readonly minShareChange: number;
}

/** One pool group of the forward action, before and after. */
export interface PlannedForwardWeight {
  readonly targetGroupArn: string;
  readonly readyTargets: number;
  readonly weightBefore: number;
  readonly weight: number;
}

/** What to do with the rule. */
export type ForwardWeightsPlan =
  | { readonly kind: 'no-forward-action' }
  | { readonly kind: 'no-pool-group'; readonly missing: string[] }
  | {
      readonly kind: 'all-zero' | 'unchanged' | 'modify';
      readonly weights: PlannedForwardWeight[];
      /** Pool groups the forward action does not name: they get no traffic from this rule. */
      readonly missing: string[];
      /** The actions to write (`modify` only): only the pool groups' weights differ. */
      readonly actions: Action[];
    };

/** The target groups of a forward action with their weights (a lone `TargetGroupArn` weighs 1). */
export function forwardTargetGroups(action: Action): TargetGroupTuple[] {
  const tuples = action.ForwardConfig?.TargetGroups;
  if (tuples !== undefined && tuples.length > 0) return tuples;
  return action.TargetGroupArn === undefined
    ? []
    : [{ TargetGroupArn: action.TargetGroupArn, Weight: 1 }];
}

/**
 * Weights for `ready` counts. With groups outside the pool in the action (a canary, a legacy
 * group) the pool keeps its current total weight, so the split between the pool and the others
 * stays as the operator set it; otherwise the pool group with the most ready targets gets 999,
 * the finest resolution ELB allows. Largest remainders keep the total exact; a group with ready
 * targets never rounds down to 0, and none exceeds 999.
 */
function scaleWeights(ready: readonly number[], keepTotal: number | undefined): number[] {
  const total = ready.reduce((a, b) => a + b, 0);
  if (total === 0) return ready.map(() => 0);
  if (keepTotal === undefined) {
    const most = Math.max(...ready);
    return ready.map((r) =>
      r === 0 ? 0 : Math.max(1, Math.round((MAX_FORWARD_WEIGHT * r) / most)),
    );
  }
  const exact = ready.map((r) => (keepTotal * r) / total);
  const weights = exact.map(Math.floor);
  let left = keepTotal - weights.reduce((a, b) => a + b, 0);
  const order = exact
    .map((x, i) => ({ i, rest: x - Math.floor(x) }))
    .sort((a, b) => b.rest - a.rest || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    weights[i] = (weights[i] ?? 0) + 1;
    left--;
  }
  return weights.map((w, i) =>
    (ready[i] ?? 0) === 0 ? 0 : Math.min(MAX_FORWARD_WEIGHT, Math.max(1, w)),
  );
}

function shares(weights: readonly number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => (total === 0 ? 0 : w / total));
}

/**
 * Plans the weights of a pool's groups in a forward action: proportional to each group's ready
 * targets, a group without ready targets at 0. Only the pool's groups change; other groups of
 * the action, the stickiness config and every other action stay as found. Nothing is written
 * when every pool group has no ready target or the action would weigh 0 in total (`all-zero`:
 * ALB would answer 503 for every request of the rule), or when no group's share of the pool
 * moves by more than `minShareChange` and no group goes to or from 0 (`unchanged`).
 */
export function planForwardWeights(input: ForwardWeightsInput): ForwardWeightsPlan {
  const index = input.actions.findIndex((a) => a.Type === 'forward');
  const forward = input.actions[index];
  if (forward === undefined) return { kind: 'no-forward-action' };
  const tuples = forwardTargetGroups(forward);
  const pool = new Set(input.pool);
  const inAction = tuples.filter(
    (t) => t.TargetGroupArn !== undefined && pool.has(t.TargetGroupArn),
  );
  const named = new Set(inAction.map((t) => t.TargetGroupArn));
  const missing = input.pool.filter((arn) => !named.has(arn));
  if (inAction.length === 0) return { kind: 'no-pool-group', missing };

  const arns = inAction.map((t) => t.TargetGroupArn as string);
  const ready = arns.map((arn) => input.ready.get(arn) ?? 0);
  const before = inAction.map((t) => t.Weight ?? 1);
  const otherWeight = tuples
    .filter((t) => !named.has(t.TargetGroupArn))
    .reduce((sum, t) => sum + (t.Weight ?? 1), 0);
  const beforeTotal = before.reduce((a, b) => a + b, 0);
  const after = scaleWeights(ready, otherWeight > 0 && beforeTotal > 0 ? beforeTotal : undefined);
  const weights = arns.map((targetGroupArn, i) => ({
    targetGroupArn,
    readyTargets: ready[i] ?? 0,
    weightBefore: before[i] ?? 0,
    weight: after[i] ?? 0,
  }));
  const afterTotal = after.reduce((a, b) => a + b, 0);
  if (afterTotal === 0 || afterTotal + otherWeight === 0) {
    return { kind: 'all-zero', weights, missing, actions: [] };
  }
  const crossesZero = weights.some((w) => (w.weight === 0) !== (w.weightBefore === 0));
  const shareBefore = shares(before);
  const shareAfter = shares(after);
  const moved = Math.max(...shareAfter.map((s, i) => Math.abs(s - (shareBefore[i] ?? 0))));
  if (!crossesZero && moved <= input.minShareChange) {
    return { kind: 'unchanged', weights, missing, actions: [] };
  }
  const weightOf = new Map(weights.map((w) => [w.targetGroupArn, w.weight]));
  const rewritten: Action = {
    ...forward,
    ForwardConfig: {
      ...forward.ForwardConfig,
      TargetGroups: tuples.map((t) => {
        const weight = t.TargetGroupArn === undefined ? undefined : weightOf.get(t.TargetGroupArn);
        return weight === undefined ? { ...t } : { ...t, Weight: weight };
      }),
    },
  };
  const actions = input.actions.map((a, i) => (i === index ? rewritten : a));
  return { kind: 'modify', weights, missing, actions };
}

import { randomBytes } from 'node:crypto';

/** The account and region a call is made as. */
export interface ListenerCaller {
  account: string;
  region: string;
}

/** Builds the AWS error a call fails with (the simulator's `Elbv2SimulatorError`). */
export type SimulatedErrorFactory = (code: string, message: string) => Error;

/** A target group of a forward action with its weight (ELB: an integer 0–999, default 1). */
export interface SimulatedForwardTarget {
  targetGroupArn: string;
  weight?: number;
}

/** TargetGroupStickinessConfig of a forward action. */
export interface SimulatedStickiness {
  enabled: boolean;
  /** 1–604800 seconds; required when enabled. */
  durationSeconds?: number;
}

/** An ALB listener or rule action; the simulator models `forward` and `fixed-response`. */
export interface SimulatedAction {
  type: 'forward' | 'fixed-response';
  order?: number;
  /** A forward to one group (as DescribeRules also reports a single-group ForwardConfig). */
  targetGroupArn?: string;
  forwardConfig?: { targetGroups: SimulatedForwardTarget[]; stickiness?: SimulatedStickiness };
  fixedResponse?: { statusCode: string; contentType?: string; messageBody?: string };
}

/** A listener rule as DescribeRules reports it. */
export interface SimulatedRule {
  ruleArn: string;
  listenerArn: string;
  /** `default` for the listener's default rule. */
  priority: string;
  isDefault: boolean;
  actions: SimulatedAction[];
}

/** A listener as DescribeListeners reports it. */
export interface SimulatedListener {
  listenerArn: string;
  loadBalancerArn: string;
  port: number;
  protocol: string;
  defaultActions: SimulatedAction[];
}

/** A listener to create with {@link SimulatedListeners.createListener} (its ALB comes with it). */
export interface ListenerSpec {
  account: string;
  region: string;
  /** @default a made-up `sim-<hex>` */
  loadBalancerName?: string;
  /** @default 80 */
  port?: number;
  /** @default 'HTTP' */
  protocol?: 'HTTP' | 'HTTPS';
  defaultActions: SimulatedAction[];
}

/** A rule to create with {@link SimulatedListeners.createRule}. */
export interface RuleSpec {
  listenerArn: string;
  /** 1–50000, unique per listener. */
  priority: number;
  actions: SimulatedAction[];
}

/** AWS's limits of a forward action. */
export const MAX_FORWARD_TARGET_GROUPS = 5;
export const MAX_FORWARD_WEIGHT = 999;
const MAX_STICKINESS_SECONDS = 604_800;

interface ListenerRecord {
  arn: string;
  account: string;
  region: string;
  loadBalancerArn: string;
  port: number;
  protocol: string;
  defaultRuleArn: string;
}

interface RuleRecord {
  arn: string;
  listenerArn: string;
  priority: string;
  isDefault: boolean;
  actions: SimulatedAction[];
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

function copyAction(action: SimulatedAction): SimulatedAction {
  return structuredClone(action);
}

/**
 * ALB listeners and rules of the ELBv2 simulator, as far as a pool's weighted forward action
 * needs them: listeners (each with its own load balancer and default rule) and rules created by
 * tests, DescribeListeners / DescribeRules, and ModifyListener / ModifyRule with AWS's checks of
 * forward actions: 1–5 target groups that exist in the caller's account and region, no group
 * twice, integer weights 0–999, a stickiness duration of 1–604800 s when enabled, and a
 * `TargetGroupArn` next to a `ForwardConfig` only when that names the same single group.
 * Forward actions are stored as AWS reports them: always with a `ForwardConfig` (weight 1 and
 * stickiness off by default), plus `TargetGroupArn` when they name one group.
 */
export class SimulatedListeners {
  readonly #listeners = new Map<string, ListenerRecord>();
  readonly #rules = new Map<string, RuleRecord>();
  readonly #groupVisible: (caller: ListenerCaller, arn: string) => boolean;
  readonly #fail: SimulatedErrorFactory;

  /**
   * @param groupVisible whether a target group exists in the caller's account and region
   * @param fail builds the error of a refused call
   */
  constructor(
    groupVisible: (caller: ListenerCaller, arn: string) => boolean,
    fail: SimulatedErrorFactory,
  ) {
    this.#groupVisible = groupVisible;
    this.#fail = fail;
  }

  #validation(message: string): Error {
    return this.#fail('ValidationError', message);
  }

  // ---- Setup and inspection (tests) ----

  /** Creates an ALB with one listener; returns the listener's ARN. */
  createListener(spec: ListenerSpec): string {
    const caller = { account: spec.account, region: spec.region };
    const name = spec.loadBalancerName ?? `sim-${hex(4)}`;
    if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/.test(name)) {
      throw this.#validation(`Load balancer name '${name}' is not valid`);
    }
    const base = `arn:aws:elasticloadbalancing:${spec.region}:${spec.account}`;
    const lbId = hex(8);
    const listenerId = hex(8);
    const arn = `${base}:listener/app/${name}/${lbId}/${listenerId}`;
    const defaultRuleArn = `${base}:listener-rule/app/${name}/${lbId}/${listenerId}/${hex(8)}`;
    const actions = this.#checkActions(caller, spec.defaultActions, 'DefaultActions');
    this.#listeners.set(arn, {
      arn,
      account: spec.account,
      region: spec.region,
      loadBalancerArn: `${base}:loadbalancer/app/${name}/${lbId}`,
      port: spec.port ?? 80,
      protocol: spec.protocol ?? 'HTTP',
      defaultRuleArn,
    });
    this.#rules.set(defaultRuleArn, {
      arn: defaultRuleArn,
      listenerArn: arn,
      priority: 'default',
      isDefault: true,
      actions,
    });
    return arn;
  }

  /** Adds a rule to a listener; returns the rule's ARN. */
  createRule(spec: RuleSpec): string {
    const listener = this.#listeners.get(spec.listenerArn);
    if (listener === undefined) {
      throw this.#fail('ListenerNotFound', `Listener '${spec.listenerArn}' not found`);
    }
    if (!Number.isInteger(spec.priority) || spec.priority < 1 || spec.priority > 50_000) {
      throw this.#validation(`Priority ${spec.priority} must be from 1 to 50000`);
    }
    for (const rule of this.#rules.values()) {
      if (rule.listenerArn === listener.arn && rule.priority === String(spec.priority)) {
        throw this.#fail('PriorityInUse', `Priority '${spec.priority}' is currently in use`);
      }
    }
    const caller = { account: listener.account, region: listener.region };
    const actions = this.#checkActions(caller, spec.actions, 'Actions');
    const arn = `${listener.arn.replace(':listener/', ':listener-rule/')}/${hex(8)}`;
    this.#rules.set(arn, {
      arn,
      listenerArn: listener.arn,
      priority: String(spec.priority),
      isDefault: false,
      actions,
    });
    return arn;
  }

  /** A rule as DescribeRules would report it, without a call. */
  rule(ruleArn: string): SimulatedRule {
    const rule = this.#rules.get(ruleArn);
    if (rule === undefined) throw this.#fail('RuleNotFound', `Rule '${ruleArn}' not found`);
    return this.#describeRule(rule);
  }

  /** A listener as DescribeListeners would report it, without a call. */
  listener(listenerArn: string): SimulatedListener {
    const listener = this.#listeners.get(listenerArn);
    if (listener === undefined) {
      throw this.#fail('ListenerNotFound', `Listener '${listenerArn}' not found`);
    }
    return this.#describeListener(listener);
  }

  /** The weights of a rule's (or a listener's default) forward action, by target group ARN. */
  weights(arn: string): Record<string, number> {
    const actions = this.#listeners.has(arn)
      ? this.listener(arn).defaultActions
      : this.rule(arn).actions;
    const forward = actions.find((a) => a.type === 'forward');
    return Object.fromEntries(
      (forward?.forwardConfig?.targetGroups ?? []).map((t) => [t.targetGroupArn, t.weight ?? 1]),
    );
  }

  // ---- The API ----

  describeRules(
    caller: ListenerCaller,
    query: { ruleArns?: string[]; listenerArn?: string },
  ): SimulatedRule[] {
    const arns = query.ruleArns ?? [];
    if (arns.length > 0 && query.listenerArn !== undefined) {
      throw this.#validation(
        'Listener rule ARNs and a listener ARN cannot be specified at the same time',
      );
    }
    if (query.listenerArn !== undefined) {
      const listener = this.#visibleListener(caller, query.listenerArn);
      return [...this.#rules.values()]
        .filter((r) => r.listenerArn === listener.arn)
        .map((r) => this.#describeRule(r));
    }
    if (arns.length === 0) {
      throw this.#validation('You must specify either listener rule ARNs or a listener ARN');
    }
    return arns.map((arn) => this.#describeRule(this.#visibleRule(caller, arn)));
  }

  describeListeners(
    caller: ListenerCaller,
    query: { listenerArns?: string[]; loadBalancerArn?: string },
  ): SimulatedListener[] {
    const arns = query.listenerArns ?? [];
    if (arns.length > 0 && query.loadBalancerArn !== undefined) {
      throw this.#validation(
        'Listener ARNs and a load balancer ARN cannot be specified at the same time',
      );
    }
    if (query.loadBalancerArn !== undefined) {
      const found = [...this.#listeners.values()].filter(
        (l) =>
          l.loadBalancerArn === query.loadBalancerArn &&
          l.account === caller.account &&
          l.region === caller.region,
      );
      if (found.length === 0) {
        throw this.#fail(
          'LoadBalancerNotFound',
          `Load balancer '${query.loadBalancerArn}' not found`,
        );
      }
      return found.map((l) => this.#describeListener(l));
    }
    if (arns.length === 0) {
      throw this.#validation('You must specify either listener ARNs or a load balancer ARN');
    }
    return arns.map((arn) => this.#describeListener(this.#visibleListener(caller, arn)));
  }

  modifyRule(
    caller: ListenerCaller,
    request: { ruleArn: string; actions?: SimulatedAction[] },
  ): SimulatedRule {
    const rule = this.#visibleRule(caller, request.ruleArn);
    if (rule.isDefault) {
      throw this.#fail(
        'OperationNotPermitted',
        'Default rules cannot be modified; modify the listener instead',
      );
    }
    if (request.actions === undefined || request.actions.length === 0) {
      throw this.#validation('Either conditions or actions must be specified');
    }
    rule.actions = this.#checkActions(caller, request.actions, 'Actions');
    return this.#describeRule(rule);
  }

  modifyListener(
    caller: ListenerCaller,
    request: { listenerArn: string; defaultActions?: SimulatedAction[] },
  ): SimulatedListener {
    const listener = this.#visibleListener(caller, request.listenerArn);
    if (request.defaultActions !== undefined && request.defaultActions.length > 0) {
      const rule = this.#rules.get(listener.defaultRuleArn);
      if (rule !== undefined) {
        rule.actions = this.#checkActions(caller, request.defaultActions, 'DefaultActions');
      }
    }
    return this.#describeListener(listener);
  }

  // ---- Internals ----

  #visibleRule(caller: ListenerCaller, arn: string): RuleRecord {
    const rule = this.#rules.get(arn);
    const listener = rule === undefined ? undefined : this.#listeners.get(rule.listenerArn);
    if (
      rule === undefined ||
      listener === undefined ||
      listener.account !== caller.account ||
      listener.region !== caller.region
    ) {
      throw this.#fail('RuleNotFound', 'One or more rules not found');
    }
    return rule;
  }

  #visibleListener(caller: ListenerCaller, arn: string): ListenerRecord {
    const listener = this.#listeners.get(arn);
    if (
      listener === undefined ||
      listener.account !== caller.account ||
      listener.region !== caller.region
    ) {
      throw this.#fail('ListenerNotFound', 'One or more listeners not found');
    }
    return listener;
  }

  #describeRule(rule: RuleRecord): SimulatedRule {
    return {
      ruleArn: rule.arn,
      listenerArn: rule.listenerArn,
      priority: rule.priority,
      isDefault: rule.isDefault,
      actions: rule.actions.map(describeAction),
    };
  }

  #describeListener(listener: ListenerRecord): SimulatedListener {
    return {
      listenerArn: listener.arn,
      loadBalancerArn: listener.loadBalancerArn,
      port: listener.port,
      protocol: listener.protocol,
      defaultActions: (this.#rules.get(listener.defaultRuleArn)?.actions ?? []).map(describeAction),
    };
  }

  /** Validates actions as ELB does and returns them normalized (a forward as a ForwardConfig). */
  #checkActions(
    caller: ListenerCaller,
    actions: SimulatedAction[],
    field: string,
  ): SimulatedAction[] {
    if (actions.length === 0) throw this.#validation(`${field} must contain at least one action`);
    const forwards = actions.filter((a) => a.type === 'forward');
    if (forwards.length > 1)
      throw this.#validation(`${field} can contain at most one forward action`);
    return actions.map((action, i) => {
      const path = `${field}.member.${i + 1}`;
      if (action.type === 'fixed-response') {
        if (
          action.fixedResponse === undefined ||
          !/^[2-5]\d\d$/.test(action.fixedResponse.statusCode)
        ) {
          throw this.#validation(
            `${path}.FixedResponseConfig.StatusCode must be a 2XX, 4XX or 5XX code`,
          );
        }
        return copyAction(action);
      }
      if (action.type !== 'forward') {
        throw this.#validation(
          `${path}.Type '${String(action.type)}' is not supported by the simulator`,
        );
      }
      let targets = action.forwardConfig?.targetGroups;
      if (targets === undefined || targets.length === 0) {
        if (action.targetGroupArn === undefined) {
          throw this.#validation(
            `${path}: a forward action needs a TargetGroupArn or a ForwardConfig`,
          );
        }
        targets = [{ targetGroupArn: action.targetGroupArn }];
      } else if (
        action.targetGroupArn !== undefined &&
        (targets.length !== 1 || targets[0]?.targetGroupArn !== action.targetGroupArn)
      ) {
        throw this.#validation(
          `${path}: with both TargetGroupArn and ForwardConfig, ForwardConfig must name exactly that one target group`,
        );
      }
      if (targets.length > MAX_FORWARD_TARGET_GROUPS) {
        // A constraint of the request (TooManyTargetGroups is the account-wide quota).
        throw this.#validation(
          `${path}.ForwardConfig.TargetGroups: a forward action can have at most ${MAX_FORWARD_TARGET_GROUPS} target groups, got ${targets.length}`,
        );
      }
      const seen = new Set<string>();
      const normalized = targets.map((t, j) => {
        const weight = t.weight ?? 1;
        if (!Number.isInteger(weight) || weight < 0 || weight > MAX_FORWARD_WEIGHT) {
          throw this.#validation(
            `${path}.ForwardConfig.TargetGroups.member.${j + 1}.Weight must be an integer from 0 to ${MAX_FORWARD_WEIGHT}, got ${weight}`,
          );
        }
        if (seen.has(t.targetGroupArn)) {
          throw this.#validation(
            `Target group '${t.targetGroupArn}' is named twice in one forward action`,
          );
        }
        seen.add(t.targetGroupArn);
        if (!this.#groupVisible(caller, t.targetGroupArn)) {
          throw this.#fail('TargetGroupNotFound', `Target group '${t.targetGroupArn}' not found`);
        }
        return { targetGroupArn: t.targetGroupArn, weight };
      });
      const stickiness = action.forwardConfig?.stickiness ?? { enabled: false };
      if (stickiness.enabled) {
        const seconds = stickiness.durationSeconds;
        if (
          seconds === undefined ||
          !Number.isInteger(seconds) ||
          seconds < 1 ||
          seconds > MAX_STICKINESS_SECONDS
        ) {
          throw this.#validation(
            `${path}.ForwardConfig.TargetGroupStickinessConfig.DurationSeconds must be from 1 to ${MAX_STICKINESS_SECONDS} when stickiness is enabled`,
          );
        }
      }
      const stored: SimulatedAction = {
        type: 'forward',
        forwardConfig: { targetGroups: normalized, stickiness: { ...stickiness } },
      };
      if (action.order !== undefined) stored.order = action.order;
      return stored;
    });
  }
}

/** An action as Describe* report it: a one-group forward also carries `TargetGroupArn`. */
function describeAction(action: SimulatedAction): SimulatedAction {
  const copy = copyAction(action);
  const groups = copy.forwardConfig?.targetGroups ?? [];
  if (copy.type === 'forward' && groups.length === 1)
    copy.targetGroupArn = groups[0]?.targetGroupArn;
  return copy;
}

import type { Action } from '@aws-sdk/client-elastic-load-balancing-v2';

/**
 * The narrow view of ELBv2 that keeps a pool's weighted forward action: the actions of one ALB
 * listener rule, or of a listener's default rule. Actions are the SDK's `Action` shape, so a
 * rule's other actions (authenticate-oidc before the forward, say) go back exactly as found.
 */

/** Where a listener rule lives and how to reach it. */
export interface ListenerRuleLocation {
  /** A listener rule ARN (`listener-rule/app/…`) or a listener ARN (its default actions). */
  readonly ruleArn: string;
  readonly accountId: string;
  readonly region: string;
  /** Role to assume; '' uses the worker's own credentials. */
  readonly roleArn: string;
  readonly externalId: string;
}

/** One rule's (or listener's default) actions. Errors are the SDK's, unclassified. */
export interface ListenerRuleApi {
  /** DescribeRules (or DescribeListeners for a listener ARN): the actions in force. */
  describeActions(signal?: AbortSignal): Promise<Action[]>;
  /** ModifyRule (or ModifyListener's DefaultActions): replaces every action. */
  modifyActions(actions: readonly Action[], signal?: AbortSignal): Promise<void>;
}

/** Gives the API of a rule at its location (clients cached per role and region). */
export interface ListenerRuleApiFactory {
  forRule(location: ListenerRuleLocation): ListenerRuleApi;
}

const RULE_ARN =
  /^arn:aws(?:-[a-z]+)*:elasticloadbalancing:([a-z0-9-]+):(\d{12}):(listener-rule|listener)\/app\//;

/** The parts of a listener rule or listener ARN; undefined for anything else. */
export function parseListenerRuleArn(
  arn: string,
): { region: string; accountId: string; kind: 'rule' | 'listener' } | undefined {
  const m = RULE_ARN.exec(arn);
  if (m === null) return undefined;
  return {
    region: m[1] ?? '',
    accountId: m[2] ?? '',
    kind: m[3] === 'listener-rule' ? 'rule' : 'listener',
  };
}

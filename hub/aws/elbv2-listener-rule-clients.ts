import type { ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import {
  DescribeListenersCommand,
  DescribeRulesCommand,
  ModifyListenerCommand,
  ModifyRuleCommand,
  type Action,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import {
  parseListenerRuleArn,
  type ListenerRuleApi,
  type ListenerRuleApiFactory,
  type ListenerRuleLocation,
} from './listener-rule-api.js';

/**
 * A rule or listener the describe call did not return (AWS itself answers NotFound). `Code` is
 * the AWS error code it stands for, so the error classes treat it as `not-found`.
 */
export class ListenerRuleMissingError extends Error {
  override readonly name = 'ListenerRuleMissingError';
  readonly Code: 'RuleNotFound' | 'ListenerNotFound';

  constructor(kind: 'rule' | 'listener', arn: string) {
    super(`${kind === 'rule' ? 'listener rule' : 'listener'} ${arn} not found`);
    this.Code = kind === 'rule' ? 'RuleNotFound' : 'ListenerNotFound';
  }
}

/**
 * What ModifyRule / ModifyListener accept of an action as DescribeRules returned it. An
 * authenticate-oidc action comes back without its client secret: `UseExistingClientSecret`
 * keeps the stored one. A forward action with several groups is sent by `ForwardConfig` only
 * (AWS rejects a `TargetGroupArn` next to a multi-group `ForwardConfig`).
 */
export function writableAction(action: Action): Action {
  const copy: Action = { ...action };
  if (
    copy.AuthenticateOidcConfig !== undefined &&
    copy.AuthenticateOidcConfig.ClientSecret === undefined
  ) {
    copy.AuthenticateOidcConfig = { ...copy.AuthenticateOidcConfig, UseExistingClientSecret: true };
  }
  if (copy.Type === 'forward' && copy.ForwardConfig?.TargetGroups !== undefined) {
    delete copy.TargetGroupArn;
  }
  return copy;
}

class Elbv2ListenerRule implements ListenerRuleApi {
  constructor(
    private readonly client: ElasticLoadBalancingV2Client,
    private readonly arn: string,
    private readonly kind: 'rule' | 'listener',
  ) {}

  async describeActions(signal?: AbortSignal): Promise<Action[]> {
    if (this.kind === 'listener') {
      const out = await this.client.send(
        new DescribeListenersCommand({ ListenerArns: [this.arn] }),
        { abortSignal: signal },
      );
      const listener = out.Listeners?.find((l) => l.ListenerArn === this.arn);
      if (listener === undefined) throw new ListenerRuleMissingError('listener', this.arn);
      return listener.DefaultActions ?? [];
    }
    const out = await this.client.send(new DescribeRulesCommand({ RuleArns: [this.arn] }), {
      abortSignal: signal,
    });
    const rule = out.Rules?.find((r) => r.RuleArn === this.arn);
    if (rule === undefined) throw new ListenerRuleMissingError('rule', this.arn);
    return rule.Actions ?? [];
  }

  async modifyActions(actions: readonly Action[], signal?: AbortSignal): Promise<void> {
    const writable = actions.map(writableAction);
    if (this.kind === 'listener') {
      await this.client.send(
        new ModifyListenerCommand({ ListenerArn: this.arn, DefaultActions: writable }),
        { abortSignal: signal },
      );
      return;
    }
    await this.client.send(new ModifyRuleCommand({ RuleArn: this.arn, Actions: writable }), {
      abortSignal: signal,
    });
  }
}

/** Where the ELBv2 clients come from (an `Elbv2TargetGroupClients`, which caches them). */
export interface Elbv2ClientSource {
  clientFor(
    location: Pick<ListenerRuleLocation, 'roleArn' | 'externalId' | 'region'>,
  ): ElasticLoadBalancingV2Client;
}

/**
 * The listener rule API on the SDK, through the same cached clients (and assumed-role
 * credentials) as the target group calls of the same role and region.
 */
export class Elbv2ListenerRuleClients implements ListenerRuleApiFactory {
  readonly #clients: Elbv2ClientSource;

  constructor(clients: Elbv2ClientSource) {
    this.#clients = clients;
  }

  forRule(location: ListenerRuleLocation): ListenerRuleApi {
    const parsed = parseListenerRuleArn(location.ruleArn);
    if (parsed === undefined) throw new TypeError(`not a listener rule ARN: ${location.ruleArn}`);
    return new Elbv2ListenerRule(this.#clients.clientFor(location), location.ruleArn, parsed.kind);
  }
}

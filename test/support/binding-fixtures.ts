import { Binding, LabelSelectorOperator, type TargetGroup } from '../../shared/index.js';

export const ACCOUNT = '111111111111';
export const REGION = 'eu-west-1';

/** A valid target group ARN with a distinct name and id per `n`. */
export function targetGroupArn(n = 0, region = REGION, account = ACCOUNT): string {
  return `arn:aws:elasticloadbalancing:${region}:${account}:targetgroup/web-${n}/${n.toString(16).padStart(16, '0')}`;
}

export function targetGroup(overrides: Partial<TargetGroup> = {}): TargetGroup {
  return {
    arn: targetGroupArn(),
    accountId: '',
    region: '',
    roleArn: `arn:aws:iam::${ACCOUNT}:role/tgfed`,
    externalId: 'tgfed-ext',
    targetType: '',
    capacity: 0,
    availabilityZone: '',
    ...overrides,
  };
}

/** A valid single-group binding; `overrides` replace whole top-level fields. */
export function binding(overrides: Partial<Binding> = {}): Binding {
  return Binding.fromPartial({
    name: 'web',
    services: { namespace: 'shop', name: 'web' },
    port: { port: { $case: 'name', name: 'http' } },
    clusters: {
      names: [],
      labels: {
        matchLabels: { env: 'prod' },
        matchExpressions: [
          {
            key: 'region',
            operator: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_IN,
            values: ['eu'],
          },
        ],
      },
    },
    target: { $case: 'targetGroup', targetGroup: targetGroup() },
    ...overrides,
  });
}

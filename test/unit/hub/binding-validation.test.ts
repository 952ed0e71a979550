import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LabelSelectorOperator, type Binding, type TargetGroup } from '../../../shared/index.js';
import {
  DEFAULT_TARGET_GROUP_CAPACITY,
  formatFieldPath,
  validateBinding,
} from '../../../hub/federation/binding-validation.js';
import {
  ACCOUNT,
  REGION,
  binding,
  targetGroup,
  targetGroupArn,
} from '../../support/binding-fixtures.js';

/** The violations of a binding as `field: description` pairs' fields. */
function fieldsOf(b: Binding): string[] {
  const result = validateBinding(b);
  return result.ok ? [] : result.violations.map((v) => v.field);
}

function withGroup(overrides: Partial<TargetGroup>): Binding {
  return binding({ target: { $case: 'targetGroup', targetGroup: targetGroup(overrides) } });
}

function pool(groups: TargetGroup[], listenerRuleArn = ''): Binding {
  return binding({ target: { $case: 'pool', pool: { groups, listenerRuleArn } } });
}

describe('validateBinding', () => {
  it('accepts a valid binding and fills the defaults', () => {
    const result = validateBinding(binding());
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const target = result.binding.target;
    expect(target.$case).toBe('targetGroup');
    if (target.$case !== 'targetGroup') return;
    expect(target.targetGroup).toMatchObject({
      region: REGION,
      accountId: ACCOUNT,
      targetType: 'ip',
      capacity: DEFAULT_TARGET_GROUP_CAPACITY,
    });
    expect(result.binding.policy).toEqual({ includeNotReady: false, keepTerminating: false });
  });

  it('fills empty clusters and policy so that consumers need no undefined checks', () => {
    const result = validateBinding(binding({ clusters: undefined, policy: undefined }));
    expect(result.ok && result.binding.clusters).toEqual({ names: [], labels: undefined });
  });

  it('sorts match labels and drops an empty label selector', () => {
    const result = validateBinding(
      binding({
        services: {
          namespace: 'shop',
          name: '',
          labels: { matchLabels: { b: '2', a: '1' }, matchExpressions: [] },
        },
        clusters: { names: ['c1'], labels: { matchLabels: {}, matchExpressions: [] } },
      }),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(Object.keys(result.binding.services.labels?.matchLabels ?? {})).toEqual(['a', 'b']);
    // An empty selector means "every cluster" to Kubernetes: next to names it would widen them.
    expect(result.binding.clusters.labels).toBeUndefined();
  });

  it.each([
    ['', 'required'],
    ['Web', 'DNS label'],
    ['-web', 'DNS label'],
    ['web_1', 'DNS label'],
    ['a'.repeat(64), '63'],
  ])('rejects the name %j', (name, description) => {
    const result = validateBinding(binding({ name }));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.violations).toEqual([
      { field: 'name', description: expect.stringContaining(description) as unknown },
    ]);
  });

  it('accepts a 63-character name', () => {
    expect(fieldsOf(binding({ name: 'a'.repeat(63) }))).toEqual([]);
  });

  it('requires a service selector that selects something', () => {
    expect(fieldsOf(binding({ services: undefined }))).toEqual(['services']);
    expect(fieldsOf(binding({ services: { namespace: '', name: '', labels: undefined } }))).toEqual(
      ['services'],
    );
  });

  it('accepts services selected by namespace only, name only or labels only', () => {
    expect(fieldsOf(binding({ services: { namespace: 'shop', name: '' } }))).toEqual([]);
    expect(fieldsOf(binding({ services: { namespace: '', name: 'web' } }))).toEqual([]);
    expect(
      fieldsOf(
        binding({
          services: {
            namespace: '',
            name: '',
            labels: { matchLabels: { 'app.kubernetes.io/name': 'web' }, matchExpressions: [] },
          },
        }),
      ),
    ).toEqual([]);
  });

  it('checks namespace, service name and label keys and values', () => {
    expect(
      fieldsOf(
        binding({
          services: {
            namespace: 'Shop',
            name: '1web',
            labels: {
              matchLabels: { 'bad key!': 'v', ok: 'bad value!' },
              matchExpressions: [],
            },
          },
        }),
      ),
    ).toEqual([
      'services.namespace',
      'services.name',
      'services.labels.matchLabels["bad key!"]',
      'services.labels.matchLabels.ok',
    ]);
  });

  it('checks label selector operators and their values', () => {
    const { IN, NOT_IN, EXISTS, DOES_NOT_EXIST, UNSPECIFIED } = {
      IN: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_IN,
      NOT_IN: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_NOT_IN,
      EXISTS: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_EXISTS,
      DOES_NOT_EXIST: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_DOES_NOT_EXIST,
      UNSPECIFIED: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_UNSPECIFIED,
    };
    const b = binding({
      services: {
        namespace: 'shop',
        name: '',
        labels: {
          matchLabels: {},
          matchExpressions: [
            { key: 'a', operator: IN, values: ['x'] },
            { key: 'b', operator: IN, values: [] },
            { key: 'c', operator: NOT_IN, values: [] },
            { key: 'd', operator: EXISTS, values: ['x'] },
            { key: 'e', operator: DOES_NOT_EXIST, values: ['x'] },
            { key: 'f', operator: UNSPECIFIED, values: [] },
            { key: 'g', operator: EXISTS, values: [] },
          ],
        },
      },
    });
    expect(fieldsOf(b)).toEqual([
      'services.labels.matchExpressions[1].values',
      'services.labels.matchExpressions[2].values',
      'services.labels.matchExpressions[3].values',
      'services.labels.matchExpressions[4].values',
      'services.labels.matchExpressions[5].operator',
    ]);
  });

  it('requires a port and checks names and numbers', () => {
    expect(fieldsOf(binding({ port: undefined }))).toEqual(['port']);
    expect(fieldsOf(binding({ port: {} }))).toEqual(['port']);
    for (const number of [0, 65536, 1.5]) {
      expect(fieldsOf(binding({ port: { port: { $case: 'number', number } } }))).toEqual([
        'port.number',
      ]);
    }
    for (const number of [1, 443, 65535]) {
      expect(fieldsOf(binding({ port: { port: { $case: 'number', number } } }))).toEqual([]);
    }
    for (const name of ['', 'HTTP', '8080', 'a--b', '-http', 'a-very-long-port-name']) {
      expect(fieldsOf(binding({ port: { port: { $case: 'name', name } } })), name).toEqual([
        'port.name',
      ]);
    }
    for (const name of ['http', 'grpc-web', 'h2c', 'x1']) {
      expect(fieldsOf(binding({ port: { port: { $case: 'name', name } } })), name).toEqual([]);
    }
  });

  it('checks cluster names as cluster ids and cluster label selectors', () => {
    expect(
      fieldsOf(
        binding({
          clusters: {
            names: ['eu-1', 'EU_2'],
            labels: {
              matchLabels: {},
              matchExpressions: [
                {
                  key: 'env',
                  operator: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_NOT_IN,
                  values: [],
                },
              ],
            },
          },
        }),
      ),
    ).toEqual(['clusters.names[1]', 'clusters.labels.matchExpressions[0].values']);
  });

  it('deduplicates cluster names', () => {
    const result = validateBinding(binding({ clusters: { names: ['a', 'b', 'a'] } }));
    expect(result.ok && result.binding.clusters.names).toEqual(['a', 'b']);
  });

  it('requires exactly one target', () => {
    expect(fieldsOf(binding({ target: undefined }))).toEqual(['target']);
  });

  it('checks the target group ARN', () => {
    for (const arn of [
      '',
      'arn:aws:elasticloadbalancing:eu-west-1:111111111111:loadbalancer/app/x/0123456789abcdef',
      'arn:aws:elasticloadbalancing:eu-west-1:11111111111:targetgroup/web/0123456789abcdef',
      'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/-web/0123456789abcdef',
      'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/0123',
      'arn:aws:ec2:eu-west-1:111111111111:targetgroup/web/0123456789abcdef',
    ]) {
      expect(fieldsOf(withGroup({ arn })), arn).toEqual(['targetGroup.arn']);
    }
    expect(
      fieldsOf(
        withGroup({
          arn: 'arn:aws-cn:elasticloadbalancing:cn-north-1:111111111111:targetgroup/web/0123456789abcdef',
          roleArn: 'arn:aws-cn:iam::111111111111:role/tgfed',
        }),
      ),
    ).toEqual([]);
  });

  it('requires region and account to agree with the ARN, and fills them from it', () => {
    expect(fieldsOf(withGroup({ region: 'us-east-1', accountId: '222222222222' }))).toEqual([
      'targetGroup.region',
      'targetGroup.accountId',
    ]);
    expect(fieldsOf(withGroup({ region: 'eu-west-1', accountId: ACCOUNT }))).toEqual([]);
    expect(fieldsOf(withGroup({ accountId: '1234' }))).toEqual(['targetGroup.accountId']);
  });

  it('checks role ARN and external id', () => {
    expect(fieldsOf(withGroup({ roleArn: 'arn:aws:iam::111111111111:user/tgfed' }))).toEqual([
      'targetGroup.roleArn',
    ]);
    expect(fieldsOf(withGroup({ roleArn: 'arn:aws:iam::111111111111:role/team/a/tgfed' }))).toEqual(
      [],
    );
    expect(fieldsOf(withGroup({ roleArn: 'arn:aws-cn:iam::111111111111:role/tgfed' }))).toEqual([
      'targetGroup.roleArn',
    ]);
    expect(fieldsOf(withGroup({ externalId: 'x' }))).toEqual(['targetGroup.externalId']);
    expect(fieldsOf(withGroup({ externalId: 'has space' }))).toEqual(['targetGroup.externalId']);
    expect(fieldsOf(withGroup({ externalId: 'x'.repeat(1225) }))).toEqual([
      'targetGroup.externalId',
    ]);
    expect(fieldsOf(withGroup({ externalId: 'a:b/c=d@e' }))).toEqual([]);
    expect(fieldsOf(withGroup({ roleArn: '', externalId: 'orphan-id' }))).toEqual([
      'targetGroup.externalId',
    ]);
  });

  it('checks target type, capacity and availability zone', () => {
    expect(fieldsOf(withGroup({ targetType: 'instance' }))).toEqual(['targetGroup.targetType']);
    expect(fieldsOf(withGroup({ targetType: 'ip' }))).toEqual([]);
    expect(fieldsOf(withGroup({ capacity: 10_001 }))).toEqual(['targetGroup.capacity']);
    expect(fieldsOf(withGroup({ capacity: 10_000 }))).toEqual([]);
    expect(fieldsOf(withGroup({ capacity: 1 }))).toEqual([]);
    for (const availabilityZone of ['all', 'eu-west-1a', '']) {
      expect(fieldsOf(withGroup({ availabilityZone }))).toEqual([]);
    }
    for (const availabilityZone of ['eu-west-2a', 'everywhere', 'eu-west-1']) {
      expect(fieldsOf(withGroup({ availabilityZone })), availabilityZone).toEqual([
        'targetGroup.availabilityZone',
      ]);
    }
  });

  it('checks pools: size, duplicates and each group under its own path', () => {
    expect(fieldsOf(pool([]))).toEqual(['pool.groups']);
    expect(
      fieldsOf(
        pool(Array.from({ length: 101 }, (_, i) => targetGroup({ arn: targetGroupArn(i) }))),
      ),
    ).toEqual(['pool.groups']);
    expect(
      fieldsOf(
        pool([
          targetGroup({ arn: targetGroupArn(1) }),
          targetGroup({ arn: targetGroupArn(2), roleArn: 'nope' }),
          targetGroup({ arn: targetGroupArn(1) }),
        ]),
      ),
    ).toEqual(['pool.groups[1].roleArn', 'pool.groups[2].arn']);
    expect(fieldsOf(pool([targetGroup({ arn: targetGroupArn(1) })]))).toEqual([]);
  });

  it('accepts a pool of 100 groups, all with defaults filled', () => {
    const result = validateBinding(
      pool(Array.from({ length: 100 }, (_, i) => targetGroup({ arn: targetGroupArn(i) }))),
    );
    expect(result.ok).toBe(true);
    if (!result.ok || result.binding.target.$case !== 'pool') return;
    expect(result.binding.target.pool.groups.every((g) => g.capacity === 1000)).toBe(true);
  });

  it('checks the listener rule of a weighted pool', () => {
    const rule = `arn:aws:elasticloadbalancing:${REGION}:${ACCOUNT}:listener-rule/app/shop/0123456789abcdef/0123456789abcdef/0123456789abcdef`;
    const groups = [1, 2].map((i) => targetGroup({ arn: targetGroupArn(i) }));
    expect(fieldsOf(pool(groups, rule))).toEqual([]);
    expect(fieldsOf(pool(groups, 'arn:aws:elasticloadbalancing:x'))).toEqual([
      'pool.listenerRuleArn',
    ]);
    const six = Array.from({ length: 6 }, (_, i) => targetGroup({ arn: targetGroupArn(i) }));
    expect(fieldsOf(pool(six, rule))).toEqual(['pool.listenerRuleArn']);
    const elsewhere = targetGroup({ arn: targetGroupArn(3, 'us-east-1') });
    expect(fieldsOf(pool([...groups, elsewhere], rule))).toEqual(['pool.groups[2].region']);
  });

  it('reports every violation at once', () => {
    const result = validateBinding({
      name: 'Bad',
      services: undefined,
      port: undefined,
      clusters: undefined,
      policy: undefined,
      target: undefined,
      version: 0,
      updatedUnixMs: 0,
    });
    expect(result.ok ? [] : result.violations.map((v) => v.field)).toEqual([
      'name',
      'services',
      'port',
      'target',
    ]);
  });

  it('never throws and always names fields for arbitrary target groups', () => {
    fc.assert(
      fc.property(
        fc.record({
          arn: fc.string(),
          accountId: fc.string(),
          region: fc.string(),
          roleArn: fc.string(),
          externalId: fc.string(),
          targetType: fc.string(),
          capacity: fc.nat(),
          availabilityZone: fc.string(),
        }),
        (group) => {
          const result = validateBinding(withGroup(group));
          if (!result.ok) {
            for (const v of result.violations) expect(v.field).toMatch(/^targetGroup\.[a-zA-Z]+$/);
          }
        },
      ),
    );
  });
});

describe('formatFieldPath', () => {
  it('writes indexes in brackets and quotes keys that are not identifiers', () => {
    expect(formatFieldPath(['pool', 'groups', 1, 'roleArn'])).toBe('pool.groups[1].roleArn');
    expect(formatFieldPath(['labels', 'app.kubernetes.io/name'])).toBe(
      'labels["app.kubernetes.io/name"]',
    );
  });
});

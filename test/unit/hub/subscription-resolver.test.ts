import { describe, expect, it } from 'vitest';
import { LabelSelectorOperator, type Binding } from '../../../shared/index.js';
import {
  BindingSubscriptionResolver,
  resolveSubscription,
  selectsCluster,
} from '../../../hub/federation/subscription-resolver.js';
import { binding } from '../../support/binding-fixtures.js';

const prod = { env: 'prod', region: 'eu' };
const staging = { env: 'staging', region: 'eu' };

function bound(
  name: string,
  services: Binding['services'],
  clusters: Binding['clusters'],
): Binding {
  return binding({ name, services, clusters });
}

describe('selectsCluster', () => {
  it('selects every cluster when the selector names none and has no labels', () => {
    expect(selectsCluster(undefined, 'a', {})).toBe(true);
    expect(selectsCluster({ names: [], labels: undefined }, 'a', {})).toBe(true);
    expect(
      selectsCluster({ names: [], labels: { matchLabels: {}, matchExpressions: [] } }, 'a', {}),
    ).toBe(true);
  });

  it('selects by listed name or by labels, either being enough', () => {
    const selector = {
      names: ['eu-1'],
      labels: { matchLabels: { env: 'prod' }, matchExpressions: [] },
    };
    expect(selectsCluster(selector, 'eu-1', staging)).toBe(true);
    expect(selectsCluster(selector, 'us-1', prod)).toBe(true);
    expect(selectsCluster(selector, 'us-1', staging)).toBe(false);
  });

  it('does not widen a list of names with an empty label selector', () => {
    const selector = { names: ['eu-1'], labels: { matchLabels: {}, matchExpressions: [] } };
    expect(selectsCluster(selector, 'us-1', prod)).toBe(false);
  });

  it('applies label expressions', () => {
    const selector = {
      names: [],
      labels: {
        matchLabels: {},
        matchExpressions: [
          {
            key: 'env',
            operator: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_NOT_IN,
            values: ['staging'],
          },
        ],
      },
    };
    expect(selectsCluster(selector, 'x', prod)).toBe(true);
    expect(selectsCluster(selector, 'x', staging)).toBe(false);
  });
});

describe('resolveSubscription', () => {
  const web = { namespace: 'shop', name: 'web', labels: undefined };
  const api = { namespace: 'shop', name: 'api', labels: undefined };
  const tools = {
    namespace: '',
    name: '',
    labels: { matchLabels: { team: 'tools' }, matchExpressions: [] },
  };
  const bindings = [
    bound('web', web, {
      names: [],
      labels: { matchLabels: { env: 'prod' }, matchExpressions: [] },
    }),
    bound('web-eu1', web, { names: ['eu-1'], labels: undefined }),
    bound('api', api, { names: ['eu-1', 'eu-2'], labels: undefined }),
    bound('tools', tools, undefined),
  ];

  it('is the union of the selectors of the bindings that select the cluster, each once', () => {
    const subscription = resolveSubscription({ revision: 7, bindings }, 'eu-1', prod);
    expect(subscription.version).toBe(7);
    expect(subscription.selectors).toHaveLength(3);
    expect(subscription.selectors).toEqual(expect.arrayContaining([web, api, tools]));
  });

  it('leaves out bindings whose cluster selector does not select the cluster', () => {
    expect(resolveSubscription({ revision: 7, bindings }, 'us-1', staging).selectors).toEqual([
      tools,
    ]);
    expect(resolveSubscription({ revision: 7, bindings }, 'eu-2', staging).selectors).toEqual(
      expect.arrayContaining([api, tools]),
    );
  });

  it('is empty when nothing selects the cluster', () => {
    const subscription = resolveSubscription(
      { revision: 3, bindings: bindings.slice(0, 3) },
      'us-1',
      staging,
    );
    expect(subscription).toEqual({ version: 3, selectors: [] });
  });

  it('does not depend on the order of the bindings', () => {
    const forward = resolveSubscription({ revision: 1, bindings }, 'eu-1', prod);
    const backward = resolveSubscription(
      { revision: 1, bindings: [...bindings].reverse() },
      'eu-1',
      prod,
    );
    expect(backward).toEqual(forward);
  });
});

describe('BindingSubscriptionResolver', () => {
  it('answers from the latest snapshot and tells listeners of updates', () => {
    const resolver = new BindingSubscriptionResolver();
    expect(resolver.subscriptionFor('eu-1', prod)).toEqual({ version: 0, selectors: [] });
    const revisions: number[] = [];
    const stop = resolver.onUpdate((r) => revisions.push(r));
    resolver.update({
      revision: 5,
      bindings: [bound('a', { namespace: 'shop', name: '', labels: undefined }, undefined)],
    });
    stop();
    resolver.update({ revision: 6, bindings: [] });
    expect(revisions).toEqual([5]);
    expect(resolver.subscriptionFor('eu-1', prod)).toEqual({ version: 6, selectors: [] });
  });
});

import { describe, expect, it } from 'vitest';
import type { Action } from '@aws-sdk/client-elastic-load-balancing-v2';
import { planForwardWeights } from '../../../hub/reconcile/index.js';

const A = 'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/a/000000000000000a';
const B = 'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/b/000000000000000b';
const C = 'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/c/000000000000000c';
const CANARY = 'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/x/00000000000000ff';

function forward(weights: [string, number][], sticky = false): Action {
  return {
    Type: 'forward',
    Order: 2,
    ForwardConfig: {
      TargetGroups: weights.map(([TargetGroupArn, Weight]) => ({ TargetGroupArn, Weight })),
      TargetGroupStickinessConfig: sticky
        ? { Enabled: true, DurationSeconds: 600 }
        : { Enabled: false },
    },
  };
}

const auth: Action = {
  Type: 'authenticate-oidc',
  Order: 1,
  AuthenticateOidcConfig: {
    Issuer: 'https://idp',
    AuthorizationEndpoint: 'https://idp/a',
    TokenEndpoint: 'https://idp/t',
    UserInfoEndpoint: 'https://idp/u',
    ClientId: 'c',
  },
};

function plan(actions: Action[], ready: Record<string, number>, pool = [A, B, C]) {
  return planForwardWeights({
    actions,
    pool,
    ready: new Map(Object.entries(ready)),
    minShareChange: 0.02,
  });
}

function weightsOf(actions: Action[]): Record<string, number | undefined> {
  const fwd = actions.find((a) => a.Type === 'forward');
  const entries: [string, number | undefined][] = (fwd?.ForwardConfig?.TargetGroups ?? []).map(
    (t) => [t.TargetGroupArn ?? '', t.Weight],
  );
  return Object.fromEntries(entries);
}

describe('planForwardWeights', () => {
  it('weighs each pool group by its ready targets, the fullest at 999 and an empty one at 0', () => {
    const p = plan(
      [
        forward([
          [A, 1],
          [B, 1],
          [C, 1],
        ]),
      ],
      { [A]: 300, [B]: 150, [C]: 0 },
    );
    expect(p.kind).toBe('modify');
    if (p.kind !== 'modify') return;
    expect(weightsOf(p.actions)).toEqual({ [A]: 999, [B]: 500, [C]: 0 });
  });

  it('keeps other actions, the stickiness config and groups outside the pool as found', () => {
    const actions = [
      auth,
      forward(
        [
          [A, 400],
          [B, 400],
          [CANARY, 200],
        ],
        true,
      ),
    ];
    const p = plan(actions, { [A]: 30, [B]: 10 }, [A, B]);
    expect(p.kind).toBe('modify');
    if (p.kind !== 'modify') return;
    expect(p.actions[0]).toBe(auth);
    const fwd = p.actions[1];
    expect(fwd?.ForwardConfig?.TargetGroupStickinessConfig).toEqual({
      Enabled: true,
      DurationSeconds: 600,
    });
    // The pool keeps its total of 800, so the canary keeps its 20 % of the traffic.
    expect(weightsOf(p.actions)).toEqual({ [A]: 600, [B]: 200, [CANARY]: 200 });
  });

  it('leaves the rule alone when no pool group has a ready target', () => {
    const p = plan(
      [
        forward([
          [A, 10],
          [B, 5],
        ]),
      ],
      { [A]: 0, [B]: 0 },
      [A, B],
    );
    expect(p.kind).toBe('all-zero');
  });

  it('does not modify for a share change within the threshold, but does when a group empties', () => {
    const actions = [
      forward([
        [A, 999],
        [B, 999],
      ]),
    ];
    expect(plan(actions, { [A]: 100, [B]: 98 }, [A, B]).kind).toBe('unchanged');
    expect(plan(actions, { [A]: 100, [B]: 80 }, [A, B]).kind).toBe('modify');
    const emptied = plan(
      [
        forward([
          [A, 999],
          [B, 1],
        ]),
      ],
      { [A]: 1000, [B]: 0 },
      [A, B],
    );
    expect(emptied.kind).toBe('modify');
  });

  it('reports pool groups the forward action does not name, and rules without a forward', () => {
    const p = plan([forward([[A, 1]])], { [A]: 3, [B]: 2 }, [A, B]);
    expect(p.kind === 'no-forward-action' ? [] : p.missing).toEqual([B]);
    expect(plan([auth], { [A]: 1 }).kind).toBe('no-forward-action');
    expect(plan([forward([[CANARY, 1]])], { [A]: 1 }).kind).toBe('no-pool-group');
  });

  it('never writes an action whose weights are all zero, whatever groups it names', () => {
    // A lone TargetGroupArn forward names only A, which has no ready target (B is not named).
    expect(plan([{ Type: 'forward', TargetGroupArn: A }], { [A]: 0, [B]: 4 }, [A, B]).kind).toBe(
      'all-zero',
    );
    const lone = plan([{ Type: 'forward', TargetGroupArn: A }], { [A]: 0 }, [A]);
    expect(lone.kind).toBe('all-zero');
  });
});

import { describe, expect, it, onTestFinished } from 'vitest';
import {
  DescribeListenersCommand,
  DescribeRulesCommand,
  ElasticLoadBalancingV2Client,
  ModifyListenerCommand,
  ModifyRuleCommand,
  type Action,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import {
  startElbv2Simulator,
  type Elbv2SimulatorServer,
  type Elbv2SimulatorServerOptions,
} from '../../../hub/aws/simulator/index.js';

// The simulator's ALB listeners and rules through the real AWS SDK over the query protocol.

const REGION = 'eu-west-1';
const ACCOUNT = '123456789012';
const OTHER = '222222222222';
const CREDENTIALS = { accessKeyId: 'AKIDTEST', secretAccessKey: 'x' };

async function started(options: Elbv2SimulatorServerOptions = {}): Promise<Elbv2SimulatorServer> {
  const server = await startElbv2Simulator(options);
  onTestFinished(() => server.close());
  return server;
}

function elbv2Of(server: Elbv2SimulatorServer): ElasticLoadBalancingV2Client {
  const client = new ElasticLoadBalancingV2Client({
    endpoint: server.url,
    region: REGION,
    credentials: CREDENTIALS,
    maxAttempts: 1,
  });
  onTestFinished(() => client.destroy());
  return client;
}

function groups(server: Elbv2SimulatorServer, n: number, account = ACCOUNT): string[] {
  return Array.from({ length: n }, (_, i) =>
    server.simulator.createTargetGroup({
      account,
      region: REGION,
      name: `g${i}-${Math.random().toString(36).slice(2, 8)}`,
      protocol: 'HTTP',
    }),
  );
}

function forward(arns: string[], weight: number): Action {
  return {
    Type: 'forward',
    ForwardConfig: {
      TargetGroups: arns.map((TargetGroupArn) => ({ TargetGroupArn, Weight: weight })),
    },
  };
}

async function rejected(promise: Promise<unknown>): Promise<{ name: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { name: string; message: string };
  }
  throw new Error('the call was not rejected');
}

describe('Elbv2Simulator listeners and rules', () => {
  it('describes and modifies a rule’s weighted forward action, keeping stickiness', async () => {
    const server = await started({ rateLimits: false });
    const [a, b] = groups(server, 2) as [string, string];
    const listener = server.simulator.listeners.createListener({
      account: ACCOUNT,
      region: REGION,
      defaultActions: [{ type: 'forward', targetGroupArn: a }],
    });
    const rule = server.simulator.listeners.createRule({
      listenerArn: listener,
      priority: 5,
      actions: [
        {
          type: 'forward',
          forwardConfig: {
            targetGroups: [{ targetGroupArn: a }, { targetGroupArn: b, weight: 3 }],
            stickiness: { enabled: true, durationSeconds: 60 },
          },
        },
      ],
    });
    const elbv2 = elbv2Of(server);

    const described = await elbv2.send(new DescribeRulesCommand({ RuleArns: [rule] }));
    const fwd = described.Rules?.[0]?.Actions?.[0];
    expect(fwd?.ForwardConfig?.TargetGroups).toEqual([
      { TargetGroupArn: a, Weight: 1 },
      { TargetGroupArn: b, Weight: 3 },
    ]);
    expect(fwd?.ForwardConfig?.TargetGroupStickinessConfig).toEqual({
      Enabled: true,
      DurationSeconds: 60,
    });
    expect(fwd?.TargetGroupArn).toBeUndefined();

    await elbv2.send(
      new ModifyRuleCommand({
        RuleArn: rule,
        Actions: [
          {
            Type: 'forward',
            ForwardConfig: {
              TargetGroups: [
                { TargetGroupArn: a, Weight: 999 },
                { TargetGroupArn: b, Weight: 0 },
              ],
              TargetGroupStickinessConfig: { Enabled: true, DurationSeconds: 60 },
            },
          },
        ],
      }),
    );
    expect(server.simulator.listeners.weights(rule)).toEqual({ [a]: 999, [b]: 0 });

    // A one-group forward is reported with its TargetGroupArn too, as AWS does.
    const listeners = await elbv2.send(new DescribeListenersCommand({ ListenerArns: [listener] }));
    const defaults = listeners.Listeners?.[0]?.DefaultActions?.[0];
    expect(defaults?.TargetGroupArn).toBe(a);
    expect(defaults?.ForwardConfig?.TargetGroups).toEqual([{ TargetGroupArn: a, Weight: 1 }]);
    // The listener's default rule shows up among its rules.
    const all = await elbv2.send(new DescribeRulesCommand({ ListenerArn: listener }));
    expect(all.Rules?.map((r) => r.IsDefault)).toEqual([true, false]);

    await elbv2.send(
      new ModifyListenerCommand({ ListenerArn: listener, DefaultActions: [forward([a, b], 7)] }),
    );
    expect(server.simulator.listeners.weights(listener)).toEqual({ [a]: 7, [b]: 7 });
  });

  it('refuses what ELB refuses: weights beyond 0–999, more than five groups, unknown groups', async () => {
    const server = await started({ rateLimits: false });
    const six = groups(server, 6);
    const [foreign] = groups(server, 1, OTHER) as [string];
    const listener = server.simulator.listeners.createListener({
      account: ACCOUNT,
      region: REGION,
      defaultActions: [{ type: 'fixed-response', fixedResponse: { statusCode: '404' } }],
    });
    const rule = server.simulator.listeners.createRule({
      listenerArn: listener,
      priority: 1,
      actions: [{ type: 'forward', targetGroupArn: six[0] }],
    });
    const elbv2 = elbv2Of(server);
    const modify = (actions: Action[]) =>
      elbv2.send(new ModifyRuleCommand({ RuleArn: rule, Actions: actions }));

    const heavy = await rejected(modify([forward(six.slice(0, 2), 1000)]));
    expect(heavy.name).toBe('ValidationError');
    expect(heavy.message).toContain('0 to 999');
    const many = await rejected(modify([forward(six, 1)]));
    expect(many.name).toBe('ValidationError');
    expect(many.message).toContain('at most 5 target groups');
    const elsewhere = await rejected(modify([forward([six[0] as string, foreign], 1)]));
    expect(elsewhere.name).toBe('TargetGroupNotFoundException');
    const twice = await rejected(modify([forward([six[0] as string, six[0] as string], 1)]));
    expect(twice.name).toBe('ValidationError');
    const missing = await rejected(
      elbv2.send(new DescribeRulesCommand({ RuleArns: [`${rule.slice(0, -16)}0000000000000000`] })),
    );
    expect(missing.name).toBe('RuleNotFoundException');
    // Nothing refused changed the rule.
    expect(server.simulator.listeners.weights(rule)).toEqual({ [six[0] as string]: 1 });
    // Five groups, weights at the bounds, are fine.
    const five = six.slice(0, 5);
    await modify([
      {
        Type: 'forward',
        ForwardConfig: {
          TargetGroups: five.map((TargetGroupArn, i) => ({
            TargetGroupArn,
            Weight: [0, 999, 1, 2, 3][i],
          })),
        },
      },
    ]);
    expect(Object.values(server.simulator.listeners.weights(rule))).toEqual([0, 999, 1, 2, 3]);
  });

  it('throttles ModifyListener in the modify bucket, not the describe one', async () => {
    const server = await started({ rateLimits: { modify: { ratePerSecond: 0.001, burst: 2 } } });
    const [a] = groups(server, 1) as [string];
    const listener = server.simulator.listeners.createListener({
      account: ACCOUNT,
      region: REGION,
      defaultActions: [{ type: 'forward', targetGroupArn: a }],
    });
    const elbv2 = elbv2Of(server);
    const modify = () =>
      elbv2.send(
        new ModifyListenerCommand({ ListenerArn: listener, DefaultActions: [forward([a], 2)] }),
      );
    await modify();
    await modify();
    const throttled = await rejected(modify());
    expect(throttled.name).toBe('Throttling');
    for (let i = 0; i < 10; i++) {
      await elbv2.send(new DescribeListenersCommand({ ListenerArns: [listener] }));
    }
    expect(
      server.simulator.calls({ action: 'ModifyListener', errorCode: 'Throttling' }),
    ).toHaveLength(1);
    expect(server.simulator.calls({ action: 'DescribeListeners', errorCode: null })).toHaveLength(
      10,
    );
  });
});

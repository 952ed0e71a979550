import type { SimulatedAction, SimulatedListener, SimulatedRule } from './simulated-listeners.js';

/**
 * The awsQuery form of listener and rule actions for the simulator's HTTP server:
 * `Actions.member.N.Type`, `….ForwardConfig.TargetGroups.member.M.Weight` and so on in requests,
 * the XML of DescribeRules / DescribeListeners / ModifyRule / ModifyListener in answers.
 */

/** Escapes text for an XML element. */
function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function el(name: string, ...children: string[]): string {
  return `<${name}>${children.join('')}</${name}>`;
}

function leaf(name: string, value: string | number | boolean | undefined): string {
  return value === undefined ? '' : el(name, escapeXml(String(value)));
}

/** A request the server refuses (mapped to the simulator's error by the caller). */
export class ActionParamError extends Error {
  override readonly name = 'ActionParamError';
}

function integer(name: string, value: string): number {
  if (!/^-?\d{1,9}$/.test(value))
    throw new ActionParamError(`Value '${value}' for ${name} is not an integer`);
  return Number(value);
}

function boolean(name: string, value: string): boolean {
  if (value !== 'true' && value !== 'false') {
    throw new ActionParamError(`Value '${value}' for ${name} is not a boolean`);
  }
  return value === 'true';
}

interface ActionFields {
  fields: Map<string, string>;
  groups: Map<number, Map<string, string>>;
}

/** `<prefix>.member.N.*` actions in order of N; undefined when none is given. */
export function actionsParam(
  params: URLSearchParams,
  prefix: string,
): SimulatedAction[] | undefined {
  const byIndex = new Map<number, ActionFields>();
  const head = `${prefix}.member.`;
  for (const [key, value] of params) {
    if (!key.startsWith(head)) continue;
    const m = /^(\d+)\.(.+)$/.exec(key.slice(head.length));
    if (m === null) throw new ActionParamError(`Unknown parameter ${key}`);
    const index = Number(m[1]);
    const rest = m[2] ?? '';
    let entry = byIndex.get(index);
    if (entry === undefined) byIndex.set(index, (entry = { fields: new Map(), groups: new Map() }));
    const tuple = /^ForwardConfig\.TargetGroups\.member\.(\d+)\.(TargetGroupArn|Weight)$/.exec(
      rest,
    );
    if (tuple !== null) {
      const j = Number(tuple[1]);
      let group = entry.groups.get(j);
      if (group === undefined) entry.groups.set(j, (group = new Map<string, string>()));
      group.set(tuple[2] ?? '', value);
      continue;
    }
    entry.fields.set(rest, value);
  }
  if (byIndex.size === 0) return undefined;
  return [...byIndex.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([index, { fields, groups }]) => toAction(`${prefix}.member.${index}`, fields, groups));
}

const KNOWN_FIELDS = new Set([
  'Type',
  'Order',
  'TargetGroupArn',
  'ForwardConfig.TargetGroupStickinessConfig.Enabled',
  'ForwardConfig.TargetGroupStickinessConfig.DurationSeconds',
  'FixedResponseConfig.StatusCode',
  'FixedResponseConfig.ContentType',
  'FixedResponseConfig.MessageBody',
]);

function toAction(
  path: string,
  fields: Map<string, string>,
  groups: Map<number, Map<string, string>>,
): SimulatedAction {
  for (const key of fields.keys()) {
    if (!KNOWN_FIELDS.has(key)) {
      throw new ActionParamError(`${path}.${key} is not supported by the simulator`);
    }
  }
  const type = fields.get('Type');
  if (type !== 'forward' && type !== 'fixed-response') {
    throw new ActionParamError(
      `${path}.Type must be 'forward' or 'fixed-response' in the simulator, got '${type ?? ''}'`,
    );
  }
  const action: SimulatedAction = { type };
  const order = fields.get('Order');
  if (order !== undefined) action.order = integer(`${path}.Order`, order);
  const targetGroupArn = fields.get('TargetGroupArn');
  if (targetGroupArn !== undefined) action.targetGroupArn = targetGroupArn;
  if (groups.size > 0) {
    const targetGroups = [...groups.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([j, g]) => {
        const arn = g.get('TargetGroupArn');
        if (arn === undefined) {
          throw new ActionParamError(
            `${path}.ForwardConfig.TargetGroups.member.${j}.TargetGroupArn is required`,
          );
        }
        const weight = g.get('Weight');
        return weight === undefined
          ? { targetGroupArn: arn }
          : { targetGroupArn: arn, weight: integer(`${path}…Weight`, weight) };
      });
    action.forwardConfig = { targetGroups };
  }
  const enabled = fields.get('ForwardConfig.TargetGroupStickinessConfig.Enabled');
  if (enabled !== undefined) {
    const duration = fields.get('ForwardConfig.TargetGroupStickinessConfig.DurationSeconds');
    action.forwardConfig = {
      targetGroups: action.forwardConfig?.targetGroups ?? [],
      stickiness: {
        enabled: boolean(`${path}.ForwardConfig.TargetGroupStickinessConfig.Enabled`, enabled),
        ...(duration === undefined
          ? {}
          : { durationSeconds: integer('DurationSeconds', duration) }),
      },
    };
  }
  const statusCode = fields.get('FixedResponseConfig.StatusCode');
  if (statusCode !== undefined) {
    const contentType = fields.get('FixedResponseConfig.ContentType');
    const messageBody = fields.get('FixedResponseConfig.MessageBody');
    action.fixedResponse = {
      statusCode,
      ...(contentType === undefined ? {} : { contentType }),
      ...(messageBody === undefined ? {} : { messageBody }),
    };
  }
  return action;
}

function actionXml(action: SimulatedAction): string {
  const forward = action.forwardConfig;
  const stickiness = forward?.stickiness;
  const fixed = action.fixedResponse;
  return el(
    'member',
    leaf('Type', action.type),
    leaf('Order', action.order),
    leaf('TargetGroupArn', action.targetGroupArn),
    forward === undefined
      ? ''
      : el(
          'ForwardConfig',
          el(
            'TargetGroups',
            forward.targetGroups
              .map((t) =>
                el(
                  'member',
                  leaf('TargetGroupArn', t.targetGroupArn),
                  leaf('Weight', t.weight ?? 1),
                ),
              )
              .join(''),
          ),
          el(
            'TargetGroupStickinessConfig',
            leaf('Enabled', stickiness?.enabled ?? false),
            leaf('DurationSeconds', stickiness?.durationSeconds),
          ),
        ),
    fixed === undefined
      ? ''
      : el(
          'FixedResponseConfig',
          leaf('StatusCode', fixed.statusCode),
          leaf('ContentType', fixed.contentType),
          leaf('MessageBody', fixed.messageBody),
        ),
  );
}

/** `<Rules>` of DescribeRules and ModifyRule. */
export function rulesXml(rules: readonly SimulatedRule[]): string {
  return el(
    'Rules',
    rules
      .map((r) =>
        el(
          'member',
          leaf('RuleArn', r.ruleArn),
          leaf('Priority', r.priority),
          el('Conditions'),
          el('Actions', r.actions.map(actionXml).join('')),
          leaf('IsDefault', r.isDefault),
        ),
      )
      .join(''),
  );
}

/** `<Listeners>` of DescribeListeners and ModifyListener. */
export function listenersXml(listeners: readonly SimulatedListener[]): string {
  return el(
    'Listeners',
    listeners
      .map((l) =>
        el(
          'member',
          leaf('ListenerArn', l.listenerArn),
          leaf('LoadBalancerArn', l.loadBalancerArn),
          leaf('Port', l.port),
          leaf('Protocol', l.protocol),
          el('DefaultActions', l.defaultActions.map(actionXml).join('')),
        ),
      )
      .join(''),
  );
}

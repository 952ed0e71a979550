import type {
  Binding,
  ClusterSelector,
  EndpointPolicy,
  FieldViolation,
  LabelSelector,
  PortSelector,
  ServiceSelector,
  TargetGroup,
  TargetGroupPool,
} from '../../shared/index.js';
import { LabelSelectorOperator } from '../../shared/index.js';

/** Targets tgfed puts in one group unless the binding says otherwise: the AWS default quota. */
export const DEFAULT_TARGET_GROUP_CAPACITY = 1000;
/** Largest capacity a binding may give one group (quota increases stay below this). */
export const MAX_TARGET_GROUP_CAPACITY = 10_000;
/** Most groups one pool may shard a service over. */
export const MAX_POOL_GROUPS = 100;
// An ALB forward action accepts at most 5 weighted target groups, so a pool whose weights tgfed
// keeps on a listener rule cannot be larger.
const MAX_WEIGHTED_FORWARD_GROUPS = 5;

/** A binding that passed {@link validateBinding}: every part present, defaults filled. */
export interface NormalizedBinding extends Binding {
  services: ServiceSelector;
  port: { port: NonNullable<PortSelector['port']> };
  clusters: ClusterSelector;
  policy: EndpointPolicy;
  target: NonNullable<Binding['target']>;
}

/** Outcome of {@link validateBinding}. */
export type BindingValidation =
  { ok: true; binding: NormalizedBinding } | { ok: false; violations: FieldViolation[] };

/**
 * A field path in the proto JSON (camelCase) names, as sent in `FieldViolation.field` and shown
 * for binding files: `['pool', 'groups', 1, 'roleArn']` → `pool.groups[1].roleArn`.
 */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const part of path) {
    if (typeof part === 'number') text += `[${part}]`;
    else if (typeof part === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) {
      text += text === '' ? part : `.${part}`;
    } else text += `[${JSON.stringify(String(part))}]`;
  }
  return text;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// Kubernetes Service names are RFC 1035 labels: they start with a letter.
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const IANA_SVC_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const PARTITION = 'aws(?:-[a-z]+)*';
const REGION = '[a-z]{2}(?:-[a-z]+)+-\\d+';
const TARGET_GROUP_ARN = new RegExp(
  `^arn:(${PARTITION}):elasticloadbalancing:(${REGION}):(\\d{12}):targetgroup/` +
    '([A-Za-z0-9](?:[-A-Za-z0-9]{0,30}[A-Za-z0-9])?)/([0-9a-f]{16})$',
);
// Weighted forward actions exist on ALBs only, hence `app`; a listener ARN means its default action.
const LISTENER_RULE_ARN = new RegExp(
  `^arn:(${PARTITION}):elasticloadbalancing:(${REGION}):(\\d{12}):` +
    '(?:listener-rule/app/[-A-Za-z0-9]{1,32}/[0-9a-f]{16}/[0-9a-f]{16}/[0-9a-f]{16}' +
    '|listener/app/[-A-Za-z0-9]{1,32}/[0-9a-f]{16}/[0-9a-f]{16})$',
);
const ROLE_ARN = new RegExp(
  `^arn:(${PARTITION}):iam::(\\d{12}):role/(?:[\\x21-\\x7e]*/)?[\\w+=,.@-]{1,64}$`,
);
const EXTERNAL_ID = /^[\w+=,.@:/-]{2,1224}$/;
const ACCOUNT_ID = /^\d{12}$/;
const REGION_NAME = new RegExp(`^${REGION}$`);

/** Collects violations in the order the fields are checked. */
class Violations {
  readonly list: FieldViolation[] = [];
  add(path: readonly PropertyKey[], description: string): void {
    this.list.push({ field: formatFieldPath(path), description });
  }
}

function dnsLabelProblem(value: string, what: string): string | undefined {
  if (value.length > 63) return `${what} must be at most 63 characters`;
  if (!DNS_LABEL.test(value)) {
    return `${what} must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit`;
  }
  return undefined;
}

function qualifiedNameProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return `label key prefix '${prefix}' must be a DNS subdomain of at most 253 characters`;
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) {
    return `label key '${key}' must be a qualified name: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, optionally after a DNS subdomain prefix and '/'`;
  }
  return undefined;
}

function labelValueProblem(value: string): string | undefined {
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    return `label value '${value}' must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

/**
 * Validates a label selector and returns it with sorted match labels, or undefined when it is
 * empty. Kubernetes reads an empty selector as "everything", which next to a list of names would
 * silently widen a selection; dropping it keeps "absent" the only way to say "no constraint".
 */
function normalizeLabelSelector(
  selector: LabelSelector | undefined,
  path: readonly PropertyKey[],
  violations: Violations,
): LabelSelector | undefined {
  if (selector === undefined) return undefined;
  const matchLabels: Record<string, string> = {};
  for (const key of Object.keys(selector.matchLabels).sort()) {
    const value = selector.matchLabels[key] ?? '';
    const keyProblem = qualifiedNameProblem(key);
    if (keyProblem !== undefined) violations.add([...path, 'matchLabels', key], keyProblem);
    const valueProblem = labelValueProblem(value);
    if (valueProblem !== undefined) violations.add([...path, 'matchLabels', key], valueProblem);
    matchLabels[key] = value;
  }
  selector.matchExpressions.forEach((expression, i) => {
    const at = [...path, 'matchExpressions', i];
    const keyProblem = qualifiedNameProblem(expression.key);
    if (keyProblem !== undefined) violations.add([...at, 'key'], keyProblem);
    switch (expression.operator) {
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_IN:
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_NOT_IN:
        if (expression.values.length === 0) {
          violations.add([...at, 'values'], 'In and NotIn need at least one value');
        }
        expression.values.forEach((value, j) => {
          const problem = labelValueProblem(value);
          if (problem !== undefined) violations.add([...at, 'values', j], problem);
        });
        break;
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_EXISTS:
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_DOES_NOT_EXIST:
        if (expression.values.length > 0) {
          violations.add([...at, 'values'], 'Exists and DoesNotExist take no values');
        }
        break;
      default:
        violations.add([...at, 'operator'], 'operator must be In, NotIn, Exists or DoesNotExist');
    }
  });
  if (Object.keys(matchLabels).length === 0 && selector.matchExpressions.length === 0) {
    return undefined;
  }
  return {
    matchLabels,
    matchExpressions: selector.matchExpressions.map((e) => ({ ...e, values: [...e.values] })),
  };
}

function normalizeServices(
  services: ServiceSelector | undefined,
  violations: Violations,
): ServiceSelector {
  const path = ['services'];
  if (services === undefined) {
    violations.add(path, 'required: select services by namespace, name and/or labels');
    return { namespace: '', name: '', labels: undefined };
  }
  if (services.namespace !== '') {
    const problem = dnsLabelProblem(services.namespace, 'namespace');
    if (problem !== undefined) violations.add([...path, 'namespace'], problem);
  }
  if (services.name !== '') {
    if (services.name.length > 63 || !DNS_1035_LABEL.test(services.name)) {
      violations.add(
        [...path, 'name'],
        "service name must be an RFC 1035 label: at most 63 lowercase letters, digits and '-', starting with a letter",
      );
    }
  }
  const labels = normalizeLabelSelector(services.labels, [...path, 'labels'], violations);
  if (services.namespace === '' && services.name === '' && labels === undefined) {
    // An empty selector would subscribe every cluster to every service.
    violations.add(path, 'must select something: set namespace, name and/or labels');
  }
  return { namespace: services.namespace, name: services.name, labels };
}

function normalizePort(
  port: PortSelector | undefined,
  violations: Violations,
): NormalizedBinding['port'] {
  const selected = port?.port;
  if (selected === undefined) {
    violations.add(['port'], 'required: a port name or number');
    return { port: { $case: 'number', number: 0 } };
  }
  if (selected.$case === 'number') {
    const n = selected.number;
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      violations.add(['port', 'number'], 'port number must be between 1 and 65535');
    }
    return { port: { $case: 'number', number: n } };
  }
  const name = selected.name;
  // IANA_SVC_NAME as Kubernetes checks port names: at most 15 characters, at least one letter, no '--'.
  if (
    name.length === 0 ||
    name.length > 15 ||
    !IANA_SVC_NAME.test(name) ||
    !/[a-z]/.test(name) ||
    name.includes('--')
  ) {
    violations.add(
      ['port', 'name'],
      "port name must be an IANA service name: at most 15 lowercase letters, digits and '-', with at least one letter, no leading, trailing or doubled '-'",
    );
  }
  return { port: { $case: 'name', name } };
}

function normalizeClusters(
  clusters: ClusterSelector | undefined,
  violations: Violations,
): ClusterSelector {
  const names: string[] = [];
  (clusters?.names ?? []).forEach((name, i) => {
    const problem = dnsLabelProblem(name, 'cluster id');
    if (problem !== undefined) violations.add(['clusters', 'names', i], problem);
    if (!names.includes(name)) names.push(name);
  });
  const labels = normalizeLabelSelector(clusters?.labels, ['clusters', 'labels'], violations);
  return { names, labels };
}

interface ArnParts {
  partition: string;
  region: string;
  accountId: string;
}

function normalizeTargetGroup(
  group: TargetGroup,
  path: readonly PropertyKey[],
  violations: Violations,
): TargetGroup {
  const out: TargetGroup = { ...group };
  const match = TARGET_GROUP_ARN.exec(group.arn);
  let arn: ArnParts | undefined;
  if (group.arn === '') violations.add([...path, 'arn'], 'required');
  else if (match === null) {
    violations.add(
      [...path, 'arn'],
      'must be an ELBv2 target group ARN: arn:<partition>:elasticloadbalancing:<region>:<12-digit account>:targetgroup/<name>/<16 hex id>',
    );
  } else {
    arn = { partition: match[1] ?? '', region: match[2] ?? '', accountId: match[3] ?? '' };
  }

  if (group.region === '') out.region = arn?.region ?? '';
  else if (!REGION_NAME.test(group.region)) {
    violations.add([...path, 'region'], 'must be an AWS region name such as eu-west-1');
  } else if (arn !== undefined && group.region !== arn.region) {
    violations.add([...path, 'region'], `must match the ARN's region ${arn.region}`);
  }
  if (group.accountId === '') out.accountId = arn?.accountId ?? '';
  else if (!ACCOUNT_ID.test(group.accountId)) {
    violations.add([...path, 'accountId'], 'must be a 12-digit AWS account id');
  } else if (arn !== undefined && group.accountId !== arn.accountId) {
    violations.add([...path, 'accountId'], `must match the ARN's account ${arn.accountId}`);
  }

  if (group.roleArn !== '') {
    const role = ROLE_ARN.exec(group.roleArn);
    if (role === null) {
      violations.add(
        [...path, 'roleArn'],
        'must be an IAM role ARN: arn:<partition>:iam::<12-digit account>:role/<path/><name>',
      );
    } else if (arn !== undefined && role[1] !== arn.partition) {
      // STS cannot assume a role across partitions (aws, aws-cn, aws-us-gov, ...).
      violations.add(
        [...path, 'roleArn'],
        `must be in the target group's partition ${arn.partition}`,
      );
    }
  }
  if (group.externalId !== '' && !EXTERNAL_ID.test(group.externalId)) {
    violations.add(
      [...path, 'externalId'],
      'must be 2 to 1224 characters of letters, digits and + = , . @ : / - _',
    );
  }
  if (group.externalId !== '' && group.roleArn === '') {
    violations.add([...path, 'externalId'], 'is only used with roleArn');
  }

  if (group.targetType === '') out.targetType = 'ip';
  else if (group.targetType !== 'ip') {
    violations.add([...path, 'targetType'], "must be 'ip' (the only target type tgfed registers)");
  }

  if (group.capacity === 0) out.capacity = DEFAULT_TARGET_GROUP_CAPACITY;
  else if (
    !Number.isInteger(group.capacity) ||
    group.capacity < 1 ||
    group.capacity > MAX_TARGET_GROUP_CAPACITY
  ) {
    violations.add(
      [...path, 'capacity'],
      `must be between 1 and ${MAX_TARGET_GROUP_CAPACITY} (0 means ${DEFAULT_TARGET_GROUP_CAPACITY})`,
    );
  }

  const zone = group.availabilityZone;
  if (zone !== '' && zone !== 'all') {
    const region = out.region;
    const suffix = region !== '' && zone.startsWith(region) ? zone.slice(region.length) : undefined;
    // Zones are the region plus a letter (eu-west-1a) or, for Local Zones, a suffix (us-west-2-lax-1a).
    if (suffix === undefined || !/^([a-z]|-[a-z0-9-]*[0-9][a-z])$/.test(suffix)) {
      violations.add(
        [...path, 'availabilityZone'],
        `must be empty, 'all' or an availability zone of region ${region === '' ? '<region>' : region}`,
      );
    }
  }
  return out;
}

function normalizePool(pool: TargetGroupPool, violations: Violations): TargetGroupPool {
  const groups = pool.groups.map((g, i) =>
    normalizeTargetGroup(g, ['pool', 'groups', i], violations),
  );
  if (groups.length === 0)
    violations.add(['pool', 'groups'], 'a pool needs at least one target group');
  if (groups.length > MAX_POOL_GROUPS) {
    violations.add(['pool', 'groups'], `a pool has at most ${MAX_POOL_GROUPS} target groups`);
  }
  const firstIndex = new Map<string, number>();
  groups.forEach((g, i) => {
    if (g.arn === '') return;
    const first = firstIndex.get(g.arn);
    if (first === undefined) firstIndex.set(g.arn, i);
    else violations.add(['pool', 'groups', i, 'arn'], `duplicate of pool.groups[${first}].arn`);
  });
  if (pool.listenerRuleArn !== '') {
    const rule = LISTENER_RULE_ARN.exec(pool.listenerRuleArn);
    if (rule === null) {
      violations.add(
        ['pool', 'listenerRuleArn'],
        'must be an ALB listener rule or listener ARN (arn:<partition>:elasticloadbalancing:<region>:<account>:listener-rule/app/... or listener/app/...)',
      );
    } else {
      if (groups.length > MAX_WEIGHTED_FORWARD_GROUPS) {
        violations.add(
          ['pool', 'listenerRuleArn'],
          `an ALB forward action weighs at most ${MAX_WEIGHTED_FORWARD_GROUPS} target groups; this pool has ${groups.length}`,
        );
      }
      // ALB forwards only to target groups of its own account and region.
      groups.forEach((g, i) => {
        if (g.region !== '' && g.region !== rule[2]) {
          violations.add(
            ['pool', 'groups', i, 'region'],
            `must be the listener's region ${rule[2]}`,
          );
        }
        if (g.accountId !== '' && g.accountId !== rule[3]) {
          violations.add(
            ['pool', 'groups', i, 'accountId'],
            `must be the listener's account ${rule[3]}`,
          );
        }
      });
    }
  }
  return { groups, listenerRuleArn: pool.listenerRuleArn };
}

/**
 * Checks a binding as received from the admin API or a binding file and returns it normalized
 * (defaults filled, region and account taken from ARNs, match labels sorted), or every violation
 * with its field path. `version` and `updatedUnixMs` are the store's and pass through unchecked.
 */
export function validateBinding(binding: Binding): BindingValidation {
  const violations = new Violations();
  if (binding.name === '') violations.add(['name'], 'required');
  else {
    const problem = dnsLabelProblem(binding.name, 'name');
    if (problem !== undefined) violations.add(['name'], problem);
  }
  const services = normalizeServices(binding.services, violations);
  const port = normalizePort(binding.port, violations);
  const clusters = normalizeClusters(binding.clusters, violations);
  const policy: EndpointPolicy = {
    includeNotReady: binding.policy?.includeNotReady ?? false,
    keepTerminating: binding.policy?.keepTerminating ?? false,
  };
  let target: NormalizedBinding['target'];
  switch (binding.target?.$case) {
    case 'targetGroup':
      target = {
        $case: 'targetGroup',
        targetGroup: normalizeTargetGroup(binding.target.targetGroup, ['targetGroup'], violations),
      };
      break;
    case 'pool':
      target = { $case: 'pool', pool: normalizePool(binding.target.pool, violations) };
      break;
    default:
      violations.add(['target'], 'exactly one of targetGroup or pool is required');
      target = { $case: 'pool', pool: { groups: [], listenerRuleArn: '' } };
  }
  if (violations.list.length > 0) return { ok: false, violations: violations.list };
  return {
    ok: true,
    binding: {
      name: binding.name,
      services,
      port,
      clusters,
      policy,
      target,
      version: binding.version,
      updatedUnixMs: binding.updatedUnixMs,
    },
  };
}

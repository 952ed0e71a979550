import { randomBytes } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import {
  SimulatedListeners,
  type SimulatedAction,
  type SimulatedListener,
  type SimulatedRule,
} from './simulated-listeners.js';

/** Health states ELBv2 reports in DescribeTargetHealth (the subset the simulator produces). */
export type SimulatedTargetState = 'initial' | 'healthy' | 'unhealthy' | 'unused' | 'draining';

/** The ELBv2 operations the simulator serves. */
export type Elbv2Action =
  | 'CreateTargetGroup'
  | 'DeleteTargetGroup'
  | 'DescribeTargetGroups'
  | 'RegisterTargets'
  | 'DeregisterTargets'
  | 'DescribeTargetHealth'
  | 'DescribeRules'
  | 'DescribeListeners'
  | 'ModifyRule'
  | 'ModifyListener';

/** AWS throttles ELBv2 per account, region and class of operation. */
export type OperationClass = 'mutate' | 'describe' | 'modify';

/** One token bucket: `burst` tokens, refilled at `ratePerSecond`. */
export interface RateLimit {
  ratePerSecond: number;
  burst: number;
}

/** The bucket sizes AWS documents for ELBv2 API throttling. */
export const AWS_ELBV2_RATE_LIMITS: Readonly<Record<OperationClass, Readonly<RateLimit>>> = {
  mutate: { ratePerSecond: 4, burst: 20 },
  describe: { ratePerSecond: 50, burst: 200 },
  modify: { ratePerSecond: 3, burst: 20 },
};

const OPERATION_CLASSES: Record<Elbv2Action, OperationClass> = {
  RegisterTargets: 'mutate',
  DeregisterTargets: 'mutate',
  DescribeTargetGroups: 'describe',
  DescribeTargetHealth: 'describe',
  CreateTargetGroup: 'modify',
  DeleteTargetGroup: 'modify',
  DescribeRules: 'describe',
  DescribeListeners: 'describe',
  ModifyRule: 'modify',
  ModifyListener: 'modify',
};

/** The account and region an API call is made as (from its SigV4 credential scope). */
export interface Elbv2Caller {
  account: string;
  region: string;
}

/** A target as callers name it: `Id` is an IP address. */
export interface SimulatedTargetDescription {
  id: string;
  /** @default the port of the target group */
  port?: number;
  availabilityZone?: string;
}

/** A target with its current health, as DescribeTargetHealth and {@link Elbv2Simulator.targets} report it. */
export interface SimulatedTargetHealth {
  id: string;
  port: number;
  availabilityZone?: string;
  state: SimulatedTargetState;
  /** AWS reason code, e.g. `Elb.RegistrationInProgress`; absent when healthy. */
  reason?: string;
  description?: string;
}

/** What DescribeTargetGroups reports about a target group. */
export interface SimulatedTargetGroup {
  targetGroupArn: string;
  targetGroupName: string;
  protocol: string;
  port: number;
  vpcId: string;
  targetType: 'ip';
  loadBalancerArns: string[];
}

/** A target group to create; see {@link Elbv2Simulator.createTargetGroup}. */
export interface TargetGroupSpec {
  /** 12-digit account id. */
  account: string;
  region: string;
  /** 1-32 characters: letters, digits and hyphens, no hyphen at either end. */
  name: string;
  /** @default 80 */
  port?: number;
  /** @default "TCP" */
  protocol?: string;
  /** @default a made-up `vpc-<hex>` id */
  vpcId?: string;
  /** IP targets inside this range need a real zone; outside it they need zone `all`. @default "10.0.0.0/8" */
  vpcCidr?: string;
  /** Most targets (registered + draining) the group holds. @default options.targetsPerGroup */
  capacity?: number;
  /** Whether a load balancer uses the group; if not, targets report `unused`. @default true */
  attached?: boolean;
  /** @default options.deregistrationDelayMs */
  deregistrationDelayMs?: number;
  /** @default options.healthyAfterMs */
  healthyAfterMs?: number;
}

/** The requests {@link Elbv2Simulator.handle} serves, by action. */
export interface Elbv2Requests {
  CreateTargetGroup: { name: string; port?: number; protocol?: string; vpcId?: string };
  DeleteTargetGroup: { targetGroupArn: string };
  DescribeTargetGroups: { targetGroupArns?: string[]; names?: string[] };
  RegisterTargets: { targetGroupArn: string; targets: SimulatedTargetDescription[] };
  DeregisterTargets: { targetGroupArn: string; targets: SimulatedTargetDescription[] };
  DescribeTargetHealth: { targetGroupArn: string; targets?: SimulatedTargetDescription[] };
  DescribeRules: { ruleArns?: string[]; listenerArn?: string };
  DescribeListeners: { listenerArns?: string[]; loadBalancerArn?: string };
  ModifyRule: { ruleArn: string; actions?: SimulatedAction[] };
  ModifyListener: { listenerArn: string; defaultActions?: SimulatedAction[] };
}

/** The responses of {@link Elbv2Simulator.handle}, by action. */
export interface Elbv2Responses {
  CreateTargetGroup: { targetGroup: SimulatedTargetGroup };
  DeleteTargetGroup: Record<string, never>;
  DescribeTargetGroups: { targetGroups: SimulatedTargetGroup[] };
  RegisterTargets: Record<string, never>;
  DeregisterTargets: Record<string, never>;
  DescribeTargetHealth: { targetHealthDescriptions: SimulatedTargetHealth[] };
  DescribeRules: { rules: SimulatedRule[] };
  DescribeListeners: { listeners: SimulatedListener[] };
  ModifyRule: { rules: SimulatedRule[] };
  ModifyListener: { listeners: SimulatedListener[] };
}

/** One ELBv2 API request: the action and its parameters. */
export type Elbv2Request<A extends Elbv2Action = Elbv2Action> = {
  [K in A]: { action: K } & Elbv2Requests[K];
}[A];

/** One entry of the call log. */
export interface SimulatedCall {
  atMs: number;
  account: string;
  region: string;
  action: Elbv2Action;
  targetGroupArn?: string;
  /** How many targets the request named. */
  targets: number;
  /** Set when the call failed (including injected faults and throttling). */
  errorCode?: string;
}

/** Selects call log entries; every given field must match. */
export interface CallFilter {
  account?: string;
  region?: string;
  action?: Elbv2Action;
  targetGroupArn?: string;
  /** `null` selects the calls that succeeded. */
  errorCode?: string | null;
}

/** A failure to inject into matching calls; see {@link Elbv2Simulator.injectFault}. */
export interface FaultSpec {
  account?: string;
  targetGroupArn?: string;
  action?: Elbv2Action;
  /** AWS error code, e.g. `AccessDenied`, `InternalFailure`, `ServiceUnavailable`, `Throttling`. */
  code: string;
  /** @default "Injected fault: <code>" */
  message?: string;
  /** @default the status AWS uses for the code, else 400 */
  httpStatus?: number;
  /** How many matching calls fail. @default Infinity (until {@link Elbv2Simulator.clearFaults}) */
  times?: number;
}

/** Temporary credentials from {@link Elbv2Simulator.assumeRole}. */
export interface SimulatedCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
}

/** The identity behind an access key, as STS GetCallerIdentity reports it. */
export interface SimulatedIdentity {
  account: string;
  arn: string;
  userId: string;
}

/** Options for {@link Elbv2Simulator}. */
export interface Elbv2SimulatorOptions {
  /** Milliseconds since the epoch. @default Date.now */
  clock?: () => number;
  /** Uniform in [0, 1); picks latencies. @default Math.random */
  random?: () => number;
  /** The ELBv2 quota of targets per target group. @default 1000 */
  targetsPerGroup?: number;
  /** Whether draining targets count toward {@link TargetGroupSpec.capacity}. @default true */
  drainingCountsTowardQuota?: boolean;
  /** How long a deregistered target drains (the AWS default delay). @default 300000 */
  deregistrationDelayMs?: number;
  /** How long a new target stays `initial` before it is `healthy`. @default 0 */
  healthyAfterMs?: number;
  /** Token buckets per account + region + class; `false` disables throttling. @default {@link AWS_ELBV2_RATE_LIMITS} */
  rateLimits?: false | Partial<Record<OperationClass, RateLimit>>;
  /** Latency the HTTP server adds to each answer, picked uniformly. @default { min: 0, max: 0 } */
  latencyMs?: { min: number; max: number };
  /** Most call log entries kept; the oldest are dropped. @default 100000 */
  maxCallLog?: number;
  /** Most temporary credentials remembered; the oldest are forgotten. @default 100000 */
  maxIssuedCredentials?: number;
  /** Account of access keys the simulator did not issue. @default "123456789012" (as moto) */
  defaultAccount?: string;
  /** Accounts of fixed (not assumed) access key ids. @default {} */
  accessKeyAccounts?: Record<string, string>;
  /** Whether AssumeRole refuses roles not declared with {@link Elbv2Simulator.allowRole}. @default false */
  requireKnownRoles?: boolean;
}

/** {@link Elbv2SimulatorOptions} with every default applied, validated. */
export interface CompiledElbv2SimulatorOptions {
  clock: () => number;
  random: () => number;
  targetsPerGroup: number;
  drainingCountsTowardQuota: boolean;
  deregistrationDelayMs: number;
  healthyAfterMs: number;
  rateLimits: Partial<Record<OperationClass, RateLimit>>;
  latencyMs: { min: number; max: number };
  maxCallLog: number;
  maxIssuedCredentials: number;
  defaultAccount: string;
  accessKeyAccounts: Record<string, string>;
  requireKnownRoles: boolean;
}

/** An AWS error as the simulator answers it: wire code, message and HTTP status. */
export class Elbv2SimulatorError extends Error {
  override readonly name = 'Elbv2SimulatorError';
  /** `Sender` for client errors, `Receiver` for 5xx (the awsQuery `<Type>`). */
  readonly type: 'Sender' | 'Receiver';
  constructor(
    readonly code: string,
    message: string,
    readonly httpStatus: number = defaultHttpStatus(code),
  ) {
    super(message);
    this.type = httpStatus >= 500 ? 'Receiver' : 'Sender';
  }
}

// The statuses AWS uses for common (unmodeled) codes; modeled ELBv2 errors are all 400.
const HTTP_STATUS_OF_CODE: Readonly<Record<string, number>> = {
  AccessDenied: 403,
  AccessDeniedException: 403,
  MissingAuthenticationToken: 403,
  InvalidClientTokenId: 403,
  InternalFailure: 500,
  InternalError: 500,
  ServiceUnavailable: 503,
  Throttling: 400,
};

function defaultHttpStatus(code: string): number {
  return HTTP_STATUS_OF_CODE[code] ?? 400;
}

const ACCOUNT_ID = /^\d{12}$/;
const TARGET_GROUP_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/;
const TARGET_GROUP_ARN =
  /^arn:aws:elasticloadbalancing:([a-z0-9-]+):(\d{12}):targetgroup\/([A-Za-z0-9-]{1,32})\/[0-9a-f]{16}$/;
const ROLE_ARN = /^arn:aws:iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;
const MIN_ROLE_SESSION_SECONDS = 900;
const MAX_ROLE_SESSION_SECONDS = 43_200;
const DEFAULT_ROLE_SESSION_SECONDS = 3_600;

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`ELBv2 simulator option ${name} must be a non-negative number, got ${value}`);
  }
  return value;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`ELBv2 simulator option ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function accountId(name: string, value: string): string {
  if (!ACCOUNT_ID.test(value)) {
    throw new Error(`ELBv2 simulator option ${name} must be a 12-digit account id, got ${value}`);
  }
  return value;
}

/** Applies defaults and fails fast with the name of a bad setting. */
export function compileElbv2SimulatorOptions(
  options: Elbv2SimulatorOptions = {},
): CompiledElbv2SimulatorOptions {
  const rateLimits: Partial<Record<OperationClass, RateLimit>> = {};
  if (options.rateLimits !== false) {
    for (const cls of ['mutate', 'describe', 'modify'] as const) {
      const limit = options.rateLimits?.[cls] ?? AWS_ELBV2_RATE_LIMITS[cls];
      if (!(limit.ratePerSecond > 0) || !Number.isFinite(limit.ratePerSecond)) {
        throw new Error(
          `ELBv2 simulator option rateLimits.${cls}.ratePerSecond must be positive, got ${limit.ratePerSecond}`,
        );
      }
      rateLimits[cls] = {
        ratePerSecond: limit.ratePerSecond,
        burst: positiveInteger(`rateLimits.${cls}.burst`, limit.burst),
      };
    }
  }
  const latency = options.latencyMs ?? { min: 0, max: 0 };
  nonNegative('latencyMs.min', latency.min);
  nonNegative('latencyMs.max', latency.max);
  if (latency.max < latency.min) {
    throw new Error(
      `ELBv2 simulator option latencyMs.max (${latency.max}) must not be below latencyMs.min (${latency.min})`,
    );
  }
  const accessKeyAccounts: Record<string, string> = {};
  for (const [key, account] of Object.entries(options.accessKeyAccounts ?? {})) {
    accessKeyAccounts[key] = accountId(`accessKeyAccounts.${key}`, account);
  }
  return {
    clock: options.clock ?? Date.now,
    random: options.random ?? Math.random,
    targetsPerGroup: positiveInteger('targetsPerGroup', options.targetsPerGroup ?? 1000),
    drainingCountsTowardQuota: options.drainingCountsTowardQuota ?? true,
    deregistrationDelayMs: nonNegative(
      'deregistrationDelayMs',
      options.deregistrationDelayMs ?? 300_000,
    ),
    healthyAfterMs: nonNegative('healthyAfterMs', options.healthyAfterMs ?? 0),
    rateLimits,
    latencyMs: { min: latency.min, max: latency.max },
    maxCallLog: positiveInteger('maxCallLog', options.maxCallLog ?? 100_000),
    maxIssuedCredentials: positiveInteger(
      'maxIssuedCredentials',
      options.maxIssuedCredentials ?? 100_000,
    ),
    defaultAccount: accountId('defaultAccount', options.defaultAccount ?? '123456789012'),
    accessKeyAccounts,
    requireKnownRoles: options.requireKnownRoles ?? false,
  };
}

interface TargetRecord {
  id: string;
  port: number;
  availabilityZone?: string;
  registeredAtMs: number;
  /** Set while draining. */
  deregisteredAtMs?: number;
}

interface TargetGroupRecord {
  arn: string;
  account: string;
  region: string;
  name: string;
  port: number;
  protocol: string;
  vpcId: string;
  vpcRange: [ipaddr.IPv4 | ipaddr.IPv6, number];
  capacity: number;
  attached: boolean;
  loadBalancerArn: string;
  deregistrationDelayMs: number;
  healthyAfterMs: number;
  /** Keyed by {@link targetKey}. */
  targets: Map<string, TargetRecord>;
  /** Keyed by {@link targetKey}, or `<ip>|*` for every port of the IP. */
  healthOverrides: Map<string, 'healthy' | 'unhealthy'>;
}

interface Bucket {
  tokens: number;
  updatedAtMs: number;
}

interface ActiveFault {
  spec: FaultSpec;
  remaining: number;
}

interface IssuedCredentials {
  account: string;
  roleName: string;
  sessionName: string;
  roleId: string;
}

/** A parsed, validated target: `ip` is the normalized address, used in keys. */
interface ResolvedTarget {
  id: string;
  ip: string;
  address: ipaddr.IPv4 | ipaddr.IPv6;
  port: number;
  availabilityZone?: string;
}

function targetKey(ip: string, port: number | '*'): string {
  return `${ip}|${port}`;
}

function describeTarget(target: SimulatedTargetDescription): string {
  const zone =
    target.availabilityZone === undefined ? '' : ` (AvailabilityZone ${target.availabilityZone})`;
  return `${target.id}:${target.port ?? '<group port>'}${zone}`;
}

function parseIp(id: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  // Only dotted quads: ipaddr.isValid also accepts forms like "10.1" that AWS refuses.
  if (ipaddr.IPv4.isValidFourPartDecimal(id)) return ipaddr.IPv4.parse(id);
  if (id.includes(':') && !id.includes('%') && ipaddr.IPv6.isValid(id)) {
    return ipaddr.IPv6.parse(id);
  }
  return undefined;
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

function alphanumeric(length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  return Array.from(randomBytes(length), (b) => alphabet[b % alphabet.length]).join('');
}

/**
 * An in-memory model of ELBv2 target groups (and the STS roles that reach them) in many
 * accounts: the 1,000-target quota, health states, draining, throttling, fault injection and a
 * call log. No I/O and no timers: health is computed from timestamps when asked for, so a fake
 * `clock` drives it in tests. {@link Elbv2SimulatorServer} puts it behind the AWS wire protocol.
 */
export class Elbv2Simulator {
  readonly options: CompiledElbv2SimulatorOptions;
  readonly #groups = new Map<string, TargetGroupRecord>();
  readonly #buckets = new Map<string, Bucket>();
  readonly #faults: ActiveFault[] = [];
  readonly #roles = new Map<string, { externalId?: string }>();
  readonly #issued = new Map<string, IssuedCredentials>();
  // A ring buffer: the log is bounded so a long benchmark does not grow without end.
  readonly #log: (SimulatedCall | undefined)[] = [];
  #logStart = 0;
  #logSize = 0;

  /** ALB listeners and rules with forward actions (create them with its test helpers). */
  readonly listeners: SimulatedListeners;

  constructor(options: Elbv2SimulatorOptions = {}) {
    this.options = compileElbv2SimulatorOptions(options);
    this.listeners = new SimulatedListeners(
      (caller, arn) => {
        const group = this.#groups.get(arn);
        return group?.account === caller.account && group.region === caller.region;
      },
      (code, message) => new Elbv2SimulatorError(code, message),
    );
  }

  // ---- Setup and inspection (no throttling, no faults, not logged) ----

  /**
   * Creates an IP target group and returns its ARN
   * (`arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<16 hex>`).
   * @throws {@link Elbv2SimulatorError} `DuplicateTargetGroupName` when the account already has
   *   the name in the region, `ValidationError` for a bad name, account, port or CIDR.
   */
  createTargetGroup(spec: TargetGroupSpec): string {
    if (!ACCOUNT_ID.test(spec.account)) {
      throw new Elbv2SimulatorError(
        'ValidationError',
        `'${spec.account}' is not a 12-digit account id`,
      );
    }
    if (!TARGET_GROUP_NAME.test(spec.name)) {
      throw new Elbv2SimulatorError(
        'ValidationError',
        `Target group name '${spec.name}' must be 1-32 letters, digits or hyphens, not starting or ending with a hyphen`,
      );
    }
    const port = spec.port ?? 80;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Elbv2SimulatorError('ValidationError', `Port ${port} must be between 1 and 65535`);
    }
    const cidr = spec.vpcCidr ?? '10.0.0.0/8';
    if (!ipaddr.isValidCIDR(cidr)) {
      throw new Elbv2SimulatorError('ValidationError', `VPC CIDR '${cidr}' is not valid`);
    }
    for (const group of this.#groups.values()) {
      if (
        group.account === spec.account &&
        group.region === spec.region &&
        group.name === spec.name
      ) {
        throw new Elbv2SimulatorError(
          'DuplicateTargetGroupName',
          `A target group with the same name '${spec.name}' exists, but with different settings`,
        );
      }
    }
    const arn = `arn:aws:elasticloadbalancing:${spec.region}:${spec.account}:targetgroup/${spec.name}/${hex(8)}`;
    this.#groups.set(arn, {
      arn,
      account: spec.account,
      region: spec.region,
      name: spec.name,
      port,
      protocol: spec.protocol ?? 'TCP',
      vpcId: spec.vpcId ?? `vpc-${hex(8)}`,
      vpcRange: ipaddr.parseCIDR(cidr),
      capacity: positiveInteger('capacity', spec.capacity ?? this.options.targetsPerGroup),
      attached: spec.attached ?? true,
      loadBalancerArn: `arn:aws:elasticloadbalancing:${spec.region}:${spec.account}:loadbalancer/net/sim-${spec.name.slice(0, 28)}/${hex(8)}`,
      deregistrationDelayMs: nonNegative(
        'deregistrationDelayMs',
        spec.deregistrationDelayMs ?? this.options.deregistrationDelayMs,
      ),
      healthyAfterMs: nonNegative(
        'healthyAfterMs',
        spec.healthyAfterMs ?? this.options.healthyAfterMs,
      ),
      targets: new Map(),
      healthOverrides: new Map(),
    });
    return arn;
  }

  /** Deletes a target group, as someone other than tgfed would; `false` if it did not exist. */
  deleteTargetGroup(arn: string): boolean {
    return this.#groups.delete(arn);
  }

  /** Every registered or draining target of the group with its current health. */
  targets(arn: string): SimulatedTargetHealth[] {
    const group = this.#groups.get(arn);
    if (group === undefined) throw this.#notFound(arn);
    const now = this.options.clock();
    this.#purgeDrained(group, now);
    return [...group.targets.values()].map((t) => this.#health(group, t, now));
  }

  /**
   * Overrides the health checks of a target: `unhealthy` makes it fail them, `undefined` clears
   * the override. `port` undefined applies to every port of the IP.
   */
  setTargetHealth(
    arn: string,
    id: string,
    port: number | undefined,
    health: 'healthy' | 'unhealthy' | undefined,
  ): void {
    const group = this.#groups.get(arn);
    if (group === undefined) throw this.#notFound(arn);
    const address = parseIp(id);
    if (address === undefined) {
      throw new Elbv2SimulatorError('InvalidTarget', `Target id '${id}' is not an IP address`);
    }
    const key = targetKey(address.toNormalizedString(), port ?? '*');
    if (health === undefined) group.healthOverrides.delete(key);
    else group.healthOverrides.set(key, health);
  }

  /** Makes the next matching ELBv2 calls fail with the given error (until `times` are used up). */
  injectFault(fault: FaultSpec): void {
    const times = fault.times ?? Infinity;
    if (!(times > 0)) throw new Error(`fault times must be positive, got ${times}`);
    this.#faults.push({ spec: { ...fault }, remaining: times });
  }

  /** Removes every injected fault. */
  clearFaults(): void {
    this.#faults.length = 0;
  }

  /** Logged calls, oldest first, optionally filtered. Holds at most `options.maxCallLog` entries. */
  calls(filter: CallFilter = {}): SimulatedCall[] {
    const result: SimulatedCall[] = [];
    for (let i = 0; i < this.#logSize; i++) {
      const call = this.#log[(this.#logStart + i) % this.options.maxCallLog];
      if (call === undefined) continue;
      if (filter.account !== undefined && call.account !== filter.account) continue;
      if (filter.region !== undefined && call.region !== filter.region) continue;
      if (filter.action !== undefined && call.action !== filter.action) continue;
      if (filter.targetGroupArn !== undefined && call.targetGroupArn !== filter.targetGroupArn)
        continue;
      if (filter.errorCode !== undefined && (call.errorCode ?? null) !== filter.errorCode) continue;
      result.push({ ...call });
    }
    return result;
  }

  /** Empties the call log. */
  resetCalls(): void {
    this.#log.length = 0;
    this.#logStart = 0;
    this.#logSize = 0;
  }

  /** How long the HTTP server waits before answering one call (uniform in `options.latencyMs`). */
  latencyFor(): number {
    const { min, max } = this.options.latencyMs;
    return max === min ? min : min + this.options.random() * (max - min);
  }

  // ---- STS ----

  /** Declares a role; with `externalId`, AssumeRole must present exactly that external id. */
  allowRole(roleArn: string, requirements: { externalId?: string } = {}): void {
    if (!ROLE_ARN.test(roleArn)) throw new Error(`'${roleArn}' is not an IAM role ARN`);
    this.#roles.set(roleArn, { ...requirements });
  }

  /**
   * Issues temporary credentials for the account of the role ARN.
   * @throws {@link Elbv2SimulatorError} `AccessDenied` (403) for a wrong external id of a declared
   *   role, or an undeclared role with `requireKnownRoles`; `ValidationError` for a bad ARN,
   *   session name or duration.
   */
  assumeRole(request: {
    roleArn: string;
    externalId?: string;
    sessionName: string;
    durationSeconds?: number;
  }): SimulatedCredentials {
    const match = ROLE_ARN.exec(request.roleArn);
    if (match === null) {
      throw new Elbv2SimulatorError(
        'ValidationError',
        `'${request.roleArn}' is not a valid role ARN`,
      );
    }
    if (!/^[\w+=,.@-]{2,64}$/.test(request.sessionName)) {
      throw new Elbv2SimulatorError(
        'ValidationError',
        `RoleSessionName '${request.sessionName}' must be 2-64 characters of [\\w+=,.@-]`,
      );
    }
    const duration = request.durationSeconds ?? DEFAULT_ROLE_SESSION_SECONDS;
    if (
      !Number.isInteger(duration) ||
      duration < MIN_ROLE_SESSION_SECONDS ||
      duration > MAX_ROLE_SESSION_SECONDS
    ) {
      throw new Elbv2SimulatorError(
        'ValidationError',
        `DurationSeconds ${duration} must be between ${MIN_ROLE_SESSION_SECONDS} and ${MAX_ROLE_SESSION_SECONDS}`,
      );
    }
    const role = this.#roles.get(request.roleArn);
    const denied =
      role === undefined
        ? this.options.requireKnownRoles
        : role.externalId !== undefined && role.externalId !== request.externalId;
    if (denied) {
      throw new Elbv2SimulatorError(
        'AccessDenied',
        `Not authorized to perform: sts:AssumeRole on resource: ${request.roleArn}`,
        403,
      );
    }
    const accessKeyId = `ASIA${alphanumeric(16)}`;
    if (this.#issued.size >= this.options.maxIssuedCredentials) {
      const oldest = this.#issued.keys().next();
      if (oldest.done !== true) this.#issued.delete(oldest.value);
    }
    this.#issued.set(accessKeyId, {
      account: match[1] ?? '',
      roleName: match[2] ?? '',
      sessionName: request.sessionName,
      roleId: `AROA${alphanumeric(17)}`,
    });
    return {
      accessKeyId,
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: randomBytes(96).toString('base64'),
      expiration: new Date(this.options.clock() + duration * 1000),
    };
  }

  /**
   * The account of an access key id: the role's account for keys this simulator issued, else
   * `options.accessKeyAccounts`, else `options.defaultAccount`. Expiry is not enforced.
   */
  accountOfAccessKey(accessKeyId: string): string {
    return (
      this.#issued.get(accessKeyId)?.account ??
      this.options.accessKeyAccounts[accessKeyId] ??
      this.options.defaultAccount
    );
  }

  /** What STS GetCallerIdentity reports for an access key id. */
  identityOf(accessKeyId: string): SimulatedIdentity {
    const issued = this.#issued.get(accessKeyId);
    if (issued !== undefined) {
      return {
        account: issued.account,
        arn: `arn:aws:sts::${issued.account}:assumed-role/${issued.roleName}/${issued.sessionName}`,
        userId: `${issued.roleId}:${issued.sessionName}`,
      };
    }
    const account = this.accountOfAccessKey(accessKeyId);
    return { account, arn: `arn:aws:iam::${account}:root`, userId: account };
  }

  // ---- The ELBv2 API ----

  /**
   * Serves one ELBv2 API call as `caller`: injected faults first, then throttling, then the
   * operation. Every call is logged, failed ones with their error code.
   * @throws {@link Elbv2SimulatorError} with the code AWS would send.
   */
  handle<A extends Elbv2Action>(caller: Elbv2Caller, request: Elbv2Request<A>): Elbv2Responses[A] {
    const r = request as Elbv2Request;
    const call: SimulatedCall = {
      atMs: this.options.clock(),
      account: caller.account,
      region: caller.region,
      action: r.action,
      targets: 'targets' in r ? (r.targets?.length ?? 0) : 0,
    };
    if ('targetGroupArn' in r) call.targetGroupArn = r.targetGroupArn;
    try {
      this.#applyFaults(call);
      this.#takeToken(call);
      return this.#dispatch(caller, r) as Elbv2Responses[A];
    } catch (err) {
      call.errorCode = err instanceof Elbv2SimulatorError ? err.code : 'InternalFailure';
      throw err;
    } finally {
      this.#record(call);
    }
  }

  #dispatch(caller: Elbv2Caller, request: Elbv2Request): Elbv2Responses[Elbv2Action] {
    switch (request.action) {
      case 'CreateTargetGroup': {
        const spec: TargetGroupSpec = {
          account: caller.account,
          region: caller.region,
          name: request.name,
        };
        if (request.port !== undefined) spec.port = request.port;
        if (request.protocol !== undefined) spec.protocol = request.protocol;
        if (request.vpcId !== undefined) spec.vpcId = request.vpcId;
        const arn = this.createTargetGroup(spec);
        return { targetGroup: this.#describeGroup(this.#visibleGroup(caller, arn)) };
      }
      case 'DeleteTargetGroup':
        this.#checkArn(request.targetGroupArn);
        // AWS documents no TargetGroupNotFound for DeleteTargetGroup: deleting an absent group succeeds.
        if (this.#groups.get(request.targetGroupArn)?.account === caller.account) {
          this.#groups.delete(request.targetGroupArn);
        }
        return {};
      case 'DescribeTargetGroups':
        return { targetGroups: this.#describeTargetGroups(caller, request) };
      case 'RegisterTargets':
        this.#registerTargets(this.#visibleGroup(caller, request.targetGroupArn), request.targets);
        return {};
      case 'DeregisterTargets':
        this.#deregisterTargets(
          this.#visibleGroup(caller, request.targetGroupArn),
          request.targets,
        );
        return {};
      case 'DescribeTargetHealth':
        return {
          targetHealthDescriptions: this.#describeTargetHealth(
            this.#visibleGroup(caller, request.targetGroupArn),
            request.targets,
          ),
        };
      case 'DescribeRules':
        return { rules: this.listeners.describeRules(caller, request) };
      case 'DescribeListeners':
        return { listeners: this.listeners.describeListeners(caller, request) };
      case 'ModifyRule':
        return { rules: [this.listeners.modifyRule(caller, request)] };
      case 'ModifyListener':
        return { listeners: [this.listeners.modifyListener(caller, request)] };
    }
  }

  #registerTargets(group: TargetGroupRecord, targets: SimulatedTargetDescription[]): void {
    const resolved = this.#resolveTargets(group, targets, true);
    const now = this.options.clock();
    this.#purgeDrained(group, now);
    const counted = (t: TargetRecord): boolean =>
      t.deregisteredAtMs === undefined || this.options.drainingCountsTowardQuota;
    let total = 0;
    for (const t of group.targets.values()) if (counted(t)) total++;
    const added = new Set<string>();
    for (const t of resolved) {
      const key = targetKey(t.ip, t.port);
      const existing = group.targets.get(key);
      if (added.has(key) || (existing !== undefined && counted(existing))) continue;
      added.add(key);
    }
    if (total + added.size > group.capacity) {
      throw new Elbv2SimulatorError(
        'TooManyTargets',
        `You've reached the limit on the number of targets: target group ${group.arn} would hold ` +
          `${total + added.size} targets, its limit is ${group.capacity}`,
      );
    }
    for (const t of resolved) {
      const key = targetKey(t.ip, t.port);
      const existing = group.targets.get(key);
      if (existing !== undefined && existing.deregisteredAtMs === undefined) continue;
      const record: TargetRecord = { id: t.id, port: t.port, registeredAtMs: now };
      if (t.availabilityZone !== undefined) record.availabilityZone = t.availabilityZone;
      group.targets.set(key, record);
    }
  }

  #deregisterTargets(group: TargetGroupRecord, targets: SimulatedTargetDescription[]): void {
    const resolved = this.#resolveTargets(group, targets, false);
    const now = this.options.clock();
    this.#purgeDrained(group, now);
    // The simulator's choice: deregistering a target that is not registered succeeds and changes
    // nothing (tgfed must tolerate it anyway, e.g. after a lost response).
    for (const t of resolved) {
      const existing = group.targets.get(targetKey(t.ip, t.port));
      if (existing === undefined || existing.deregisteredAtMs !== undefined) continue;
      if (group.deregistrationDelayMs === 0) group.targets.delete(targetKey(t.ip, t.port));
      else existing.deregisteredAtMs = now;
    }
  }

  #describeTargetHealth(
    group: TargetGroupRecord,
    targets: SimulatedTargetDescription[] | undefined,
  ): SimulatedTargetHealth[] {
    const now = this.options.clock();
    this.#purgeDrained(group, now);
    if (targets === undefined || targets.length === 0) {
      return [...group.targets.values()].map((t) => this.#health(group, t, now));
    }
    return this.#resolveTargets(group, targets, false).map((t) => {
      const existing = group.targets.get(targetKey(t.ip, t.port));
      if (existing !== undefined) return this.#health(group, existing, now);
      const unused: SimulatedTargetHealth = {
        id: t.id,
        port: t.port,
        state: 'unused',
        reason: 'Target.NotRegistered',
        description: 'Target is not registered to the target group',
      };
      if (t.availabilityZone !== undefined) unused.availabilityZone = t.availabilityZone;
      return unused;
    });
  }

  #describeTargetGroups(
    caller: Elbv2Caller,
    query: Elbv2Requests['DescribeTargetGroups'],
  ): SimulatedTargetGroup[] {
    const arns = query.targetGroupArns ?? [];
    const names = query.names ?? [];
    if (arns.length > 0 && names.length > 0) {
      throw new Elbv2SimulatorError(
        'ValidationError',
        'Target group names and target group ARNs cannot be specified at the same time',
      );
    }
    if (arns.length > 0)
      return arns.map((arn) => this.#describeGroup(this.#visibleGroup(caller, arn)));
    const own = [...this.#groups.values()].filter(
      (g) => g.account === caller.account && g.region === caller.region,
    );
    if (names.length === 0) return own.map((g) => this.#describeGroup(g));
    return names.map((name) => {
      const group = own.find((g) => g.name === name);
      if (group === undefined) {
        throw new Elbv2SimulatorError('TargetGroupNotFound', `Target groups '${name}' not found`);
      }
      return this.#describeGroup(group);
    });
  }

  /** Validates every target first, so an invalid one fails the call before anything changes. */
  #resolveTargets(
    group: TargetGroupRecord,
    targets: SimulatedTargetDescription[],
    checkPlacement: boolean,
  ): ResolvedTarget[] {
    if (targets.length === 0) {
      throw new Elbv2SimulatorError('ValidationError', 'Targets must contain at least one target');
    }
    return targets.map((target) => {
      const invalid = (why: string): Elbv2SimulatorError =>
        new Elbv2SimulatorError(
          'InvalidTarget',
          `Target ${describeTarget(target)} is not valid: ${why}`,
        );
      const address = parseIp(target.id);
      if (address === undefined) throw invalid('the Id is not an IP address');
      const port = target.port ?? group.port;
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw invalid('the port must be between 1 and 65535');
      }
      if (checkPlacement) {
        const [range] = group.vpcRange;
        const inVpc = address.kind() === range.kind() && address.match(group.vpcRange);
        const cidr = `${range.toString()}/${group.vpcRange[1]}`;
        if (target.availabilityZone === 'all' && inVpc) {
          throw invalid(`AvailabilityZone 'all' is only for IPs outside the VPC (${cidr})`);
        }
        if (target.availabilityZone !== 'all' && !inVpc) {
          throw invalid(
            `the IP is outside the VPC (${cidr}); register it in AvailabilityZone 'all'`,
          );
        }
      }
      const resolved: ResolvedTarget = {
        id: target.id,
        ip: address.toNormalizedString(),
        address,
        port,
      };
      if (target.availabilityZone !== undefined)
        resolved.availabilityZone = target.availabilityZone;
      return resolved;
    });
  }

  #health(group: TargetGroupRecord, target: TargetRecord, now: number): SimulatedTargetHealth {
    const health: SimulatedTargetHealth = { id: target.id, port: target.port, state: 'healthy' };
    if (target.availabilityZone !== undefined) health.availabilityZone = target.availabilityZone;
    const set = (
      state: SimulatedTargetState,
      reason: string,
      description: string,
    ): SimulatedTargetHealth => Object.assign(health, { state, reason, description });
    if (target.deregisteredAtMs !== undefined) {
      return set(
        'draining',
        'Target.DeregistrationInProgress',
        'Target deregistration is in progress',
      );
    }
    if (!group.attached) {
      return set(
        'unused',
        'Target.NotInUse',
        'Target group is not configured to receive traffic from the load balancer',
      );
    }
    if (now < target.registeredAtMs + group.healthyAfterMs) {
      return set('initial', 'Elb.RegistrationInProgress', 'Target registration is in progress');
    }
    const ip = parseIp(target.id)?.toNormalizedString() ?? target.id;
    const override =
      group.healthOverrides.get(targetKey(ip, target.port)) ??
      group.healthOverrides.get(targetKey(ip, '*'));
    if (override === 'unhealthy') {
      return set('unhealthy', 'Target.FailedHealthChecks', 'Health checks failed');
    }
    return health;
  }

  #purgeDrained(group: TargetGroupRecord, now: number): void {
    for (const [key, t] of group.targets) {
      if (
        t.deregisteredAtMs !== undefined &&
        now >= t.deregisteredAtMs + group.deregistrationDelayMs
      ) {
        group.targets.delete(key);
      }
    }
  }

  #describeGroup(group: TargetGroupRecord): SimulatedTargetGroup {
    return {
      targetGroupArn: group.arn,
      targetGroupName: group.name,
      protocol: group.protocol,
      port: group.port,
      vpcId: group.vpcId,
      targetType: 'ip',
      loadBalancerArns: group.attached ? [group.loadBalancerArn] : [],
    };
  }

  #checkArn(arn: string): void {
    if (!TARGET_GROUP_ARN.test(arn)) {
      throw new Elbv2SimulatorError('ValidationError', `'${arn}' is not a valid target group ARN`);
    }
  }

  /** The group, if the caller's account and region can see it. */
  #visibleGroup(caller: Elbv2Caller, arn: string): TargetGroupRecord {
    this.#checkArn(arn);
    const group = this.#groups.get(arn);
    if (group === undefined || group.account !== caller.account || group.region !== caller.region) {
      throw this.#notFound(arn);
    }
    return group;
  }

  #notFound(arn: string): Elbv2SimulatorError {
    return new Elbv2SimulatorError('TargetGroupNotFound', `Target groups '${arn}' not found`);
  }

  #applyFaults(call: SimulatedCall): void {
    for (let i = 0; i < this.#faults.length; i++) {
      const fault = this.#faults[i];
      if (fault === undefined) continue;
      const { spec } = fault;
      if (spec.account !== undefined && spec.account !== call.account) continue;
      if (spec.action !== undefined && spec.action !== call.action) continue;
      if (spec.targetGroupArn !== undefined && spec.targetGroupArn !== call.targetGroupArn)
        continue;
      fault.remaining--;
      if (fault.remaining <= 0) this.#faults.splice(i, 1);
      throw new Elbv2SimulatorError(
        spec.code,
        spec.message ?? `Injected fault: ${spec.code}`,
        spec.httpStatus ?? defaultHttpStatus(spec.code),
      );
    }
  }

  #takeToken(call: SimulatedCall): void {
    const cls = OPERATION_CLASSES[call.action];
    const limit = this.options.rateLimits[cls];
    if (limit === undefined) return;
    const key = `${call.account}|${call.region}|${cls}`;
    const bucket = this.#buckets.get(key) ?? { tokens: limit.burst, updatedAtMs: call.atMs };
    const elapsedMs = Math.max(0, call.atMs - bucket.updatedAtMs);
    bucket.tokens = Math.min(limit.burst, bucket.tokens + (elapsedMs * limit.ratePerSecond) / 1000);
    bucket.updatedAtMs = call.atMs;
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) throw new Elbv2SimulatorError('Throttling', 'Rate exceeded', 400);
    bucket.tokens -= 1;
  }

  #record(call: SimulatedCall): void {
    const max = this.options.maxCallLog;
    if (this.#logSize < max) {
      this.#log[(this.#logStart + this.#logSize) % max] = call;
      this.#logSize++;
    } else {
      this.#log[this.#logStart] = call;
      this.#logStart = (this.#logStart + 1) % max;
    }
  }
}

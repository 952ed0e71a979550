/**
 * The narrow view of ELBv2 a reconcile needs: one target group's targets. The SDK-backed
 * implementation is `Elbv2TargetGroupClients`; unit tests use fakes.
 */

/** A target as RegisterTargets / DeregisterTargets take it. */
export interface TargetRef {
  /** IP address (canonical text) of an `ip` target group. */
  readonly id: string;
  readonly port: number;
  /** `all` for addresses outside the group's VPC; absent lets ELB pick from the VPC subnets. */
  readonly availabilityZone?: string;
}

/** ELBv2's TargetHealth states. */
export type TargetHealthState =
  | 'initial'
  | 'healthy'
  | 'unhealthy'
  | 'unhealthy.draining'
  | 'unused'
  | 'draining'
  | 'unavailable';

/** A target as DescribeTargetHealth reports it. */
export interface ObservedTarget extends TargetRef {
  readonly state: TargetHealthState;
  /** ELB's reason code, e.g. `Target.FailedHealthChecks`. */
  readonly reason?: string;
}

/** Where a target group lives and how to reach it (a binding's `TargetGroup`). */
export interface TargetGroupLocation {
  readonly arn: string;
  readonly accountId: string;
  readonly region: string;
  /** Role to assume; '' uses the worker's own credentials. */
  readonly roleArn: string;
  readonly externalId: string;
}

/** One target group's ELBv2 calls. Errors are the SDK's, unclassified. */
export interface TargetGroupApi {
  /** Every registered or draining target of the group. */
  describeTargetHealth(signal?: AbortSignal): Promise<ObservedTarget[]>;
  registerTargets(targets: readonly TargetRef[], signal?: AbortSignal): Promise<void>;
  deregisterTargets(targets: readonly TargetRef[], signal?: AbortSignal): Promise<void>;
}

/** Gives the API of a group at its location (clients cached per role and region). */
export interface TargetGroupApiFactory {
  forGroup(location: TargetGroupLocation): TargetGroupApi;
}

const HEALTH_STATES: ReadonlySet<string> = new Set<TargetHealthState>([
  'initial',
  'healthy',
  'unhealthy',
  'unhealthy.draining',
  'unused',
  'draining',
  'unavailable',
]);

/** The state as tgfed knows it; an unknown state from a newer API counts as `unavailable`. */
export function targetHealthState(state: string | undefined): TargetHealthState {
  return state !== undefined && HEALTH_STATES.has(state)
    ? (state as TargetHealthState)
    : 'unavailable';
}

/**
 * Whether a target in this state occupies its place: a draining target is on its way out and
 * does not count as present (register it again if it is desired).
 */
export function isPresent(state: TargetHealthState): boolean {
  return state !== 'draining' && state !== 'unhealthy.draining';
}

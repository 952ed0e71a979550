import {
  Elbv2Simulator,
  type Elbv2Action,
  type Elbv2Caller,
  type Elbv2Request,
  type Elbv2Responses,
} from '../../hub/aws/simulator/index.js';

/**
 * The ELBv2 simulator, also counting per target (`ip:port`) the RegisterTargets and
 * DeregisterTargets calls that succeeded, so that a test can prove "registered exactly once".
 */
export class RecordingSimulator extends Elbv2Simulator {
  /** Group ARN → `ip:port` → successful RegisterTargets naming it. */
  readonly registrations = new Map<string, Map<string, number>>();
  /** Group ARN → `ip:port` → successful DeregisterTargets naming it. */
  readonly deregistrations = new Map<string, Map<string, number>>();

  override handle<A extends Elbv2Action>(
    caller: Elbv2Caller,
    request: Elbv2Request<A>,
  ): Elbv2Responses[A] {
    const response = super.handle(caller, request);
    const r = request as Elbv2Request;
    if (r.action === 'RegisterTargets' || r.action === 'DeregisterTargets') {
      const byGroup = r.action === 'RegisterTargets' ? this.registrations : this.deregistrations;
      let counts = byGroup.get(r.targetGroupArn);
      if (counts === undefined) byGroup.set(r.targetGroupArn, (counts = new Map<string, number>()));
      for (const t of r.targets) {
        const key = `${t.id}:${t.port ?? ''}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    return response;
  }

  /** `ip:port` of the group's registered (not draining) targets, sorted. */
  registered(arn: string): string[] {
    return this.targets(arn)
      .filter((t) => t.state !== 'draining')
      .map((t) => `${t.id}:${t.port}`)
      .sort();
  }
}

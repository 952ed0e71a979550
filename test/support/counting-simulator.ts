import { Elbv2Simulator } from '../../hub/aws/simulator/index.js';

/** The ELBv2 simulator, counting the AssumeRole calls it answers per role. */
export class CountingSimulator extends Elbv2Simulator {
  readonly assumed = new Map<string, number>();

  override assumeRole(request: Parameters<Elbv2Simulator['assumeRole']>[0]) {
    this.assumed.set(request.roleArn, (this.assumed.get(request.roleArn) ?? 0) + 1);
    return super.assumeRole(request);
  }
}

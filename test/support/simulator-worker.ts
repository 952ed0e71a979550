import type { ReconcileWorkerDependencies } from '../../hub/reconcile-worker.js';

/**
 * Worker dependencies that reach tgfed's ELBv2 simulator, and its STS, at `url`. The access key
 * names the caller in the simulator's call log (tests that share one simulator tell workers apart).
 */
export function simulatorWorkerDeps(
  url: string,
  accessKeyId = 'AKIDWORKER',
): ReconcileWorkerDependencies {
  return {
    awsClients: {
      elbv2: { endpoint: url, credentials: { accessKeyId, secretAccessKey: 'secret' } },
      sts: { endpoint: url },
    },
  };
}

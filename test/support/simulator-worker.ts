import type { ReconcileWorkerDependencies } from '../../hub/reconcile-worker.js';

/** Worker dependencies that reach tgfed's ELBv2 simulator, and its STS, at `url`. */
export function simulatorWorkerDeps(url: string): ReconcileWorkerDependencies {
  return {
    awsClients: {
      elbv2: {
        endpoint: url,
        credentials: { accessKeyId: 'AKIDWORKER', secretAccessKey: 'secret' },
      },
      sts: { endpoint: url },
    },
  };
}

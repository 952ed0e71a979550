import { KubeConfig } from '@kubernetes/client-node';
import type { Command } from 'commander';
import {
  componentCommand,
  createLogger,
  exitOnSignals,
  loadComponentSettings,
  tgfedVersion,
} from '../../shared/index.js';
import { Agent } from '../agent.js';
import { agentOptionsSchema } from '../config/agent-options.js';

/**
 * `tgfed agent`: runs the in-cluster agent until SIGTERM. Settings come from `--config <file>`,
 * `TGFED_*` variables and flags (flags win). The Kubernetes connection is the in-cluster service
 * account, or `--kubeconfig`/`KUBECONFIG` outside a cluster.
 */
export function agentCommand(): Command {
  const command = componentCommand(
    'agent',
    'Watch EndpointSlices in this cluster and stream them to the hub',
    agentOptionsSchema,
  ).option('--kubeconfig <file>', 'kubeconfig to use outside a cluster [env KUBECONFIG]');
  command.action(async (flags: Record<string, unknown>) => {
    const options = loadComponentSettings('agent', agentOptionsSchema, flags);
    if (options === undefined) return;
    const logger = createLogger({
      name: 'tgfed-agent',
      level: options.logLevel,
      bindings: { cluster: options.clusterId },
    });
    const kubeConfig = new KubeConfig();
    const kubeconfigFile = flags['kubeconfig'] as string | undefined;
    if (kubeconfigFile !== undefined) kubeConfig.loadFromFile(kubeconfigFile);
    else kubeConfig.loadFromDefault();

    const agent = new Agent(options, { kubeConfig, logger, version: tgfedVersion() });
    exitOnSignals(logger, options.shutdownGraceMs, () => agent.shutdown());
    await agent.start();
    logger.info({ hub: options.hubAddress, healthPort: agent.healthPort }, 'agent started');
  });
  return command;
}

import { KubeConfig } from '@kubernetes/client-node';
import { Command } from 'commander';
import {
  ConfigError,
  addSettingsOptions,
  createLogger,
  loadConfig,
  tgfedVersion,
} from '../../shared/index.js';
import { Agent } from '../agent.js';
import { agentOptionsSchema } from '../config/agent-options.js';

/** Exit codes of `tgfed agent`. */
export const agentExitCodes = { ok: 0, failed: 1, badConfig: 2 } as const;

/**
 * `tgfed agent`: runs the in-cluster agent until SIGTERM. Settings come from `--config <file>`,
 * `TGFED_*` variables and flags (flags win). The Kubernetes connection is the in-cluster service
 * account, or `--kubeconfig`/`KUBECONFIG` outside a cluster.
 */
export function agentCommand(): Command {
  const command = new Command('agent')
    .description('Watch EndpointSlices in this cluster and stream them to the hub')
    .option(
      '--config <file>',
      'YAML file with settings (keys as the flags, in camelCase) [env TGFED_CONFIG]',
    )
    .option('--kubeconfig <file>', 'kubeconfig to use outside a cluster [env KUBECONFIG]');
  addSettingsOptions(command, agentOptionsSchema);
  command.action(async (flags: Record<string, unknown>) => {
    let options;
    try {
      options = loadConfig(agentOptionsSchema, {
        file: (flags['config'] as string | undefined) ?? process.env['TGFED_CONFIG'],
        flags,
      });
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`tgfed agent: ${err.message}\n`);
        process.exitCode = agentExitCodes.badConfig;
        return;
      }
      throw err;
    }
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
    let signals = 0;
    const stop = (signal: string) => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting at once');
        process.exit(agentExitCodes.failed);
      }
      logger.info({ signal, graceMs: options.shutdownGraceMs }, 'shutting down');
      void agent.shutdown().then(() => process.exit(agentExitCodes.ok));
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    await agent.start();
    logger.info({ hub: options.hubAddress, healthPort: agent.healthPort }, 'agent started');
  });
  return command;
}

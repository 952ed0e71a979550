import { Command } from 'commander';
import {
  ConfigError,
  addSettingsOptions,
  createLogger,
  loadConfig,
  tgfedVersion,
} from '../../shared/index.js';
import { ConfigFileError, hubOptionsSchema } from '../config/index.js';
import { BindingFileError } from '../federation/binding-file.js';
import { Hub } from '../hub.js';

/** Exit codes of `tgfed hub`. */
export const hubExitCodes = { ok: 0, failed: 1, badConfig: 2 } as const;

/**
 * `tgfed hub`: runs a hub replica (agent listener, admin listener, probes) until SIGTERM.
 * Settings come from `--config <file>`, `TGFED_*` variables and flags (flags win).
 */
export function hubCommand(): Command {
  const command = new Command('hub')
    .description('Serve agent streams and the admin API, keeping federated state in Redis')
    .option(
      '--config <file>',
      'YAML file with settings (keys as the flags, in camelCase) [env TGFED_CONFIG]',
    );
  addSettingsOptions(command, hubOptionsSchema);
  command.action(async (flags: Record<string, unknown>) => {
    let options;
    try {
      options = loadConfig(hubOptionsSchema, {
        file: (flags['config'] as string | undefined) ?? process.env['TGFED_CONFIG'],
        flags,
      });
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`tgfed hub: ${err.message}\n`);
        process.exitCode = hubExitCodes.badConfig;
        return;
      }
      throw err;
    }
    const logger = createLogger({
      name: 'tgfed-hub',
      level: options.logLevel,
      bindings: { hub: options.hubId },
    });
    const hub = new Hub(options, { logger });
    let signals = 0;
    const stop = (signal: string) => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting at once');
        process.exit(hubExitCodes.failed);
      }
      logger.info({ signal, graceMs: options.shutdownGraceMs }, 'shutting down');
      void hub.shutdown().then(() => process.exit(hubExitCodes.ok));
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    try {
      await hub.start();
    } catch (err) {
      if (err instanceof ConfigFileError || err instanceof BindingFileError) {
        process.stderr.write(`tgfed hub: ${err.message}\n`);
        process.exitCode = hubExitCodes.badConfig;
        return;
      }
      logger.fatal({ err }, 'hub failed to start');
      process.exitCode = hubExitCodes.failed;
      return;
    }
    logger.info(
      {
        version: tgfedVersion(),
        agentPort: hub.agentPort,
        adminPort: hub.adminPort,
        healthPort: hub.healthPort,
      },
      'hub started',
    );
  });
  return command;
}

import type { Command } from 'commander';
import {
  componentCommand,
  componentExitCodes,
  createLogger,
  exitOnSignals,
  loadComponentSettings,
  tgfedVersion,
} from '../../shared/index.js';
import { ConfigFileError, hubOptionsSchema, workerOptionsSchema } from '../config/index.js';
import { BindingFileError } from '../federation/binding-file.js';
import { Hub } from '../hub.js';

/**
 * `tgfed hub`: runs a hub replica (agent listener, admin listener, probes) until SIGTERM.
 * Settings come from `--config <file>`, `TGFED_*` variables and flags (flags win).
 */
export function hubCommand(): Command {
  const command = componentCommand(
    'hub',
    'Serve agent streams and the admin API, keeping federated state in Redis',
    hubOptionsSchema,
  );
  command.action(async (flags: Record<string, unknown>) => {
    const options = loadComponentSettings(
      'hub',
      hubOptionsSchema,
      flags,
      new Set(Object.keys(workerOptionsSchema.shape)),
    );
    if (options === undefined) return;
    const logger = createLogger({
      name: 'tgfed-hub',
      level: options.logLevel,
      bindings: { hub: options.hubId },
    });
    const hub = new Hub(options, { logger });
    exitOnSignals(logger, options.shutdownGraceMs, () => hub.shutdown());
    try {
      await hub.start();
    } catch (err) {
      if (err instanceof ConfigFileError || err instanceof BindingFileError) {
        process.stderr.write(`tgfed hub: ${err.message}\n`);
        process.exitCode = componentExitCodes.badConfig;
        return;
      }
      logger.fatal({ err }, 'hub failed to start');
      process.exitCode = componentExitCodes.failed;
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

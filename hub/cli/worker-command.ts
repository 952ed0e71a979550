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
import { ReconcileWorker } from '../reconcile-worker.js';

/**
 * `tgfed worker`: consumes the reconcile queues and keeps ELBv2 target groups in sync until
 * SIGTERM. Settings come from `--config <file>` (the hub's file works), `TGFED_*` variables and
 * flags; AWS endpoints and credentials from the SDK's standard settings.
 */
export function workerCommand(): Command {
  const command = componentCommand(
    'worker',
    'Reconcile ELBv2 target groups from the federated state in Redis',
    workerOptionsSchema,
  );
  command.action(async (flags: Record<string, unknown>) => {
    const options = loadComponentSettings(
      'worker',
      workerOptionsSchema,
      flags,
      new Set(Object.keys(hubOptionsSchema.shape)),
    );
    if (options === undefined) return;
    const logger = createLogger({
      name: 'tgfed-worker',
      level: options.logLevel,
      bindings: { worker: options.workerId },
    });
    const worker = new ReconcileWorker(options, { logger });
    exitOnSignals(logger, options.shutdownGraceMs, () => worker.shutdown());
    try {
      await worker.start();
    } catch (err) {
      if (err instanceof ConfigFileError) {
        process.stderr.write(`tgfed worker: ${err.message}\n`);
        process.exitCode = componentExitCodes.badConfig;
        return;
      }
      logger.fatal({ err }, 'worker failed to start');
      process.exitCode = componentExitCodes.failed;
      return;
    }
    logger.info({ version: tgfedVersion(), healthPort: worker.healthPort }, 'worker started');
  });
  return command;
}

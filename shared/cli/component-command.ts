import { Command } from 'commander';
import type { z } from 'zod';
import { ConfigError, loadConfig } from '../config/config-loader.js';
import { addSettingsOptions } from '../config/settings-options.js';
import type { Logger } from '../logging/logger.js';

/** Exit codes of the long-running commands (`tgfed agent`, `tgfed hub`, ...). */
export const componentExitCodes = { ok: 0, failed: 1, badConfig: 2 } as const;

/**
 * A long-running component's command: `--config <file>` plus one flag per setting of `schema`
 * (each documented with its environment variable and default).
 */
export function componentCommand(name: string, description: string, schema: z.ZodObject): Command {
  const command = new Command(name)
    .description(description)
    .option(
      '--config <file>',
      'YAML file with settings (keys as the flags, in camelCase) [env TGFED_CONFIG]',
    );
  addSettingsOptions(command, schema);
  return command;
}

/**
 * The component's settings from `--config`/`TGFED_CONFIG`, the environment and the flags; on a
 * bad value prints which setting and why, sets exit code 2 and returns undefined.
 */
export function loadComponentSettings<S extends z.ZodObject>(
  commandName: string,
  schema: S,
  flags: Record<string, unknown>,
  sharedFileKeys?: ReadonlySet<string>,
): z.infer<S> | undefined {
  try {
    return loadConfig(schema, {
      file: (flags['config'] as string | undefined) ?? process.env['TGFED_CONFIG'],
      flags,
      sharedFileKeys,
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tgfed ${commandName}: ${err.message}\n`);
      process.exitCode = componentExitCodes.badConfig;
      return undefined;
    }
    throw err;
  }
}

/**
 * SIGTERM/SIGINT: graceful `shutdown` (which bounds itself by its grace period), then exit 0; a
 * second signal exits at once with 1.
 */
export function exitOnSignals(
  logger: Logger,
  graceMs: number,
  shutdown: () => Promise<void>,
): void {
  let signals = 0;
  const stop = (signal: string) => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(componentExitCodes.failed);
    }
    logger.info({ signal, graceMs }, 'shutting down');
    void shutdown().then(
      () => process.exit(componentExitCodes.ok),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(componentExitCodes.failed);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

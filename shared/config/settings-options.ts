import { Option, type Command } from 'commander';
import type { z } from 'zod';
import { describeSettings } from './config-loader.js';

/**
 * Adds one flag per schema field to a command: `--batch-window-ms <number>`, documented with the
 * field's description, its environment variable and default, so `--help` tells all three.
 * Values stay raw here; `loadConfig` validates them with the schema.
 */
export function addSettingsOptions(command: Command, schema: z.ZodObject): Command {
  for (const doc of describeSettings(schema)) {
    const valueName =
      doc.kind === 'array' ? '<list>' : doc.kind === 'number' ? '<number>' : '<value>';
    const flags = doc.kind === 'boolean' ? doc.flag : `${doc.flag} ${valueName}`;
    const defaultText =
      doc.defaultValue === undefined ||
      (Array.isArray(doc.defaultValue) && doc.defaultValue.length === 0)
        ? ''
        : ` (default: ${JSON.stringify(doc.defaultValue)})`;
    const option = new Option(flags, `${doc.description} [env ${doc.env}]${defaultText}`);
    if (doc.kind === 'array')
      option.argParser((value: string) =>
        value
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      );
    command.addOption(option);
  }
  return command;
}

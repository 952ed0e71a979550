import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { ApplyBindingResponse, type Binding } from '../../../shared/index.js';
import { BindingFileError, bindingsFromDocument } from '../../federation/binding-file.js';
import {
  adminCommand,
  runAdminCommand,
  type AdminCommandFlags,
  type CliContext,
} from './admin-command.js';
import { CliCommandError, CliUsageError, cliErrorOf, type CliExitCode } from './cli-errors.js';
import type { CliIo } from './cli-io.js';
import { writeStructured } from './cli-output.js';

// Fields the hub sets (as `tgfed get bindings -o yaml` prints them): dropped from an applied
// file so that get's output can be edited and applied again.
const OUTPUT_ONLY_FIELDS = ['version', 'updatedUnixMs'];

function withoutOutputOnlyFields(content: unknown): unknown {
  const strip = (entry: unknown): unknown => {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return entry;
    return Object.fromEntries(
      Object.entries(entry).filter(([key]) => !OUTPUT_ONLY_FIELDS.includes(key)),
    );
  };
  if (Array.isArray(content)) return content.map(strip);
  if (content !== null && typeof content === 'object' && 'bindings' in content) {
    const bindings = content.bindings;
    return { ...content, bindings: Array.isArray(bindings) ? bindings.map(strip) : bindings };
  }
  return content;
}

/**
 * Reads a bindings file (`-` for stdin) in the hub's bindings-file format and validates it the
 * way the hub does at start. Throws {@link CliUsageError} listing every violation.
 */
export async function readBindingsFile(file: string, io: CliIo): Promise<Binding[]> {
  const name = file === '-' ? 'stdin' : file;
  let text: string;
  try {
    text = file === '-' ? await io.readStdin() : await readFile(file, 'utf8');
  } catch (err) {
    throw new CliUsageError(`cannot read ${name}: ${(err as Error).message}`, { cause: err });
  }
  let content: unknown;
  try {
    content = parseYaml(text);
  } catch (err) {
    throw new CliUsageError(`${name} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  try {
    return bindingsFromDocument(withoutOutputOnlyFields(content), name);
  } catch (err) {
    if (err instanceof BindingFileError) {
      throw new CliUsageError(
        err.message.replace(/^invalid bindings file:/, `invalid bindings in ${name}:`),
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}

/**
 * `tgfed apply -f bindings.yaml`: creates or replaces each binding of the file (ApplyBinding).
 * A binding the hub rejects is reported and the others still applied (exit 1); an unreachable
 * hub or refused credentials stop at once.
 */
export function applyCommand(ctx: CliContext): Command {
  return adminCommand('apply', 'Create or replace the bindings of a file')
    .requiredOption(
      '-f, --filename <file>',
      "bindings YAML, as the hub's bindingsFile; - for stdin",
    )
    .option('--dry-run', 'validate on the hub and show what would change, change nothing')
    .addHelpText(
      'after',
      `
The file is a YAML list of bindings or a mapping with a bindings: list, keys as the proto
JSON names (what "tgfed get bindings -o yaml" prints; its version and updatedUnixMs are ignored).

Examples:
  tgfed apply -f bindings.yaml
  tgfed get bindings -o yaml | tgfed apply -f - --dry-run`,
    )
    .action(async (flags: AdminCommandFlags & { filename: string; dryRun?: boolean }) => {
      await runAdminCommand(ctx, 'apply', flags, async (scope) => {
        const { io, output } = scope;
        const bindings = await readBindingsFile(flags.filename, io);
        const api = scope.api;
        const dryRun = flags.dryRun === true;
        const results: ApplyBindingResponse[] = [];
        let code: CliExitCode = 0;
        for (const binding of bindings) {
          try {
            const response = await api.applyBinding({ binding, dryRun });
            results.push(response);
            if (output === 'table') {
              const verb = response.changed
                ? dryRun
                  ? 'would change'
                  : 'configured'
                : 'unchanged';
              const version = response.binding?.version ?? 0;
              io.stdout.write(
                `binding/${binding.name} ${verb}${version === 0 ? '' : ` (version ${version})`}${dryRun ? ' (dry run)' : ''}\n`,
              );
            }
          } catch (caught) {
            const err = cliErrorOf(caught, '');
            if (!(err instanceof CliCommandError) || err.exitCode !== 1) throw caught;
            io.stderr.write(`tgfed apply: binding/${binding.name}: ${err.message}\n`);
            code = 1;
          }
        }
        if (output !== 'table') {
          writeStructured(io, output, {
            results: results.map((r) => ApplyBindingResponse.toJSON(r)),
          });
        }
        return code;
      });
    });
}

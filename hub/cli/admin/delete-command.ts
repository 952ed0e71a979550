import * as grpc from '@grpc/grpc-js';
import type { Command } from 'commander';
import {
  adminCommand,
  runAdminCommand,
  type AdminCommandFlags,
  type CliContext,
} from './admin-command.js';
import { readBindingsFile } from './apply-command.js';
import { CliUsageError, hasStatus, type CliExitCode } from './cli-errors.js';
import { writeStructured } from './cli-output.js';
import { resourceKind } from './get-command.js';

/**
 * `tgfed delete binding <name...>` or `tgfed delete -f bindings.yaml`: removes bindings
 * (DeleteBinding). The deregistrations that follow pass the mass-deregistration guard, because
 * the deletion is explicit.
 */
export function deleteCommand(ctx: CliContext): Command {
  return adminCommand('delete', 'Delete bindings by name or those of a file')
    .argument('[kind]', 'binding (the only kind that can be deleted)')
    .argument('[names...]', 'binding names')
    .option('-f, --filename <file>', 'delete the bindings this file names; - for stdin')
    .option('--ignore-not-found', 'a binding that does not exist is no error')
    .addHelpText(
      'after',
      `
Deleting a binding deregisters its targets (not held by the mass-deregistration guard).

Examples:
  tgfed delete binding web
  tgfed delete -f bindings.yaml`,
    )
    .action(
      async (
        kindText: string | undefined,
        names: string[],
        flags: AdminCommandFlags & { filename?: string; ignoreNotFound?: boolean },
      ) => {
        await runAdminCommand(ctx, 'delete', flags, async (scope) => {
          const { io, output } = scope;
          let targets: string[];
          if (flags.filename !== undefined) {
            if (kindText !== undefined) {
              throw new CliUsageError('pass either -f <file> or binding <name...>, not both');
            }
            targets = (await readBindingsFile(flags.filename, io)).map((b) => b.name);
          } else {
            if (kindText === undefined || names.length === 0) {
              throw new CliUsageError('what to delete: binding <name...>, or -f <file>');
            }
            if (resourceKind(kindText) !== 'bindings') {
              throw new CliUsageError(`only bindings can be deleted, not ${kindText}`);
            }
            targets = names;
          }
          const api = scope.api;
          let code: CliExitCode = 0;
          const deleted: string[] = [];
          for (const name of targets) {
            try {
              await api.deleteBinding({ name, version: 0 });
              deleted.push(name);
              if (output === 'table') io.stdout.write(`binding/${name} deleted\n`);
            } catch (err) {
              if (!hasStatus(err, grpc.status.NOT_FOUND)) throw err;
              if (flags.ignoreNotFound !== true) {
                io.stderr.write(`tgfed delete: binding/${name}: not found\n`);
                code = 1;
              }
            }
          }
          if (output !== 'table') writeStructured(io, output, { deleted });
          return code;
        });
      },
    );
}

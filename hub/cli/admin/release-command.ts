import type { Command } from 'commander';
import { ReleaseHeldOperationResponse } from '../../../shared/index.js';
import {
  adminCommand,
  runAdminCommand,
  type AdminCommandFlags,
  type CliContext,
} from './admin-command.js';
import { writeStructured } from './cli-output.js';

/**
 * `tgfed release <id>`: the operator override of the mass-deregistration guard
 * (ReleaseHeldOperation); the held deregistrations are applied at once.
 */
export function releaseCommand(ctx: CliContext): Command {
  return adminCommand('release', 'Let a reconcile held by the mass-deregistration guard go ahead')
    .argument('<id>', 'held operation id (tgfed diff <arn> or tgfed status lists them)')
    .action(async (id: string, flags: AdminCommandFlags) => {
      await runAdminCommand(ctx, 'release', flags, async ({ api, io, output }) => {
        const response = await api.releaseHeldOperation({ id });
        const op = response.operation;
        if (output !== 'table') {
          writeStructured(io, output, ReleaseHeldOperationResponse.toJSON(response));
        } else if (op !== undefined) {
          io.stdout.write(
            `released ${op.id}: ${op.deregistrations} of ${op.targetsBefore} targets of ${op.targetGroupArn} will be deregistered\n`,
          );
        }
      });
    });
}

import type { Command } from 'commander';
import { TargetGroupStatus } from '../../../shared/index.js';
import {
  adminCommand,
  runAdminCommand,
  type AdminCommandFlags,
  type CliContext,
} from './admin-command.js';
import { targetGroupDiff } from './admin-views.js';
import { CliCommandError } from './cli-errors.js';
import { writeStructured } from './cli-output.js';

/**
 * `tgfed diff <target group arn>`: desired vs actual vs owned targets of one group, its last
 * reconcile, held operations and conflicts (GetTargetGroupStatus). Exits 1 when the group is not
 * in sync, like diff(1).
 */
export function diffCommand(ctx: CliContext): Command {
  return adminCommand('diff', 'Compare desired, actual and owned targets of a target group')
    .argument('<arn>', 'target group ARN')
    .addHelpText(
      'after',
      `
desired: endpoints the bindings select; actual: targets in ELB as the workers last saw them;
owned: targets tgfed registered (the only ones it deregisters). Exits 0 in sync, 1 otherwise.`,
    )
    .action(async (arn: string, flags: AdminCommandFlags) => {
      await runAdminCommand(ctx, 'diff', flags, async ({ api, io, output }) => {
        const { status } = await api.getTargetGroupStatus({ arn });
        if (status === undefined) throw new CliCommandError(`target group ${arn} not found`, 1);
        if (output === 'table') io.stdout.write(targetGroupDiff(status, io.now()));
        else writeStructured(io, output, TargetGroupStatus.toJSON(status));
        return status.inSync ? 0 : 1;
      });
    });
}

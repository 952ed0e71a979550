import type { Command } from 'commander';
import { TriggerReconcileResponse } from '../../../shared/index.js';
import {
  adminCommand,
  runAdminCommand,
  type AdminCommandFlags,
  type CliContext,
} from './admin-command.js';
import { writeStructured } from './cli-output.js';

/** `tgfed reconcile <arn> [--refresh]`: queues an operator reconcile (TriggerReconcile). */
export function reconcileCommand(ctx: CliContext): Command {
  return adminCommand('reconcile', 'Reconcile a target group now')
    .argument('<arn>', 'target group ARN')
    .option('--refresh', 'describe the group in ELB first instead of trusting the cached state')
    .action(async (arn: string, flags: AdminCommandFlags & { refresh?: boolean }) => {
      await runAdminCommand(ctx, 'reconcile', flags, async ({ api, io, output }) => {
        const response = await api.triggerReconcile({
          targetGroupArn: arn,
          refresh: flags.refresh === true,
        });
        if (output === 'table') {
          io.stdout.write(
            `reconcile of ${arn} queued (job ${response.jobId})${flags.refresh === true ? ', with a refresh' : ''}\n`,
          );
        } else {
          writeStructured(io, output, TriggerReconcileResponse.toJSON(response));
        }
      });
    });
}

import type { Command } from 'commander';
import {
  adminCommand,
  runAdminCommand,
  type AdminCommandFlags,
  type CliContext,
} from './admin-command.js';
import { writeStructured } from './cli-output.js';
import { attentionItems, collectHubOverview, overviewJson, overviewText } from './hub-overview.js';

/**
 * `tgfed status`: one screen of clusters (connected or not), bound target groups (in sync or
 * not) and firing alerts. Exits 0 when nothing needs attention and 1 otherwise, so scripts can
 * wait on it.
 */
export function statusCommand(ctx: CliContext): Command {
  return adminCommand('status', 'Show clusters, target groups and alerts on one screen')
    .addHelpText(
      'after',
      `
Exits 0 when every cluster is connected, every bound target group is in sync with no held
operation, and no alert fires; 1 when something needs attention (listed on the last line).
A hub that does not serve ListAlerts shows "alerts: not served by this hub".`,
    )
    .action(async (flags: AdminCommandFlags) => {
      await runAdminCommand(ctx, 'status', flags, async ({ api, io, output, target }) => {
        const overview = await collectHubOverview(api);
        if (output === 'table') io.stdout.write(overviewText(target.address, overview, io.now()));
        else writeStructured(io, output, overviewJson(target.address, overview));
        return attentionItems(overview).length === 0 ? 0 : 1;
      });
    });
}

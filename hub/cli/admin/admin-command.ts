import { Command, Option } from 'commander';
import type { AdminApi, AdminConnector } from './admin-connection.js';
import { cliErrorOf, CliCommandError, CliUsageError, type CliExitCode } from './cli-errors.js';
import type { CliIo } from './cli-io.js';
import type { OutputFormat } from './cli-output.js';
import { resolveHubTarget, type HubConnectionFlags, type HubTarget } from './hub-target.js';

/** What every admin command runs with: the process's streams and the way to reach a hub. */
export interface CliContext {
  readonly io: CliIo;
  readonly connect: AdminConnector;
  /** Set by the admin command that ran; undefined for the long-running components. */
  exitCode: CliExitCode | undefined;
}

/** The flags of every admin command, as commander hands them over. */
export interface AdminCommandFlags extends HubConnectionFlags {
  output: OutputFormat;
}

/**
 * What a command's body gets: the API, the resolved hub, the output format, the streams. The
 * hub is resolved and connected on first use of `target` or `api`, so a body checks its own
 * arguments first and a bad invocation never reaches the network.
 */
export interface AdminCommandScope {
  readonly api: AdminApi;
  readonly target: HubTarget;
  readonly output: OutputFormat;
  readonly io: CliIo;
}

/**
 * A command that calls the hub: `--hub`, credentials, `--context`, `--timeout`, `--output`,
 * each documented with its environment variable.
 */
export function adminCommand(name: string, description: string): Command {
  return new Command(name)
    .description(description)
    .addOption(
      new Option('-o, --output <format>', 'output format')
        .choices(['table', 'json', 'yaml'])
        .default('table'),
    )
    .option('--hub <host:port>', 'admin address of the hub (port default 7444) [env TGFED_HUB]')
    .option('--token <token>', 'bearer token [env TGFED_TOKEN]')
    .option('--token-file <file>', 'file holding the bearer token')
    .option('--ca <file>', 'PEM CA bundle that verifies the hub (default: system roots)')
    .option('--cert <file>', 'PEM client certificate, for mTLS (with --key)')
    .option('--key <file>', 'PEM key of the client certificate')
    .option('--tls-server-name <name>', 'name to verify the hub certificate as')
    .option('--insecure', 'plaintext, no TLS (local demos and tests only)')
    .option(
      '--context <name>',
      'context of the CLI config file [env TGFED_CONTEXT; file: env TGFED_CLI_CONFIG, default ~/.config/tgfed/config.yaml]',
    )
    .option(
      '--timeout <duration>',
      'deadline of each call to the hub, e.g. 500ms, 10s (default: 10s)',
    );
}

/**
 * Runs a command body against the hub and turns the outcome into one exit code and, on
 * failure, one line on stderr (`tgfed get: hub … unreachable (14 UNAVAILABLE: …)`).
 */
export async function runAdminCommand(
  ctx: CliContext,
  commandName: string,
  flags: AdminCommandFlags,
  body: (scope: AdminCommandScope) => Promise<CliExitCode | void>,
): Promise<void> {
  let target: HubTarget | undefined;
  let connection: ReturnType<AdminConnector> | undefined;
  const resolveTarget = (): HubTarget => (target ??= resolveHubTarget(flags, ctx.io));
  const scope: AdminCommandScope = {
    get target() {
      return resolveTarget();
    },
    get api() {
      connection ??= ctx.connect(resolveTarget());
      return connection.api;
    },
    output: flags.output,
    io: ctx.io,
  };
  try {
    const code = await body(scope);
    ctx.exitCode = code ?? 0;
  } catch (caught) {
    const err = cliErrorOf(caught, target?.address ?? flags.hub ?? '(unresolved)');
    if (err instanceof CliUsageError) {
      ctx.io.stderr.write(`tgfed ${commandName}: ${err.message}\n`);
      ctx.exitCode = 2;
    } else if (err instanceof CliCommandError) {
      ctx.io.stderr.write(`tgfed ${commandName}: ${err.message}\n`);
      ctx.exitCode = err.exitCode;
    } else {
      ctx.io.stderr.write(
        `tgfed ${commandName}: unexpected error: ${err instanceof Error ? err.message : String(err)}\n`,
      );
      ctx.exitCode = 1;
    }
  } finally {
    connection?.close();
  }
}

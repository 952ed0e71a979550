import { Command, CommanderError } from 'commander';
import { tgfedVersion } from '../../shared/index.js';
import type { CliContext } from './admin/admin-command.js';
import { connectAdmin, type AdminConnector } from './admin/admin-connection.js';
import { applyCommand } from './admin/apply-command.js';
import { exitCodesHelp, type CliExitCode } from './admin/cli-errors.js';
import { processIo, type CliIo } from './admin/cli-io.js';
import { deleteCommand } from './admin/delete-command.js';
import { diffCommand } from './admin/diff-command.js';
import { getCommand } from './admin/get-command.js';
import { reconcileCommand } from './admin/reconcile-command.js';
import { releaseCommand } from './admin/release-command.js';
import { statusCommand } from './admin/status-command.js';

const rootHelp = `
Admin commands reach the hub's admin listener. Flags win over the environment, which wins
over the selected context of the CLI config file:
  --hub, TGFED_HUB            admin address host[:port] (port default 7444)
  --token/--token-file,       bearer token (read-only role: get, status, diff;
    TGFED_TOKEN                 admin role: apply, delete, reconcile, release)
  --ca, --cert/--key          TLS: CA of the hub, client certificate (mTLS); --insecure: plaintext
  --context, TGFED_CONTEXT    context of the config file (default: its current-context)
  TGFED_CLI_CONFIG            config file (default $XDG_CONFIG_HOME/tgfed/config.yaml,
                              else ~/.config/tgfed/config.yaml)

${exitCodesHelp}
`;

// The long-running components import everything they run (Kubernetes client, AWS SDK, BullMQ),
// which takes seconds on a small machine: only the one invoked is loaded; the others appear in
// `tgfed --help` by name and description (a unit test keeps these equal to the real ones).
const components = {
  agent: {
    description: 'Watch EndpointSlices in this cluster and stream them to the hub',
    load: async () => (await import('../../agent/cli/agent-command.js')).agentCommand(),
  },
  hub: {
    description: 'Serve agent streams and the admin API, keeping federated state in Redis',
    load: async () => (await import('./hub-command.js')).hubCommand(),
  },
  worker: {
    description: 'Reconcile ELBv2 target groups from the federated state in Redis',
    load: async () => (await import('./worker-command.js')).workerCommand(),
  },
  demo: {
    description: 'Run tgfed locally: hub, workers, simulated clusters and AWS, with a live view',
    load: async () => (await import('./demo-command.js')).demoCommand(),
  },
} as const;

/** The component names: `tgfed agent`, `tgfed hub`, `tgfed worker`. */
export type ComponentName = keyof typeof components;

/** The description `tgfed --help` shows for a component before it is loaded. */
export function componentDescription(name: ComponentName): string {
  return components[name].description;
}

/**
 * The component commands for `argv`: the invoked one (also for `tgfed help <name>`) loaded,
 * the others as stand-ins that only list themselves in `tgfed --help`.
 */
export async function componentCommands(argv: readonly string[]): Promise<Command[]> {
  const invoked = argv[0] === 'help' ? argv[1] : argv[0];
  return Promise.all(
    (Object.keys(components) as ComponentName[]).map((name) =>
      name === invoked
        ? components[name].load()
        : Promise.resolve(
            new Command(name)
              .description(components[name].description)
              .allowUnknownOption()
              .allowExcessArguments(),
          ),
    ),
  );
}

/** What `tgfed` runs with; every part defaults to the real process and a grpc-js client. */
export interface TgfedOptions {
  readonly io?: CliIo;
  readonly connect?: AdminConnector;
}

// commander's own messages start with "error: "; ours name the command instead.
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

function configureTree(command: Command, io: CliIo): void {
  command.exitOverride().configureOutput({
    writeOut: (text) => io.stdout.write(text),
    writeErr: (text) => io.stderr.write(text),
    outputError: (text, write) => {
      const path = commandPath(command);
      write(`${path}: ${text.replace(/^error: /, '').trimEnd()} (see ${path} --help)\n`);
    },
  });
  for (const sub of command.commands) configureTree(sub, io);
}

/** The `tgfed` command tree: the components and the admin commands. */
export function tgfedProgram(ctx: CliContext, loadedComponents: readonly Command[]): Command {
  const program = new Command('tgfed')
    .description(
      'Federate Kubernetes EndpointSlices from many clusters into AWS ELBv2 target groups',
    )
    .version(tgfedVersion(), '-v, --version')
    .addHelpText('after', rootHelp);
  for (const command of loadedComponents) program.addCommand(command);
  program
    .addCommand(applyCommand(ctx))
    .addCommand(deleteCommand(ctx))
    .addCommand(getCommand(ctx))
    .addCommand(statusCommand(ctx))
    .addCommand(diffCommand(ctx))
    .addCommand(reconcileCommand(ctx))
    .addCommand(releaseCommand(ctx));
  for (const command of program.commands) {
    if (!loadedComponents.includes(command)) {
      command.addHelpText('after', `\n${exitCodesHelp}`);
    }
  }
  configureTree(program, ctx.io);
  return program;
}

/**
 * Runs `tgfed` with `argv` (the arguments after the program name). Returns the exit code of an
 * admin command, 0 or 2 for help and usage errors, and undefined for the long-running
 * components (which set `process.exitCode` themselves and keep running).
 */
export async function runTgfed(
  argv: readonly string[],
  options: TgfedOptions = {},
): Promise<CliExitCode | undefined> {
  const ctx: CliContext = {
    io: options.io ?? processIo(),
    connect: options.connect ?? connectAdmin,
    exitCode: undefined,
  };
  const program = tgfedProgram(ctx, await componentCommands(argv));
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; every parse error, and help shown for a missing
      // command, is a usage error.
      return err.exitCode === 0 ? 0 : 2;
    }
    ctx.io.stderr.write(
      `tgfed: unexpected error: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 1;
  }
  return ctx.exitCode;
}

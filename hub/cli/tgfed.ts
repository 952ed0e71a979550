#!/usr/bin/env node
// The `tgfed` command (package.json bin): the components (agent, hub, worker) and the admin
// commands that drive a hub (apply, delete, get, status, diff, reconcile, release).
import { runTgfed } from './tgfed-program.js';

// grpc-js passes the hub's host as the TLS server name even when it is an IP address, and Node
// then prints DEP0123 on stderr of every such run; the certificate is still checked against the
// address (IP SAN), so the warning only adds noise to the CLI's one-line output.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning: string | Error, ...rest: unknown[]): void => {
  const [typeOrOptions, code] = rest;
  const warningCode =
    typeof typeOrOptions === 'object' && typeOrOptions !== null
      ? (typeOrOptions as { code?: unknown }).code
      : code;
  if (warningCode !== 'DEP0123') Reflect.apply(emitWarning, process, [warning, ...rest]);
};

// `tgfed get … | head`: a reader that goes away early ends the output, not with a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(process.exitCode ?? 0);
});

const code = await runTgfed(process.argv.slice(2));
if (code !== undefined) process.exitCode = code;

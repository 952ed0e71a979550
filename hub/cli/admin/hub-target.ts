import { readFileSync } from 'node:fs';
import { cliConfigPath, readCliConfigFile, type CliContextEntry } from './cli-config-file.js';
import { CliUsageError } from './cli-errors.js';
import type { CliIo } from './cli-io.js';

/** The admin port the hub listens on by default (`adminAddress`). */
export const DEFAULT_ADMIN_PORT = 7444;

/** The deadline of each admin call unless `--timeout` or the context says otherwise. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** The connection flags every admin command takes (commander's camelCase names). */
export interface HubConnectionFlags {
  hub?: string;
  token?: string;
  tokenFile?: string;
  ca?: string;
  cert?: string;
  key?: string;
  tlsServerName?: string;
  insecure?: boolean;
  context?: string;
  timeout?: string;
}

/** How the hub is reached: TLS (optionally with a client certificate) or plaintext. */
export type HubSecurity =
  | { readonly kind: 'insecure' }
  | {
      readonly kind: 'tls';
      readonly ca?: Buffer;
      readonly cert?: Buffer;
      readonly key?: Buffer;
      readonly serverName?: string;
    };

/** A resolved hub: address, credentials and deadline of each call. */
export interface HubTarget {
  readonly address: string;
  readonly token?: string;
  readonly security: HubSecurity;
  readonly timeoutMs: number;
  /** The context used, if any. */
  readonly context?: string;
}

/** `10s`, `500ms`, `2m` or a plain number of seconds, in milliseconds. */
export function parseDuration(text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (match?.[1] === undefined) {
    throw new CliUsageError(`${what}: "${text}" is not a duration (e.g. 500ms, 10s, 2m)`);
  }
  const value = Number(match[1]);
  const factor = match[2] === 'ms' ? 1 : match[2] === 'm' ? 60_000 : 1_000;
  const ms = Math.round(value * factor);
  if (ms <= 0) throw new CliUsageError(`${what}: must be more than 0`);
  return ms;
}

/** `host` → `host:7444`; `host:port` and `[v6]:port` as given. */
export function normalizeHubAddress(address: string, what: string): string {
  const trimmed = address.trim();
  if (trimmed === '' || /\s/.test(trimmed)) {
    throw new CliUsageError(`${what}: "${address}" is not host[:port]`);
  }
  if (/^\[[^\]]+\]:\d+$/.test(trimmed) || /^[^:[\]]+:\d+$/.test(trimmed)) return trimmed;
  if (/^\[[^\]]+\]$/.test(trimmed) || /^[^:[\]]+$/.test(trimmed)) {
    return `${trimmed}:${DEFAULT_ADMIN_PORT}`;
  }
  throw new CliUsageError(`${what}: "${address}" is not host[:port]`);
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new CliUsageError(`${what}: cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function readToken(path: string, what: string): string {
  const token = readFile(path, what).toString('utf8').trim();
  if (token === '') throw new CliUsageError(`${what}: ${path} is empty`);
  return token;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/**
 * Resolves which hub to call and how: flags win over the environment (`TGFED_HUB`,
 * `TGFED_TOKEN`), which wins over the context (`--context`, else `TGFED_CONTEXT`, else the
 * config file's `current-context`). Throws {@link CliUsageError} naming the flag, variable or
 * file at fault.
 */
export function resolveHubTarget(flags: HubConnectionFlags, io: CliIo): HubTarget {
  const location = cliConfigPath(io.env, io.homeDir);
  const file = readCliConfigFile(location, io.homeDir);
  const contextName = nonEmpty(flags.context) ?? nonEmpty(io.env['TGFED_CONTEXT']);
  let context: CliContextEntry | undefined;
  if (contextName !== undefined) {
    context = file?.contexts.find((c) => c.name === contextName);
    if (context === undefined) {
      const source = flags.context !== undefined ? '--context' : 'TGFED_CONTEXT';
      throw new CliUsageError(
        file === undefined
          ? `${source}: no context ${contextName}: no CLI config file at ${location.path}`
          : `${source}: no context ${contextName} in ${file.path} (has: ${file.contexts.map((c) => c.name).join(', ') || 'none'})`,
      );
    }
  } else if (file?.currentContext !== undefined) {
    context = file.contexts.find((c) => c.name === file.currentContext);
    if (context === undefined) {
      throw new CliUsageError(
        `invalid CLI config file ${file.path}: current-context: no context ${file.currentContext}`,
      );
    }
  }
  const contextWhat = context === undefined ? '' : `context ${context.name} in ${file?.path}`;

  const envHub = nonEmpty(io.env['TGFED_HUB']);
  const hubSource: [string | undefined, string][] = [
    [flags.hub, '--hub'],
    [envHub, 'TGFED_HUB'],
    [context?.hub, `${contextWhat}: hub`],
  ];
  const hub = hubSource.find(([value]) => value !== undefined);
  if (hub?.[0] === undefined) {
    throw new CliUsageError(
      `no hub to call: pass --hub <host:port>, set TGFED_HUB, or select a context of ${location.path} (--context, current-context)`,
    );
  }
  const address = normalizeHubAddress(hub[0], hub[1]);

  if (flags.token !== undefined && flags.tokenFile !== undefined) {
    throw new CliUsageError('--token and --token-file: pass one of them');
  }
  let token: string | undefined;
  if (flags.token !== undefined) token = flags.token;
  else if (flags.tokenFile !== undefined) token = readToken(flags.tokenFile, '--token-file');
  else if (nonEmpty(io.env['TGFED_TOKEN']) !== undefined) token = io.env['TGFED_TOKEN'];
  else if (context?.token !== undefined) token = context.token;
  else if (context?.['token-file'] !== undefined) {
    token = readToken(context['token-file'], `${contextWhat}: token-file`);
  }

  const tlsFlags = [flags.ca, flags.cert, flags.key, flags.tlsServerName].some(
    (v) => v !== undefined,
  );
  if (flags.insecure === true && tlsFlags) {
    throw new CliUsageError('--insecure: conflicts with --ca, --cert, --key and --tls-server-name');
  }
  let security: HubSecurity;
  if (flags.insecure === true || (!tlsFlags && context?.insecure === true)) {
    security = { kind: 'insecure' };
  } else {
    const pick = (flag: string | undefined, fromContext: string | undefined, what: string) =>
      flag !== undefined
        ? { path: flag, what: `--${what}` }
        : fromContext !== undefined
          ? { path: fromContext, what: `${contextWhat}: ${what}` }
          : undefined;
    const ca = pick(flags.ca, context?.ca, 'ca');
    const cert = pick(flags.cert, context?.cert, 'cert');
    const key = pick(flags.key, context?.key, 'key');
    if ((cert === undefined) !== (key === undefined)) {
      throw new CliUsageError(
        `${(cert ?? key)?.what}: a client certificate needs both --cert and --key`,
      );
    }
    security = {
      kind: 'tls',
      ...(ca === undefined ? {} : { ca: readFile(ca.path, ca.what) }),
      ...(cert === undefined ? {} : { cert: readFile(cert.path, cert.what) }),
      ...(key === undefined ? {} : { key: readFile(key.path, key.what) }),
      ...((flags.tlsServerName ?? context?.['tls-server-name']) === undefined
        ? {}
        : { serverName: flags.tlsServerName ?? context?.['tls-server-name'] }),
    };
  }

  const timeoutMs =
    flags.timeout !== undefined
      ? parseDuration(flags.timeout, '--timeout')
      : context?.timeout !== undefined
        ? parseDuration(context.timeout, `${contextWhat}: timeout`)
        : DEFAULT_TIMEOUT_MS;

  return {
    address,
    ...(token === undefined ? {} : { token }),
    security,
    timeoutMs,
    ...(context === undefined ? {} : { context: context.name }),
  };
}

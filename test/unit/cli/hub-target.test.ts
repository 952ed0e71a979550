import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import type { CliIo } from '../../../hub/cli/admin/cli-io.js';
import { CliUsageError } from '../../../hub/cli/admin/cli-errors.js';
import {
  normalizeHubAddress,
  parseDuration,
  resolveHubTarget,
  type HubConnectionFlags,
} from '../../../hub/cli/admin/hub-target.js';

const dir = mkdtempSync(join(tmpdir(), 'tgfed-cli-target-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const path = join(dir, name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
  return path;
}

function io(env: Record<string, string> = {}, homeDir = join(dir, 'home')): CliIo {
  return {
    stdout: { write: () => true },
    stderr: { write: () => true },
    readStdin: () => Promise.resolve(''),
    env,
    homeDir,
    now: () => 0,
  };
}

function usageError(flags: HubConnectionFlags, cliIo: CliIo): string {
  try {
    resolveHubTarget(flags, cliIo);
  } catch (err) {
    if (err instanceof CliUsageError) return err.message;
    throw err;
  }
  throw new Error('resolved');
}

file('tokens/prod.token', 'prod-token\n');
file('ca.pem', 'not really a CA');
const config = file(
  'config.yaml',
  toYaml({
    'current-context': 'prod',
    contexts: [
      { name: 'prod', hub: 'hub.prod.example', 'token-file': 'tokens/prod.token', ca: 'ca.pem' },
      { name: 'demo', hub: '127.0.0.1:7000', insecure: true, token: 'demo-token', timeout: '3s' },
    ],
  }),
);

describe('resolveHubTarget', () => {
  it('takes the current context of the config file, paths relative to the file', () => {
    const target = resolveHubTarget({}, io({ TGFED_CLI_CONFIG: config }));
    expect(target).toMatchObject({
      address: 'hub.prod.example:7444',
      token: 'prod-token',
      timeoutMs: 10_000,
      context: 'prod',
      security: { kind: 'tls', ca: Buffer.from('not really a CA') },
    });
  });

  it('selects a context by --context over TGFED_CONTEXT over current-context', () => {
    const env = { TGFED_CLI_CONFIG: config, TGFED_CONTEXT: 'demo' };
    expect(resolveHubTarget({}, io(env))).toMatchObject({
      context: 'demo',
      address: '127.0.0.1:7000',
      token: 'demo-token',
      security: { kind: 'insecure' },
      timeoutMs: 3_000,
    });
    expect(resolveHubTarget({ context: 'prod' }, io(env)).context).toBe('prod');
  });

  it('lets flags win over the environment, and the environment over the context', () => {
    const env = { TGFED_CLI_CONFIG: config, TGFED_HUB: 'env-hub:1', TGFED_TOKEN: 'env-token' };
    expect(resolveHubTarget({}, io(env))).toMatchObject({
      address: 'env-hub:1',
      token: 'env-token',
    });
    expect(
      resolveHubTarget({ hub: 'flag-hub:2', token: 'flag-token', timeout: '250ms' }, io(env)),
    ).toMatchObject({ address: 'flag-hub:2', token: 'flag-token', timeoutMs: 250 });
    const tokenFile = file('flag.token', 'from-file');
    expect(resolveHubTarget({ tokenFile }, io(env)).token).toBe('from-file');
  });

  it('uses TLS from flags even when the context is plaintext, and refuses --insecure with --ca', () => {
    const ca = join(dir, 'ca.pem');
    const env = { TGFED_CLI_CONFIG: config };
    expect(resolveHubTarget({ context: 'demo', ca }, io(env)).security).toMatchObject({
      kind: 'tls',
    });
    expect(usageError({ context: 'demo', ca, insecure: true }, io(env))).toBe(
      '--insecure: conflicts with --ca, --cert, --key and --tls-server-name',
    );
  });

  it('needs both halves of a client certificate and readable files', () => {
    const env = { TGFED_HUB: 'h:1' };
    expect(usageError({ cert: join(dir, 'ca.pem') }, io(env))).toBe(
      '--cert: a client certificate needs both --cert and --key',
    );
    expect(usageError({ ca: join(dir, 'absent.pem') }, io(env))).toMatch(
      /^--ca: cannot read .*absent\.pem: ENOENT/,
    );
    expect(usageError({ token: 'a', tokenFile: 'b' }, io(env))).toBe(
      '--token and --token-file: pass one of them',
    );
    expect(usageError({ tokenFile: file('empty.token', '\n') }, io(env))).toMatch(/is empty$/);
  });

  it('names the file and context when a context is unknown', () => {
    expect(usageError({ context: 'staging' }, io({ TGFED_CLI_CONFIG: config }))).toBe(
      `--context: no context staging in ${config} (has: prod, demo)`,
    );
    expect(usageError({}, io({ TGFED_CLI_CONFIG: config, TGFED_CONTEXT: 'x' }))).toMatch(
      /^TGFED_CONTEXT: no context x in /,
    );
    const dangling = file('dangling.yaml', toYaml({ 'current-context': 'gone', contexts: [] }));
    expect(usageError({}, io({ TGFED_CLI_CONFIG: dangling }))).toBe(
      `invalid CLI config file ${dangling}: current-context: no context gone`,
    );
  });

  it('rejects an invalid config file naming the file and the key', () => {
    const bad = file(
      'bad.yaml',
      toYaml({ contexts: [{ name: 'a', hub: 'h:1', tokenFile: 'x' }, { name: 'a' }] }),
    );
    const message = usageError({}, io({ TGFED_CLI_CONFIG: bad }));
    expect(message).toContain(`invalid CLI config file ${bad}: `);
    expect(message).toContain('contexts[0]: Unrecognized key: "tokenFile"');
    expect(message).toContain('contexts[1].name: duplicate context a');
    const yaml = file('not-yaml.yaml', 'contexts: [');
    expect(usageError({}, io({ TGFED_CLI_CONFIG: yaml }))).toMatch(
      new RegExp(`^invalid CLI config file ${yaml}: `),
    );
  });

  it('reads the default file under XDG_CONFIG_HOME, and does without one that is absent', () => {
    const xdg = join(dir, 'xdg');
    file('xdg/tgfed/config.yaml', toYaml({ contexts: [{ name: 'x', hub: 'xdg-hub:9' }] }));
    expect(resolveHubTarget({ context: 'x' }, io({ XDG_CONFIG_HOME: xdg })).address).toBe(
      'xdg-hub:9',
    );
    expect(resolveHubTarget({ hub: 'h:1' }, io({})).address).toBe('h:1');
    expect(usageError({}, io({}))).toMatch(
      /^no hub to call: pass --hub <host:port>, set TGFED_HUB/,
    );
    expect(usageError({ hub: 'h:1' }, io({ TGFED_CLI_CONFIG: join(dir, 'absent.yaml') }))).toMatch(
      /^invalid CLI config file .*absent\.yaml: .*ENOENT/,
    );
  });
});

describe('parseDuration and normalizeHubAddress', () => {
  it('reads durations with units and refuses others', () => {
    expect(parseDuration('500ms', 'x')).toBe(500);
    expect(parseDuration('10s', 'x')).toBe(10_000);
    expect(parseDuration('2m', 'x')).toBe(120_000);
    expect(parseDuration('1.5', 'x')).toBe(1_500);
    expect(() => parseDuration('soon', '--timeout')).toThrow('--timeout: "soon" is not a duration');
    expect(() => parseDuration('0s', '--timeout')).toThrow('--timeout: must be more than 0');
  });

  it('adds the default admin port and keeps IPv6 brackets', () => {
    expect(normalizeHubAddress('hub', 'x')).toBe('hub:7444');
    expect(normalizeHubAddress('hub:1', 'x')).toBe('hub:1');
    expect(normalizeHubAddress('[::1]:9', 'x')).toBe('[::1]:9');
    expect(normalizeHubAddress('[::1]', 'x')).toBe('[::1]:7444');
    expect(() => normalizeHubAddress('a b', '--hub')).toThrow('--hub: "a b" is not host[:port]');
    expect(() => normalizeHubAddress('::1', '--hub')).toThrow('is not host[:port]');
  });
});

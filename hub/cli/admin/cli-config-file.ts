import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigFileError, readYamlFile } from '../../config/index.js';
import { CliUsageError } from './cli-errors.js';

const contextSchema = z.strictObject({
  name: z.string().min(1).describe('Name used by --context, TGFED_CONTEXT and current-context'),
  hub: z.string().min(1).optional().describe('Admin address of the hub, host[:port]'),
  token: z.string().min(1).optional().describe('Bearer token (prefer token-file)'),
  'token-file': z.string().min(1).optional().describe('File holding the bearer token'),
  ca: z.string().min(1).optional().describe('PEM CA bundle that verifies the hub'),
  cert: z.string().min(1).optional().describe('PEM client certificate (mTLS)'),
  key: z.string().min(1).optional().describe('PEM key of the client certificate'),
  'tls-server-name': z.string().min(1).optional().describe('Name to verify the hub as'),
  insecure: z.boolean().optional().describe('Plaintext (no TLS), for local demos only'),
  timeout: z.string().min(1).optional().describe('Deadline of each call, e.g. 10s'),
});

/**
 * The CLI's config file (`TGFED_CLI_CONFIG`, default `$XDG_CONFIG_HOME/tgfed/config.yaml`):
 * named contexts, one per hub, and the current one, as kubectl's kubeconfig.
 *
 * ```yaml
 * current-context: prod
 * contexts:
 *   - name: prod
 *     hub: hub.prod.example.com:7444
 *     token-file: prod.token        # relative paths are relative to this file
 *     ca: prod-ca.pem
 *   - name: demo
 *     hub: 127.0.0.1:7444
 *     insecure: true
 *     token: demo-admin-token
 * ```
 */
export const cliConfigFileSchema = z
  .strictObject({
    'current-context': z.string().min(1).optional(),
    contexts: z.array(contextSchema).default([]),
  })
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.contexts.forEach((c, index) => {
      if (seen.has(c.name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['contexts', index, 'name'],
          message: `duplicate context ${c.name}`,
        });
      }
      seen.add(c.name);
    });
  });

/** One context of the CLI config file, its paths made absolute. */
export type CliContextEntry = z.infer<typeof contextSchema>;

/** A read CLI config file. */
export interface CliConfigFile {
  readonly path: string;
  readonly currentContext: string | undefined;
  readonly contexts: readonly CliContextEntry[];
}

/** `$TGFED_CLI_CONFIG`, else `$XDG_CONFIG_HOME/tgfed/config.yaml`, else `~/.config/tgfed/config.yaml`. */
export function cliConfigPath(
  env: Readonly<Record<string, string | undefined>>,
  homeDir: string,
): { path: string; explicit: boolean } {
  const explicit = env['TGFED_CLI_CONFIG'];
  if (explicit !== undefined && explicit !== '') return { path: explicit, explicit: true };
  const xdg = env['XDG_CONFIG_HOME'];
  const base = xdg !== undefined && xdg !== '' ? xdg : join(homeDir, '.config');
  return { path: join(base, 'tgfed', 'config.yaml'), explicit: false };
}

function absolute(path: string | undefined, fileDir: string, homeDir: string): string | undefined {
  if (path === undefined) return undefined;
  if (path === '~' || path.startsWith('~/')) return join(homeDir, path.slice(1));
  return isAbsolute(path) ? path : resolve(fileDir, path);
}

/**
 * Reads the CLI config file. A missing file is no error unless it was named explicitly
 * (`TGFED_CLI_CONFIG`); an invalid one throws {@link CliUsageError} naming the file and key.
 */
export function readCliConfigFile(
  location: { path: string; explicit: boolean },
  homeDir: string,
): CliConfigFile | undefined {
  if (!location.explicit && !existsSync(location.path)) return undefined;
  let content: z.infer<typeof cliConfigFileSchema>;
  try {
    content = readYamlFile(location.path, cliConfigFileSchema);
  } catch (err) {
    if (err instanceof ConfigFileError) {
      throw new CliUsageError(
        `invalid CLI config file ${location.path}: ${err.problems.join('; ')}`,
        { cause: err },
      );
    }
    throw err;
  }
  const dir = dirname(resolve(location.path));
  return {
    path: location.path,
    currentContext: content['current-context'],
    contexts: content.contexts.map((c) => ({
      ...c,
      'token-file': absolute(c['token-file'], dir, homeDir),
      ca: absolute(c.ca, dir, homeDir),
      cert: absolute(c.cert, dir, homeDir),
      key: absolute(c.key, dir, homeDir),
    })),
  };
}

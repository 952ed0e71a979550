import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentOptionsSchema } from '../../agent/config/agent-options.js';
import { hubOptionsSchema, workerOptionsSchema } from '../../hub/config/index.js';
import { ConfigError, envName, flagName, loadConfig } from '../../shared/config/config-loader.js';

function file(content: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'tgfed-config-')), 'agent.yaml');
  writeFileSync(path, content);
  return path;
}

const minimal = { clusterId: 'prod-eu-1', hubAddress: 'hub.example:9443', insecure: true };

describe('loadConfig', () => {
  it('names every setting the same way in file, environment and flags', () => {
    expect(envName('batchWindowMs')).toBe('TGFED_BATCH_WINDOW_MS');
    expect(flagName('batchWindowMs')).toBe('--batch-window-ms');
    expect(envName('tlsCaFile')).toBe('TGFED_TLS_CA_FILE');
  });

  it('fills defaults and takes flags over environment over file', () => {
    const path = file(
      'clusterId: from-file\nhubAddress: file:1\nbatchWindowMs: 10\nmaxBatchesInFlight: 3\n',
    );
    const options = loadConfig(agentOptionsSchema, {
      file: path,
      env: { TGFED_BATCH_WINDOW_MS: '20', TGFED_INSECURE: 'true', TGFED_NAMESPACES: 'shop, ops' },
      flags: { batchWindowMs: '30' },
    });
    expect(options).toMatchObject({
      clusterId: 'from-file',
      batchWindowMs: 30,
      maxBatchesInFlight: 3,
      insecure: true,
      namespaces: ['shop', 'ops'],
      heartbeatIntervalMs: 10_000,
    });
  });

  it('skips the settings of a component sharing the file, and still refuses typos', () => {
    const path = file(
      'redisUrl: redis://redis:6379\nagentAddress: 0.0.0.0:7443\nworkerConcurency: 8\n',
    );
    const hubKeys = new Set(Object.keys(hubOptionsSchema.shape));
    expect(() => loadConfig(workerOptionsSchema, { file: path, env: {} })).toThrow(
      /agentAddress .*unknown setting/,
    );
    let error: unknown;
    try {
      loadConfig(workerOptionsSchema, { file: path, env: {}, sharedFileKeys: hubKeys });
    } catch (err) {
      error = err;
    }
    expect((error as ConfigError).problems).toEqual([
      `workerConcurency (file ${path}): unknown setting`,
    ]);
    const shared = file('redisUrl: redis://redis:6379\nagentAddress: 0.0.0.0:7443\n');
    const worker = loadConfig(workerOptionsSchema, {
      file: shared,
      env: {},
      sharedFileKeys: hubKeys,
    });
    expect(worker.redisUrl).toBe('redis://redis:6379');
  });

  it('rejects bad values with the setting and where the value came from', () => {
    const path = file('clusterId: prod\nhubAddress: hub:1\nbatchWindowMz: 5\n');
    let error: unknown;
    try {
      loadConfig(agentOptionsSchema, {
        file: path,
        env: { TGFED_MAX_BATCHES_IN_FLIGHT: 'lots', TGFED_INSECURE: 'maybe' },
        flags: { batchWindowMs: '0' },
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toContain(`batchWindowMz (file ${path}): unknown setting`);
    expect(problems).toContain('maxBatchesInFlight (TGFED_MAX_BATCHES_IN_FLIGHT)');
    expect(problems).toContain('insecure (TGFED_INSECURE)');
    expect(problems).toContain('batchWindowMs (--batch-window-ms)');
  });

  it('requires credentials unless insecure, and a certificate with its key', () => {
    expect(() =>
      loadConfig(agentOptionsSchema, { env: {}, flags: { ...minimal, insecure: undefined } }),
    ).toThrow(/tlsCaFile .*required unless insecure/s);
    expect(() =>
      loadConfig(agentOptionsSchema, {
        env: {},
        flags: { ...minimal, insecure: undefined, tlsCaFile: 'ca.pem', tlsCertFile: 'c.pem' },
      }),
    ).toThrow(/tlsCertFile and tlsKeyFile go together/);
    expect(
      loadConfig(agentOptionsSchema, {
        env: {},
        flags: { ...minimal, insecure: undefined, tlsCaFile: 'ca.pem', tokenFile: 'token' },
      }).tokenFile,
    ).toBe('token');
  });

  it('rejects a cluster id that is not a DNS label', () => {
    expect(() =>
      loadConfig(agentOptionsSchema, { env: {}, flags: { ...minimal, clusterId: 'Prod_EU' } }),
    ).toThrow(/clusterId \(--cluster-id\)/);
  });
});

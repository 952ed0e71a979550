import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import {
  ClusterDirectory,
  ConfigFileError,
  loadAdminCredentials,
} from '../../../hub/config/index.js';
import { AgentAuthenticator, hashAgentToken } from '../../../hub/ingest/index.js';

const dir = mkdtempSync(join(tmpdir(), 'tgfed-hub-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

function problemsOf(load: () => unknown): string[] {
  try {
    load();
  } catch (err) {
    if (err instanceof ConfigFileError) return [...err.problems];
    throw err;
  }
  throw new Error('the file was accepted');
}

const hash = 'a'.repeat(64);

describe('ClusterDirectory', () => {
  it('reads clusters with labels, CIDRs and token hashes', () => {
    const directory = ClusterDirectory.load(
      file(
        'clusters.yaml',
        `clusters:\n  - id: prod-eu-1\n    labels: { env: prod }\n    allowedCidrs: [10.1.0.0/16, "fd00::/64"]\n    tokenSha256: [${hash}]\n  - id: dev\n`,
      ),
    );
    expect(directory.labelsOf('prod-eu-1')).toEqual({ env: 'prod' });
    expect(directory.labelsOf('unknown')).toEqual({});
    expect(directory.addressPolicyOptions()).toEqual({
      clusters: { dev: [], 'prod-eu-1': ['10.1.0.0/16', 'fd00::/64'] },
      defaultCidrs: [],
    });
  });

  it('names the field of every problem', () => {
    const problems = problemsOf(() =>
      ClusterDirectory.load(
        file(
          'bad-clusters.yaml',
          `clusters:\n  - id: Prod_1\n  - id: a\n    allowedCidrs: [10.0.0.0/33]\n    tokenSha256: [short]\n  - id: a\n    colour: red\n`,
        ),
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^clusters\[0\]\.id: /),
        expect.stringMatching(/^clusters\[1\]\.allowedCidrs\[0\]: a CIDR/),
        expect.stringMatching(/^clusters\[1\]\.tokenSha256\[0\]: SHA-256/),
        expect.stringMatching(/^clusters\[2\]: .*colour/),
      ]),
    );
  });

  it('reports an unreadable file with its path', () => {
    expect(() => ClusterDirectory.load(join(dir, 'missing.yaml'))).toThrow(/missing\.yaml/);
  });
});

describe('loadAdminCredentials', () => {
  it('reads tokens and certificate subjects with roles', () => {
    const credentials = loadAdminCredentials(
      file(
        'admin.yaml',
        `tokens:\n  - { name: ci, role: admin, tokenSha256: ${hash} }\ncertificates:\n  - { name: team, role: read-only, subject: spiffe://corp/team }\n`,
      ),
    );
    expect(credentials.tokens[0]?.role).toBe('admin');
    expect(credentials.certificates[0]?.subject).toBe('spiffe://corp/team');
  });

  it('refuses an unknown role and duplicate names, by field', () => {
    const problems = problemsOf(() =>
      loadAdminCredentials(
        file(
          'bad-admin.yaml',
          `tokens:\n  - { name: ci, role: superuser, tokenSha256: ${hash} }\n`,
        ),
      ),
    );
    expect(problems).toEqual([expect.stringMatching(/^tokens\[0\]\.role: /)]);
    const duplicates = problemsOf(() =>
      loadAdminCredentials(
        file(
          'duplicate-admin.yaml',
          `tokens:\n  - { name: ci, role: admin, tokenSha256: ${hash} }\ncertificates:\n  - { name: ci, role: admin, subject: ci }\n`,
        ),
      ),
    );
    expect(duplicates).toEqual([
      expect.stringMatching(/^certificates\[0\]\.name: duplicate of tokens\[0\]/),
    ]);
  });
});

describe('AgentAuthenticator with the clusters file', () => {
  const call = (token: string | undefined) => {
    const metadata = new grpc.Metadata();
    if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
    return { metadata, getAuthContext: () => ({}) };
  };

  it('accepts every listed token of a cluster, so tokens rotate without refusals', () => {
    const authenticator = new AgentAuthenticator({
      tokenSha256: {
        a: [hashAgentToken('old'), hashAgentToken('new')],
        b: [hashAgentToken('other')],
      },
    });
    expect(authenticator.authenticate(call('old'))).toEqual({ clusterId: 'a', method: 'token' });
    expect(authenticator.authenticate(call('new'))).toEqual({ clusterId: 'a', method: 'token' });
    expect(authenticator.authenticate(call('other')).clusterId).toBe('b');
    expect(() => authenticator.authenticate(call('guess'))).toThrow(/unknown bearer token/);
    expect(() => authenticator.authenticate(call(undefined))).toThrow(/no client certificate/);
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { hashAdminToken } from '../../../hub/admin/index.js';
import { hubOptionsSchema } from '../../../hub/config/index.js';
import { Hub } from '../../../hub/hub.js';
import { hashAgentToken } from '../../../hub/ingest/index.js';
import { createTestCertificateAuthority } from '../../env/test-certificates.js';
import { targetGroupArn } from '../../support/binding-fixtures.js';
import { spawnTgfed, tgfedInProcess } from './tgfed-runner.js';

// The CLI against a hub whose admin listener serves TLS: server verification with --ca (or a
// context's ca), a client certificate as the only credential (mTLS), and what a wrong CA,
// server name or plaintext does (exit 3).

let dir: string;
let hub: Hub;
let redis: Redis;
let keyPrefix: string;
let address: string;
const adminToken = `tls-admin-${randomBytes(4).toString('hex')}`;

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

function tgfed(argv: readonly string[], env: Record<string, string> = {}) {
  return tgfedInProcess(argv, { homeDir: dir, env });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tgfed-cli-tls-'));
  keyPrefix = `cli-tls-${randomBytes(4).toString('hex')}`;
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  const ca = await createTestCertificateAuthority();
  const server = await ca.issue({
    commonName: 'tgfed-hub',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  const operator = await ca.issue({ commonName: 'platform-team' });
  const stranger = await (
    await createTestCertificateAuthority('other CA')
  ).issue({
    commonName: 'platform-team',
  });
  file('ca.pem', ca.caPem);
  file('server.pem', server.certPem);
  file('server-key.pem', server.keyPem);
  file('operator.pem', operator.certPem);
  file('operator-key.pem', operator.keyPem);
  file('other-ca.pem', (await createTestCertificateAuthority('unrelated CA')).caPem);
  file('stranger.pem', stranger.certPem);
  file('stranger-key.pem', stranger.keyPem);
  hub = new Hub(
    hubOptionsSchema.parse({
      hubId: 'hub-cli-tls',
      agentAddress: '127.0.0.1:0',
      adminAddress: '127.0.0.1:0',
      healthAddress: '127.0.0.1:0',
      agentTlsCaFile: join(dir, 'ca.pem'),
      agentTlsCertFile: join(dir, 'server.pem'),
      agentTlsKeyFile: join(dir, 'server-key.pem'),
      agentClientCertificates: 'optional',
      adminTlsCaFile: join(dir, 'ca.pem'),
      adminTlsCertFile: join(dir, 'server.pem'),
      adminTlsKeyFile: join(dir, 'server-key.pem'),
      adminClientCertificates: 'optional',
      redisUrl: inject('redisUrl'),
      redisKeyPrefix: keyPrefix,
      shutdownGraceMs: 2_000,
      clustersFile: file(
        'clusters.yaml',
        toYaml({
          clusters: [
            {
              id: 'tls-east',
              labels: { env: 'prod' },
              allowedCidrs: ['10.1.0.0/16'],
              tokenSha256: [hashAgentToken('unused-agent-token')],
            },
          ],
        }),
      ),
      adminTokensFile: file(
        'admin.yaml',
        toYaml({
          tokens: [{ name: 'ci', role: 'admin', tokenSha256: hashAdminToken(adminToken) }],
          certificates: [{ name: 'platform', role: 'admin', subject: 'platform-team' }],
        }),
      ),
    }),
  );
  await hub.start();
  address = `127.0.0.1:${hub.adminPort}`;
});

afterAll(async () => {
  await hub?.shutdown();
  if (redis !== undefined) {
    const keys = await redis.keys(`${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  }
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('tgfed over TLS', () => {
  it('verifies the hub with --ca and authenticates with a token', async () => {
    const run = await tgfed([
      'get',
      'clusters',
      '-o',
      'json',
      '--hub',
      address,
      '--ca',
      join(dir, 'ca.pem'),
      '--token',
      adminToken,
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ clusters: [{ id: 'tls-east' }] });
  });

  it('authenticates with a client certificate alone (mTLS), admin role included', async () => {
    const mtls = [
      '--hub',
      address,
      '--ca',
      join(dir, 'ca.pem'),
      '--cert',
      join(dir, 'operator.pem'),
      '--key',
      join(dir, 'operator-key.pem'),
    ];
    const bindings = file(
      'bindings.yaml',
      toYaml([
        {
          name: 'tls-web',
          services: { namespace: 'shop', name: 'web' },
          port: { name: 'http' },
          targetGroup: { arn: targetGroupArn(7) },
        },
      ]),
    );
    const applied = await tgfed(['apply', '-f', bindings, '--dry-run', ...mtls]);
    expect(applied).toEqual({
      code: 0,
      stdout: 'binding/tls-web would change (dry run)\n',
      stderr: '',
    });
    // A certificate from another CA does not authenticate (the hub only trusts verified ones).
    const stranger = await tgfed([
      'get',
      'bindings',
      '--hub',
      address,
      '--ca',
      join(dir, 'ca.pem'),
      '--cert',
      join(dir, 'stranger.pem'),
      '--key',
      join(dir, 'stranger-key.pem'),
      '--timeout',
      '3s',
    ]);
    expect(stranger.code).toBe(4);
    expect(stranger.stderr).toMatch(
      /^tgfed get: hub .* refused the credentials \(16 UNAUTHENTICATED/,
    );
  });

  it('takes ca, cert and key of a context relative to the config file', async () => {
    const config = file(
      'config.yaml',
      toYaml({
        'current-context': 'tls',
        contexts: [
          {
            name: 'tls',
            hub: `localhost:${hub.adminPort}`,
            ca: 'ca.pem',
            cert: 'operator.pem',
            key: 'operator-key.pem',
          },
        ],
      }),
    );
    const run = await tgfed(['get', 'bindings'], { TGFED_CLI_CONFIG: config });
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout.split('\n')[0]).toMatch(/^NAME\s+SERVICES/);
  });

  it('exits 3 for an unknown CA, a wrong server name, or plaintext against TLS', async () => {
    const token = ['--token', adminToken, '--timeout', '3s'];
    const wrongCa = await tgfed([
      'status',
      '--hub',
      address,
      '--ca',
      join(dir, 'other-ca.pem'),
      ...token,
    ]);
    expect(wrongCa.code).toBe(3);
    expect(wrongCa.stderr).toMatch(
      /^tgfed status: hub 127\.0\.0\.1:\d+ (unreachable|did not answer)/,
    );
    const wrongName = await tgfed([
      'status',
      '--hub',
      address,
      '--ca',
      join(dir, 'ca.pem'),
      '--tls-server-name',
      'hub.elsewhere.example',
      ...token,
    ]);
    expect(wrongName.code).toBe(3);
    const rightName = await tgfed([
      'get',
      'clusters',
      '--hub',
      address,
      '--ca',
      join(dir, 'ca.pem'),
      '--tls-server-name',
      'localhost',
      ...token,
    ]);
    expect(rightName).toMatchObject({ code: 0, stderr: '' });
    const plaintext = await tgfed(['status', '--hub', address, '--insecure', ...token]);
    expect(plaintext.code).toBe(3);
  });

  it('verifies a hub addressed by IP through the real entry, printing nothing on stderr', async () => {
    const run = await spawnTgfed(
      ['get', 'clusters', '--hub', address, '--ca', join(dir, 'ca.pem'), '--token', adminToken],
      { homeDir: dir },
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^tls-east\s+disconnected\s/m);
  }, 30_000);
});

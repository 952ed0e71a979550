import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../shared/index.js';
import { hubOptionsSchema, redisSettingsOf } from '../../../hub/config/index.js';

function load(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  return loadConfig(hubOptionsSchema, { env, flags });
}

function problems(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    load(flags, env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error('the settings were accepted');
}

const tls = {
  agentTlsCaFile: '/etc/tgfed/ca.pem',
  agentTlsCertFile: '/etc/tgfed/agent.pem',
  agentTlsKeyFile: '/etc/tgfed/agent-key.pem',
  adminTlsCertFile: '/etc/tgfed/admin.pem',
  adminTlsKeyFile: '/etc/tgfed/admin-key.pem',
};

describe('hubOptionsSchema', () => {
  it('fills every default around a Redis URL and the TLS files', () => {
    const options = load({ redisUrl: 'redis://redis:6379', ...tls });
    expect(options).toMatchObject({
      agentAddress: '0.0.0.0:7443',
      adminAddress: '0.0.0.0:7444',
      agentClientCertificates: 'require',
      adminClientCertificates: 'optional',
      redisKeyPrefix: 'tgfed',
      heartbeatIntervalMs: 10_000,
      leaseTtlMs: 15_000,
      disconnectedGraceMs: 300_000,
      resyncTimeoutMs: 600_000,
      reconcileShardCount: 16,
      reconcileDebounceMs: 1_000,
      maxEndpointsPerService: 20_000,
      maxMessageBytes: 4 << 20,
      healthAddress: '0.0.0.0:8081',
      shutdownGraceMs: 20_000,
      logLevel: 'info',
    });
    expect(options.hubId).not.toBe('');
  });

  it('reads the same settings from the environment, with numbers and lists parsed', () => {
    const options = load(
      {},
      {
        TGFED_REDIS_SENTINELS: 'sentinel-0:26379, sentinel-1:26379',
        TGFED_REDIS_SENTINEL_NAME: 'tgfed',
        TGFED_INSECURE: 'true',
        TGFED_LEASE_TTL_MS: '30000',
      },
    );
    expect(options.redisSentinels).toEqual(['sentinel-0:26379', 'sentinel-1:26379']);
    expect(options.leaseTtlMs).toBe(30_000);
  });

  it('requires Redis and names the setting', () => {
    expect(problems({ insecure: true })).toEqual([
      expect.stringMatching(/^redisUrl .*Redis is required/),
    ]);
  });

  it('refuses two Redis modes at once', () => {
    expect(
      problems({ insecure: true, redisUrl: 'redis://r:6379', redisClusterNodes: ['n1:7000'] }),
    ).toEqual([expect.stringMatching(/^redisClusterNodes \(--redis-cluster-nodes\): choose one/)]);
  });

  it('requires the master name with sentinels', () => {
    expect(problems({ insecure: true, redisSentinels: ['s:26379'] })).toEqual([
      expect.stringMatching(/^redisSentinelName .*required with redisSentinels/),
    ]);
  });

  it('requires server certificates unless insecure, for each listener', () => {
    const found = problems({ redisUrl: 'redis://r:6379' });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^agentTlsCertFile .*required unless insecure/),
        expect.stringMatching(/^adminTlsCertFile .*required unless insecure/),
        expect.stringMatching(/^agentTlsCaFile .*agentClientCertificates/),
      ]),
    );
  });

  it('wants a certificate and its key together', () => {
    expect(problems({ redisUrl: 'redis://r:6379', ...tls, adminTlsKeyFile: undefined })).toEqual([
      expect.stringMatching(/^adminTlsKeyFile .*go together/),
    ]);
  });

  it('says where a malformed value came from', () => {
    expect(
      problems(
        { insecure: true, redisUrl: 'redis://r:6379' },
        { TGFED_HEARTBEAT_INTERVAL_MS: 'soon' },
      ),
    ).toEqual([expect.stringMatching(/^heartbeatIntervalMs \(TGFED_HEARTBEAT_INTERVAL_MS\): /)]);
    expect(problems({ insecure: true, redisUrl: 'http://r:6379' })).toEqual([
      expect.stringMatching(/^redisUrl \(--redis-url\): a redis:\/\/ or rediss:\/\/ URL/),
    ]);
    expect(problems({ insecure: true, redisUrl: 'redis://r', adminAddress: 'nope' })).toEqual([
      expect.stringMatching(/^adminAddress \(--admin-address\): host:port/),
    ]);
  });

  it('refuses a key prefix that would break hash tags', () => {
    expect(
      problems({ insecure: true, redisUrl: 'redis://r:6379', redisKeyPrefix: '{tgfed}' }),
    ).toEqual([expect.stringMatching(/^redisKeyPrefix /)]);
  });
});

describe('redisSettingsOf', () => {
  it('turns each mode into connection settings', () => {
    const base = { insecure: true, redisCommandTimeoutMs: 2_000 };
    expect(redisSettingsOf(load({ ...base, redisUrl: 'rediss://r:6380' }))).toEqual({
      mode: 'standalone',
      url: 'rediss://r:6380',
      commandTimeoutMs: 2_000,
    });
    expect(
      redisSettingsOf(
        load({ ...base, redisSentinels: ['s:26379'], redisSentinelName: 'm', redisTls: true }),
      ),
    ).toMatchObject({ mode: 'sentinel', sentinels: ['s:26379'], masterName: 'm', tls: true });
    expect(
      redisSettingsOf(
        load({ ...base, redisClusterNodes: ['a:7000', 'b:7000'], redisPassword: 'x' }),
      ),
    ).toMatchObject({ mode: 'cluster', nodes: ['a:7000', 'b:7000'], password: 'x' });
  });
});

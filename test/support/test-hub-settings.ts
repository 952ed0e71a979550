import { writeFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { hashAdminToken } from '../../hub/admin/index.js';
import { hubOptionsSchema } from '../../hub/config/index.js';
import { hashAgentToken } from '../../hub/ingest/index.js';

/** A cluster the test hub knows: its id, its 10.<block>.0.0/16 range, its labels. */
export interface TestHubCluster {
  id: string;
  block: number;
  labels?: Record<string, string>;
}

/** The bearer token a test agent of `clusterId` presents. */
export function agentTokenOf(clusterId: string): string {
  return `token-of-${clusterId}`;
}

/** Call metadata carrying a bearer token (none when `token` is undefined). */
export function bearer(token: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

/** What differs between the hub tests; everything else is shared. */
export interface TestHubSettingsSpec {
  hubId: string;
  /** Folder for the clusters, admin and bindings files. */
  dir: string;
  clusters: readonly TestHubCluster[];
  /** One admin-role token named "ci". */
  adminToken?: string;
  /** Content of the bindings file, when the test uses one. */
  bindingsFile?: unknown;
  /** Redis connection and any other settings (they win over the defaults). */
  settings: Record<string, unknown>;
}

/**
 * Settings of a real Hub for integration tests: plaintext listeners on free ports, short
 * heartbeats and leases, a clusters file with a token and range per cluster, an admin token.
 */
export function testHubSettings(spec: TestHubSettingsSpec) {
  const file = (name: string, content: unknown): string => {
    const path = join(spec.dir, name);
    writeFileSync(path, toYaml(content));
    return path;
  };
  return hubOptionsSchema.parse({
    hubId: spec.hubId,
    agentAddress: '127.0.0.1:0',
    adminAddress: '127.0.0.1:0',
    healthAddress: '127.0.0.1:0',
    insecure: true,
    agentClientCertificates: 'optional',
    adminClientCertificates: 'none',
    heartbeatIntervalMs: 500,
    leaseTtlMs: 3_000,
    shutdownGraceMs: 2_000,
    clustersFile: file('clusters.yaml', {
      clusters: spec.clusters.map((c) => ({
        id: c.id,
        labels: c.labels ?? { env: 'prod' },
        allowedCidrs: [`10.${c.block}.0.0/16`],
        tokenSha256: [hashAgentToken(agentTokenOf(c.id))],
      })),
    }),
    ...(spec.adminToken === undefined
      ? {}
      : {
          adminTokensFile: file('admin.yaml', {
            tokens: [{ name: 'ci', role: 'admin', tokenSha256: hashAdminToken(spec.adminToken) }],
          }),
        }),
    ...(spec.bindingsFile === undefined
      ? {}
      : { bindingsFile: file('bindings.yaml', spec.bindingsFile) }),
    ...spec.settings,
  });
}

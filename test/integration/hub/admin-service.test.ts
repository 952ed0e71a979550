import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { bearer } from '../../support/test-hub-settings.js';
import { loadSync } from '@grpc/proto-loader';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { service as healthService } from 'grpc-health-check';
import { stringify as toYaml } from 'yaml';
import { fieldViolationsOf, hashAdminToken } from '../../../hub/admin/index.js';
import { hubOptionsSchema } from '../../../hub/config/index.js';
import { Hub } from '../../../hub/hub.js';
import { hashAgentToken } from '../../../hub/ingest/index.js';
import {
  compileReconcileQueueOptions,
  reconcileQueueFor,
  type ReconcileRequest,
} from '../../../hub/queue/index.js';
import {
  AdminServiceClient,
  AgentServiceClient,
  AlertSeverity,
  ClusterState,
  type ApplyBindingRequest,
  type ApplyBindingResponse,
  type Binding,
  type Cluster,
  type DeleteBindingRequest,
  type DeleteBindingResponse,
  type GetClusterRequest,
  type GetClusterResponse,
  type GetTargetGroupStatusRequest,
  type GetTargetGroupStatusResponse,
  type ListAlertsRequest,
  type ListAlertsResponse,
  type ListBindingsRequest,
  type ListBindingsResponse,
  type ListClustersRequest,
  type ListClustersResponse,
  type ReleaseHeldOperationRequest,
  type ReleaseHeldOperationResponse,
  type SyncResponse,
  type TriggerReconcileRequest,
  type TriggerReconcileResponse,
} from '../../../shared/index.js';
import { createTestCertificateAuthority, type TestKeyPair } from '../../env/test-certificates.js';
import { waitFor } from '../../env/wait-for.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { TestAgent } from '../../support/test-agent.js';

const adminToken = 'admin-token-of-the-test';
const readOnlyToken = 'read-only-token-of-the-test';
const agentToken = 'agent-token-of-prod-eu-1';
const secondAgentToken = 'agent-token-of-prod-eu-2';

let dir: string;
let hub: Hub;
let caPem: string;
let operatorCert: TestKeyPair;
let keyPrefix: string;
let redis: Redis;
const clients: grpc.Client[] = [];

function adminClient(cert?: TestKeyPair): AdminServiceClient {
  const client = new AdminServiceClient(
    `127.0.0.1:${hub.adminPort}`,
    grpc.credentials.createSsl(
      Buffer.from(caPem),
      cert === undefined ? null : Buffer.from(cert.keyPem),
      cert === undefined ? null : Buffer.from(cert.certPem),
    ),
  );
  clients.push(client);
  return client;
}

type Unary<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  callback: (err: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/** Request and response of each admin method. */
interface AdminMethods {
  listClusters: [ListClustersRequest, ListClustersResponse];
  getCluster: [GetClusterRequest, GetClusterResponse];
  listBindings: [ListBindingsRequest, ListBindingsResponse];
  applyBinding: [ApplyBindingRequest, ApplyBindingResponse];
  deleteBinding: [DeleteBindingRequest, DeleteBindingResponse];
  triggerReconcile: [TriggerReconcileRequest, TriggerReconcileResponse];
  getTargetGroupStatus: [GetTargetGroupStatusRequest, GetTargetGroupStatusResponse];
  listAlerts: [ListAlertsRequest, ListAlertsResponse];
  releaseHeldOperation: [ReleaseHeldOperationRequest, ReleaseHeldOperationResponse];
}

/** Calls a unary admin method; resolves with the response or rejects with the ServiceError. */
function call<K extends keyof AdminMethods>(
  client: AdminServiceClient,
  method: K,
  request: AdminMethods[K][0],
  token: string | undefined,
): Promise<AdminMethods[K][1]> {
  const unary = (client as unknown as Record<K, Unary<AdminMethods[K][0], AdminMethods[K][1]>>)[
    method
  ];
  return new Promise((resolve, reject) => {
    unary.call(client, request, bearer(token), (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

async function refusal(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded, a refusal was expected');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tgfed-admin-'));
  keyPrefix = `admin-${randomBytes(4).toString('hex')}`;
  // BullMQ needs maxRetriesPerRequest null on the connection it is given.
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  const ca = await createTestCertificateAuthority();
  caPem = ca.caPem;
  const server = await ca.issue({
    commonName: 'tgfed-hub',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  operatorCert = await ca.issue({ commonName: 'platform-team' });
  const file = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  const options = hubOptionsSchema.parse({
    hubId: 'hub-admin-test',
    agentAddress: '127.0.0.1:0',
    adminAddress: '127.0.0.1:0',
    healthAddress: '127.0.0.1:0',
    agentTlsCaFile: file('ca.pem', ca.caPem),
    agentTlsCertFile: file('server.pem', server.certPem),
    agentTlsKeyFile: file('server-key.pem', server.keyPem),
    agentClientCertificates: 'optional',
    adminTlsCaFile: join(dir, 'ca.pem'),
    adminTlsCertFile: join(dir, 'server.pem'),
    adminTlsKeyFile: join(dir, 'server-key.pem'),
    adminClientCertificates: 'optional',
    redisUrl: inject('redisUrl'),
    redisKeyPrefix: keyPrefix,
    heartbeatIntervalMs: 500,
    leaseTtlMs: 3_000,
    disconnectedGraceMs: 2_000,
    shutdownGraceMs: 2_000,
    clustersFile: file(
      'clusters.yaml',
      toYaml({
        clusters: [
          {
            id: 'prod-eu-1',
            labels: { env: 'prod', region: 'eu' },
            allowedCidrs: ['10.1.0.0/16'],
            tokenSha256: [hashAgentToken(agentToken)],
          },
          {
            id: 'prod-eu-2',
            labels: { env: 'prod', region: 'eu' },
            allowedCidrs: ['10.1.0.0/16'],
            tokenSha256: [hashAgentToken(secondAgentToken)],
          },
          { id: 'staging', labels: { env: 'staging' } },
        ],
      }),
    ),
    adminTokensFile: file(
      'admin.yaml',
      toYaml({
        tokens: [
          { name: 'ci', role: 'admin', tokenSha256: hashAdminToken(adminToken) },
          { name: 'dashboards', role: 'read-only', tokenSha256: hashAdminToken(readOnlyToken) },
        ],
        certificates: [{ name: 'platform', role: 'admin', subject: 'platform-team' }],
      }),
    ),
  });
  hub = new Hub(options);
  await hub.start();
});

afterAll(async () => {
  for (const client of clients) client.close();
  await hub?.shutdown();
  if (redis !== undefined) {
    const keys = await redis.keys(`${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('AdminService', () => {
  it('refuses a call without credentials with UNAUTHENTICATED', async () => {
    const client = adminClient();
    const err = await refusal(call(client, 'listBindings', {}, undefined));
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    const wrong = await refusal(call(client, 'listBindings', {}, 'not-a-token'));
    expect(wrong.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('lets a read-only caller list bindings but not apply one (PERMISSION_DENIED)', async () => {
    const client = adminClient();
    await expect(call(client, 'listBindings', {}, readOnlyToken)).resolves.toBeDefined();
    const err = await refusal(
      call(
        client,
        'applyBinding',
        { binding: binding({ name: 'ro' }), dryRun: false },
        readOnlyToken,
      ),
    );
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toContain('admin role');
    const list = await call(client, 'listBindings', {}, readOnlyToken);
    expect(list.bindings.map((b) => b.name)).not.toContain('ro');
  });

  it('applies a binding for an admin and lists it afterwards', async () => {
    const client = adminClient();
    const applied = await call(
      client,
      'applyBinding',
      { binding: binding({ name: 'applied' }), dryRun: false },
      adminToken,
    );
    expect(applied.changed).toBe(true);
    expect(applied.binding?.version).toBeGreaterThan(0);
    const again = await call(
      client,
      'applyBinding',
      { binding: binding({ name: 'applied' }), dryRun: false },
      adminToken,
    );
    expect(again.changed).toBe(false);
    expect(again.binding?.version).toBe(applied.binding?.version);
    const list = await call(client, 'listBindings', {}, readOnlyToken);
    const listed = list.bindings.find((b) => b.name === 'applied');
    expect(listed?.version).toBe(applied.binding?.version);
    expect(listed?.services).toMatchObject({ namespace: 'shop', name: 'web' });
  });

  it('accepts an admin client certificate without a token', async () => {
    const client = adminClient(operatorCert);
    const applied = await call(
      client,
      'applyBinding',
      { binding: binding({ name: 'by-cert' }), dryRun: false },
      undefined,
    );
    expect(applied.changed).toBe(true);
  });

  it('rejects an invalid binding with field-level violations in the trailer and message', async () => {
    const client = adminClient();
    const invalid: Binding = binding({
      name: 'Not_A_Label',
      target: {
        $case: 'pool',
        pool: {
          groups: [targetGroup(), targetGroup({ arn: 'arn:nope', roleArn: 'not-a-role' })],
          listenerRuleArn: '',
        },
      },
    });
    const err = await refusal(
      call(client, 'applyBinding', { binding: invalid, dryRun: false }, adminToken),
    );
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    const violations = fieldViolationsOf(err.metadata);
    const fields = violations.map((v) => v.field);
    expect(fields).toContain('name');
    expect(fields.some((f) => f.startsWith('pool.groups[1].'))).toBe(true);
    for (const v of violations) expect(err.details).toContain(v.field);
    const missing = await refusal(
      call(client, 'applyBinding', { binding: undefined, dryRun: false }, adminToken),
    );
    expect(fieldViolationsOf(missing.metadata).map((v) => v.field)).toEqual(['binding']);
  });

  it('answers a stale version with ABORTED, for apply and delete', async () => {
    const client = adminClient();
    const first = await call(
      client,
      'applyBinding',
      { binding: binding({ name: 'cas' }), dryRun: false },
      adminToken,
    );
    const version = first.binding?.version ?? 0;
    const second = await call(
      client,
      'applyBinding',
      {
        binding: binding({
          name: 'cas',
          version,
          policy: { includeNotReady: true, keepTerminating: false },
        }),
        dryRun: false,
      },
      adminToken,
    );
    expect(second.binding?.version).toBeGreaterThan(version);
    const stale = await refusal(
      call(
        client,
        'applyBinding',
        { binding: binding({ name: 'cas', version }), dryRun: false },
        adminToken,
      ),
    );
    expect(stale.code).toBe(grpc.status.ABORTED);
    const staleDelete = await refusal(
      call(client, 'deleteBinding', { name: 'cas', version }, adminToken),
    );
    expect(staleDelete.code).toBe(grpc.status.ABORTED);
    await call(
      client,
      'deleteBinding',
      { name: 'cas', version: second.binding?.version ?? 0 },
      adminToken,
    );
    const gone = await refusal(
      call(client, 'deleteBinding', { name: 'cas', version: 0 }, adminToken),
    );
    expect(gone.code).toBe(grpc.status.NOT_FOUND);
  });

  it('validates without storing on a dry run', async () => {
    const client = adminClient();
    const result = await call(
      client,
      'applyBinding',
      { binding: binding({ name: 'dry' }), dryRun: true },
      adminToken,
    );
    expect(result.changed).toBe(true);
    const list = await call(client, 'listBindings', {}, adminToken);
    expect(list.bindings.map((b) => b.name)).not.toContain('dry');
  });

  it('serves ListAlerts to a read-only caller: a listed cluster that never connected is disconnected', async () => {
    const client = adminClient();
    const { alerts } = await call(client, 'listAlerts', {}, readOnlyToken);
    expect(alerts).toContainEqual(
      expect.objectContaining({
        name: 'TgfedClusterDisconnected',
        severity: AlertSeverity.ALERT_SEVERITY_WARNING,
        labels: { cluster: 'staging' },
      }),
    );
    const unauthenticated = await refusal(call(client, 'listAlerts', {}, undefined));
    expect(unauthenticated.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('answers NOT_FOUND for releasing a held operation that does not exist, and refuses read-only callers', async () => {
    const client = adminClient();
    const release = await refusal(call(client, 'releaseHeldOperation', { id: 'op-1' }, adminToken));
    expect(release.code).toBe(grpc.status.NOT_FOUND);
    expect(release.details).toContain('op-1');
    const readOnly = await refusal(
      call(client, 'releaseHeldOperation', { id: 'op-1' }, readOnlyToken),
    );
    expect(readOnly.code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('triggers a reconcile for an admin into the group’s shard queue; read-only and unknown groups are refused', async () => {
    const client = adminClient();
    const arn = targetGroupArn(31);
    await call(
      client,
      'applyBinding',
      {
        binding: binding({
          name: 'web-triggered',
          target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
        }),
        dryRun: false,
      },
      adminToken,
    );
    const { jobId } = await call(
      client,
      'triggerReconcile',
      { targetGroupArn: arn, refresh: false },
      adminToken,
    );
    expect(jobId).not.toBe('');
    // No worker runs here: the job waits in the group's shard (joined with the binding's own
    // reconcile when that one is still pending).
    const address = reconcileQueueFor(arn, compileReconcileQueueOptions({ keyPrefix }));
    const queue = new Queue<ReconcileRequest>(address.name, {
      connection: redis,
      prefix: address.prefix,
    });
    try {
      const job = await queue.getJob(jobId);
      expect(job?.data.targetGroupArn).toBe(arn);
      expect(['operator', 'binding']).toContain(job?.data.reason);
    } finally {
      await queue.close();
    }

    const readOnly = await refusal(
      call(client, 'triggerReconcile', { targetGroupArn: arn, refresh: false }, readOnlyToken),
    );
    expect(readOnly.code).toBe(grpc.status.PERMISSION_DENIED);
    const unknown = await refusal(
      call(
        client,
        'triggerReconcile',
        { targetGroupArn: targetGroupArn(32), refresh: false },
        adminToken,
      ),
    );
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    const missing = await refusal(
      call(client, 'getTargetGroupStatus', { arn: targetGroupArn(32) }, readOnlyToken),
    );
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
  });

  it('reports a bound group’s desired targets and conflicts from two real agents', async () => {
    const client = adminClient();
    const arn = targetGroupArn(33);
    await call(
      client,
      'applyBinding',
      {
        binding: binding({
          name: 'api-both-eu',
          services: { namespace: 'shop', name: 'api' },
          clusters: { names: ['prod-eu-1', 'prod-eu-2'], labels: undefined },
          target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
        }),
        dryRun: false,
      },
      adminToken,
    );
    const agents = [
      { id: 'prod-eu-1', token: agentToken, hosts: [5, 6] },
      { id: 'prod-eu-2', token: secondAgentToken, hosts: [6, 7] },
    ].map((a) => {
      const agent = new TestAgent({
        clusterId: a.id,
        target: `127.0.0.1:${hub.agentPort}`,
        credentials: grpc.credentials.createSsl(Buffer.from(caPem)),
        metadata: () => bearer(a.token),
      });
      agent.upsert(
        endpointSlice({
          namespace: 'shop',
          service: 'api',
          name: `api-${a.id}`,
          endpoints: a.hosts.map((h) => ({ ip: `10.1.0.${h}` })),
          ports: [{ name: 'http', port: 8080 }],
        }),
      );
      agent.publisher.start();
      return agent;
    });
    try {
      const status = await waitFor(
        async () => {
          const s = (await call(client, 'getTargetGroupStatus', { arn }, readOnlyToken)).status;
          return s?.desiredTargets === 3 && s.conflicts.length === 1 ? s : undefined;
        },
        { what: 'the desired targets of both agents, with their conflict', timeoutMs: 20_000 },
      );
      expect(status.targetGroup?.arn).toBe(arn);
      expect(status.bindings).toEqual(['api-both-eu']);
      expect(status.conflicts).toEqual([
        { target: '10.1.0.6:8080', clusters: ['prod-eu-1', 'prod-eu-2'] },
      ]);
      // The actual side is the workers' (#5): not reported yet.
      expect(status).toMatchObject({
        actualTargets: 0,
        ownedTargets: 0,
        inSync: false,
        lastReconcileUnixMs: 0,
        lastError: '',
        heldOperations: [],
      });
    } finally {
      for (const agent of agents) await agent.publisher.close();
    }
  });

  it('reports a stream as SYNCING until its SYNCED, then CONNECTED, DISCONNECTED and STALE', async () => {
    const client = adminClient();
    const clusterOf = async (): Promise<Cluster | undefined> =>
      (await call(client, 'listClusters', {}, readOnlyToken)).clusters.find(
        (c) => c.id === 'prod-eu-1',
      );
    const agent = new AgentServiceClient(
      `127.0.0.1:${hub.agentPort}`,
      grpc.credentials.createSsl(Buffer.from(caPem)),
    );
    clients.push(agent);
    const stream = agent.sync(bearer(agentToken));
    const responses: SyncResponse[] = [];
    stream.on('data', (r: SyncResponse) => responses.push(r));
    stream.on('error', () => undefined);
    const sessionEpoch = randomBytes(16);
    const before = Date.now();
    try {
      stream.write({
        message: {
          $case: 'hello',
          hello: {
            clusterId: 'prod-eu-1',
            agentVersion: 'raw/0.1',
            sessionEpoch,
            capabilities: [],
          },
        },
      });
      await waitFor(() => responses.some((r) => r.message?.$case === 'welcome'), {
        what: 'the welcome',
      });
      const syncing = await clusterOf();
      expect(syncing).toMatchObject({
        state: ClusterState.CLUSTER_STATE_SYNCING,
        agentVersion: 'raw/0.1',
        hubId: 'hub-admin-test',
        lastAckedSequence: 0,
      });
      expect(Buffer.from(syncing?.sessionEpoch ?? []).equals(sessionEpoch)).toBe(true);
      expect(syncing?.connectedSinceUnixMs).toBeGreaterThanOrEqual(before);
      expect(syncing?.lastSeenUnixMs).toBeGreaterThanOrEqual(syncing?.connectedSinceUnixMs ?? 0);

      stream.write({ message: { $case: 'synced', synced: { sequence: 1 } } });
      await waitFor(() => responses.some((r) => r.message?.$case === 'ack'), { what: 'the ack' });
      expect(await clusterOf()).toMatchObject({
        state: ClusterState.CLUSTER_STATE_CONNECTED,
        agentVersion: 'raw/0.1',
        connectedSinceUnixMs: syncing?.connectedSinceUnixMs,
        lastAckedSequence: 1,
      });
    } finally {
      stream.cancel();
    }
    const disconnected = await waitFor(
      async () => {
        const c = await clusterOf();
        return c?.state === ClusterState.CLUSTER_STATE_DISCONNECTED ? c : undefined;
      },
      { what: 'the cluster to show as disconnected' },
    );
    expect(disconnected).toMatchObject({
      hubId: '',
      agentVersion: 'raw/0.1',
      lastAckedSequence: 1,
    });
    // disconnectedGraceMs is 2 s in this hub.
    await waitFor(async () => (await clusterOf())?.state === ClusterState.CLUSTER_STATE_STALE, {
      what: 'the cluster to turn stale after its grace period',
      timeoutMs: 10_000,
    });
  });

  it('lists a cluster whose real agent synced through the hub, with its services', async () => {
    const client = adminClient();
    await call(
      client,
      'applyBinding',
      { binding: binding({ name: 'web-prod' }), dryRun: false },
      adminToken,
    );
    const agent = new TestAgent({
      clusterId: 'prod-eu-1',
      target: `127.0.0.1:${hub.agentPort}`,
      credentials: grpc.credentials.createSsl(Buffer.from(caPem)),
      metadata: () => bearer(agentToken),
      agentVersion: 'tgfed-agent/1.2.3',
    });
    try {
      agent.upsert(
        endpointSlice({
          namespace: 'shop',
          service: 'web',
          name: 'web-abc',
          endpoints: [{ ip: '10.1.0.5' }, { ip: '10.1.0.6' }],
          ports: [{ name: 'http', port: 8080 }],
        }),
      );
      agent.publisher.start();
      const cluster = await waitFor(
        async () => {
          const list = await call(client, 'listClusters', {}, readOnlyToken);
          const found = list.clusters.find((c: Cluster) => c.id === 'prod-eu-1');
          return found?.endpointCount === 2 && found.state === ClusterState.CLUSTER_STATE_CONNECTED
            ? found
            : undefined;
        },
        { what: 'ListClusters to show the synced cluster', timeoutMs: 20_000 },
      );
      expect(cluster).toMatchObject({
        state: ClusterState.CLUSTER_STATE_CONNECTED,
        hubId: 'hub-admin-test',
        serviceCount: 1,
        labels: { env: 'prod', region: 'eu' },
        allowedCidrs: ['10.1.0.0/16'],
        agentVersion: 'tgfed-agent/1.2.3',
      });
      expect(cluster.sessionEpoch).toHaveLength(16);
      expect(cluster.connectedSinceUnixMs).toBeGreaterThan(0);
      expect(cluster.lastSeenUnixMs).toBeGreaterThanOrEqual(cluster.connectedSinceUnixMs);
      expect(cluster.lastAckedSequence).toBeGreaterThan(0);
      const staging = (await call(client, 'listClusters', {}, readOnlyToken)).clusters.find(
        (c) => c.id === 'staging',
      );
      expect(staging?.state).toBe(ClusterState.CLUSTER_STATE_DISCONNECTED);
      const detail = await call(client, 'getCluster', { id: 'prod-eu-1' }, readOnlyToken);
      expect(detail.services.map((s) => s.service)).toEqual([{ namespace: 'shop', name: 'web' }]);
      const unknown = await refusal(call(client, 'getCluster', { id: 'nowhere' }, readOnlyToken));
      expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    } finally {
      await agent.publisher.close();
    }
  });

  it('answers SERVING to gRPC health checks on both listeners, and serves reflection', async () => {
    const Health = grpc.makeGenericClientConstructor(healthService, 'Health');
    for (const port of [hub.agentPort, hub.adminPort]) {
      const health = new Health(
        `127.0.0.1:${port}`,
        grpc.credentials.createSsl(Buffer.from(caPem)),
      );
      clients.push(health);
      for (const service of [
        '',
        port === hub.agentPort ? 'tgfed.v1.AgentService' : 'tgfed.v1.AdminService',
      ]) {
        const response = await new Promise<{ status: string }>((resolve, reject) =>
          (health as unknown as Record<string, Unary<unknown, { status: string }>>)['check']?.call(
            health,
            { service },
            new grpc.Metadata(),
            (err, res) => (err ? reject(err) : resolve(res)),
          ),
        );
        expect(response.status).toBe('SERVING');
      }
    }
    const reflectionDefinition = loadSync('grpc/reflection/v1/reflection.proto', {
      includeDirs: [
        join(import.meta.dirname, '../../../node_modules/@grpc/reflection/build/proto'),
      ],
    });
    const Reflection = grpc.loadPackageDefinition(reflectionDefinition) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: typeof grpc.Client } } };
    };
    const reflection = new Reflection.grpc.reflection.v1.ServerReflection(
      `127.0.0.1:${hub.adminPort}`,
      grpc.credentials.createSsl(Buffer.from(caPem)),
    );
    clients.push(reflection);
    const stream = (
      reflection as unknown as { serverReflectionInfo(): grpc.ClientDuplexStream<unknown, unknown> }
    ).serverReflectionInfo();
    const reply = await new Promise<{ listServicesResponse?: { service: { name: string }[] } }>(
      (resolve, reject) => {
        stream.once('data', (r) => resolve(r as never));
        stream.once('error', reject);
        stream.write({ listServices: '*' });
      },
    );
    stream.end();
    expect(reply.listServicesResponse?.service.map((s) => s.name)).toContain(
      'tgfed.v1.AdminService',
    );
  });
});

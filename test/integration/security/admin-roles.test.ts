import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { stringify as toYaml } from 'yaml';
import { hashAdminToken, type AdminCounters } from '../../../hub/admin/index.js';
import type { HeldDeregistration } from '../../../hub/reconcile/index.js';
import type { Binding } from '../../../shared/index.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { scrapeMetrics } from '../../support/prometheus-text.js';
import { TestFederation } from '../../support/test-federation.js';
import { agentTokenOf, bearer } from '../../support/test-hub-settings.js';
import { RogueAgent } from './rogue-agent.js';

// The admin API under callers that must not change anything (issue #9, hostile input): a
// read-only operator applying, deleting, triggering and releasing; callers with no, unknown,
// malformed or agent tokens. Each is refused with its status, counted, and the bindings and
// the held operation are exactly as before; an admin then does the same and succeeds.

const readOnlyToken = 'read-only-token-of-the-security-test';
/** The federation's admin token (its helpers use it), listed in this test's own tokens file. */
let adminToken: string;
const arn = targetGroupArn(971);

let fed: TestFederation;
let dir: string;
let held: HeldDeregistration;

/** `tgfed_hub_admin_calls_rejected_total{reason}` on the hub's /metrics. */
async function adminRejections(reason: string): Promise<number | undefined> {
  return (await scrapeMetrics(fed.hub.healthPort)).value('tgfed_hub_admin_calls_rejected_total', {
    reason,
  });
}

function counters(): AdminCounters {
  const admin = fed.hub.adminService;
  if (admin === undefined) throw new Error('hub not started');
  return admin.counters;
}

type Method =
  'applyBinding' | 'deleteBinding' | 'releaseHeldOperation' | 'triggerReconcile' | 'listBindings';

type Unary = (
  request: object,
  metadata: grpc.Metadata,
  callback: (err: grpc.ServiceError | null, response: unknown) => void,
) => grpc.ClientUnaryCall;

/** Calls an admin method with `token`; resolves with the response or the ServiceError. */
function call(method: Method, request: object, token: string | undefined): Promise<unknown> {
  const unary = (fed.admin as unknown as Record<Method, Unary>)[method];
  return new Promise((resolve) => {
    unary.call(fed.admin, request, bearer(token), (err, response) => resolve(err ?? response));
  });
}

function codeOf(result: unknown): grpc.status | 'ok' {
  return result instanceof Error ? (result as grpc.ServiceError).code : 'ok';
}

/** Every write the admin role allows, aimed at existing state. */
function writes(): [Method, object][] {
  return [
    ['applyBinding', { binding: binding({ name: 'rogue-new' }), dryRun: false }],
    [
      'applyBinding',
      {
        binding: binding({
          name: 'guarded',
          clusters: { names: ['evil'], labels: undefined },
          target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
        }),
        dryRun: false,
      },
    ],
    ['deleteBinding', { name: 'guarded', version: 0 }],
    ['releaseHeldOperation', { id: held.id }],
    ['triggerReconcile', { targetGroupArn: arn, refresh: true }],
  ];
}

/** Bindings (with versions) and the held operation, as a user would compare them. */
async function adminState(): Promise<string> {
  const bindings = (await call('listBindings', {}, adminToken)) as { bindings: Binding[] };
  const record = await fed.records.read(arn);
  return JSON.stringify({
    bindings: bindings.bindings.map((b) => [b.name, b.version, b.clusters]),
    held: record.held,
    refresh: record.refreshRequested,
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tgfed-admin-roles-'));
  const adminTokensFile = join(dir, 'admin-roles.yaml');
  fed = new TestFederation({
    name: 'tadmin-sec',
    redisUrl: inject('redisUrl'),
    clusters: [{ id: 'prod-a', block: 1 }],
    hubSettings: { adminTokensFile },
  });
  adminToken = fed.adminToken;
  // Read at start: the federation's admin token plus a read-only one.
  writeFileSync(
    adminTokensFile,
    toYaml({
      tokens: [
        { name: 'ci', role: 'admin', tokenSha256: hashAdminToken(adminToken) },
        { name: 'dashboards', role: 'read-only', tokenSha256: hashAdminToken(readOnlyToken) },
      ],
    }),
  );
  await fed.start();
  await fed.applyBinding(
    binding({
      name: 'guarded',
      clusters: { names: ['prod-a'], labels: undefined },
      target: { $case: 'targetGroup', targetGroup: targetGroup({ arn }) },
    }),
  );
  // A deregistration held by the mass-deregistration guard, waiting for an operator.
  held = {
    id: 'held-security-1',
    targetGroupArn: arn,
    deregistrations: 40,
    targetsBefore: 50,
    reason: 'would remove 80% of the targets',
    heldSinceMs: Date.now(),
  };
  await fed.records.finish(arn, {
    record: {
      outcome: 'held',
      reason: 'binding',
      startedAtMs: Date.now(),
      durationMs: 1,
      calls: { describe: 0, register: 0, deregister: 0 },
      registered: 0,
      deregistered: 0,
      desired: 10,
      actual: 50,
      owned: 50,
      waitingForCapacity: 0,
      deregistrationsBlocked: 0,
      invalidTargets: [],
      consecutiveFailures: 0,
    },
    actualValid: true,
    held,
    nextDueAtMs: Date.now() + 3_600_000,
  });
});

afterAll(async () => {
  await fed?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('The admin API under callers without the admin role', () => {
  it('refuses every write of a read-only caller with PERMISSION_DENIED, counts it, and changes nothing', async () => {
    const before = await adminState();
    const denied = counters().permissionDenied;
    for (const [method, request] of writes()) {
      const result = await call(method, request, readOnlyToken);
      expect(codeOf(result), method).toBe(grpc.status.PERMISSION_DENIED);
      expect((result as grpc.ServiceError).details).toContain('needs the admin role');
    }
    expect(counters().permissionDenied).toBe(denied + writes().length);
    expect(await adminRejections('permission_denied')).toBe(counters().permissionDenied);
    expect(await adminState()).toBe(before);
    // The same caller may still read.
    expect(codeOf(await call('listBindings', {}, readOnlyToken))).toBe('ok');
  });

  it('refuses callers with no, unknown, malformed or agent tokens with UNAUTHENTICATED, counted, nothing changed', async () => {
    const before = await adminState();
    const unauthenticated = counters().unauthenticated;
    const tokens = [undefined, 'not-a-token', 'two words', agentTokenOf('prod-a')];
    for (const token of tokens) {
      for (const [method, request] of [...writes(), ['listBindings', {}] as [Method, object]]) {
        expect(codeOf(await call(method, request, token)), `${method} ${token}`).toBe(
          grpc.status.UNAUTHENTICATED,
        );
      }
    }
    expect(counters().unauthenticated).toBe(unauthenticated + tokens.length * 6);
    expect(await adminRejections('unauthenticated')).toBe(counters().unauthenticated);
    expect(await adminState()).toBe(before);
  });

  it('does not let an admin token speak for a cluster on the agent listener', async () => {
    const agent = new RogueAgent(`127.0.0.1:${fed.hub.agentPort}`, { token: adminToken });
    try {
      const stream = agent.open();
      stream.hello('prod-a');
      expect((await stream.ended()).code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      agent.close();
    }
  });

  it('lets the admin role do what the others could not (the refusals above were about the role)', async () => {
    const released = (await call('releaseHeldOperation', { id: held.id }, adminToken)) as {
      operation?: { id: string };
    };
    expect(codeOf(released)).toBe('ok');
    expect(released.operation?.id).toBe(held.id);
    expect((await fed.records.read(arn)).held?.releasedBy).toBe('ci');
    expect(codeOf(await call('deleteBinding', { name: 'guarded', version: 0 }, adminToken))).toBe(
      'ok',
    );
    const left = (await call('listBindings', {}, adminToken)) as { bindings: Binding[] };
    expect(left.bindings.map((b) => b.name)).not.toContain('guarded');
  });
});

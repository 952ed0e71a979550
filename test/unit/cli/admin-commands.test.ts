import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { fieldViolationsMetadata } from '../../../hub/admin/index.js';
import {
  AlertSeverity,
  ClusterState,
  ReconcileOutcome,
  TargetGroupStatus,
  type Cluster,
} from '../../../shared/index.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';
import { fakeAdminApi, runAgainst, statusError } from './fake-admin-api.js';

const NOW = 1_000_000;
const dir = mkdtempSync(join(tmpdir(), 'tgfed-cli-commands-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cluster(id: string, state: ClusterState, endpointCount = 0): Cluster {
  return {
    id,
    labels: { env: 'prod' },
    state,
    agentVersion: '0.1.0',
    sessionEpoch: new Uint8Array(0),
    hubId: 'hub-a',
    connectedSinceUnixMs: NOW - 60_000,
    lastSeenUnixMs: NOW - 2_000,
    serviceCount: 1,
    endpointCount,
    allowedCidrs: [],
    lastAckedSequence: 4,
  };
}

function groupStatus(arn: string, overrides: Partial<TargetGroupStatus> = {}): TargetGroupStatus {
  return TargetGroupStatus.fromPartial({
    targetGroup: targetGroup({ arn }),
    bindings: ['web'],
    desiredTargets: 3,
    actualTargets: 3,
    ownedTargets: 3,
    inSync: true,
    lastOutcome: ReconcileOutcome.RECONCILE_OUTCOME_IN_SYNC,
    lastReconcileUnixMs: NOW - 5_000,
    ...overrides,
  });
}

const arn0 = targetGroupArn(0);
const arn1 = targetGroupArn(1);

describe('tgfed status', () => {
  const healthy = {
    listClusters: () =>
      Promise.resolve({ clusters: [cluster('east', ClusterState.CLUSTER_STATE_CONNECTED, 3)] }),
    listBindings: () => Promise.resolve({ bindings: [binding()] }),
    getTargetGroupStatus: ({ arn }: { arn: string }) =>
      Promise.resolve({ status: groupStatus(arn) }),
  };

  it('says alerts are not served when ListAlerts is UNIMPLEMENTED, and exits 0 when all is in sync', async () => {
    const run = await runAgainst(fakeAdminApi(healthy), ['status']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      [
        'hub fake:1',
        '',
        'clusters: 1 connected',
        '  CLUSTER   STATE       ENDPOINTS   LAST-SEEN',
        '  east      connected   3           2s',
        '',
        'target groups: 1 of 1 in sync',
        `  TARGET-GROUP${' '.repeat(arn0.length - 12)}   IN-SYNC   DESIRED   ACTUAL   OWNED   LAST-OUTCOME   HELD`,
        `  ${arn0}   yes       3         3        3       in-sync        -`,
        '',
        'alerts: not served by this hub',
        '',
        'all in sync',
        '',
      ].join('\n'),
    );
    expect([run.opened, run.closed]).toEqual([1, 1]);
  });

  it('exits 1 and says why when an alert fires, a cluster is stale or a group is held', async () => {
    const api = fakeAdminApi({
      ...healthy,
      listClusters: () =>
        Promise.resolve({
          clusters: [
            cluster('east', ClusterState.CLUSTER_STATE_CONNECTED),
            cluster('west', ClusterState.CLUSTER_STATE_STALE),
          ],
        }),
      getTargetGroupStatus: ({ arn }) =>
        Promise.resolve({
          status: groupStatus(arn, {
            inSync: false,
            heldOperations: [
              {
                id: 'held-1',
                targetGroupArn: arn,
                deregistrations: 8,
                targetsBefore: 10,
                reason: 'too many',
                heldSinceUnixMs: NOW - 1_000,
              },
            ],
          }),
        }),
      listAlerts: () =>
        Promise.resolve({
          alerts: [
            {
              name: 'TgfedClusterStale',
              severity: AlertSeverity.ALERT_SEVERITY_WARNING,
              summary: 'cluster west is stale',
              labels: {},
              firingSinceUnixMs: NOW - 180_000,
            },
          ],
        }),
    });
    const run = await runAgainst(api, ['status']);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('clusters: 1 connected, 1 stale\n');
    expect(run.stdout).toContain('target groups: 0 of 1 in sync\n');
    expect(run.stdout).toMatch(
      /^alerts: 1 firing\n {2}ALERT\s+SEVERITY\s+SINCE\s+SUMMARY\n {2}TgfedClusterStale\s+warning\s+3m\s+cluster west is stale$/m,
    );
    expect(run.stdout.trimEnd().split('\n').at(-1)).toBe(
      `needs attention: 4 (cluster west is stale; target group ${arn0} is not in sync; held operation held-1 on ${arn0}; …)`,
    );
    const json = JSON.parse((await runAgainst(api, ['status', '-o', 'json'])).stdout) as {
      healthy: boolean;
      attention: string[];
      alertsServed: boolean;
      alerts: { name: string; severity: string }[];
    };
    expect(json).toMatchObject({
      healthy: false,
      alertsServed: true,
      alerts: [{ name: 'TgfedClusterStale', severity: 'ALERT_SEVERITY_WARNING' }],
    });
    expect(json.attention).toHaveLength(4);
  });

  it('exits 3 when the hub is unreachable halfway', async () => {
    const api = fakeAdminApi({
      ...healthy,
      listBindings: () => Promise.reject(statusError(grpc.status.UNAVAILABLE, 'connection reset')),
    });
    const run = await runAgainst(api, ['status']);
    expect(run).toMatchObject({
      code: 3,
      stdout: '',
      stderr: 'tgfed status: hub fake:1 unreachable (14 UNAVAILABLE: connection reset)\n',
      closed: 1,
    });
  });
});

describe('tgfed get targetgroups', () => {
  it('lists every group the bindings feed once, leaving out one deleted meanwhile', async () => {
    const pool = binding({
      name: 'pool',
      target: {
        $case: 'pool',
        pool: {
          groups: [targetGroup({ arn: arn0 }), targetGroup({ arn: arn1 })],
          listenerRuleArn: '',
        },
      },
    });
    const asked: string[] = [];
    const api = fakeAdminApi({
      listBindings: () => Promise.resolve({ bindings: [binding(), pool] }),
      getTargetGroupStatus: ({ arn }) => {
        asked.push(arn);
        return arn === arn1
          ? Promise.reject(statusError(grpc.status.NOT_FOUND, 'gone'))
          : Promise.resolve({ status: groupStatus(arn) });
      },
    });
    const run = await runAgainst(api, ['get', 'tg', '-o', 'yaml']);
    expect(run.code).toBe(0);
    expect(asked.sort()).toEqual([arn0, arn1]);
    expect(run.stdout).toBe(
      `targetGroups:\n  - targetGroup:\n      arn: ${arn0}\n      roleArn: arn:aws:iam::111111111111:role/tgfed\n      externalId: tgfed-ext\n    bindings:\n      - web\n    desiredTargets: 3\n    actualTargets: 3\n    ownedTargets: 3\n    inSync: true\n    lastOutcome: RECONCILE_OUTCOME_IN_SYNC\n    lastReconcileUnixMs: 995000\n`,
    );
  });
});

describe('tgfed apply', () => {
  it('reports a binding the hub rejects with its field violations, applies the rest, exits 1', async () => {
    const applied: string[] = [];
    const api = fakeAdminApi({
      applyBinding: ({ binding: b }) => {
        if (b?.name === 'bad') {
          return Promise.reject(
            statusError(
              grpc.status.INVALID_ARGUMENT,
              'invalid binding',
              fieldViolationsMetadata([
                { field: 'targetGroup.roleArn', description: 'not an IAM role ARN' },
              ]),
            ),
          );
        }
        applied.push(b?.name ?? '');
        return Promise.resolve({ binding: { ...b!, version: 7 }, changed: true });
      },
    });
    const file = join(dir, 'b.yaml');
    const entry = (name: string) =>
      `  - name: ${name}\n    services: { namespace: shop, name: web }\n    port: { name: http }\n    targetGroup: { arn: "${arn0}" }\n`;
    writeFileSync(file, `bindings:\n${entry('bad')}${entry('good')}`);
    const run = await runAgainst(api, ['apply', '-f', file]);
    expect(run).toMatchObject({
      code: 1,
      stdout: 'binding/good configured (version 7)\n',
      stderr:
        'tgfed apply: binding/bad: rejected (INVALID_ARGUMENT): invalid fields\n  targetGroup.roleArn: not an IAM role ARN\n',
    });
    expect(applied).toEqual(['good']);
  });

  it('stops at once when the credentials are refused (exit 4)', async () => {
    let calls = 0;
    const api = fakeAdminApi({
      applyBinding: () => {
        calls++;
        return Promise.reject(statusError(grpc.status.UNAUTHENTICATED, 'unknown bearer token'));
      },
    });
    const file = join(dir, 'b.yaml');
    writeFileSync(
      file,
      `- { name: a, services: { namespace: shop, name: web }, port: { name: http }, targetGroup: { arn: "${arn0}" } }\n- { name: b, services: { namespace: shop, name: web }, port: { name: http }, targetGroup: { arn: "${arn1}" } }\n`,
    );
    const run = await runAgainst(api, ['apply', '-f', file]);
    expect(run.code).toBe(4);
    expect(run.stderr).toBe(
      'tgfed apply: hub fake:1 refused the credentials (16 UNAUTHENTICATED: unknown bearer token); see --token, --token-file, --cert\n',
    );
    expect(calls).toBe(1);
  });
});

describe('tgfed diff', () => {
  it('shows held operations and conflicts, and exits 1 when the group is not in sync', async () => {
    const api = fakeAdminApi({
      getTargetGroupStatus: ({ arn }) =>
        Promise.resolve({
          status: groupStatus(arn, {
            inSync: false,
            desiredTargets: 2,
            actualTargets: 10,
            ownedTargets: 10,
            lastOutcome: ReconcileOutcome.RECONCILE_OUTCOME_HELD,
            heldOperations: [
              {
                id: 'h-1',
                targetGroupArn: arn,
                deregistrations: 8,
                targetsBefore: 10,
                reason: 'would remove 80%',
                heldSinceUnixMs: NOW - 30_000,
              },
            ],
            conflicts: [{ target: '10.1.0.2:8080', clusters: ['east', 'west'] }],
          }),
        }),
    });
    const run = await runAgainst(api, ['diff', arn0]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe(
      [
        `target group   ${arn0}`,
        'bindings       web',
        'in sync        no',
        'last reconcile held, 5s ago',
        '',
        'TARGETS   COUNT   MEANING',
        'desired   2       endpoints the bindings select',
        'actual    10      registered in ELB (last seen by the workers)',
        'owned     10      registered by tgfed (only these are deregistered)',
        '',
        'held by the mass-deregistration guard (release with: tgfed release <id>)',
        '  ID    DEREGISTRATIONS   OF-TARGETS   HELD-FOR   REASON',
        '  h-1   8                 10           30s        would remove 80%',
        '',
        'conflicts (one address announced by several clusters; registered once)',
        '  TARGET          CLUSTERS',
        '  10.1.0.2:8080   east,west',
        '',
      ].join('\n'),
    );
  });
});

describe('tgfed get clusters', () => {
  it('prints a kubectl-like table', async () => {
    const api = fakeAdminApi({
      listClusters: () =>
        Promise.resolve({
          clusters: [
            cluster('east', ClusterState.CLUSTER_STATE_CONNECTED, 1200),
            cluster('west-2', ClusterState.CLUSTER_STATE_DISCONNECTED),
          ],
        }),
    });
    const run = await runAgainst(api, ['get', 'clusters']);
    expect(run.stdout).toBe(
      [
        'NAME     STATE          SERVICES   ENDPOINTS   LAST-SEEN   HUB     AGENT   LABELS',
        'east     connected      1          1200        2s          hub-a   0.1.0   env=prod',
        'west-2   disconnected   1          0           2s          hub-a   0.1.0   env=prod',
        '',
      ].join('\n'),
    );
  });
});

import { describe, expect, it } from 'vitest';
import {
  resolveDesiredTargets,
  statusChangeMatters,
  type ClusterEndpointState,
  type ClusterStatus,
  type ResolveOptions,
} from '../../../hub/federation/desired-targets.js';
import {
  validateBinding,
  type NormalizedBinding,
} from '../../../hub/federation/binding-validation.js';
import type { Binding, EndpointRecord } from '../../../shared/index.js';
import { binding, targetGroup, targetGroupArn } from '../../support/binding-fixtures.js';

function normalized(overrides: Partial<Binding> = {}): NormalizedBinding {
  const result = validateBinding(
    binding({ clusters: { names: [], labels: undefined }, ...overrides }),
  );
  if (!result.ok) throw new Error(JSON.stringify(result.violations));
  return result.binding;
}

function endpoint(address: string, overrides: Partial<EndpointRecord> = {}): EndpointRecord {
  return {
    address,
    ports: [
      { name: 'http', port: 8080, protocol: 'TCP', appProtocol: '' },
      { name: 'metrics', port: 9090, protocol: 'TCP', appProtocol: '' },
    ],
    ready: true,
    serving: true,
    terminating: false,
    zone: 'eu-west-1a',
    node: 'node-1',
    pod: { namespace: 'shop', name: `web-${address}` },
    ...overrides,
  };
}

function cluster(
  clusterId: string,
  services: Record<string, { labels?: Record<string, string>; endpoints: EndpointRecord[] }>,
): ClusterEndpointState {
  return {
    clusterId,
    services: new Map(
      Object.entries(services).map(([key, s]) => {
        const [namespace = '', name = ''] = key.split('/');
        return [
          key,
          {
            service: { namespace, name },
            labels: s.labels ?? {},
            endpoints: new Map(s.endpoints.map((e) => [e.address, e])),
            observedAtMs: 1000,
          },
        ];
      }),
    ),
  };
}

function options(
  labels: Record<string, Record<string, string>> = {},
  statuses: Record<string, Partial<ClusterStatus>> = {},
  extra: Partial<ResolveOptions> = {},
): ResolveOptions {
  return {
    directory: { labels: (id) => labels[id] },
    status: {
      status: (id) => ({
        connection: 'connected',
        awaitingResync: false,
        ...statuses[id],
      }),
    },
    ...extra,
  };
}

const ARN = targetGroupArn();

function keysOf(result: ReturnType<typeof resolveDesiredTargets>, arn = ARN): string[] {
  return [...(result.groups.get(arn)?.targets.keys() ?? [])];
}

describe('resolveDesiredTargets', () => {
  it('resolves one stored service for two bindings by each one’s own port and policy', () => {
    // The same endpoints map (as a worker's cache hands it out) through bindings that select
    // different ports and conditions: each gets its own targets, every time.
    const state = cluster('east', {
      'shop/web': {
        endpoints: [
          endpoint('10.0.0.1'),
          endpoint('10.0.0.2', { ready: false, serving: true }),
          endpoint('10.0.0.3', { terminating: true, ready: false, serving: true }),
        ],
      },
    });
    const http = normalized();
    const metrics = normalized({ port: { port: { $case: 'number', number: 9090 } } });
    const lenient = normalized({ policy: { includeNotReady: true, keepTerminating: true } });
    for (let round = 0; round < 2; round++) {
      expect(keysOf(resolveDesiredTargets(http, [state], options()))).toEqual(['10.0.0.1:8080']);
      expect(keysOf(resolveDesiredTargets(metrics, [state], options()))).toEqual(['10.0.0.1:9090']);
      expect(keysOf(resolveDesiredTargets(lenient, [state], options()))).toEqual([
        '10.0.0.1:8080',
        '10.0.0.2:8080',
        '10.0.0.3:8080',
      ]);
    }
    // A changed service is a new map: read afresh.
    const changed = cluster('east', { 'shop/web': { endpoints: [endpoint('10.0.0.4')] } });
    expect(keysOf(resolveDesiredTargets(http, [changed], options()))).toEqual(['10.0.0.4:8080']);
  });

  it('merges two clusters feeding one binding into one group', () => {
    const result = resolveDesiredTargets(
      normalized(),
      [
        cluster('a', { 'shop/web': { endpoints: [endpoint('10.0.0.1'), endpoint('10.0.0.2')] } }),
        cluster('b', { 'shop/web': { endpoints: [endpoint('10.1.0.1')] } }),
      ],
      options(),
    );
    expect(keysOf(result)).toEqual(['10.0.0.1:8080', '10.0.0.2:8080', '10.1.0.1:8080']);
    expect(result.groups.get(ARN)?.targets.get('10.1.0.1:8080')).toEqual({
      id: '10.1.0.1',
      port: 8080,
      availabilityZone: 'eu-west-1a',
      sources: [{ clusterId: 'b', service: 'shop/web', podName: 'web-10.1.0.1' }],
      observedAtMs: 1000,
      keptFailStatic: false,
      withdrawIfUnhealthy: false,
    });
    expect(result.groups.get(ARN)?.conflicts).toEqual([]);
  });

  it('takes only the clusters whose labels the binding selects, out of three', () => {
    const b = normalized({
      clusters: {
        names: ['gamma'],
        labels: { matchLabels: { env: 'prod' }, matchExpressions: [] },
      },
    });
    const result = resolveDesiredTargets(
      b,
      [
        cluster('alpha', { 'shop/web': { endpoints: [endpoint('10.0.0.1')] } }),
        cluster('beta', { 'shop/web': { endpoints: [endpoint('10.1.0.1')] } }),
        cluster('gamma', { 'shop/web': { endpoints: [endpoint('10.2.0.1')] } }),
      ],
      options({ alpha: { env: 'prod' }, beta: { env: 'dev' } }),
    );
    expect(result.clusters).toEqual(['alpha', 'gamma']);
    expect(keysOf(result)).toEqual(['10.0.0.1:8080', '10.2.0.1:8080']);
  });

  it('selects services by namespace, name and labels', () => {
    const b = normalized({
      services: {
        namespace: 'shop',
        name: '',
        labels: { matchLabels: { app: 'web' }, matchExpressions: [] },
      },
    });
    const result = resolveDesiredTargets(
      b,
      [
        cluster('a', {
          'shop/web': { labels: { app: 'web' }, endpoints: [endpoint('10.0.0.1')] },
          'shop/api': { labels: { app: 'api' }, endpoints: [endpoint('10.0.0.2')] },
          'other/web': { labels: { app: 'web' }, endpoints: [endpoint('10.0.0.3')] },
        }),
      ],
      options(),
    );
    expect(keysOf(result)).toEqual(['10.0.0.1:8080']);
  });

  it('chooses the port by name or by number and skips endpoints without it', () => {
    const byName = resolveDesiredTargets(
      normalized({ port: { port: { $case: 'name', name: 'metrics' } } }),
      [cluster('a', { 'shop/web': { endpoints: [endpoint('10.0.0.1')] } })],
      options(),
    );
    expect(keysOf(byName)).toEqual(['10.0.0.1:9090']);
    const byNumber = resolveDesiredTargets(
      normalized({ port: { port: { $case: 'number', number: 8080 } } }),
      [
        cluster('a', {
          'shop/web': {
            endpoints: [
              endpoint('10.0.0.1'),
              endpoint('10.0.0.2', {
                ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: '' }],
              }),
            ],
          },
        }),
      ],
      options(),
    );
    expect(keysOf(byNumber)).toEqual(['10.0.0.1:8080']);
  });

  it('registers ready endpoints only by default, and follows includeNotReady and keepTerminating', () => {
    const endpoints = [
      endpoint('10.0.0.1'),
      endpoint('10.0.0.2', { ready: false, serving: true }),
      endpoint('10.0.0.3', { ready: false, serving: true, terminating: true }),
      endpoint('10.0.0.4', { ready: false, serving: false, terminating: true }),
      endpoint('10.0.0.5', { ready: false, serving: false }),
    ];
    const states = [cluster('a', { 'shop/web': { endpoints } })];
    const run = (policy: { includeNotReady: boolean; keepTerminating: boolean }): string[] =>
      keysOf(resolveDesiredTargets(normalized({ policy }), states, options())).map(
        (k) => k.split(':')[0] ?? '',
      );
    expect(run({ includeNotReady: false, keepTerminating: false })).toEqual(['10.0.0.1']);
    expect(run({ includeNotReady: true, keepTerminating: false })).toEqual([
      '10.0.0.1',
      '10.0.0.2',
    ]);
    expect(run({ includeNotReady: false, keepTerminating: true })).toEqual([
      '10.0.0.1',
      '10.0.0.3',
    ]);
  });

  it('registers an IP:port announced by two clusters once, reports the conflict, and picks the same winner in any order', () => {
    const states = [
      cluster('b', { 'shop/web': { endpoints: [endpoint('10.9.0.1'), endpoint('10.0.0.2')] } }),
      cluster('a', { 'shop/web': { endpoints: [endpoint('10.9.0.1')] } }),
      cluster('c', { 'shop/web': { endpoints: [endpoint('10.9.0.1')] } }),
    ];
    const first = resolveDesiredTargets(normalized(), states, options());
    const second = resolveDesiredTargets(normalized(), [...states].reverse(), options());
    const group = first.groups.get(ARN);
    expect(group?.conflicts).toEqual([{ target: '10.9.0.1:8080', clusters: ['a', 'b', 'c'] }]);
    expect(group?.targets.get('10.9.0.1:8080')?.sources.map((s) => s.clusterId)).toEqual(['a']);
    expect(second.groups.get(ARN)?.targets).toEqual(group?.targets);
    expect(second.groups.get(ARN)?.conflicts).toEqual(group?.conflicts);
  });

  it('prefers a connected cluster over a disconnected one in a conflict', () => {
    const result = resolveDesiredTargets(
      normalized(),
      [
        cluster('a', { 'shop/web': { endpoints: [endpoint('10.9.0.1')] } }),
        cluster('b', { 'shop/web': { endpoints: [endpoint('10.9.0.1')] } }),
      ],
      options({}, { a: { connection: 'disconnected-within-grace' } }),
    );
    const target = result.groups.get(ARN)?.targets.get('10.9.0.1:8080');
    expect(target?.sources[0]?.clusterId).toBe('b');
    expect(target?.keptFailStatic).toBe(false);
  });

  it('counts one pod selected by two services of one cluster as one target with two sources', () => {
    const result = resolveDesiredTargets(
      normalized({ services: { namespace: 'shop', name: '', labels: undefined } }),
      [
        cluster('a', {
          'shop/web': { endpoints: [endpoint('10.0.0.1')] },
          'shop/web-canary': { endpoints: [endpoint('10.0.0.1')] },
        }),
      ],
      options(),
    );
    const target = result.groups.get(ARN)?.targets.get('10.0.0.1:8080');
    expect(target?.sources.map((s) => s.service)).toEqual(['shop/web', 'shop/web-canary']);
    expect(result.groups.get(ARN)?.conflicts).toEqual([]);
  });

  it('distributes a pool binding over its groups within their capacities and reports overflow', () => {
    const arns = [targetGroupArn(1), targetGroupArn(2)];
    const b = normalized({
      target: {
        $case: 'pool',
        pool: {
          groups: arns.map((arn) => targetGroup({ arn, capacity: 30 })),
          listenerRuleArn: '',
        },
      },
    });
    const endpoints = Array.from({ length: 70 }, (_, i) => endpoint(`10.3.0.${i + 1}`));
    const result = resolveDesiredTargets(
      b,
      [cluster('a', { 'shop/web': { endpoints } })],
      options(),
    );
    expect([...result.groups.keys()]).toEqual(arns);
    for (const arn of arns) expect(result.groups.get(arn)?.targets.size).toBe(30);
    expect(result.overflow).toHaveLength(10);
    const all = arns.flatMap((arn) => keysOf(result, arn));
    expect(new Set(all).size).toBe(60);

    // One more endpoint after scaling down: nothing already placed moves.
    const previous = new Map(
      arns.flatMap((arn) => keysOf(result, arn).map((k) => [k, arn] as const)),
    );
    const fewer = endpoints.slice(0, 50);
    const next = resolveDesiredTargets(b, [cluster('a', { 'shop/web': { endpoints: fewer } })], {
      ...options(),
      previousAssignment: previous,
    });
    for (const arn of arns) {
      for (const key of keysOf(next, arn)) {
        if (previous.has(key)) expect(previous.get(key)).toBe(arn);
      }
    }
  });

  it('keeps a disconnected cluster’s targets within grace and flags them withdrawIfUnhealthy after it', () => {
    const states = [
      cluster('a', { 'shop/web': { endpoints: [endpoint('10.0.0.1')] } }),
      cluster('b', { 'shop/web': { endpoints: [endpoint('10.1.0.1')] } }),
      cluster('c', { 'shop/web': { endpoints: [endpoint('10.2.0.1')] } }),
    ];
    const statuses = {
      b: { connection: 'disconnected-within-grace' as const },
      c: { connection: 'stale' as const },
    };
    const result = resolveDesiredTargets(normalized(), states, options({}, statuses));
    const targets = result.groups.get(ARN)?.targets;
    expect(targets?.get('10.0.0.1:8080')).toMatchObject({
      keptFailStatic: false,
      withdrawIfUnhealthy: false,
    });
    expect(targets?.get('10.1.0.1:8080')).toMatchObject({
      keptFailStatic: true,
      withdrawIfUnhealthy: false,
    });
    expect(targets?.get('10.2.0.1:8080')).toMatchObject({
      keptFailStatic: false,
      withdrawIfUnhealthy: true,
    });
    const withdrawn = resolveDesiredTargets(normalized(), states, {
      ...options({}, statuses),
      staleClusterPolicy: 'withdraw',
    });
    expect(keysOf(withdrawn)).toEqual(['10.0.0.1:8080', '10.1.0.1:8080']);
  });

  it('blocks deregistrations while a selected cluster has not resynced since a cold start', () => {
    const states = [
      cluster('a', { 'shop/web': { endpoints: [endpoint('10.0.0.1')] } }),
      cluster('b', {}),
    ];
    const blocked = resolveDesiredTargets(
      normalized(),
      states,
      options({}, { b: { awaitingResync: true } }),
    );
    expect(blocked.groups.get(ARN)).toMatchObject({
      deregistrationsBlocked: true,
      awaitingResyncClusters: ['b'],
    });
    const unselected = resolveDesiredTargets(
      normalized({ clusters: { names: ['a'], labels: undefined } }),
      states,
      options({}, { b: { awaitingResync: true } }),
    );
    expect(unselected.groups.get(ARN)?.deregistrationsBlocked).toBe(false);
  });
});

describe('statusChangeMatters', () => {
  const connected: ClusterStatus = { connection: 'connected', awaitingResync: false };
  const away: ClusterStatus = { connection: 'disconnected-within-grace', awaitingResync: false };
  const stale: ClusterStatus = { connection: 'stale', awaitingResync: false };

  it('ignores going away and coming back within the grace period', () => {
    expect(statusChangeMatters(away, connected)).toBe(false);
    expect(statusChangeMatters(connected, away)).toBe(false);
  });

  it('counts the stale policy, a resync and an initial sync starting or ending', () => {
    expect(statusChangeMatters(stale, away)).toBe(true);
    expect(statusChangeMatters(connected, stale)).toBe(true);
    expect(statusChangeMatters(connected, { ...connected, awaitingResync: true })).toBe(true);
    expect(statusChangeMatters({ ...away, awaitingResync: true }, away)).toBe(true);
    expect(statusChangeMatters(connected, { ...connected, initialSync: true })).toBe(true);
    expect(statusChangeMatters({ ...connected, initialSync: false }, connected)).toBe(false);
  });
});

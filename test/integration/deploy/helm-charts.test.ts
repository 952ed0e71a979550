import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  type V1Container,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { agentOptionsSchema } from '../../../agent/config/agent-options.js';
import {
  ClusterDirectory,
  hubOptionsSchema,
  loadAdminCredentials,
  workerOptionsSchema,
} from '../../../hub/config/index.js';
import { loadBindingFile } from '../../../hub/federation/binding-file.js';
import { containerSettings, materialize, mountedFile, podSpecOf } from './chart-wiring.js';
import {
  charts,
  helm,
  isCustomResource,
  lintChart,
  objectOf,
  renderChart,
  repoRoot,
  type RenderedObject,
} from './helm-render.js';

const run = promisify(execFile);
const sha = (c: string): string => c.repeat(64);

function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  return kc;
}

// Namespaces of this file: the release's, and two an agent may be limited to. No namespace
// controller runs, so deleted namespaces stay Terminating; their names are never reused.
const suffix = randomUUID().slice(0, 8);
const releaseNamespace = `deploy-${suffix}`;
const watchedNamespaces = [`shop-${suffix}`, `web-${suffix}`];

beforeAll(async () => {
  const core = kubeConfig().makeApiClient(CoreV1Api);
  for (const name of [releaseNamespace, ...watchedNamespaces]) {
    await core.createNamespace({ body: { metadata: { name } } });
  }
});

afterAll(async () => {
  const core = kubeConfig().makeApiClient(CoreV1Api);
  for (const name of [releaseNamespace, ...watchedNamespaces]) await core.deleteNamespace({ name });
});

/**
 * Server-side dry run of every object of a core kind (what `kubectl apply --dry-run=server`
 * does): the API server validates and admits each one, defaulting included, and stores nothing.
 * The CRD kinds (cert-manager, prometheus-operator, KEDA) have no definition in the test API
 * server; the tests check their structure and their references to the other objects instead.
 */
async function dryRunApply(objects: RenderedObject[]): Promise<string[]> {
  const client = KubernetesObjectApi.makeApiClient(kubeConfig());
  const applied: string[] = [];
  for (const object of objects.filter((o) => !isCustomResource(o))) {
    await client.create(object, undefined, 'All', 'tgfed-chart-test');
    applied.push(`${object.kind}/${object.metadata.name}`);
  }
  return applied;
}

const agentRequired = { clusterId: 'prod-eu-1', hub: { address: 'tgfed-hub.example.com:7443' } };

/** A token hash, a cluster and a binding that the hub's own loaders accept. */
const clusters = [
  {
    id: 'prod-eu-1',
    labels: { env: 'prod' },
    allowedCidrs: ['10.1.0.0/16'],
    tokenSha256: [sha('a')],
  },
];
const bindingItems = [
  {
    name: 'shop-web',
    services: { namespace: 'shop', name: 'web' },
    port: { name: 'http' },
    clusters: { labels: { matchLabels: { env: 'prod' } } },
    targetGroup: {
      arn: 'arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/0123456789abcdef',
      roleArn: 'arn:aws:iam::111111111111:role/tgfed-target',
      externalId: 'tgfed-prod',
    },
  },
];

/** Security settings every tgfed container must run with. */
function expectHardened(podSpec: V1PodSpec, container: V1Container): void {
  expect(podSpec.securityContext).toMatchObject({
    runAsNonRoot: true,
    seccompProfile: { type: 'RuntimeDefault' },
  });
  expect(container.securityContext).toMatchObject({
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  });
  // The only writable place on a read-only root filesystem.
  const tmp = container.volumeMounts?.find((m) => m.mountPath === '/tmp');
  expect(podSpec.volumes?.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();
  expect(container.resources?.requests).toBeDefined();
  expect(container.resources?.limits?.['memory']).toBeDefined();
}

/** The probes point at the health listener the component's settings open. */
function expectProbesOnHealthPort(container: V1Container, healthAddress: string): void {
  const port = Number(healthAddress.split(':').at(-1));
  const named = container.ports?.find((p) => p.name === 'health');
  expect(named?.containerPort).toBe(port);
  expect(container.livenessProbe?.httpGet).toMatchObject({ path: '/livez', port: 'health' });
  expect(container.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 'health' });
}

describe('tgfed-agent chart', () => {
  const helmBinary = (): string => inject('testenv').helm;
  const render = (values: unknown) =>
    renderChart(helmBinary(), charts.agent, values, {
      release: 'agent',
      namespace: releaseNamespace,
    });

  it('renders a mutual-TLS agent watching all namespaces that the API server admits and the agent accepts', async () => {
    const values = agentRequired;
    expect(await lintChart(helmBinary(), charts.agent, values)).toContain('0 chart(s) failed');
    const objects = await render(values);
    const applied = await dryRunApply(objects);
    expect(applied).toEqual(
      expect.arrayContaining([
        'ServiceAccount/agent-tgfed-agent',
        'ConfigMap/agent-tgfed-agent',
        `ClusterRole/${releaseNamespace}-agent-tgfed-agent`,
        `ClusterRoleBinding/${releaseNamespace}-agent-tgfed-agent`,
        'Deployment/agent-tgfed-agent',
        'PodDisruptionBudget/agent-tgfed-agent',
      ]),
    );
    expect(objects.filter((o) => o.kind === 'Role' || o.kind === 'RoleBinding')).toEqual([]);

    const { podSpec, container, settings } = await containerSettings(
      objects,
      'agent-tgfed-agent',
      'agent',
      agentOptionsSchema,
    );
    expect(settings).toMatchObject({
      clusterId: 'prod-eu-1',
      hubAddress: 'tgfed-hub.example.com:7443',
      namespaces: [],
      insecure: false,
    });
    // Every credential file the agent will open is a key of the credentials Secret.
    for (const path of [settings.tlsCaFile, settings.tlsCertFile, settings.tlsKeyFile]) {
      expect(path).toBeDefined();
      expect(mountedFile(objects, podSpec, container, path!)).toMatchObject({
        source: 'secret',
        name: 'agent-tgfed-agent-credentials',
      });
    }
    expect(settings.tokenFile).toBeUndefined();
    expectHardened(podSpec, container);
    expectProbesOnHealthPort(container, settings.healthAddress);
    expect(podSpec.serviceAccountName).toBe('agent-tgfed-agent');
    expect(objectOf(objects, 'Deployment').spec?.['replicas']).toBe(2);
    expect(podSpec.topologySpreadConstraints?.map((c) => c.topologyKey)).toEqual([
      'kubernetes.io/hostname',
      'topology.kubernetes.io/zone',
    ]);

    const clusterRole = objectOf(objects, 'ClusterRole') as RenderedObject & { rules: unknown };
    expect(clusterRole.rules).toEqual([
      {
        apiGroups: ['discovery.k8s.io'],
        resources: ['endpointslices'],
        verbs: ['get', 'list', 'watch'],
      },
    ]);
  });

  it('limits a namespaced agent to a Role per listed namespace and reads its token from the Secret', async () => {
    const values = {
      ...agentRequired,
      credentials: { mode: 'token' },
      watch: { namespaces: watchedNamespaces, labelSelector: 'tgfed.io/federate=true' },
      config: { batchWindowMs: 100, logLevel: 'debug' },
    };
    expect(await lintChart(helmBinary(), charts.agent, values)).toContain('0 chart(s) failed');
    const objects = await render(values);
    await dryRunApply(objects);

    expect(objects.filter((o) => o.kind.startsWith('Cluster'))).toEqual([]);
    for (const kind of ['Role', 'RoleBinding']) {
      expect(
        objects
          .filter((o) => o.kind === kind)
          .map((o) => o.metadata.namespace)
          .sort(),
      ).toEqual(watchedNamespaces);
    }
    const { podSpec, container, settings } = await containerSettings(
      objects,
      'agent-tgfed-agent',
      'agent',
      agentOptionsSchema,
    );
    expect(settings).toMatchObject({
      namespaces: watchedNamespaces,
      labelSelector: 'tgfed.io/federate=true',
      batchWindowMs: 100,
      logLevel: 'debug',
      tokenFile: '/etc/tgfed/credentials/token',
    });
    expect(settings.tlsCertFile).toBeUndefined();
    expect(mountedFile(objects, podSpec, container, settings.tokenFile!)?.key).toBe('token');
  });

  it('issues the client certificate with cert-manager into the Secret the agent mounts, and scrapes it', async () => {
    const values = {
      ...agentRequired,
      credentials: {
        certManager: {
          enabled: true,
          issuerRef: { name: 'tgfed-agents' },
          trustDomain: 'corp.example',
        },
      },
      metrics: { serviceMonitor: { enabled: true, labels: { release: 'prometheus' } } },
    };
    expect(await lintChart(helmBinary(), charts.agent, values)).toContain('0 chart(s) failed');
    const objects = await render(values);
    const applied = await dryRunApply(objects);
    expect(applied).toContain('Service/agent-tgfed-agent');

    const certificate = objectOf(objects, 'Certificate');
    expect(certificate.apiVersion).toBe('cert-manager.io/v1');
    expect(certificate.spec).toMatchObject({
      secretName: 'agent-tgfed-agent-credentials',
      commonName: 'prod-eu-1',
      uris: ['spiffe://corp.example/cluster/prod-eu-1'],
      usages: expect.arrayContaining(['client auth']) as unknown,
      issuerRef: { name: 'tgfed-agents', kind: 'ClusterIssuer', group: 'cert-manager.io' },
    });
    const { podSpec, container, settings } = await containerSettings(
      objects,
      'agent-tgfed-agent',
      'agent',
      agentOptionsSchema,
    );
    expect(mountedFile(objects, podSpec, container, settings.tlsCertFile!)?.name).toBe(
      certificate.spec?.['secretName'],
    );

    const monitor = objectOf(objects, 'ServiceMonitor');
    const service = objectOf(objects, 'Service');
    expect(monitor.metadata.labels?.['release']).toBe('prometheus');
    expect(service.metadata.labels).toMatchObject(
      (monitor.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels,
    );
    expect(monitor.spec?.['endpoints']).toEqual([
      expect.objectContaining({ port: 'health', path: '/metrics' }),
    ]);
    const podLabels = (
      objectOf(objects, 'Deployment').spec as {
        template: { metadata: { labels: Record<string, string> } };
      }
    ).template.metadata.labels;
    expect(podLabels).toMatchObject(service.spec?.['selector'] as Record<string, string>);
  });

  it('runs without credentials against a plaintext demo hub', async () => {
    const objects = await render({
      ...agentRequired,
      hub: { ...agentRequired.hub, insecure: true },
    });
    await dryRunApply(objects);
    const { podSpec, settings } = await containerSettings(
      objects,
      'agent-tgfed-agent',
      'agent',
      agentOptionsSchema,
    );
    expect(settings.insecure).toBe(true);
    expect(podSpec.volumes?.some((v) => v.secret !== undefined)).toBe(false);
  });

  it.each([
    [{}, "missing property 'clusterId'"],
    [
      { ...agentRequired, clusterId: 'Prod_EU' },
      "at '/clusterId': 'Prod_EU' does not match pattern",
    ],
    [{ clusterId: 'prod-eu-1', hub: {} }, "at '/hub': missing property 'address'"],
    [{ ...agentRequired, hub: { address: 'https://hub' } }, "at '/hub/address'"],
    [{ ...agentRequired, replicas: 3 }, "additional properties 'replicas' not allowed"],
    [{ ...agentRequired, credentials: { mode: 'password' } }, "at '/credentials/mode'"],
    // Settings the chart derives itself cannot be overridden through `config`.
    [{ ...agentRequired, config: { hubAddress: 'x:1' } }, "additional properties 'hubAddress'"],
    [{ ...agentRequired, config: { batchWindowMs: 0 } }, "at '/config/batchWindowMs'"],
    [{ ...agentRequired, watch: { namespaces: ['Shop'] } }, "at '/watch/namespaces/0'"],
  ])('rejects bad values with a message naming the value (%j)', async (values, message) => {
    await expect(render(values)).rejects.toThrow(message);
  });

  it('refuses cert-manager for a token agent and without an issuer', async () => {
    await expect(
      render({
        ...agentRequired,
        credentials: { mode: 'token', certManager: { enabled: true, issuerRef: { name: 'i' } } },
      }),
    ).rejects.toThrow('credentials.certManager.enabled needs credentials.mode: tls');
    await expect(
      render({ ...agentRequired, credentials: { certManager: { enabled: true } } }),
    ).rejects.toThrow('credentials.certManager.issuerRef.name is required');
  });

  it('documents in values.schema.json only settings the agent really has', () => {
    const schema = JSON.parse(readFileSync(join(charts.agent, 'values.schema.json'), 'utf8')) as {
      properties: { config: { properties: Record<string, unknown> } };
    };
    const settings = Object.keys(agentOptionsSchema.shape);
    for (const name of Object.keys(schema.properties.config.properties)) {
      expect(settings).toContain(name);
    }
  });
});

describe('tgfed-hub chart', () => {
  const helmBinary = (): string => inject('testenv').helm;
  const render = (values: unknown) =>
    renderChart(helmBinary(), charts.hub, values, {
      release: 'tgfed',
      namespace: releaseNamespace,
    });

  /** Lints, renders, dry-runs; loads the hub's and a worker's settings as the processes would. */
  async function renderHub(values: unknown) {
    expect(await lintChart(helmBinary(), charts.hub, values)).toContain('0 chart(s) failed');
    const objects = await render(values);
    const applied = await dryRunApply(objects);
    const hub = await containerSettings(objects, 'tgfed-hub', 'hub', hubOptionsSchema);
    const worker = await containerSettings(objects, 'tgfed-worker', 'worker', workerOptionsSchema);
    for (const { podSpec, container, settings } of [hub, worker]) {
      expectHardened(podSpec, container);
      expectProbesOnHealthPort(container, settings.healthAddress);
      expect(podSpec.automountServiceAccountToken).toBe(false);
    }
    // The two roles must agree on everything they share (state-options.ts).
    for (const key of [
      'redisUrl',
      'redisSentinels',
      'redisClusterNodes',
      'redisKeyPrefix',
    ] as const) {
      expect(worker.settings[key]).toEqual(hub.settings[key]);
    }
    expect(worker.settings.reconcileShardCount).toBe(hub.settings.reconcileShardCount);
    return { objects, applied, hub, worker };
  }

  it('renders hub, workers and their files from values, all accepted by the hub and worker loaders', async () => {
    const { objects, hub, worker } = await renderHub({
      redis: { url: 'redis://redis.example.com:6379' },
      state: { reconcileShardCount: 8, disconnectedGraceMs: 120_000 },
      hub: { config: { leaseTtlMs: 20_000 } },
      worker: { config: { workerConcurrency: 8, reconcileChunkSize: 250 } },
      clusters,
      adminCredentials: { tokens: [{ name: 'ci', role: 'admin', tokenSha256: sha('b') }] },
      bindings: { items: bindingItems },
    });
    expect(hub.settings).toMatchObject({
      redisUrl: 'redis://redis.example.com:6379',
      reconcileShardCount: 8,
      disconnectedGraceMs: 120_000,
      leaseTtlMs: 20_000,
      agentAddress: '0.0.0.0:7443',
      adminAddress: '0.0.0.0:7444',
      agentClientCertificates: 'require',
      hubId: 'tgfed-pod-0',
    });
    expect(worker.settings).toMatchObject({ workerConcurrency: 8, reconcileChunkSize: 250 });

    // The files the hub names are mounted, and the hub's own loaders accept their content.
    const fileOf = (path: string | undefined) => {
      expect(path).toBeDefined();
      const file = mountedFile(objects, hub.podSpec, hub.container, path!);
      expect(file, `${path} mounted`).toBeDefined();
      return file!;
    };
    const clustersFile = await materialize(fileOf(hub.settings.clustersFile));
    expect(
      ClusterDirectory.load(clustersFile)
        .list()
        .map((c) => c.id),
    ).toEqual(['prod-eu-1']);
    const adminFile = fileOf(hub.settings.adminTokensFile);
    expect(adminFile.source).toBe('secret');
    expect(loadAdminCredentials(await materialize(adminFile)).tokens).toHaveLength(1);
    const bindingsFile = await materialize(fileOf(hub.settings.bindingsFile));
    expect(loadBindingFile(bindingsFile).map((b) => b.name)).toEqual(['shop-web']);
    for (const path of [
      hub.settings.agentTlsCertFile,
      hub.settings.agentTlsKeyFile,
      hub.settings.agentTlsCaFile,
      hub.settings.adminTlsCertFile,
      hub.settings.adminTlsKeyFile,
      hub.settings.adminTlsCaFile,
    ]) {
      expect(fileOf(path).source).toBe('secret');
    }
    expect(
      mountedFile(objects, worker.podSpec, worker.container, worker.settings.clustersFile!),
    ).toBeDefined();

    // Services: agents on 7443, the admin API on its own Service, metrics of both roles.
    const ports = (name: string) =>
      (objectOf(objects, 'Service', name).spec?.['ports'] as { name: string; port: number }[]).map(
        (p) => `${p.name}:${p.port}`,
      );
    expect(ports('tgfed-hub')).toEqual(['agent:7443']);
    expect(ports('tgfed-admin')).toEqual(['admin:7444']);
    expect(ports('tgfed-metrics')).toEqual(['health:8081']);
    expect(objectOf(objects, 'Deployment', 'tgfed-worker').spec?.['replicas']).toBe(2);
    expect(objects.filter((o) => o.kind === 'HorizontalPodAutoscaler')).toEqual([]);
  });

  it('runs a bundled Redis behind NetworkPolicies, plaintext for a demo', async () => {
    const { objects, applied, hub } = await renderHub({
      redis: { bundled: { enabled: true } },
      insecure: true,
      networkPolicy: {
        enabled: true,
        adminFrom: [{ namespaceSelector: { matchLabels: { team: 'platform' } } }],
      },
    });
    expect(applied).toEqual(
      expect.arrayContaining([
        'StatefulSet/tgfed-redis',
        'Service/tgfed-redis',
        'NetworkPolicy/tgfed-hub',
        'NetworkPolicy/tgfed-worker',
        'NetworkPolicy/tgfed-redis',
      ]),
    );
    expect(hub.settings).toMatchObject({ redisUrl: 'redis://tgfed-redis:6379', insecure: true });
    const redisPolicy = objectOf(objects, 'NetworkPolicy', 'tgfed-redis').spec as {
      ingress: { from: { podSelector: { matchLabels: Record<string, string> } }[] }[];
    };
    expect(
      redisPolicy.ingress[0]?.from.map(
        (f) => f.podSelector.matchLabels['app.kubernetes.io/component'],
      ),
    ).toEqual(['hub', 'worker']);
    const hubPolicy = objectOf(objects, 'NetworkPolicy', 'tgfed-hub').spec as {
      ingress: { ports: { port: string }[]; from?: unknown[] }[];
    };
    const admin = hubPolicy.ingress.find((r) => r.ports[0]?.port === 'admin');
    expect(admin?.from).toEqual([{ namespaceSelector: { matchLabels: { team: 'platform' } } }]);
    const redis = podSpecOf(objectOf(objects, 'StatefulSet', 'tgfed-redis'));
    expect(redis.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect(redis.containers[0]?.args).toEqual(
      expect.arrayContaining(['--maxmemory-policy', 'noeviction']),
    );
  });

  it('connects through Sentinel with the password from a Secret and scales workers with an HPA', async () => {
    const { objects, hub, worker } = await renderHub({
      redis: {
        sentinel: {
          addresses: ['sentinel-0.redis:26379', 'sentinel-1.redis:26379'],
          masterName: 'tgfed',
        },
        existingSecret: 'tgfed-redis',
      },
      worker: { autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 12 } },
    });
    for (const { settings } of [hub, worker]) {
      expect(settings).toMatchObject({
        redisSentinels: ['sentinel-0.redis:26379', 'sentinel-1.redis:26379'],
        redisSentinelName: 'tgfed',
        redisPassword: 'from-secret',
      });
    }
    const hpa = objectOf(objects, 'HorizontalPodAutoscaler');
    expect(hpa.spec).toMatchObject({
      scaleTargetRef: { kind: 'Deployment', name: 'tgfed-worker' },
      minReplicas: 2,
      maxReplicas: 12,
      metrics: [
        {
          type: 'External',
          external: {
            metric: { name: 'tgfed_queue_jobs', selector: { matchLabels: { state: 'waiting' } } },
          },
        },
      ],
    });
    // The HPA owns the replica count.
    expect(objectOf(objects, 'Deployment', 'tgfed-worker').spec?.['replicas']).toBeUndefined();
  });

  it('connects to Redis Cluster over TLS, scales workers with KEDA and ships monitoring', async () => {
    const { objects, hub } = await renderHub({
      redis: { cluster: { nodes: ['redis-0:6379', 'redis-1:6379', 'redis-2:6379'] }, tls: true },
      worker: {
        autoscaling: {
          enabled: true,
          kind: 'keda',
          keda: { serverAddress: 'http://prometheus.monitoring:9090' },
        },
      },
      metrics: {
        serviceMonitor: { enabled: true },
        prometheusRule: { enabled: true, labels: { release: 'kube-prometheus-stack' } },
      },
    });
    expect(hub.settings).toMatchObject({
      redisClusterNodes: ['redis-0:6379', 'redis-1:6379', 'redis-2:6379'],
      redisTls: true,
    });

    expect(objects.filter((o) => o.kind === 'HorizontalPodAutoscaler')).toEqual([]);
    const scaled = objectOf(objects, 'ScaledObject');
    expect(scaled.apiVersion).toBe('keda.sh/v1alpha1');
    expect(scaled.spec).toMatchObject({
      scaleTargetRef: { name: 'tgfed-worker' },
      triggers: [
        {
          type: 'prometheus',
          metadata: {
            serverAddress: 'http://prometheus.monitoring:9090',
            query: 'sum(max by (shard) (tgfed_queue_jobs{state="waiting"}))',
            threshold: '20',
          },
        },
      ],
    });

    // The ServiceMonitor finds the metrics Service, which selects hub and worker pods on their
    // named health ports.
    const monitor = objectOf(objects, 'ServiceMonitor');
    const metrics = objectOf(objects, 'Service', 'tgfed-metrics');
    expect(metrics.metadata.labels).toMatchObject(
      (monitor.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels,
    );
    const selector = metrics.spec?.['selector'] as Record<string, string>;
    for (const name of ['tgfed-hub', 'tgfed-worker']) {
      const deployment = objectOf(objects, 'Deployment', name);
      const spec = deployment.spec as {
        template: { metadata: { labels: Record<string, string> } };
      };
      expect(spec.template.metadata.labels).toMatchObject(selector);
      expect(podSpecOf(deployment).containers[0]?.ports?.map((p) => p.name)).toContain('health');
    }

    const rule = objectOf(objects, 'PrometheusRule');
    expect(rule.metadata.labels?.['release']).toBe('kube-prometheus-stack');
    const source = parseYaml(
      readFileSync(join(repoRoot, 'deploy/alerts/tgfed-rules.yaml'), 'utf8'),
    ) as { groups: unknown[] };
    expect(rule.spec?.['groups']).toEqual(source.groups);
  });

  it('gives the workers an IRSA role, TLS from cert-manager, and a URL from a Secret', async () => {
    const roleArn = 'arn:aws:iam::999999999999:role/tgfed-worker';
    const { objects, hub, worker } = await renderHub({
      redis: { existingSecret: 'tgfed-redis' },
      worker: { aws: { roleArn, region: 'eu-west-1' } },
      tls: {
        certManager: {
          enabled: true,
          issuerRef: { name: 'tgfed-ca', kind: 'Issuer' },
          dnsNames: ['tgfed-hub.example.com'],
        },
      },
    });
    expect(hub.settings.redisUrl).toBe('redis://:from-secret@redis.example.com:6379');
    const accounts = objects.filter((o) => o.kind === 'ServiceAccount');
    expect(
      accounts.find((a) => a.metadata.name === 'tgfed-worker')?.metadata as {
        annotations?: Record<string, string>;
      },
    ).toMatchObject({ annotations: { 'eks.amazonaws.com/role-arn': roleArn } });
    // The hub needs no AWS identity.
    expect(
      (accounts.find((a) => a.metadata.name === 'tgfed-hub')?.metadata as { annotations?: unknown })
        .annotations,
    ).toBeUndefined();
    expect(worker.podSpec.serviceAccountName).toBe('tgfed-worker');
    expect(worker.container.env).toEqual(
      expect.arrayContaining([{ name: 'AWS_REGION', value: 'eu-west-1' }]),
    );

    const certificates = objects.filter((o) => o.kind === 'Certificate');
    expect(certificates.map((c) => c.spec?.['secretName'])).toEqual([
      'tgfed-agent-tls',
      'tgfed-admin-tls',
    ]);
    expect(certificates[0]?.spec?.['dnsNames']).toEqual(
      expect.arrayContaining([
        'tgfed-hub',
        `tgfed-hub.${releaseNamespace}.svc`,
        'tgfed-hub.example.com',
      ]),
    );
    expect(
      mountedFile(objects, hub.podSpec, hub.container, hub.settings.agentTlsCertFile!)?.name,
    ).toBe('tgfed-agent-tls');
    expect(
      mountedFile(objects, hub.podSpec, hub.container, hub.settings.adminTlsCertFile!)?.name,
    ).toBe('tgfed-admin-tls');
  });

  it.each([
    [{}, 'Redis is required'],
    [
      { redis: { url: 'redis://a:6379', cluster: { nodes: ['b:6379'] } } },
      'choose one Redis mode; url and cluster',
    ],
    [{ redis: { sentinel: { addresses: ['s:26379'] } } }, 'redis.sentinel.masterName is required'],
    [{ redis: { url: 'http://a:6379' } }, "at '/redis/url'"],
    [
      { redis: { url: 'redis://a:6379', existingSecret: 'redis' } },
      'redis.existingSecret does not go with redis.url',
    ],
    [
      { redis: { url: 'redis://a:6379' }, state: { redisUrl: 'x' } },
      "additional properties 'redisUrl'",
    ],
    [
      { redis: { url: 'redis://a:6379' }, worker: { config: { agentAddress: '0.0.0.0:1' } } },
      "additional properties 'agentAddress'",
    ],
    [
      { redis: { url: 'redis://a:6379' }, worker: { autoscaling: { kind: 'vpa' } } },
      "at '/worker/autoscaling/kind'",
    ],
    [
      {
        redis: { url: 'redis://a:6379' },
        worker: { autoscaling: { enabled: true, kind: 'keda' } },
      },
      'worker.autoscaling.keda.serverAddress is required',
    ],
    [
      {
        redis: { url: 'redis://a:6379' },
        adminCredentials: { tokens: [{ name: 'ci', role: 'admin', tokenSha256: 'secret' }] },
      },
      "at '/adminCredentials/tokens/0/tokenSha256'",
    ],
    [
      { redis: { url: 'redis://a:6379' }, worker: { aws: { roleArn: 'tgfed-worker' } } },
      "at '/worker/aws/roleArn'",
    ],
  ])('rejects bad values with a clear message (%j)', async (values, message) => {
    await expect(render(values)).rejects.toThrow(message);
  });

  it('documents in values.schema.json only settings the hub and workers really have', () => {
    const schema = JSON.parse(readFileSync(join(charts.hub, 'values.schema.json'), 'utf8')) as {
      properties: Record<string, { properties: Record<string, { properties: object }> }>;
    };
    const props = schema.properties;
    const check = (documented: object, real: object) => {
      for (const name of Object.keys(documented)) expect(Object.keys(real)).toContain(name);
    };
    check(props['state']!.properties, hubOptionsSchema.shape);
    check(props['state']!.properties, workerOptionsSchema.shape);
    check(props['hub']!.properties['config']!.properties, hubOptionsSchema.shape);
    check(props['worker']!.properties['config']!.properties, workerOptionsSchema.shape);
  });

  it('ships a PrometheusRule copy identical to deploy/alerts/tgfed-rules.yaml that promtool accepts', async () => {
    const copy = join(charts.hub, 'files/tgfed-rules.yaml');
    const source = join(repoRoot, 'deploy/alerts/tgfed-rules.yaml');
    // deploy/alerts is the source of truth; the chart can only read files inside itself.
    expect(existsSync(source)).toBe(true);
    expect(readFileSync(copy, 'utf8')).toBe(readFileSync(source, 'utf8'));
    const { stdout } = await run(inject('testenv').promtool, ['check', 'rules', copy]);
    expect(stdout).toContain('SUCCESS');
  });
});

describe('helm install --dry-run=server', () => {
  const install = (release: string, chart: string, values: unknown) =>
    helm(inject('testenv').helm, [
      'install',
      release,
      chart,
      '--dry-run=server',
      '--kubeconfig',
      inject('kubeconfigPath'),
      '--namespace',
      releaseNamespace,
      '-f',
      valuesPath(values),
    ]);
  let tmp = '';
  const valuesPath = (values: unknown): string => {
    tmp ||= mkdtempSync(join(tmpdir(), 'tgfed-install-'));
    const file = join(tmp, `${randomUUID()}.json`);
    writeFileSync(file, JSON.stringify(values));
    return file;
  };

  it('installs the agent against the API server and tells what it did and how to check it', async () => {
    const out = await install('agent', charts.agent, {
      ...agentRequired,
      watch: { namespaces: watchedNamespaces },
    });
    expect(out).toContain('STATUS: pending-install');
    expect(out).toContain(
      `tgfed agent for cluster "prod-eu-1" installed in namespace ${releaseNamespace}.`,
    );
    expect(out).toContain(`the EndpointSlices of namespaces ${watchedNamespaces.join(', ')}`);
    expect(out).toContain('with mutual TLS');
    expect(out).toContain('Secret agent-tgfed-agent-credentials (keys: ca.crt, tls.crt, tls.key)');
  });

  it('installs the hub against the API server and tells how to reach the admin API', async () => {
    const out = await install('tgfed', charts.hub, { redis: { bundled: { enabled: true } } });
    expect(out).toContain('STATUS: pending-install');
    expect(out).toContain('Redis: the bundled single Redis');
    expect(out).toContain(`kubectl -n ${releaseNamespace} port-forward svc/tgfed-admin 7444`);
    expect(out).toContain('tgfed status --hub 127.0.0.1:7444 --tls-server-name tgfed-admin');
    expect(out).toContain('associate\nthe worker role');
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');

  it('runs what the charts run, as the user the charts require', async () => {
    const { helm } = inject('testenv');
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/hub\/cli\/tgfed\.js"\]$/m);
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    // The build produces both entry points the charts name.
    expect(readFileSync(join(repoRoot, 'tsconfig.build.json'), 'utf8')).toContain('"hub"');
    expect(readFileSync(join(repoRoot, 'scripts/bundle.mjs'), 'utf8')).toContain(
      "'tgfed-agent': 'agent/main.ts'",
    );

    const agent = await renderChart(helm, charts.agent, agentRequired);
    const agentPod = podSpecOf(objectOf(agent, 'Deployment'));
    expect(agentPod.containers[0]?.command).toEqual(['node', '/app/dist/bundle/tgfed-agent.mjs']);
    expect(agentPod.securityContext?.runAsUser).toBe(1000);

    const hub = await renderChart(helm, charts.hub, { redis: { url: 'redis://r:6379' } });
    for (const [name, role] of [
      ['tgfed-hub', 'hub'],
      ['tgfed-worker', 'worker'],
    ] as const) {
      const pod = podSpecOf(objectOf(hub, 'Deployment', name));
      // No command: the image's entrypoint, `tgfed <role>`.
      expect(pod.containers[0]?.command).toBeUndefined();
      expect(pod.containers[0]?.args?.[0]).toBe(role);
      expect(pod.securityContext?.runAsUser).toBe(1000);
    }
  });
});

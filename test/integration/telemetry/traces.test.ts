import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { CreateVpcCommand, EC2Client } from '@aws-sdk/client-ec2';
import {
  CreateTargetGroupCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import { CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace';
import { Agent } from '../../../agent/agent.js';
import { agentOptionsSchema } from '../../../agent/config/agent-options.js';
import { loadConfig } from '../../../shared/config/config-loader.js';
import {
  ATTR_TGFED_CLUSTER_ID,
  SERVICE_NAMES,
  SpanAttribute,
  SpanName,
  startTelemetry,
  type Telemetry,
  type TargetGroup,
} from '../../../shared/index.js';
import { freePort } from '../../env/free-port.js';
import { startManagedProcess } from '../../env/managed-process.js';
import {
  MOTO_REGION,
  MOTO_TEST_CREDENTIALS,
  awsClientConfig,
  uniqueAccountId,
} from '../../env/moto-server.js';
import { waitFor } from '../../env/wait-for.js';
import { binding } from '../../support/binding-fixtures.js';
import { endpointSlice } from '../../support/endpoint-slices.js';
import { TestFederation } from '../../support/test-federation.js';
import { agentTokenOf } from '../../support/test-hub-settings.js';

// One change followed from the Kubernetes API to AWS in the traces: a real kube-apiserver, a real
// Agent, a hub and a worker on the test Redis, moto reached through STS AssumeRole. Three
// EndpointSlices go out as three agent batches within one debounce window, so one reconcile
// applies (and links to) all of them.

const motoEndpoint = inject('motoEndpoint');
const EXTERNAL_ID = 'tgfed-trace-test';
const SLICES = 3;
const PER_SLICE = 2;

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) {
    try {
      await close();
    } catch (err) {
      console.error('cleanup:', err);
    }
  }
});

/** A span as both the in-memory exporter and the collector's OTLP/JSON output show it. */
interface SeenSpan {
  readonly service: string;
  readonly name: string;
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly links: readonly { traceId: string; spanId: string }[];
}

function seenOf(span: ReadableSpan): SeenSpan {
  return {
    service: String(span.resource.attributes['service.name']),
    name: span.name,
    traceId: span.spanContext().traceId,
    spanId: span.spanContext().spanId,
    parentSpanId: span.parentSpanContext?.spanId ?? '',
    attributes: span.attributes,
    links: span.links.map((l) => ({ traceId: l.context.traceId, spanId: l.context.spanId })),
  };
}

// --- OTLP/JSON, as the collector's otlphttp exporter sends it ---------------------------------

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: OtlpValue[] };
}
interface OtlpKeyValue {
  key: string;
  value: OtlpValue;
}
interface OtlpTraces {
  resourceSpans?: {
    resource?: { attributes?: OtlpKeyValue[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        attributes?: OtlpKeyValue[];
        links?: { traceId: string; spanId: string }[];
      }[];
    }[];
  }[];
}

function valueOf(v: OtlpValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(valueOf);
  return undefined;
}

function attributesOf(list: OtlpKeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]));
}

function seenOfOtlp(body: OtlpTraces): SeenSpan[] {
  const out: SeenSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const service = String(attributesOf(rs.resource?.attributes)['service.name']);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          name: s.name,
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? '',
          attributes: attributesOf(s.attributes),
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
        });
      }
    }
  }
  return out;
}

/** An HTTP endpoint that takes what the collector's otlphttp exporter forwards (JSON). */
async function startOtlpSink(): Promise<{ url: string; spans: SeenSpan[]; server: Server }> {
  const spans: SeenSpan[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      let body = Buffer.concat(chunks);
      if (request.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      if (request.url === '/v1/traces') {
        spans.push(...seenOfOtlp(JSON.parse(body.toString('utf8')) as OtlpTraces));
      }
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('sink has no port');
  return { url: `http://127.0.0.1:${address.port}`, spans, server };
}

/** The test environment's OpenTelemetry Collector: OTLP/HTTP in, OTLP/HTTP JSON out to `sinkUrl`. */
async function startCollector(sinkUrl: string): Promise<string> {
  const binary = inject('testenv').otelcol;
  expect(binary, 'the OpenTelemetry Collector is not provisioned: run npm run testenv').not.toBe(
    '',
  );
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tgfed-otelcol-'));
  closers.push(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      'receivers:',
      '  otlp:',
      '    protocols:',
      '      http:',
      `        endpoint: 127.0.0.1:${port}`,
      'exporters:',
      '  otlp_http:',
      `    traces_endpoint: ${sinkUrl}/v1/traces`,
      '    encoding: json',
      '    compression: none',
      '  debug:',
      '    verbosity: basic',
      'service:',
      '  telemetry:',
      '    metrics:',
      '      level: none',
      '  pipelines:',
      '    traces:',
      '      receivers: [otlp]',
      '      exporters: [otlp_http, debug]',
      '',
    ].join('\n'),
  );
  const endpoint = `http://127.0.0.1:${port}`;
  const collector = await startManagedProcess({
    name: 'otelcol',
    command: binary,
    args: ['--config', config],
    readyTimeoutMs: 20_000,
    ready: async () => {
      try {
        const response = await fetch(`${endpoint}/v1/traces`, {
          signal: AbortSignal.timeout(1_000),
        });
        await response.body?.cancel();
        return true;
      } catch {
        return false;
      }
    },
  });
  closers.push(() => collector.stop());
  return endpoint;
}

// --- the scenario -----------------------------------------------------------------------------

function roleOf(account: string): string {
  return `arn:aws:iam::${account}:role/tgfed`;
}

function assumedCredentials(account: string) {
  return fromTemporaryCredentials({
    params: { RoleArn: roleOf(account), RoleSessionName: 'test', ExternalId: EXTERNAL_ID },
    clientConfig: awsClientConfig(motoEndpoint),
  });
}

/** An ip target group in its own VPC of `account`, as a binding names it. */
async function createGroup(account: string): Promise<TargetGroup> {
  const ec2 = new EC2Client(awsClientConfig(motoEndpoint, assumedCredentials(account)));
  const elbv2 = new ElasticLoadBalancingV2Client(
    awsClientConfig(motoEndpoint, assumedCredentials(account)),
  );
  try {
    const { Vpc } = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }));
    const out = await elbv2.send(
      new CreateTargetGroupCommand({
        Name: `trace-${randomBytes(6).toString('hex')}`,
        Protocol: 'TCP',
        Port: 8080,
        VpcId: Vpc?.VpcId,
        TargetType: 'ip',
      }),
    );
    return {
      arn: out.TargetGroups?.[0]?.TargetGroupArn ?? '',
      accountId: account,
      region: MOTO_REGION,
      roleArn: roleOf(account),
      externalId: EXTERNAL_ID,
      targetType: 'ip',
      capacity: 0,
      availabilityZone: '',
    };
  } finally {
    ec2.destroy();
    elbv2.destroy();
  }
}

async function targetsIn(group: TargetGroup): Promise<string[]> {
  const elbv2 = new ElasticLoadBalancingV2Client(
    awsClientConfig(motoEndpoint, assumedCredentials(group.accountId)),
  );
  try {
    const out = await elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: group.arn }));
    return (out.TargetHealthDescriptions ?? []).map((d) => `${d.Target?.Id}:${d.Target?.Port}`);
  } finally {
    elbv2.destroy();
  }
}

interface Scenario {
  readonly clusterId: string;
  readonly namespace: string;
  readonly group: TargetGroup;
  readonly telemetry: readonly Telemetry[];
}

/**
 * Runs hub, worker and a real agent with the telemetry `telemetryOf` gives each, creates
 * {@link SLICES} EndpointSlices one batch apart, and waits until moto holds every target.
 */
async function runScenario(
  telemetryOf: (serviceName: string, attributes?: Record<string, string>) => Telemetry,
): Promise<Scenario> {
  const clusterId = `trace-${randomBytes(3).toString('hex')}`;
  const account = uniqueAccountId();
  const group = await createGroup(account);

  const hubTelemetry = telemetryOf(SERVICE_NAMES.hub);
  const workerTelemetry = telemetryOf(SERVICE_NAMES.worker);
  const agentTelemetry = telemetryOf(SERVICE_NAMES.agent, { [ATTR_TGFED_CLUSTER_ID]: clusterId });
  const telemetry = [agentTelemetry, hubTelemetry, workerTelemetry];
  closers.push(() => Promise.all(telemetry.map((t) => t.shutdown())));

  const fed = new TestFederation({
    name: 'traces',
    redisUrl: inject('redisUrl'),
    clusters: [{ id: clusterId, block: 7 }],
    // Long enough that every batch of the scenario joins the first one's reconcile.
    hubSettings: { reconcileDebounceMs: 2_000 },
    hubDependencies: { telemetry: hubTelemetry },
  });
  closers.push(() => fed.close());
  await fed.start();
  await fed.startWorker({
    awsClients: {
      elbv2: { endpoint: motoEndpoint, credentials: MOTO_TEST_CREDENTIALS },
      sts: { endpoint: motoEndpoint },
    },
    telemetry: workerTelemetry,
  });

  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  const namespace = `traces-${randomUUID().slice(0, 8)}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  closers.push(() => kc.makeApiClient(CoreV1Api).deleteNamespace({ name: namespace }));

  await fed.applyBinding(
    binding({
      name: 'web',
      services: { namespace, name: 'web' },
      clusters: { names: [clusterId], labels: undefined },
      target: { $case: 'targetGroup', targetGroup: group },
    }),
  );

  const tokenFile = join(fed.dir, 'agent-token');
  writeFileSync(tokenFile, agentTokenOf(clusterId));
  const agent = new Agent(
    loadConfig(agentOptionsSchema, {
      env: {},
      flags: {
        clusterId,
        hubAddress: `127.0.0.1:${fed.hub.agentPort}`,
        insecure: true,
        tokenFile,
        namespaces: [namespace],
        healthAddress: '127.0.0.1:0',
        batchWindowMs: 10,
      },
    }),
    { kubeConfig: kc, version: 'test', telemetry: agentTelemetry },
  );
  closers.push(() => agent.shutdown(0));
  await agent.start();
  await waitFor(() => agent.publisher.state === 'streaming', {
    what: 'the agent to stream to the hub',
  });

  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const want: string[] = [];
  for (let s = 0; s < SLICES; s++) {
    const ips = Array.from({ length: PER_SLICE }, (_, i) => `10.7.${s}.${i + 1}`);
    want.push(...ips.map((ip) => `${ip}:8080`));
    const sent = agent.publisher.stats.batchesSent;
    await discovery.createNamespacedEndpointSlice({
      namespace,
      body: endpointSlice({
        namespace,
        service: 'web',
        name: `web-${s}`,
        endpoints: ips.map((ip) => ({ ip })),
      }),
    });
    // One batch per slice: the next slice is created only once this one went out.
    await waitFor(
      () => agent.publisher.stats.batchesSent > sent && agent.publisher.inFlight === 0,
      {
        what: `the batch of slice ${s} to be sent and acked`,
      },
    );
  }
  await waitFor(
    async () => JSON.stringify((await targetsIn(group)).sort()) === JSON.stringify(want.sort()),
    { what: `moto to hold ${want.join(' ')}`, intervalMs: 200 },
  );
  return { clusterId, namespace, group, telemetry };
}

/**
 * The path an operator follows: each agent batch → its hub apply (child) → the Redis write and
 * the enqueue (children) → the reconcile that links to the enqueue → the ELBv2 calls (children),
 * STS AssumeRole within the first.
 */
function expectTracePath(spans: readonly SeenSpan[], scenario: Scenario): void {
  const { clusterId, namespace, group } = scenario;
  const childrenOf = (parent: SeenSpan, name: string): SeenSpan[] =>
    spans.filter(
      (s) => s.name === name && s.traceId === parent.traceId && s.parentSpanId === parent.spanId,
    );
  const service = `${namespace}/web`;
  const batches = spans.filter(
    (s) =>
      s.name === SpanName.AGENT_BATCH &&
      ((s.attributes[SpanAttribute.TGFED_BATCH_SERVICES] as string[] | undefined) ?? []).includes(
        service,
      ),
  );
  expect(batches).toHaveLength(SLICES);
  // Every batch is a trace of its own, not a child of the long-lived stream.
  expect(new Set(batches.map((b) => b.traceId)).size).toBe(SLICES);

  const reconciles = new Map<string, SeenSpan>();
  for (const batch of batches) {
    expect(batch.service).toBe(SERVICE_NAMES.agent);
    expect(batch.parentSpanId).toBe('');
    expect(batch.attributes).toMatchObject({
      [SpanAttribute.TGFED_CLUSTER_ID]: clusterId,
      [SpanAttribute.TGFED_ENDPOINT_CHANGES]: PER_SLICE,
      [SpanAttribute.TGFED_BATCH_SERVICE_COUNT]: 1,
    });

    const applies = childrenOf(batch, SpanName.HUB_APPLY);
    expect(
      applies,
      `hub apply of batch ${String(batch.attributes[SpanAttribute.TGFED_BATCH_SEQUENCE])}`,
    ).toHaveLength(1);
    const apply = applies[0]!;
    expect(apply.service).toBe(SERVICE_NAMES.hub);
    expect(apply.attributes).toMatchObject({
      [SpanAttribute.RPC_SYSTEM]: 'grpc',
      [SpanAttribute.RPC_SERVICE]: 'tgfed.v1.AgentService',
      [SpanAttribute.RPC_METHOD]: 'Sync',
      [SpanAttribute.TGFED_CLUSTER_ID]: clusterId,
      [SpanAttribute.TGFED_BATCH_SEQUENCE]: batch.attributes[SpanAttribute.TGFED_BATCH_SEQUENCE],
      [SpanAttribute.TGFED_ENDPOINT_CHANGES]: PER_SLICE,
      [SpanAttribute.TGFED_BATCH_TARGET_GROUPS]: 1,
    });
    expect(childrenOf(apply, SpanName.HUB_STORE_WRITE)[0]?.attributes).toMatchObject({
      [SpanAttribute.DB_SYSTEM_NAME]: 'redis',
    });

    const enqueues = childrenOf(apply, SpanName.RECONCILE_ENQUEUE);
    expect(enqueues).toHaveLength(1);
    const enqueue = enqueues[0]!;
    expect(enqueue.attributes).toMatchObject({
      [SpanAttribute.MESSAGING_SYSTEM]: 'bullmq',
      [SpanAttribute.TGFED_TARGET_GROUP_ARN]: group.arn,
    });

    const reconcile = spans.find(
      (s) =>
        s.name === SpanName.RECONCILE &&
        s.links.some((l) => l.traceId === enqueue.traceId && l.spanId === enqueue.spanId),
    );
    expect(reconcile, 'a reconcile linked to the enqueue').toBeDefined();
    reconciles.set(reconcile!.spanId, reconcile!);
  }

  // The batches joined one debounce window: one reconcile links to all of them.
  expect(reconciles.size).toBe(1);
  const reconcile = [...reconciles.values()][0]!;
  expect(reconcile.service).toBe(SERVICE_NAMES.worker);
  // Besides the batches, the window also took the binding's own request (and the cluster's
  // status change when it connected): every link leads to an enqueue of this group.
  expect(reconcile.links.length).toBeGreaterThanOrEqual(SLICES);
  for (const link of reconcile.links) {
    const linked = spans.find((s) => s.traceId === link.traceId && s.spanId === link.spanId);
    expect(linked?.name).toBe(SpanName.RECONCILE_ENQUEUE);
    expect(linked?.attributes[SpanAttribute.TGFED_TARGET_GROUP_ARN]).toBe(group.arn);
  }
  expect(reconcile.attributes).toMatchObject({
    [SpanAttribute.TGFED_TARGET_GROUP_ARN]: group.arn,
    [SpanAttribute.CLOUD_ACCOUNT_ID]: group.accountId,
    [SpanAttribute.CLOUD_REGION]: MOTO_REGION,
    [SpanAttribute.TGFED_RECONCILE_OUTCOME]: 'applied',
    [SpanAttribute.TGFED_RECONCILE_REGISTERED]: SLICES * PER_SLICE,
    [SpanAttribute.TGFED_RECONCILE_DEREGISTERED]: 0,
    [SpanAttribute.TGFED_RECONCILE_CALLS_REGISTER]: 1,
    [SpanAttribute.TGFED_RECONCILE_LINKS]: reconcile.links.length,
    [SpanAttribute.TGFED_RECONCILE_LINKS_DROPPED]: 0,
  });

  const registers = childrenOf(reconcile, 'ElasticLoadBalancingV2.RegisterTargets');
  expect(registers).toHaveLength(1);
  expect(registers[0]!.attributes).toMatchObject({
    [SpanAttribute.RPC_SYSTEM]: 'aws-api',
    [SpanAttribute.RPC_SERVICE]: 'ElasticLoadBalancingV2',
    [SpanAttribute.RPC_METHOD]: 'RegisterTargets',
    [SpanAttribute.CLOUD_REGION]: MOTO_REGION,
    [SpanAttribute.HTTP_RESPONSE_STATUS_CODE]: 200,
  });
  expect(registers[0]!.attributes[SpanAttribute.AWS_REQUEST_ID]).toEqual(expect.any(String));
  // The worker's first call in this account assumed the group's role, within the call.
  const awsCalls = spans.filter(
    (s) => s.traceId === reconcile.traceId && s.parentSpanId === reconcile.spanId,
  );
  const assumeRole = spans.find(
    (s) => s.name === 'STS.AssumeRole' && awsCalls.some((c) => c.spanId === s.parentSpanId),
  );
  expect(assumeRole, 'STS AssumeRole as the child of an ELBv2 call').toBeDefined();
}

describe('end-to-end traces', () => {
  it('lead from every agent batch to the reconcile that linked it and its AWS calls', async () => {
    const exporter = new InMemorySpanExporter();
    const scenario = await runScenario((serviceName, attributes) =>
      startTelemetry({
        serviceName,
        ...(attributes === undefined ? {} : { attributes }),
        env: {},
        spanProcessors: [new SimpleSpanProcessor({ exporter })],
      }),
    );
    // The reconcile span ends after the last AWS call returned, a moment after moto holds the
    // targets: the path is checked until it is complete (the last failed check is reported).
    await waitFor(
      () => {
        expectTracePath(exporter.getFinishedSpans().map(seenOf), scenario);
        return true;
      },
      { what: 'the trace path from every batch to the AWS calls', timeoutMs: 15_000 },
    );
  });

  it('arrive at an OpenTelemetry Collector over OTLP, configured by the OTEL_* variables', async () => {
    const sink = await startOtlpSink();
    closers.push(() => new Promise((resolve) => sink.server.close(resolve)));
    const collector = await startCollector(sink.url);
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: collector,
      OTEL_METRICS_EXPORTER: 'none',
    };
    const scenario = await runScenario((serviceName, attributes) =>
      startTelemetry({ serviceName, ...(attributes === undefined ? {} : { attributes }), env }),
    );
    // Spans of three processes reach the sink in any order: the path is checked until complete.
    await waitFor(
      async () => {
        await Promise.all(scenario.telemetry.map((t) => t.forceFlush()));
        expectTracePath(sink.spans, scenario);
        return true;
      },
      {
        what: 'the trace path to reach the sink through the collector',
        timeoutMs: 20_000,
        intervalMs: 250,
      },
    );
    expect(new Set(sink.spans.map((s) => s.service))).toEqual(
      new Set([SERVICE_NAMES.agent, SERVICE_NAMES.hub, SERVICE_NAMES.worker]),
    );
  });
});

import {
  DeregisterTargetsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  RegisterTargetsCommand,
  type ElasticLoadBalancingV2ClientConfig,
  type ServiceInputTypes,
  type ServiceOutputTypes,
  type TargetDescription,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import type { STSClientConfig } from '@aws-sdk/client-sts';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import type { Tracer } from '@opentelemetry/api';
import { SpanAttribute, canonicalAddress } from '../../shared/index.js';
import { awsTracingPlugin } from './aws-tracing-plugin.js';
import {
  targetHealthState,
  type ObservedTarget,
  type TargetGroupApi,
  type TargetGroupApiFactory,
  type TargetGroupLocation,
  type TargetRef,
} from './target-group-api.js';

/** Options of {@link Elbv2TargetGroupClients}. */
export interface Elbv2TargetGroupClientsOptions {
  /**
   * Settings for every ELBv2 client, e.g. `endpoint` for a test environment. Endpoints and
   * credentials otherwise come from the SDK's standard chain (`AWS_ENDPOINT_URL_*`,
   * `AWS_PROFILE`, IRSA / Pod Identity, …), so no code path is special to tests.
   * `region` and `credentials` are set per group and override these.
   * @default {}
   */
  elbv2?: Omit<ElasticLoadBalancingV2ClientConfig, 'region'>;
  /**
   * Settings of the STS clients that assume the groups' roles (e.g. `endpoint`).
   * @default {}
   */
  sts?: Omit<STSClientConfig, 'region'>;
  /**
   * The session name in the target accounts' CloudTrail.
   * @default 'tgfed-worker'
   */
  roleSessionName?: string;
  /**
   * Lifetime of assumed-role credentials; the SDK refreshes them five minutes before expiry.
   * @default 3600
   */
  roleDurationSeconds?: number;
  /**
   * Attempts per call inside the SDK. The reconcile retries itself, with the shared rate
   * limiter and error classes, so the SDK's own retries are off by default: a hidden retry
   * would spend tokens the bucket did not grant and hide throttling from the limiter.
   * @default 1
   */
  maxAttempts?: number;
  /**
   * Makes every ELBv2 and STS call a client span (see {@link awsTracingPlugin}).
   * @default no spans
   */
  tracer?: Tracer;
}

/** What picks a client: the role it assumes (with its external id) and the region. */
type RoleLocation = Pick<TargetGroupLocation, 'roleArn' | 'externalId' | 'region'>;

/** The SDK's TargetDescription of a target. */
function describe(target: TargetRef): TargetDescription {
  return {
    Id: target.id,
    Port: target.port,
    ...(target.availabilityZone === undefined || target.availabilityZone === ''
      ? {}
      : { AvailabilityZone: target.availabilityZone }),
  };
}

/** The ELBv2 API of one group through a cached client. */
class Elbv2TargetGroup implements TargetGroupApi {
  constructor(
    private readonly client: ElasticLoadBalancingV2Client,
    private readonly arn: string,
  ) {}

  async describeTargetHealth(signal?: AbortSignal): Promise<ObservedTarget[]> {
    const out = await this.client.send(
      new DescribeTargetHealthCommand({ TargetGroupArn: this.arn }),
      { abortSignal: signal },
    );
    const observed: ObservedTarget[] = [];
    for (const d of out.TargetHealthDescriptions ?? []) {
      const id = d.Target?.Id;
      const port = d.Target?.Port;
      if (id === undefined || port === undefined) continue;
      let canonical: string;
      try {
        canonical = canonicalAddress(id);
      } catch {
        canonical = id; // an instance or Lambda target in a shared group: never ours
      }
      observed.push({
        id: canonical,
        port,
        ...(d.Target?.AvailabilityZone === undefined
          ? {}
          : { availabilityZone: d.Target.AvailabilityZone }),
        state: targetHealthState(d.TargetHealth?.State),
        ...(d.TargetHealth?.Reason === undefined ? {} : { reason: d.TargetHealth.Reason }),
      });
    }
    return observed;
  }

  async registerTargets(targets: readonly TargetRef[], signal?: AbortSignal): Promise<void> {
    await this.client.send(
      new RegisterTargetsCommand({ TargetGroupArn: this.arn, Targets: targets.map(describe) }),
      { abortSignal: signal },
    );
  }

  async deregisterTargets(targets: readonly TargetRef[], signal?: AbortSignal): Promise<void> {
    await this.client.send(
      new DeregisterTargetsCommand({ TargetGroupArn: this.arn, Targets: targets.map(describe) }),
      { abortSignal: signal },
    );
  }
}

/**
 * ELBv2 clients per target location, for any number of accounts: one client per role, external
 * id and region, created on first use and kept. A group with a role gets credentials from STS
 * AssumeRole (with its external id) through the SDK's `fromTemporaryCredentials`, which the
 * client caches and refreshes before they expire; a group without one uses the worker's own
 * credentials from the default chain.
 */
export class Elbv2TargetGroupClients implements TargetGroupApiFactory {
  readonly #options: Elbv2TargetGroupClientsOptions;
  readonly #clients = new Map<string, ElasticLoadBalancingV2Client>();

  constructor(options: Elbv2TargetGroupClientsOptions = {}) {
    this.#options = options;
  }

  /** Number of clients created so far (one per role, external id and region). */
  get clientCount(): number {
    return this.#clients.size;
  }

  forGroup(location: TargetGroupLocation): TargetGroupApi {
    return new Elbv2TargetGroup(this.#clientFor(location), location.arn);
  }

  /**
   * The cached client of a role, external id and region, for the other ELBv2 calls of the same
   * accounts (a pool's listener rule weights): one client and one set of credentials per role.
   */
  clientFor(location: RoleLocation): ElasticLoadBalancingV2Client {
    return this.#clientFor({ arn: '', accountId: '', ...location });
  }

  /**
   * Creates the clients of these locations and fetches their assumed-role credentials now, all
   * at once, so that the first call into each account does not wait for STS first (after a cold
   * start, the first describe of every account did, while its pool's first registrations waited
   * for that describe). Resolves with the locations whose credentials could not be had (the
   * error is theirs; their first call will tell it too); never rejects.
   */
  async warmUp(
    locations: Iterable<RoleLocation>,
  ): Promise<{ roleArn: string; region: string; error: unknown }[]> {
    const unique = new Map<string, RoleLocation>();
    for (const l of locations) {
      // Groups without a role use the worker's own credentials: nothing to assume.
      if (l.roleArn !== '') unique.set(`${l.roleArn}\n${l.externalId}\n${l.region}`, l);
    }
    const failed: { roleArn: string; region: string; error: unknown }[] = [];
    await Promise.all(
      [...unique.values()].map(async (location) => {
        try {
          await this.clientFor(location).config.credentials();
        } catch (error) {
          failed.push({ roleArn: location.roleArn, region: location.region, error });
        }
      }),
    );
    return failed;
  }

  /** Closes every client's connections. */
  close(): void {
    for (const client of this.#clients.values()) client.destroy();
    this.#clients.clear();
  }

  #clientFor(location: TargetGroupLocation): ElasticLoadBalancingV2Client {
    const key = `${location.roleArn}\n${location.externalId}\n${location.region}`;
    let client = this.#clients.get(key);
    if (client !== undefined) return client;
    const o = this.#options;
    const spanAttributes = { [SpanAttribute.CLOUD_REGION]: location.region };
    const tracer = o.tracer;
    const credentials =
      location.roleArn === ''
        ? o.elbv2?.credentials
        : fromTemporaryCredentials({
            params: {
              RoleArn: location.roleArn,
              RoleSessionName: o.roleSessionName ?? 'tgfed-worker',
              DurationSeconds: o.roleDurationSeconds ?? 3600,
              ...(location.externalId === '' ? {} : { ExternalId: location.externalId }),
            },
            ...(o.elbv2?.credentials === undefined
              ? {}
              : { masterCredentials: o.elbv2.credentials }),
            clientConfig: { ...o.sts, region: location.region },
            ...(tracer === undefined
              ? {}
              : { clientPlugins: [awsTracingPlugin(tracer, spanAttributes)] }),
          });
    client = new ElasticLoadBalancingV2Client({
      maxAttempts: o.maxAttempts ?? 1,
      ...o.elbv2,
      region: location.region,
      ...(credentials === undefined ? {} : { credentials }),
    });
    if (tracer !== undefined) {
      client.middlewareStack.use(
        awsTracingPlugin<ServiceInputTypes, ServiceOutputTypes>(tracer, spanAttributes),
      );
    }
    this.#clients.set(key, client);
    return client;
  }
}

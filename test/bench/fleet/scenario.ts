// Scenarios of the fleet benchmark (issue #8) and the layout they imply: clusters, services,
// bindings, pools, accounts, AWS limits. Pure data, shared by the bench and its load processes.

/** One token bucket of the simulated AWS account (per account and region). */
export interface BucketSpec {
  ratePerSecond: number;
  burst: number;
}

/** Everything a fleet run is made of; every field can be overridden from the command line. */
export interface FleetScenario {
  name: string;
  clusters: number;
  /** Services per cluster; service `svc-<s>` is one binding with a pool over every cluster. */
  services: number;
  /** Ready pods of each service in each cluster at start. */
  podsPerService: number;
  /** Target groups in each service's pool. */
  groupsPerService: number;
  /** Capacity (quota) of every group. */
  groupCapacity: number;
  accounts: number;
  /** The service scaled in the scale phase (`big`): pods per cluster before and after, its pool. */
  scaleFrom: number;
  scaleTo: number;
  scaleGroups: number;
  /** Rolling restart of every pod (services one after another), over this many seconds. */
  restartSeconds: number;
  /** Quiet time measuring steady-state calls. */
  steadySeconds: number;
  /** How long one cluster stays away in the disconnect phase (below the hub's grace period). */
  disconnectSeconds: number;
  mutate: BucketSpec;
  describe: BucketSpec;
  latencyMinMs: number;
  latencyMaxMs: number;
  /**
   * How long a deregistered target drains (AWS's default deregistration delay is 300 s); it counts
   * toward the group's quota meanwhile, so a restart of every pod needs room for both.
   */
  deregistrationDelaySeconds: number;
  /** Worker processes and reconciles per worker process. */
  workers: number;
  workerConcurrency: number;
  /** Load processes the simulated clusters are spread over. */
  loadProcesses: number;
  chunkSize: number;
  debounceMs: number;
  shards: number;
  /** Give up on a phase that has not converged after this long. */
  phaseTimeoutSeconds: number;
}

const AWS_DEFAULT_BUCKETS = {
  mutate: { ratePerSecond: 4, burst: 20 },
  describe: { ratePerSecond: 50, burst: 200 },
};

/** DESIGN.md's reference scenario: 100 clusters x 1,000 endpoints, 200 groups in 10 accounts. */
const fleet100k: FleetScenario = {
  name: 'fleet-100k',
  clusters: 100,
  services: 20,
  podsPerService: 50,
  groupsPerService: 10,
  groupCapacity: 1_000,
  accounts: 10,
  scaleFrom: 10,
  scaleTo: 200,
  scaleGroups: 25,
  restartSeconds: 120,
  steadySeconds: 20,
  disconnectSeconds: 20,
  ...AWS_DEFAULT_BUCKETS,
  latencyMinMs: 50,
  latencyMaxMs: 150,
  deregistrationDelaySeconds: 300,
  workers: 2,
  workerConcurrency: 16,
  loadProcesses: 2,
  chunkSize: 500,
  debounceMs: 500,
  shards: 16,
  phaseTimeoutSeconds: 600,
};

/** Small enough for CI (well under two minutes), same shape and the same checks. */
const ci: FleetScenario = {
  ...fleet100k,
  name: 'ci',
  clusters: 6,
  services: 4,
  podsPerService: 20,
  groupsPerService: 3,
  groupCapacity: 100,
  accounts: 2,
  scaleFrom: 5,
  scaleTo: 40,
  scaleGroups: 4,
  restartSeconds: 12,
  steadySeconds: 3,
  disconnectSeconds: 3,
  workers: 2,
  workerConcurrency: 4,
  loadProcesses: 1,
  shards: 4,
  phaseTimeoutSeconds: 90,
};

export const SCENARIOS: Readonly<Record<string, FleetScenario>> = {
  'fleet-100k': fleet100k,
  ci,
};

export const REGION = 'eu-west-1';
export const NAMESPACE = 'shop';
export const SCALED_SERVICE = 'big';
export const EXTERNAL_ID = 'tgfed-bench';

export function clusterId(c: number): string {
  return `cluster-${String(c).padStart(3, '0')}`;
}

export function clusterToken(c: number): string {
  return `bench-token-${c}`;
}

/** Pod addresses of cluster `c` are 10.<c / 250>.<...>: one /16 per cluster, c < 250. */
export function addressPrefix(c: number): string {
  return `10.${c + 1}`;
}

export function serviceName(s: number): string {
  return `svc-${s}`;
}

export function accountId(a: number): string {
  return String(100_000_000_000 + a);
}

export function roleArn(account: string): string {
  return `arn:aws:iam::${account}:role/tgfed-bench`;
}

/** A target group of the layout: its pool (service), name and account. */
export interface GroupLayout {
  service: string;
  name: string;
  account: string;
}

/**
 * Groups of every pool. Consecutive groups of a pool go to consecutive accounts, so every pool
 * spans accounts and every account holds the same number of groups.
 */
export function groupLayout(s: FleetScenario): GroupLayout[] {
  const out: GroupLayout[] = [];
  let n = 0;
  const add = (service: string, count: number) => {
    for (let g = 0; g < count; g++) {
      out.push({ service, name: `${service}-${g}`, account: accountId(n++ % s.accounts) });
    }
  };
  for (let i = 0; i < s.services; i++) add(serviceName(i), s.groupsPerService);
  add(SCALED_SERVICE, s.scaleGroups);
  return out;
}

/** Services of every simulated cluster (the scaled one starts at `scaleFrom`). */
export function clusterServices(s: FleetScenario): { name: string; pods: number }[] {
  return [
    ...Array.from({ length: s.services }, (_, i) => ({
      name: serviceName(i),
      pods: s.podsPerService,
    })),
    { name: SCALED_SERVICE, pods: s.scaleFrom },
  ];
}

/** Parses `--key value` overrides of numeric scenario fields. */
export function withOverrides(
  base: FleetScenario,
  overrides: Record<string, string | undefined>,
): FleetScenario {
  const out: Record<string, unknown> = { ...base };
  for (const [key, raw] of Object.entries(overrides)) {
    if (raw === undefined) continue;
    const field = key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (field === 'mutateRate') out['mutate'] = { ...base.mutate, ratePerSecond: Number(raw) };
    else if (field === 'mutateBurst') out['mutate'] = { ...base.mutate, burst: Number(raw) };
    else if (typeof out[field] === 'number') {
      const value = Number(raw);
      if (!Number.isFinite(value) || value < 0) throw new Error(`--${key}: not a number: ${raw}`);
      out[field] = value;
    } else throw new Error(`unknown option --${key}`);
  }
  return out as unknown as FleetScenario;
}

/** The hub's clusters file of a scenario: every cluster with its /16, its token and `env`. */
export function clustersFileContent(
  s: FleetScenario,
  env: string,
  tokenSha256: (token: string) => string,
) {
  return {
    clusters: Array.from({ length: s.clusters }, (_, c) => ({
      id: clusterId(c),
      labels: { env },
      allowedCidrs: [`${addressPrefix(c)}.0.0/16`],
      tokenSha256: [tokenSha256(clusterToken(c))],
    })),
  };
}

/** The hub's bindings file of a scenario: one pool binding per service, over clusters of `env`. */
export function bindingsFileContent(
  s: FleetScenario,
  env: string,
  pools: ReadonlyMap<string, readonly { arn: string; account: string }[]>,
) {
  return {
    bindings: [...pools.entries()].map(([service, pool]) => ({
      name: service,
      services: { namespace: NAMESPACE, name: service },
      port: { name: 'http' },
      clusters: { labels: { matchLabels: { env } } },
      pool: {
        groups: pool.map((g) => ({
          arn: g.arn,
          roleArn: roleArn(g.account),
          externalId: EXTERNAL_ID,
          capacity: s.groupCapacity,
        })),
      },
    })),
  };
}

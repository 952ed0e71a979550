import ipaddr from 'ipaddr.js';

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Options for {@link AddressPolicy}. */
export interface AddressPolicyOptions {
  /** Cluster id → allowed CIDRs, e.g. `["10.1.0.0/16", "fd00:1::/64"]`. */
  clusters?: Readonly<Record<string, readonly string[]>>;
  /** CIDRs for clusters without an entry. @default [] (nothing allowed) */
  defaultCidrs?: readonly string[];
}

function parse(cidrs: readonly string[], where: string): Cidr[] {
  return cidrs.map((text) => {
    try {
      return ipaddr.parseCIDR(text);
    } catch (err) {
      throw new Error(`${where}: not a CIDR: ${JSON.stringify(text)}`, { cause: err });
    }
  });
}

/**
 * Per-cluster allowed address ranges: a compromised cluster cannot point a load balancer at an
 * arbitrary address. IPv4-mapped IPv6 addresses match only IPv6 ranges.
 */
export class AddressPolicy {
  readonly #clusters = new Map<string, Cidr[]>();
  readonly #default: Cidr[];

  constructor(options: AddressPolicyOptions = {}) {
    for (const [clusterId, cidrs] of Object.entries(options.clusters ?? {})) {
      this.#clusters.set(clusterId, parse(cidrs, `allowed CIDRs of cluster ${clusterId}`));
    }
    this.#default = parse(options.defaultCidrs ?? [], 'default allowed CIDRs');
  }

  /** True when the canonical address lies in one of the cluster's ranges. */
  allows(clusterId: string, address: string): boolean {
    const ranges = this.#clusters.get(clusterId) ?? this.#default;
    if (ranges.length === 0) return false;
    const parsed = ipaddr.parse(address);
    return ranges.some(
      ([range, bits]) => parsed.kind() === range.kind() && parsed.match(range, bits),
    );
  }
}

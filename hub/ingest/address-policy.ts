import ipaddr from 'ipaddr.js';

/** A range as network bytes (4 or 16) and prefix length, compared byte-wise. */
interface Cidr {
  readonly bytes: Uint8Array;
  readonly bits: number;
}

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
      const [range, bits] = ipaddr.parseCIDR(text);
      return { bytes: Uint8Array.from(range.toByteArray()), bits };
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
    // The hot path of every batch: dotted quads are split by hand (ipaddr.parse tries several
    // notations first and showed in the hub's profile); IPv6 goes through ipaddr.js.
    const bytes = address.includes(':')
      ? Uint8Array.from(ipaddr.IPv6.parse(address).toByteArray())
      : Uint8Array.from(address.split('.'), Number);
    return ranges.some((range) => inRange(bytes, range));
  }
}

/** Same family and the first `bits` bits equal. */
function inRange(address: Uint8Array, range: Cidr): boolean {
  if (address.length !== range.bytes.length) return false;
  const whole = range.bits >> 3;
  for (let i = 0; i < whole; i++) if (address[i] !== range.bytes[i]) return false;
  const rest = range.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((address[whole] ?? 0) & mask) === ((range.bytes[whole] ?? 0) & mask);
}

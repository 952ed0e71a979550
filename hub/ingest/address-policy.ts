import ipaddr from 'ipaddr.js';

/**
 * A range as network bytes (4 or 16) and prefix length, compared byte-wise; an IPv4 range also
 * as a 32-bit network and mask.
 */
interface Cidr {
  readonly bytes: Uint8Array;
  readonly bits: number;
  /** IPv4 only: the network and the mask of its prefix, as unsigned 32-bit numbers. */
  readonly v4?: { readonly network: number; readonly mask: number };
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
      const bytes = Uint8Array.from(range.toByteArray());
      if (bytes.length !== 4) return { bytes, bits };
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      return { bytes, bits, v4: { network: (ipv4Number(bytes) & mask) >>> 0, mask } };
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
    // The hot path of every batch: a canonical dotted quad (what the hub decodes) becomes a
    // 32-bit number by hand and meets each IPv4 range in one masked compare (ipaddr.parse tries
    // several notations first, and byte arrays per address showed in the hub's profile); IPv6
    // goes through ipaddr.js.
    if (!address.includes(':')) {
      const ip = dottedQuadNumber(address);
      if (ip === undefined) return false;
      for (const { v4 } of ranges) {
        if (v4 !== undefined && (ip & v4.mask) >>> 0 === v4.network) return true;
      }
      return false;
    }
    const bytes = Uint8Array.from(ipaddr.IPv6.parse(address).toByteArray());
    return ranges.some((range) => inRange(bytes, range));
  }
}

/** Four bytes as an unsigned 32-bit number. */
function ipv4Number(bytes: Uint8Array): number {
  return (
    (((bytes[0] ?? 0) << 24) |
      ((bytes[1] ?? 0) << 16) |
      ((bytes[2] ?? 0) << 8) |
      (bytes[3] ?? 0)) >>>
    0
  );
}

/** A dotted quad of decimal octets as an unsigned 32-bit number; undefined for anything else. */
function dottedQuadNumber(address: string): number | undefined {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= address.length; i++) {
    const c = i === address.length ? 46 : address.charCodeAt(i);
    if (c === 46) {
      // '.' or the end: one octet done.
      if (digits === 0 || octet > 255) return undefined;
      value = value * 256 + octet;
      parts++;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      digits++;
    } else {
      return undefined;
    }
  }
  return parts === 4 ? value : undefined;
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

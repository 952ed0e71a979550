import { hash } from 'node:crypto';
import type { EndpointRecord } from './endpoint.js';

/**
 * Content digests of endpoint sets.
 *
 * A service's digest is the sum, modulo 2^64, of a 64-bit hash of each endpoint and one of the
 * service's labels. A sum is independent of order by construction (so of slice order and slice
 * boundaries), and both sides can keep it up to date in O(1) per endpoint change: the hub checks
 * every delta without rehashing a 10,000-endpoint service. Each hash is the first 8 bytes of
 * SHA-256 over a canonical encoding, so equal sets have equal digests and unequal sets collide
 * with probability about 2^-64 — enough to detect divergence, which is all a digest is for.
 */

const mask64 = (1n << 64n) - 1n;
const field = '\u0000';

function hash64(text: string): bigint {
  // One-shot hash: creating a Hash object per endpoint cost more than hashing (hub profile).
  return hash('sha256', text, 'buffer').readBigUInt64LE(0);
}

/** The canonical encoding an endpoint is hashed over (ports must already be sorted). */
function canonicalEndpoint(e: EndpointRecord): string {
  const ports = e.ports
    .map((p) => `${p.name}${field}${p.port}${field}${p.protocol}${field}${p.appProtocol}`)
    .join('\u0001');
  const flags = (e.ready ? 1 : 0) | (e.serving ? 2 : 0) | (e.terminating ? 4 : 0);
  return [
    'e',
    e.address,
    ports,
    flags,
    e.zone,
    e.node,
    e.pod === undefined ? '' : `${e.pod.namespace}/${e.pod.name}`,
  ].join(field);
}

/** 64-bit hash of one endpoint's content. */
export function endpointHash(endpoint: EndpointRecord): bigint {
  return hash64(canonicalEndpoint(endpoint));
}

/** 64-bit hash of a service's labels (order of keys irrelevant). */
export function labelsHash(labels: Readonly<Record<string, string>>): bigint {
  const entries = Object.keys(labels)
    .sort()
    .map((k) => `${k}${field}${labels[k]}`);
  return hash64(['l', ...entries].join('\u0001'));
}

/** The 8-byte wire form of a digest value. */
export function digestBytes(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value & mask64, true);
  return bytes;
}

/** Hex text of a digest, for logs and the admin API. */
export function digestHex(digest: Uint8Array): string {
  return Buffer.from(digest).toString('hex');
}

/** True when two wire digests are equal. */
export function sameDigest(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && Buffer.from(a).equals(Buffer.from(b));
}

/** Digest of a whole endpoint set with its labels. */
export function endpointDigest(
  labels: Readonly<Record<string, string>>,
  endpoints: Iterable<EndpointRecord>,
): Uint8Array {
  let sum = labelsHash(labels);
  for (const e of endpoints) sum += endpointHash(e);
  return digestBytes(sum);
}

/** A service digest kept up to date endpoint by endpoint. */
export class DigestAccumulator {
  #sum = 0n;
  #labels = labelsHash({});

  /** Adds an endpoint that was not in the set. */
  add(endpoint: EndpointRecord): void {
    this.#sum = (this.#sum + endpointHash(endpoint)) & mask64;
  }

  /** Removes an endpoint that was in the set (with its content as it was). */
  remove(endpoint: EndpointRecord): void {
    this.#sum = (this.#sum - endpointHash(endpoint)) & mask64;
  }

  /** Replaces the service's labels. */
  setLabels(labels: Readonly<Record<string, string>>): void {
    this.#labels = labelsHash(labels);
  }

  /** The current digest in wire form. */
  digest(): Uint8Array {
    return digestBytes(this.#sum + this.#labels);
  }
}

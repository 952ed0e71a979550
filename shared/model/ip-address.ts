import ipaddr from 'ipaddr.js';

/** Address family of an endpoint. */
export type IpFamily = 'IPv4' | 'IPv6';

/** Thrown for text or bytes that are not an IPv4 or IPv6 address. */
export class InvalidAddressError extends Error {
  override readonly name = 'InvalidAddressError';
}

/** A decimal octet without leading zeros (0-255). */
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
/** A dotted-quad IPv4 address in canonical form: what `canonicalAddress` returns for it. */
const CANONICAL_IPV4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/**
 * Canonical text of an address: dotted quad for IPv4, RFC 5952 (lower case, zeros compressed)
 * for IPv6, so that one address always has one key.
 */
export function canonicalAddress(text: string): string {
  // Nearly every address an agent sees is already a canonical dotted quad: it is its own
  // canonical text, without ipaddr's four parses (a quarter of a busy agent's CPU).
  if (CANONICAL_IPV4.test(text)) return text;
  if (!ipaddr.isValid(text))
    throw new InvalidAddressError(`not an IP address: ${JSON.stringify(text)}`);
  // parse() accepts legacy IPv4 forms (octal, fewer parts); insist on the four-part dotted form.
  if (ipaddr.IPv4.isValid(text) && !ipaddr.IPv4.isValidFourPartDecimal(text)) {
    throw new InvalidAddressError(`not a dotted-quad IPv4 address: ${JSON.stringify(text)}`);
  }
  return ipaddr.parse(text).toString();
}

/** The family of a canonical address. */
export function addressFamily(canonical: string): IpFamily {
  return canonical.includes(':') ? 'IPv6' : 'IPv4';
}

/** 4 bytes for IPv4, 16 for IPv6 (the wire form). */
export function addressToBytes(canonical: string): Uint8Array {
  return Uint8Array.from(ipaddr.parse(canonical).toByteArray());
}

/** Canonical text from the wire form; throws on any length other than 4 or 16. */
export function addressFromBytes(bytes: Uint8Array): string {
  // The hub decodes every endpoint of every batch: IPv4 is its dotted quad, without ipaddr's
  // copy into an array and its parse.
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) {
    throw new InvalidAddressError(`address must be 4 or 16 bytes, got ${bytes.length}`);
  }
  return ipaddr.fromByteArray(Array.from(bytes)).toString();
}

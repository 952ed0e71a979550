import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { InvalidAddressError, addressFromBytes, canonicalAddress } from '../../shared/index.js';

const octet = fc.integer({ min: 0, max: 255 });

describe('canonicalAddress', () => {
  it('returns a dotted quad as ipaddr.js prints it', () => {
    fc.assert(
      fc.property(octet, octet, octet, octet, (a, b, c, d) => {
        const text = `${a}.${b}.${c}.${d}`;
        expect(canonicalAddress(text)).toBe(text);
        expect(canonicalAddress(text)).toBe(ipaddr.parse(text).toString());
      }),
    );
  });

  it('refuses IPv4 text that is not a plain dotted quad', () => {
    for (const text of [
      '010.0.0.1',
      '10.0.0.01',
      '256.0.0.1',
      '10.0.1',
      '10.0.0.1.5',
      '0x0a.0.0.1',
      ' 10.0.0.1',
      '10.0.0.1\n',
      '',
    ]) {
      expect(() => canonicalAddress(text), text).toThrow(InvalidAddressError);
    }
  });

  it('gives IPv6 its RFC 5952 form', () => {
    expect(canonicalAddress('FD00:0:0:0:0:0:0:0001')).toBe('fd00::1');
    expect(canonicalAddress('2001:db8::1')).toBe('2001:db8::1');
  });
});

describe('addressFromBytes', () => {
  it('gives the wire form of either family its canonical text, as ipaddr.js prints it', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ minLength: 4, maxLength: 4 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        const text = addressFromBytes(b);
        expect(text).toBe(ipaddr.fromByteArray(Array.from(b)).toString());
        expect(canonicalAddress(text)).toBe(text);
      }),
      { numRuns: 2_000 },
    );
  });

  it('refuses any other length', () => {
    for (const length of [0, 3, 5, 15, 17]) {
      expect(() => addressFromBytes(new Uint8Array(length))).toThrow(InvalidAddressError);
    }
  });
});

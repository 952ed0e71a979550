// @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs this polyfill.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const hourMs = 3_600_000;

/** A PEM certificate with its PKCS#8 PEM private key. */
export interface TestKeyPair {
  certPem: string;
  keyPem: string;
}

/** Names a leaf certificate carries. */
export interface LeafNames {
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** URI SANs, e.g. SPIFFE ids. */
  uris?: string[];
}

/** A throwaway certificate authority for one test run. */
export interface TestCertificateAuthority {
  caPem: string;
  /** Issues a leaf good for both server and client authentication. */
  issue(names: LeafNames): Promise<TestKeyPair>;
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  const body = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trimEnd();
  return `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`;
}

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex');
}

/** Creates a CA (ECDSA P-256, valid for a day) that issues test certificates. */
export async function createTestCertificateAuthority(
  name = 'tgfed test CA',
): Promise<TestCertificateAuthority> {
  const notBefore = new Date(Date.now() - hourMs);
  const notAfter = new Date(Date.now() + 24 * hourMs);
  const caKeys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  return {
    caPem: ca.toString('pem'),
    issue: async (names) => {
      const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
      const sans: x509.JsonGeneralName[] = [
        ...(names.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
        ...(names.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
        ...(names.uris ?? []).map((value) => ({ type: 'url' as const, value })),
      ];
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${names.commonName}`,
        issuer: ca.subject,
        notBefore,
        notAfter,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: algorithm,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([
            x509.ExtendedKeyUsage.serverAuth,
            x509.ExtendedKeyUsage.clientAuth,
          ]),
          new x509.SubjectAlternativeNameExtension(sans),
          await x509.AuthorityKeyIdentifierExtension.create(ca),
        ],
      });
      return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
    },
  };
}

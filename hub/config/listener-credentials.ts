import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

/** TLS settings of one listener, as the hub options name them. */
export interface ListenerTls {
  insecure: boolean;
  caFile: string | undefined;
  certFile: string | undefined;
  keyFile: string | undefined;
  clientCertificates: 'require' | 'optional' | 'none';
}

/**
 * Certificates read once at start, handed to the credentials' listeners. The updates are
 * delivered asynchronously, as grpc-js expects of a provider: it registers its own watcher only
 * after subscribing, so a synchronous update would leave the listener without a certificate.
 */
class StaticCertificateProvider implements grpc.experimental.CertificateProvider {
  constructor(
    private readonly ca: Buffer | undefined,
    private readonly identity: { certificate: Buffer; privateKey: Buffer } | undefined,
  ) {}
  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    const update = this.ca === undefined ? null : { caCertificate: this.ca };
    queueMicrotask(() => listener(update));
  }
  removeCaCertificateListener(): void {}
  addIdentityCertificateListener(
    listener: grpc.experimental.IdentityCertificateUpdateListener,
  ): void {
    const update = this.identity ?? null;
    queueMicrotask(() => listener(update));
  }
  removeIdentityCertificateListener(): void {}
}

function read(file: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`${setting}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Server credentials of a listener. With `optional` client certificates the TLS handshake asks
 * for one but admits clients without (they authenticate by token); a certificate that does not
 * verify against the CA gives no identity. grpc-js's `createSsl` cannot ask without requiring,
 * hence the certificate-provider credentials for that case.
 */
export function listenerCredentials(tls: ListenerTls, name: string): grpc.ServerCredentials {
  if (tls.insecure) return grpc.ServerCredentials.createInsecure();
  const certificate = read(tls.certFile ?? '', `${name}TlsCertFile`);
  const privateKey = read(tls.keyFile ?? '', `${name}TlsKeyFile`);
  const ca = tls.caFile === undefined ? undefined : read(tls.caFile, `${name}TlsCaFile`);
  if (ca === undefined || tls.clientCertificates === 'none') {
    return grpc.ServerCredentials.createSsl(null, [
      { cert_chain: certificate, private_key: privateKey },
    ]);
  }
  if (tls.clientCertificates === 'require') {
    return grpc.ServerCredentials.createSsl(
      ca,
      [{ cert_chain: certificate, private_key: privateKey }],
      true,
    );
  }
  const provider = new StaticCertificateProvider(ca, { certificate, privateKey });
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

import { createHash, timingSafeEqual } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { UnauthenticatedError } from './errors.js';

/** The parts of a server call that carry credentials. */
export interface AuthenticatableCall {
  readonly metadata: grpc.Metadata;
  getAuthContext(): ReturnType<grpc.ServerDuplexStream<unknown, unknown>['getAuthContext']>;
}

/** Who a stream is, from its credentials. */
export interface AgentIdentity {
  readonly clusterId: string;
  readonly method: 'mtls' | 'token';
}

/** Options for {@link AgentAuthenticator}. */
export interface AgentAuthenticatorOptions {
  /**
   * SPIFFE trust domain: a client certificate with URI SAN `spiffe://<domain>/cluster/<id>`
   * identifies cluster `<id>`. Unset: URI SANs are not used.
   */
  trustDomain?: string;
  /** Use the certificate's CN as the cluster id when no SPIFFE id matches. @default true */
  acceptCommonName?: boolean;
  /**
   * Cluster id → SHA-256 (hex) of its bearer token, or several (during a rotation every listed
   * token is accepted). Tokens themselves are never stored.
   */
  tokenSha256?: Readonly<Record<string, string | readonly string[]>>;
}

/** SHA-256 hex of a bearer token, the form the hub stores. */
export function hashAgentToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * Authenticates agent streams by mutual TLS (the listener verifies the chain; this reads the
 * identity) or by a per-cluster bearer token in `authorization: Bearer <token>`.
 */
export class AgentAuthenticator {
  readonly #trustDomain: string | undefined;
  readonly #acceptCommonName: boolean;
  readonly #tokens: { clusterId: string; hash: Buffer }[];

  constructor(options: AgentAuthenticatorOptions = {}) {
    this.#trustDomain = options.trustDomain;
    this.#acceptCommonName = options.acceptCommonName ?? true;
    this.#tokens = Object.entries(options.tokenSha256 ?? {}).flatMap(([clusterId, hashes]) =>
      (typeof hashes === 'string' ? [hashes] : hashes).map((hex) => {
        if (!/^[0-9a-f]{64}$/i.test(hex)) {
          throw new Error(`token hash of cluster ${clusterId} is not 64 hex digits (SHA-256)`);
        }
        return { clusterId, hash: Buffer.from(hex, 'hex') };
      }),
    );
  }

  /** The identity of a call; throws `UnauthenticatedError` when there is none. */
  authenticate(call: AuthenticatableCall): AgentIdentity {
    const fromCertificate = this.#fromCertificate(call);
    if (fromCertificate !== undefined) return { clusterId: fromCertificate, method: 'mtls' };
    const header = call.metadata.get('authorization')[0];
    if (typeof header === 'string') {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (match?.[1] === undefined) {
        throw new UnauthenticatedError('authorization metadata is not "Bearer <token>"');
      }
      const hash = createHash('sha256').update(match[1], 'utf8').digest();
      let found: string | undefined;
      // Compare against every entry, so the time taken does not tell which one matched.
      for (const entry of this.#tokens) {
        if (timingSafeEqual(entry.hash, hash) && found === undefined) found = entry.clusterId;
      }
      if (found === undefined) throw new UnauthenticatedError('unknown bearer token');
      return { clusterId: found, method: 'token' };
    }
    throw new UnauthenticatedError(
      'no client certificate identity and no bearer token on the stream',
    );
  }

  #fromCertificate(call: AuthenticatableCall): string | undefined {
    const cert = call.getAuthContext().sslPeerCertificate;
    if (cert === undefined || Object.keys(cert).length === 0) return undefined;
    if (this.#trustDomain !== undefined && typeof cert.subjectaltname === 'string') {
      const prefix = `spiffe://${this.#trustDomain}/cluster/`;
      for (const match of cert.subjectaltname.matchAll(/URI:"?([^,"\s]+)"?/g)) {
        const uri = match[1] ?? '';
        if (uri.startsWith(prefix)) {
          const id = uri.slice(prefix.length);
          if (id !== '' && !id.includes('/')) return id;
        }
      }
    }
    if (this.#acceptCommonName) {
      const cn: unknown = cert.subject?.CN;
      const value = Array.isArray(cn) ? (cn[0] as unknown) : cn;
      if (typeof value === 'string' && value !== '') return value;
    }
    return undefined;
  }
}

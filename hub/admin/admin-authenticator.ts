import { createHash, timingSafeEqual } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { AdminCredentials, AdminRole } from '../config/index.js';
import { AdminUnauthenticatedError } from './errors.js';

/** Who an admin caller is. */
export interface AdminPrincipal {
  readonly name: string;
  readonly role: AdminRole;
  readonly method: 'token' | 'certificate';
}

/** The parts of an admin call that carry credentials. */
export interface AdminCall {
  readonly metadata: grpc.Metadata;
  getAuthContext(): ReturnType<grpc.ServerUnaryCall<unknown, unknown>['getAuthContext']>;
}

/** SHA-256 hex of an admin token, the form the hub stores. */
export function hashAdminToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

interface TokenEntry {
  name: string;
  role: AdminRole;
  hash: Buffer;
}

/**
 * Authenticates admin calls: a verified client certificate whose CN or URI SAN is listed, or a
 * bearer token whose SHA-256 is listed (compared in constant time against every entry).
 */
export class AdminAuthenticator {
  readonly #tokens: TokenEntry[];
  readonly #certificates: AdminCredentials['certificates'];

  constructor(credentials: AdminCredentials) {
    this.#tokens = credentials.tokens.map((t) => ({
      name: t.name,
      role: t.role,
      hash: Buffer.from(t.tokenSha256, 'hex'),
    }));
    this.#certificates = credentials.certificates;
  }

  /** The caller; throws {@link AdminUnauthenticatedError} when there is none. */
  authenticate(call: AdminCall): AdminPrincipal {
    const header = call.metadata.get('authorization')[0];
    if (typeof header === 'string') {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (match?.[1] === undefined) {
        throw new AdminUnauthenticatedError('authorization metadata is not "Bearer <token>"');
      }
      const hash = createHash('sha256').update(match[1], 'utf8').digest();
      let found: TokenEntry | undefined;
      for (const entry of this.#tokens) {
        if (timingSafeEqual(entry.hash, hash) && found === undefined) found = entry;
      }
      if (found === undefined) throw new AdminUnauthenticatedError('unknown bearer token');
      return { name: found.name, role: found.role, method: 'token' };
    }
    const subjects = this.#certificateSubjects(call);
    if (subjects.length > 0) {
      const entry = this.#certificates.find((c) => subjects.includes(c.subject));
      if (entry === undefined) {
        throw new AdminUnauthenticatedError(
          'the client certificate is valid but not listed in the admin credentials',
        );
      }
      return { name: entry.name, role: entry.role, method: 'certificate' };
    }
    throw new AdminUnauthenticatedError(
      'admin calls need a bearer token (authorization: Bearer <token>) or a client certificate',
    );
  }

  #certificateSubjects(call: AdminCall): string[] {
    const cert = call.getAuthContext().sslPeerCertificate;
    if (cert === undefined || Object.keys(cert).length === 0) return [];
    const subjects: string[] = [];
    const cn: unknown = cert.subject?.CN;
    const value = Array.isArray(cn) ? (cn[0] as unknown) : cn;
    if (typeof value === 'string' && value !== '') subjects.push(value);
    if (typeof cert.subjectaltname === 'string') {
      for (const match of cert.subjectaltname.matchAll(/URI:"?([^,"\s]+)"?/g)) {
        if (match[1] !== undefined) subjects.push(match[1]);
      }
    }
    return subjects;
  }
}

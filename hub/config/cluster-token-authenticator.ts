import { createHash, timingSafeEqual } from 'node:crypto';
import {
  AgentAuthenticator,
  UnauthenticatedError,
  type AgentIdentity,
  type AuthenticatableCall,
} from '../ingest/index.js';

/**
 * The ingest's `AgentAuthenticator` with several accepted token hashes per cluster, so a token
 * can be rotated without a window where agents are refused (the ingest's own options take one
 * hash per cluster). Client-certificate identities keep precedence, as in the base class.
 */
export class ClusterTokenAuthenticator extends AgentAuthenticator {
  readonly #tokens: { clusterId: string; hash: Buffer }[] = [];

  constructor(options: {
    trustDomain?: string | undefined;
    tokens: Map<string, readonly string[]>;
  }) {
    super(options.trustDomain === undefined ? {} : { trustDomain: options.trustDomain });
    for (const [clusterId, hashes] of options.tokens) {
      for (const hex of hashes) this.#tokens.push({ clusterId, hash: Buffer.from(hex, 'hex') });
    }
  }

  override authenticate(call: AuthenticatableCall): AgentIdentity {
    try {
      return super.authenticate(call);
    } catch (err) {
      // The base knows no tokens: it failed either for lack of credentials or on our token.
      const header = call.metadata.get('authorization')[0];
      if (!(err instanceof UnauthenticatedError) || typeof header !== 'string') throw err;
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (match?.[1] === undefined) throw err;
      const hash = createHash('sha256').update(match[1], 'utf8').digest();
      let found: string | undefined;
      // Compare against every entry, so the time taken does not tell which one matched.
      for (const entry of this.#tokens) {
        if (timingSafeEqual(entry.hash, hash) && found === undefined) found = entry.clusterId;
      }
      if (found === undefined) throw new UnauthenticatedError('unknown bearer token');
      return { clusterId: found, method: 'token' };
    }
  }
}

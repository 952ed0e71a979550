import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import type { AddressPolicyOptions } from '../ingest/index.js';
import { readYamlFile } from './read-yaml-file.js';

const sha256Hex = z.string().regex(/^[0-9a-fA-F]{64}$/, 'SHA-256 as 64 hex digits');

const clusterEntrySchema = z
  .object({
    id: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'lower-case DNS label (at most 63)'),
    labels: z.record(z.string(), z.string()).default({}),
    allowedCidrs: z
      .array(
        z.string().refine((text) => {
          try {
            ipaddr.parseCIDR(text);
            return true;
          } catch {
            return false;
          }
        }, 'a CIDR, e.g. 10.1.0.0/16'),
      )
      .default([]),
    tokenSha256: z.array(sha256Hex).default([]),
  })
  .strict();

/**
 * The clusters file: who may connect and what they may announce.
 *
 * ```yaml
 * clusters:
 *   - id: prod-eu-1
 *     labels: { env: prod, region: eu }
 *     allowedCidrs: [10.1.0.0/16]
 *     tokenSha256: [<sha256 hex of the bearer token>]   # several during a rotation
 * ```
 */
export const clustersFileSchema = z
  .object({ clusters: z.array(clusterEntrySchema).default([]) })
  .strict()
  .superRefine((file, ctx) => {
    const seen = new Map<string, number>();
    file.clusters.forEach((cluster, index) => {
      const first = seen.get(cluster.id);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['clusters', index, 'id'],
          message: `duplicate of clusters[${first}]`,
        });
      }
      seen.set(cluster.id, index);
    });
  });

/** One cluster the hub knows. */
export type ClusterEntry = z.infer<typeof clusterEntrySchema>;

/**
 * The clusters known from configuration: labels (for binding selectors), allowed CIDRs (the
 * address policy) and bearer-token hashes (the agent authenticator). A cluster that is not
 * listed may still connect with a client certificate, but has no labels and no allowed CIDRs,
 * so every address it announces is rejected.
 */
export class ClusterDirectory {
  readonly #clusters: Map<string, ClusterEntry>;

  constructor(clusters: readonly ClusterEntry[] = []) {
    this.#clusters = new Map(clusters.map((c) => [c.id, c]));
  }

  /** Reads and validates a clusters file. Throws `ConfigFileError`. */
  static load(file: string): ClusterDirectory {
    return new ClusterDirectory(readYamlFile(file, clustersFileSchema).clusters);
  }

  /** Every listed cluster, sorted by id. */
  list(): ClusterEntry[] {
    return [...this.#clusters.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(clusterId: string): ClusterEntry | undefined {
    return this.#clusters.get(clusterId);
  }

  labelsOf(clusterId: string): Readonly<Record<string, string>> {
    return this.#clusters.get(clusterId)?.labels ?? {};
  }

  /** The address policy of the listed clusters (unlisted clusters may announce nothing). */
  addressPolicyOptions(): AddressPolicyOptions {
    return {
      clusters: Object.fromEntries(this.list().map((c) => [c.id, c.allowedCidrs])),
      defaultCidrs: [],
    };
  }

  /** Cluster id → accepted token hashes. */
  tokenHashes(): Map<string, readonly string[]> {
    return new Map(this.list().map((c) => [c.id, c.tokenSha256]));
  }
}

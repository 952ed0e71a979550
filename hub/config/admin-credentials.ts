import { z } from 'zod';
import { readYamlFile } from './read-yaml-file.js';

/** What an admin caller may do: read (List*, Get*) or everything. */
export type AdminRole = 'read-only' | 'admin';

const roleSchema = z.enum(['read-only', 'admin']);
const nameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/, 'a caller name');

/**
 * The admin credentials file (`adminTokensFile`): bearer tokens by SHA-256, and client
 * certificate identities (CN or a URI SAN) with their role.
 *
 * ```yaml
 * tokens:
 *   - { name: ci, role: admin, tokenSha256: <sha256 hex> }
 *   - { name: dashboards, role: read-only, tokenSha256: <sha256 hex> }
 * certificates:
 *   - { name: platform-team, role: admin, subject: spiffe://corp/team/platform }
 * ```
 */
export const adminCredentialsFileSchema = z
  .object({
    tokens: z
      .array(
        z
          .object({
            name: nameSchema,
            role: roleSchema,
            tokenSha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'SHA-256 as 64 hex digits'),
          })
          .strict(),
      )
      .default([]),
    certificates: z
      .array(
        z
          .object({
            name: nameSchema,
            role: roleSchema,
            subject: z.string().min(1).describe('certificate CN, or one of its URI SANs'),
          })
          .strict(),
      )
      .default([]),
  })
  .strict()
  .superRefine((file, ctx) => {
    const names = new Map<string, string>();
    for (const [list, entries] of [
      ['tokens', file.tokens],
      ['certificates', file.certificates],
    ] as const) {
      entries.forEach((entry, index) => {
        const first = names.get(entry.name);
        if (first !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [list, index, 'name'],
            message: `duplicate of ${first}`,
          });
        }
        names.set(entry.name, `${list}[${index}]`);
      });
    }
  });

/** The admin API's accepted credentials. */
export type AdminCredentials = z.infer<typeof adminCredentialsFileSchema>;

/** Reads and validates the admin credentials file. Throws `ConfigFileError`. */
export function loadAdminCredentials(file: string): AdminCredentials {
  return readYamlFile(file, adminCredentialsFileSchema);
}

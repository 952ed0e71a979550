import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { BindingStore } from '../../../hub/federation/binding-store.js';
import {
  AdminAuthenticator,
  AdminService,
  hashAdminToken,
  type ClusterInventory,
} from '../../../hub/admin/index.js';
import { AdminServiceService } from '../../../shared/index.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const generator = join(root, 'scripts/generate-api-doc.mjs');
const apiDoc = readFileSync(join(root, 'proto/API.md'), 'utf8');
const run = promisify(execFile);
// The generator starts buf and Prettier.
const generatorTimeoutMs = 60_000;

type Method = keyof typeof AdminServiceService;
const methods = Object.keys(AdminServiceService) as Method[];

/** The proto name of a method (`ListClusters`), from its gRPC path. */
function protoName(method: Method): string {
  return AdminServiceService[method].path.split('/').pop() ?? method;
}

/** The role proto/API.md states for a method, from the method's own section. */
function documentedRole(name: string): string | undefined {
  const section = apiDoc.split('\n### ').find((s) => s.startsWith(`${name}\n`));
  return section === undefined ? undefined : /^- Role: (\S+)$/m.exec(section)?.[1];
}

/** Calls one AdminService method with an empty request as a caller with `role`; the status code. */
async function callAs(role: 'read-only' | 'admin', method: Method): Promise<grpc.status> {
  const token = `${role}-token`;
  const service = new AdminService({
    authenticator: new AdminAuthenticator({
      tokens: [{ name: `${role}-caller`, role, tokenSha256: hashAdminToken(token) }],
      certificates: [],
    }),
    // Only the read methods reach these; nothing is stored.
    bindings: { list: () => Promise.resolve([]) } as unknown as BindingStore,
    clusters: { list: () => Promise.resolve([]) } as unknown as ClusterInventory,
  });
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  const call = { request: {}, metadata, getAuthContext: () => ({}) };
  const handler = service.handlers[method] as grpc.handleUnaryCall<unknown, unknown>;
  return new Promise((resolve) => {
    handler(call as unknown as grpc.ServerUnaryCall<unknown, unknown>, (err) => {
      resolve(err === null ? grpc.status.OK : (err.code ?? grpc.status.UNKNOWN));
    });
  });
}

describe('proto/API.md', () => {
  let scratch: string | undefined;
  afterEach(() => {
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
    scratch = undefined;
  });

  it(
    'is what the proto files generate (npm run generate rewrites it)',
    async () => {
      await expect(run(process.execPath, [generator, '--check'], { cwd: root })).resolves.toEqual(
        expect.objectContaining({ stderr: '' }),
      );
    },
    generatorTimeoutMs,
  );

  it('documents every AdminService method with the role it needs', () => {
    expect(methods.length).toBeGreaterThan(0);
    for (const method of methods) {
      const name = protoName(method);
      const role = documentedRole(name);
      expect(role, `the role of ${name} in proto/API.md`).toMatch(/^(read-only|admin)$/);
      // The summary table at the top of the service says the same.
      const row = new RegExp(
        `^\\| \\[${name}\\]\\(#${name.toLowerCase()}\\) .*\\| ${role} +\\|$`,
        'm',
      );
      expect(apiDoc).toMatch(row);
    }
  });

  it('states the role the hub enforces: read-only callers are refused exactly the admin methods', async () => {
    for (const method of methods) {
      const role = documentedRole(protoName(method));
      const asReadOnly = await callAs('read-only', method);
      const asAdmin = await callAs('admin', method);
      expect({ method, role, denied: asReadOnly === grpc.status.PERMISSION_DENIED }).toEqual({
        method,
        role,
        denied: role === 'admin',
      });
      expect({ method, asAdmin }).not.toEqual({ method, asAdmin: grpc.status.PERMISSION_DENIED });
    }
  });

  it(
    'cannot be generated while an AdminService method has no role in its comment',
    async () => {
      scratch = mkdtempSync(join(tmpdir(), 'tgfed-api-doc-test-'));
      cpSync(join(root, 'proto/tgfed'), join(scratch, 'tgfed'), { recursive: true });
      const admin = join(scratch, 'tgfed/v1/admin.proto');
      const proto = readFileSync(admin, 'utf8');
      const withoutRole = proto.replace(
        /(\/\/ ApplyBinding [^]*?)\n\s*\/\/ Role: admin\.\n/,
        '$1\n',
      );
      expect(withoutRole).not.toEqual(proto);
      writeFileSync(admin, withoutRole);
      await expect(
        run(process.execPath, [generator, '--stdout', '--proto', scratch], { cwd: root }),
      ).rejects.toThrow(
        /AdminService\.ApplyBinding needs one line "Role: read-only\." or "Role: admin\."/,
      );
    },
    generatorTimeoutMs,
  );
});

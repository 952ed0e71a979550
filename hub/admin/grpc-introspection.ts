import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';

/** Finds the repository's `proto/` directory from this module's location (source or dist). */
export function findProtoDir(from = dirname(fileURLToPath(import.meta.url))): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'tgfed', 'v1', 'admin.proto'))) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * Adds the standard gRPC health checking service (`grpc.health.v1.Health`) and server
 * reflection (v1 and v1alpha) for `protoFiles` to a server. Returns the health implementation,
 * whose statuses the owner sets (`''` is the whole server).
 */
export function addIntrospection(
  server: grpc.Server,
  options: {
    protoDir: string | undefined;
    protoFiles: readonly string[];
    services: readonly string[];
  },
): { health: HealthImplementation; reflection: boolean } {
  const health = new HealthImplementation(
    Object.fromEntries(['', ...options.services].map((s) => [s, 'NOT_SERVING' as const])),
  );
  health.addToServer(server);
  if (options.protoDir === undefined) return { health, reflection: false };
  // health.proto sits at <root>/health/v1/health.proto in grpc-health-check.
  const healthRoot = resolve(dirname(healthProtoPath), '..', '..');
  const definition = loadSync([...options.protoFiles, 'health/v1/health.proto'], {
    includeDirs: [options.protoDir, healthRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  new ReflectionService(definition).addToServer(server);
  return { health, reflection: true };
}

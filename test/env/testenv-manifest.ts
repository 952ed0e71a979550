import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Paths and versions of the provisioned test environment (written by test/env/provision.sh). */
export interface TestenvManifest {
  redisServer: string;
  promtool: string;
  motoServer: string;
  etcd: string;
  kubeApiserver: string;
  helm: string;
  /** The OpenTelemetry Collector built for the trace tests (absent in manifests before it). */
  otelcol?: string;
  versions: Record<string, string>;
}

/** Folder that caches the test environment, outside the repo. */
export function testenvCacheDir(): string {
  const base =
    process.env['TGFED_CACHE_DIR'] ??
    join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'tgfed');
  return join(base, 'testenv');
}

/** Reads the manifest; fails with the command to run when the environment is not provisioned. */
export function loadTestenvManifest(): TestenvManifest {
  const path = join(testenvCacheDir(), 'manifest.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`test environment not provisioned (${path} missing): run npm run testenv`, {
      cause: err,
    });
  }
  return JSON.parse(text) as TestenvManifest;
}

import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);

/** Repository root, from this file's place in test/integration/deploy. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** The charts under deploy/helm. */
export const charts = {
  agent: join(repoRoot, 'deploy/helm/tgfed-agent'),
  hub: join(repoRoot, 'deploy/helm/tgfed-hub'),
} as const;

/** A rendered object with the fields the tests read. */
export interface RenderedObject extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

/** What `helm` printed when it failed, so a test can assert the message. */
export class HelmError extends Error {
  override readonly name = 'HelmError';
  constructor(
    readonly args: readonly string[],
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(`helm ${args.join(' ')} failed:\n${stderr}`, options);
  }
}

async function valuesFile(values: unknown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tgfed-values-'));
  const file = join(dir, 'values.yaml');
  // JSON is YAML: no quoting surprises for values such as "on" or "0400".
  await writeFile(file, JSON.stringify(values));
  return file;
}

/** Runs helm; rejects with {@link HelmError} carrying stderr. */
export async function helm(binary: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(binary, args, { maxBuffer: 16 << 20 });
    return stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw new HelmError(args, stderr, { cause: err });
  }
}

/** `helm lint --strict` of a chart with the given values; resolves helm's report. */
export async function lintChart(binary: string, chart: string, values: unknown): Promise<string> {
  return helm(binary, ['lint', '--strict', chart, '-f', await valuesFile(values)]);
}

/** `helm template` of a chart with the given values; resolves the objects, in helm's order. */
export async function renderChart(
  binary: string,
  chart: string,
  values: unknown,
  options: { release?: string; namespace?: string } = {},
): Promise<RenderedObject[]> {
  const stdout = await helm(binary, [
    'template',
    options.release ?? 'tgfed',
    chart,
    '--namespace',
    options.namespace ?? 'default',
    '-f',
    await valuesFile(values),
  ]);
  return parseAllDocuments(stdout)
    .map((doc) => doc.toJS() as RenderedObject | null)
    .filter((o): o is RenderedObject => o !== null);
}

/** The single object of a kind (and name, when given); throws when absent or ambiguous. */
export function objectOf(objects: RenderedObject[], kind: string, name?: string): RenderedObject {
  const found = objects.filter(
    (o) => o.kind === kind && (name === undefined || o.metadata.name === name),
  );
  if (found.length !== 1) {
    throw new Error(
      `expected one ${kind}${name === undefined ? '' : ` ${name}`}, found ${found.length}: ${objects
        .map((o) => `${o.kind}/${o.metadata.name}`)
        .join(', ')}`,
    );
  }
  return found[0]!;
}

/** Kinds whose CustomResourceDefinitions the test kube-apiserver does not have. */
export const customResourceGroups = ['cert-manager.io', 'monitoring.coreos.com', 'keda.sh'];

/** True for objects of a CRD-defined kind (checked structurally, not by the API server). */
export function isCustomResource(object: RenderedObject): boolean {
  return customResourceGroups.includes(object.apiVersion.split('/')[0] ?? '');
}

import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { V1Container, V1PodSpec } from '@kubernetes/client-node';
import type { z } from 'zod';
import { loadConfig } from '../../../shared/config/config-loader.js';
import { objectOf, type RenderedObject } from './helm-render.js';

/** Where a file a container reads comes from: a key of a ConfigMap or Secret volume. */
export interface MountedFile {
  source: 'configMap' | 'secret';
  /** Name of the ConfigMap or Secret. */
  name: string;
  key: string;
  /** The content when the chart renders the object itself; undefined for external Secrets. */
  content: string | undefined;
}

/** The pod spec of a Deployment or StatefulSet. */
export function podSpecOf(workload: RenderedObject): V1PodSpec {
  const spec = workload.spec as { template?: { spec?: V1PodSpec } } | undefined;
  const podSpec = spec?.template?.spec;
  if (podSpec === undefined)
    throw new Error(`${workload.kind} ${workload.metadata.name}: no pod spec`);
  return podSpec;
}

export function containerOf(podSpec: V1PodSpec, name: string): V1Container {
  const container = podSpec.containers.find((c) => c.name === name);
  if (container === undefined) throw new Error(`no container ${name}`);
  return container;
}

/**
 * Resolves a path inside a container to the ConfigMap or Secret key mounted there (a `subPath`
 * mount of exactly that path, or a whole volume mounted on its folder); undefined when nothing
 * provides it.
 */
export function mountedFile(
  objects: RenderedObject[],
  podSpec: V1PodSpec,
  container: V1Container,
  path: string,
): MountedFile | undefined {
  for (const mount of container.volumeMounts ?? []) {
    let key: string | undefined;
    if (mount.subPath !== undefined && mount.mountPath === path) key = mount.subPath;
    else if (mount.subPath === undefined && path === join(mount.mountPath, basename(path)))
      key = basename(path);
    if (key === undefined) continue;
    const volume = podSpec.volumes?.find((v) => v.name === mount.name);
    if (volume?.configMap !== undefined) {
      const name = volume.configMap.name ?? '';
      const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name);
      return { source: 'configMap', name, key, content: configMap?.data?.[key] };
    }
    if (volume?.secret !== undefined) {
      const name = volume.secret.secretName ?? '';
      const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === name);
      return { source: 'secret', name, key, content: secret?.stringData?.[key] };
    }
  }
  return undefined;
}

/**
 * The environment a container gets, as the product reads it: literal values as written,
 * `$(POD_NAME)` expanded, Secret references replaced by a stand-in of the right shape.
 */
export function containerEnv(container: V1Container): Record<string, string> {
  const standIns: Record<string, string> = {
    TGFED_REDIS_URL: 'redis://:from-secret@redis.example.com:6379',
    TGFED_REDIS_PASSWORD: 'from-secret',
  };
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) {
      env[variable.name] = variable.value.replace('$(POD_NAME)', 'tgfed-pod-0');
    } else if (variable.valueFrom?.secretKeyRef !== undefined) {
      const standIn = standIns[variable.name];
      if (standIn === undefined) throw new Error(`no stand-in for secret env ${variable.name}`);
      env[variable.name] = standIn;
    } else if (variable.valueFrom?.fieldRef !== undefined) {
      env[variable.name] = 'tgfed-pod-0';
    }
  }
  return env;
}

/** What one container of a rendered workload runs with. */
export interface ContainerSettings<S extends z.ZodObject> {
  podSpec: V1PodSpec;
  container: V1Container;
  /** The settings as the product itself loads and validates them (file + environment). */
  settings: z.infer<S>;
  /** The config file, as mounted. */
  configFile: MountedFile;
}

/**
 * Loads a workload container's settings exactly as the component would at start: its
 * `--config` file (from the ConfigMap the chart mounts) and its `TGFED_*` environment, through
 * the component's own schema. Throws the product's ConfigError when the chart's output is wrong.
 */
export async function containerSettings<S extends z.ZodObject>(
  objects: RenderedObject[],
  workloadName: string,
  containerName: string,
  schema: S,
): Promise<ContainerSettings<S>> {
  const workload = objectOf(objects, 'Deployment', workloadName);
  const podSpec = podSpecOf(workload);
  const container = containerOf(podSpec, containerName);
  const args = [...(container.command ?? []), ...(container.args ?? [])];
  const configPath = args[args.indexOf('--config') + 1];
  if (!args.includes('--config') || configPath === undefined) {
    throw new Error(`${workloadName}/${containerName}: no --config argument in ${args.join(' ')}`);
  }
  const configFile = mountedFile(objects, podSpec, container, configPath);
  if (configFile?.content === undefined) {
    throw new Error(
      `${workloadName}/${containerName}: ${configPath} is not mounted from the chart`,
    );
  }
  const dir = await mkdtemp(join(tmpdir(), 'tgfed-chart-config-'));
  const file = join(dir, basename(configPath));
  await writeFile(file, configFile.content);
  const env = Object.fromEntries(
    Object.entries(containerEnv(container)).filter(([name]) => name.startsWith('TGFED_')),
  );
  const settings = loadConfig(schema, { file, env });
  return { podSpec, container, settings, configFile };
}

/** Writes a mounted file's rendered content to a temporary file, for the product's loaders. */
export async function materialize(file: MountedFile): Promise<string> {
  if (file.content === undefined) throw new Error(`${file.name}/${file.key} is not rendered`);
  const dir = await mkdtemp(join(tmpdir(), 'tgfed-chart-file-'));
  const path = join(dir, file.key);
  await writeFile(path, file.content);
  return path;
}

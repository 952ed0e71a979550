import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { freePort } from '../env/free-port.js';
import { startManagedProcess, type ManagedProcess } from '../env/managed-process.js';

const repo = resolve(new URL('../..', import.meta.url).pathname);

const ENTRIES = { hub: 'hub/main.ts', worker: 'hub/worker-main.ts' } as const;

/** A hub or worker running as its own process (tsx), so that a test can `kill -9` it. */
export interface TgfedProcess {
  readonly kind: 'hub' | 'worker';
  readonly name: string;
  readonly process: ManagedProcess;
  readonly healthPort: number;
  /** Set for a hub: its agent and admin listeners. */
  readonly agentPort?: number;
  readonly adminPort?: number;
}

async function ready(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`);
    return res.ok;
  } catch {
    return false;
  }
}

/** What {@link startTgfedProcess} needs. */
export interface TgfedProcessSpec {
  kind: 'hub' | 'worker';
  name: string;
  /** Folder for the config file. */
  dir: string;
  /** Settings of the config file (listener addresses and `hubId`/`workerId` are added). */
  settings: Record<string, unknown>;
  /** Extra environment, e.g. the AWS SDK's `AWS_ENDPOINT_URL_*`. */
  env?: Record<string, string>;
}

/**
 * Starts `hub/main.ts` or `hub/worker-main.ts` under tsx with a config file, on free loopback
 * ports, and waits for `/readyz`. The process is real and separate, as in production.
 */
export async function startTgfedProcess(spec: TgfedProcessSpec): Promise<TgfedProcess> {
  const healthPort = await freePort();
  const ports =
    spec.kind === 'hub' ? { agentPort: await freePort(), adminPort: await freePort() } : {};
  const settings: Record<string, unknown> = {
    logLevel: 'warn',
    ...spec.settings,
    healthAddress: `127.0.0.1:${healthPort}`,
  };
  if (spec.kind === 'hub') {
    settings['hubId'] = spec.name;
    settings['agentAddress'] = `127.0.0.1:${ports.agentPort}`;
    settings['adminAddress'] = `127.0.0.1:${ports.adminPort}`;
  } else {
    settings['workerId'] = spec.name;
  }
  const config = join(spec.dir, `${spec.name}.yaml`);
  writeFileSync(config, toYaml(settings));
  const child = await startManagedProcess({
    name: spec.name,
    command: process.execPath,
    args: ['--import', 'tsx', join(repo, ENTRIES[spec.kind]), '--config', config],
    cwd: repo,
    env: { ...process.env, NODE_OPTIONS: '', ...spec.env },
    ready: () => ready(healthPort),
  });
  return { kind: spec.kind, name: spec.name, process: child, healthPort, ...ports };
}

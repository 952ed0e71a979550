import { existsSync } from 'node:fs';
import type { TestProject } from 'vitest/node';
import { loadTestenvManifest } from './testenv-manifest.js';
import { startRedisServer } from './redis-server.js';
import { startKubeApiserver } from './kube-apiserver.js';
import { startMotoServer } from './moto-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** redis:// URL of the run's redis-server. */
    redisUrl: string;
    /** Path of a kubeconfig (cluster-admin) for the run's kube-apiserver. */
    kubeconfigPath: string;
    /** http:// endpoint of the run's moto server (ELBv2, STS, EC2). */
    motoEndpoint: string;
    /** Paths and versions of the provisioned binaries. */
    testenv: {
      helm: string;
      /** The OpenTelemetry Collector binary; '' when not provisioned (fails under CI). */
      otelcol: string;
      promtool: string;
      redisServer: string;
      versions: Record<string, string>;
    };
  }
}

/**
 * Starts the real components once per integration run on free loopback ports, and always
 * stops them again, also when a test or a later start fails.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const manifest = loadTestenvManifest();
  if (process.env['CI'] === 'true' && !existsSync(manifest.otelcol ?? '')) {
    // Under CI a missing component fails the run, never skips a test (DESIGN.md, test environment).
    throw new Error('the OpenTelemetry Collector is not provisioned: run npm run testenv');
  }
  const stops: (() => Promise<void>)[] = [];
  const teardown = async (): Promise<void> => {
    const results = await Promise.allSettled(stops.reverse().map((stop) => stop()));
    for (const r of results) if (r.status === 'rejected') console.error('teardown:', r.reason);
  };
  const started = await Promise.allSettled([
    startRedisServer(manifest.redisServer).then((r) => (stops.push(() => r.stop()), r)),
    startKubeApiserver(manifest).then((k) => (stops.push(() => k.stop()), k)),
    startMotoServer(manifest.motoServer).then((m) => (stops.push(() => m.stop()), m)),
  ]);
  const [redis, kube, moto] = started;
  if (redis.status !== 'fulfilled' || kube.status !== 'fulfilled' || moto.status !== 'fulfilled') {
    await teardown();
    const reasons = started.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    throw new AggregateError(reasons, 'test environment did not start');
  }
  project.provide('redisUrl', redis.value.url);
  project.provide('kubeconfigPath', kube.value.kubeconfigPath);
  project.provide('motoEndpoint', moto.value.endpoint);
  project.provide('testenv', {
    helm: manifest.helm,
    otelcol: manifest.otelcol ?? '',
    promtool: manifest.promtool,
    redisServer: manifest.redisServer,
    versions: manifest.versions,
  });
  return teardown;
}

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { stringify as toYaml } from 'yaml';
import { ClusterState, componentExitCodes, createLogger } from '../../shared/index.js';
import type { LevelWithSilent } from 'pino';
import { LocalDemo, type LocalDemoStatus } from '../demo/local-demo.js';
import { RedisServerMissingError } from '../demo/private-redis.js';

function integer(min: number, max: number) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`an integer from ${min} to ${max}`);
    }
    return value;
  };
}

function nonNegative(raw: string): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || value > 1_000) {
    throw new InvalidArgumentError('a number from 0 to 1000');
  }
  return value;
}

interface DemoFlags {
  clusters: number;
  pods: number;
  churnPerSecond: number;
  workers: number;
  adminAddress: string;
  redisUrl?: string;
  redisServer?: string;
  bindingsFile?: string;
  ui: boolean;
  logLevel: LevelWithSilent;
}

/** One line per cluster and group, then the alerts: the demo's live view. */
export function renderDemoStatus(status: LocalDemoStatus): string {
  const lines: string[] = [];
  const connected = status.clusters.filter(
    (c) => c.state === ClusterState.CLUSTER_STATE_CONNECTED,
  ).length;
  lines.push(`clusters  ${connected}/${status.clusters.length} connected`);
  for (const c of status.clusters) {
    lines.push(
      `  ${c.id.padEnd(10)} ${String(c.endpointCount).padStart(5)} endpoints  ${c.state === ClusterState.CLUSTER_STATE_CONNECTED ? 'connected' : 'not connected'}`,
    );
  }
  const inSync = status.groups.filter((g) => g.inSync).length;
  lines.push(`target groups  ${inSync}/${status.groups.length} in sync`);
  for (const g of status.groups) {
    const name = g.targetGroup?.arn.split(':targetgroup/')[1]?.split('/')[0] ?? '?';
    lines.push(
      `  ${name.padEnd(12)} desired ${String(g.desiredTargets).padStart(4)}  actual ${String(g.actualTargets).padStart(4)}  ${g.inSync ? 'in sync' : 'converging'}`,
    );
  }
  lines.push(`alerts  ${status.alerts.length === 0 ? 'none' : ''}`);
  for (const a of status.alerts) lines.push(`  ${a.name}: ${a.summary}`);
  return lines.join('\n');
}

/**
 * `tgfed demo`: the whole of tgfed on this machine (hub, workers, simulated clusters whose pods
 * churn, a private redis-server, the ELBv2 simulator), a progress view while the first sync
 * runs, then a live status view; stays up until Ctrl-C so that `tgfed status` and `tgfed get`
 * work against it.
 */
export function demoCommand(): Command {
  return new Command('demo')
    .description('Run tgfed locally: hub, workers, simulated clusters and AWS, with a live view')
    .option('--clusters <n>', 'simulated clusters', integer(1, 9), 3)
    .option(
      '--pods <n>',
      'ready pods of `web` per cluster (`api` gets twice as many)',
      integer(1, 2_000),
      10,
    )
    .option(
      '--churn-per-second <n>',
      'pod restarts and scalings per second, 0 for none',
      nonNegative,
      2,
    )
    .option('--workers <n>', 'reconcile workers', integer(1, 8), 2)
    .option(
      '--admin-address <host:port>',
      'admin API listener for tgfed commands',
      '127.0.0.1:7444',
    )
    .option(
      '--redis-url <url>',
      'use this Redis instead of starting a private redis-server [env TGFED_REDIS_URL]',
    )
    .option(
      '--redis-server <path>',
      'the redis-server binary [env TGFED_REDIS_SERVER; default: PATH]',
    )
    .option(
      '--bindings-file <file>',
      'bindings to real target groups: the workers use AWS (or moto) through the SDK settings (AWS_ENDPOINT_URL, AWS_PROFILE, ...) instead of the simulator',
    )
    .option('--no-ui', 'print a status line every 10 s instead of the live view')
    .option('--log-level <level>', 'log level of the components (logs go to stderr)', 'error')
    .action(async (flags: DemoFlags) => {
      const out = process.stdout;
      const logger = createLogger({ name: 'tgfed-demo', level: flags.logLevel, destination: 2 });
      out.write('starting tgfed demo...\n');
      let demo: LocalDemo;
      try {
        demo = await LocalDemo.start({
          clusters: flags.clusters,
          pods: flags.pods,
          churnPerSecond: flags.churnPerSecond,
          workers: flags.workers,
          adminAddress: flags.adminAddress,
          redisUrl: flags.redisUrl ?? process.env['TGFED_REDIS_URL'],
          redisServer: flags.redisServer,
          bindingsFile: flags.bindingsFile,
          logger,
        });
      } catch (err) {
        process.stderr.write(`tgfed demo: ${(err as Error).message}\n`);
        process.exitCode =
          err instanceof RedisServerMissingError
            ? componentExitCodes.badConfig
            : componentExitCodes.failed;
        return;
      }
      const contextFile = join(demo.dir, 'tgfed-cli.yaml');
      writeFileSync(
        contextFile,
        toYaml({
          'current-context': 'demo',
          contexts: [
            {
              name: 'demo',
              hub: `127.0.0.1:${demo.adminPort}`,
              insecure: true,
              token: demo.adminToken,
            },
          ],
        }),
      );
      const intro = [
        demo.redis === undefined
          ? 'Redis: the given URL'
          : `Redis: private redis-server (pid ${demo.redis.pid})`,
        demo.simulator === undefined
          ? 'AWS: from the SDK settings'
          : `AWS: ELBv2 simulator at ${demo.simulator.url}`,
        `admin API: 127.0.0.1:${demo.adminPort} (admin token ${demo.adminToken})`,
        '',
        'In another shell:',
        `  export TGFED_CLI_CONFIG=${contextFile}`,
        '  tgfed status; tgfed get clusters; tgfed get targetgroups',
        '',
        'Ctrl-C stops everything.',
        '',
      ].join('\n');
      out.write(`${intro}\n`);

      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) process.exit(componentExitCodes.failed);
        stopping = true;
        out.write(`\n${signal}: stopping the demo...\n`);
        void demo.close().then(
          () => {
            out.write('stopped\n');
            process.exit(componentExitCodes.ok);
          },
          (err: unknown) => {
            process.stderr.write(`tgfed demo: stopping failed: ${(err as Error).message}\n`);
            process.exit(componentExitCodes.failed);
          },
        );
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));

      const live = flags.ui && out.isTTY === true;
      const startedAt = Date.now();
      let synced = false;
      let lastLine = 0;
      for (;;) {
        if (stopping) return;
        const status = await demo.status().catch(() => undefined);
        if (status !== undefined) {
          const desired = status.groups.reduce((n, g) => n + g.desiredTargets, 0);
          const actual = status.groups.reduce(
            (n, g) => n + Math.min(g.actualTargets, g.desiredTargets),
            0,
          );
          const allInSync = status.groups.length > 0 && status.groups.every((g) => g.inSync);
          if (!synced && allInSync) {
            synced = true;
            out.write(
              `initial sync done in ${((Date.now() - startedAt) / 1000).toFixed(1)} s: every target group in sync\n`,
            );
          }
          if (live && synced) {
            out.write(`\x1b[2J\x1b[H${intro}\n${renderDemoStatus(status)}\n`);
          } else if (!synced) {
            out.write(
              `syncing: ${actual}/${desired} targets registered in ${status.groups.length} target groups\n`,
            );
          } else if (Date.now() - lastLine >= 10_000) {
            lastLine = Date.now();
            const inSync = status.groups.filter((g) => g.inSync).length;
            out.write(
              `${new Date().toISOString()} clusters ${status.clusters.filter((c) => c.state === ClusterState.CLUSTER_STATE_CONNECTED).length}/${status.clusters.length} connected, groups ${inSync}/${status.groups.length} in sync, ${status.alerts.length} alerts\n`,
            );
          }
        }
        await new Promise((r) => setTimeout(r, synced ? 2_000 : 1_000));
      }
    });
}

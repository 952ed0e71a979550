import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './free-port.js';
import { startManagedProcess, type ManagedProcess } from './managed-process.js';
import { waitFor } from './wait-for.js';

/** A loopback address, the form a sentinel reports and hub options take (`host:port`). */
export interface RedisAddress {
  readonly host: string;
  readonly port: number;
}

/** One redis-server (data node) or sentinel of a {@link RedisSentinelSetup}. */
export interface RedisSentinelNode extends RedisAddress {
  readonly process: ManagedProcess;
}

/** A master, its replica and the sentinels monitoring them, each a process on a free port. */
export interface RedisSentinelSetup {
  /** The name the sentinels monitor the master under. */
  readonly masterName: string;
  readonly sentinels: readonly RedisSentinelNode[];
  /** `host:port` of every sentinel, the form hub options take. */
  readonly sentinelAddresses: readonly string[];
  /** The current master: the former replica after {@link failover}. */
  readonly master: RedisSentinelNode;
  /** The current replica: the former master after {@link failover}. */
  readonly replica: RedisSentinelNode;
  /** Milliseconds from the first spawn to the sentinels reporting a replica in sync. */
  readonly startupMs: number;
  /**
   * SENTINEL FAILOVER on the first sentinel; resolves once every sentinel reports the former
   * replica as master, it serves as master and the former master replicates from it in sync.
   */
  failover(options?: { timeoutMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

/** Options for {@link startRedisSentinel}. */
export interface RedisSentinelOptions {
  /** Only 1 is supported: the replica the failover promotes. @default 1 */
  replicas?: 1;
  /** 1 (quorum 1) or 3 (quorum 2). @default 1 */
  sentinels?: 1 | 3;
  /** @default 'tgfed-master' */
  masterName?: string;
  /** @default 30000 */
  readyTimeoutMs?: number;
}

const host = '127.0.0.1';

/** A flat RESP reply `[k1, v1, k2, v2, …]` as a map. */
function fields(reply: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (!Array.isArray(reply)) return out;
  for (let i = 0; i + 1 < reply.length; i += 2) out.set(String(reply[i]), String(reply[i + 1]));
  return out;
}

/** `INFO` text as a field map. */
function parseInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) out.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return out;
}

/** A short-lived admin connection that fails fast instead of retrying. */
function adminClient(port: number): Redis {
  const client = new Redis({
    host,
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableReadyCheck: false,
    connectTimeout: 2_000,
    commandTimeout: 2_000,
  });
  // A refused connection is the answer "not yet"; commands reject with it.
  client.on('error', () => undefined);
  return client;
}

/** Runs `fn` on a fresh admin connection to `port`, always disconnecting. */
async function withAdmin<T>(port: number, fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = adminClient(port);
  try {
    await client.connect();
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

/** The master address one sentinel reports for `name`. */
async function reportedMaster(sentinelPort: number, name: string): Promise<number | undefined> {
  const reply = await withAdmin(sentinelPort, (c) =>
    c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name),
  );
  if (!Array.isArray(reply) || reply.length !== 2) return undefined;
  return Number(reply[1]);
}

/** True when `port` serves as master and `replicaPort` replicates from it with the link up. */
async function inSync(masterPort: number, replicaPort: number): Promise<boolean> {
  const master = parseInfo(
    String(await withAdmin(masterPort, (c) => c.call('INFO', 'replication'))),
  );
  const replica = parseInfo(
    String(await withAdmin(replicaPort, (c) => c.call('INFO', 'replication'))),
  );
  return (
    master.get('role') === 'master' &&
    replica.get('role') === 'slave' &&
    replica.get('master_port') === String(masterPort) &&
    replica.get('master_link_status') === 'up' &&
    replica.get('master_sync_in_progress') === '0' &&
    // Every write the master took has reached the replica.
    master.get('master_repl_offset') === replica.get('slave_repl_offset')
  );
}

/** True when the sentinel reports `replicaPort` as a healthy replica of the master it monitors. */
async function sentinelSeesReplica(
  sentinelPort: number,
  name: string,
  masterPort: number,
  replicaPort: number,
  otherSentinels: number,
): Promise<boolean> {
  return withAdmin(sentinelPort, async (c) => {
    const master = fields(await c.call('SENTINEL', 'MASTER', name));
    if (master.get('port') !== String(masterPort) || master.get('flags') !== 'master') return false;
    if (master.get('num-other-sentinels') !== String(otherSentinels)) return false;
    const replicas = await c.call('SENTINEL', 'REPLICAS', name);
    if (!Array.isArray(replicas)) return false;
    return replicas.some((r) => {
      const f = fields(r);
      return (
        f.get('port') === String(replicaPort) &&
        f.get('flags') === 'slave' &&
        f.get('master-link-status') === 'ok' &&
        f.get('master-port') === String(masterPort)
      );
    });
  });
}

/**
 * Starts a master, a replica (`--replicaof`) and 1 or 3 sentinels (the same redis-server binary
 * with `--sentinel` and a writable config file) monitoring the master under `masterName`, each in
 * its own temporary folder on free loopback ports. Returns once every sentinel reports the master
 * and the replica (with its link up) and knows the other sentinels, and the replica has every
 * write of the master. Started per test file, stopped by the test.
 */
export async function startRedisSentinel(
  binary: string,
  options: RedisSentinelOptions = {},
): Promise<RedisSentinelSetup> {
  const sentinelCount = options.sentinels ?? 1;
  if (options.replicas !== undefined && options.replicas !== 1) {
    throw new Error('only one replica is supported');
  }
  if (sentinelCount !== 1 && sentinelCount !== 3) throw new Error('sentinels must be 1 or 3');
  const masterName = options.masterName ?? 'tgfed-master';
  const quorum = sentinelCount === 1 ? 1 : 2;
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  const started = Date.now();
  const processes: ManagedProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(processes.splice(0).map((p) => p.stop()));
  };

  const ports = new Set<number>();
  const take = async (): Promise<number> => {
    for (;;) {
      const port = await freePort();
      if (!ports.has(port)) {
        ports.add(port);
        return port;
      }
    }
  };
  const ping = (port: number) => async (): Promise<boolean> =>
    (await withAdmin(port, (c) => c.ping())) === 'PONG';

  try {
    const dataNode = async (
      name: string,
      port: number,
      replicaOf?: number,
    ): Promise<RedisSentinelNode> => {
      const dir = mkdtempSync(join(tmpdir(), `tgfed-${name}-`));
      const process = await startManagedProcess({
        name,
        command: binary,
        args: [
          '--port',
          String(port),
          '--bind',
          host,
          '--dir',
          dir,
          '--save',
          '',
          '--appendonly',
          'no',
          // BullMQ requires this policy: evicting queue keys would lose jobs.
          '--maxmemory-policy',
          'noeviction',
          ...(replicaOf === undefined ? [] : ['--replicaof', host, String(replicaOf)]),
        ],
        ready: ping(port),
      });
      processes.push(process);
      return { host, port, process };
    };
    const masterPort = await take();
    const replicaPort = await take();
    const sentinelPorts: number[] = [];
    for (let i = 0; i < sentinelCount; i++) sentinelPorts.push(await take());

    const original = await dataNode('redis-sentinel-master', masterPort);
    const originalReplica = await dataNode('redis-sentinel-replica', replicaPort, masterPort);
    await waitFor(() => inSync(masterPort, replicaPort), {
      what: 'the replica to sync with the master',
      timeoutMs: readyTimeoutMs,
    });

    const sentinels = await Promise.all(
      sentinelPorts.map(async (port, i): Promise<RedisSentinelNode> => {
        const dir = mkdtempSync(join(tmpdir(), `tgfed-redis-sentinel-${i}-`));
        const config = join(dir, 'sentinel.conf');
        // Sentinel rewrites this file (its id, the known replicas and sentinels, each failover).
        writeFileSync(
          config,
          [
            `port ${port}`,
            `bind ${host}`,
            `dir ${dir}`,
            `sentinel monitor ${masterName} ${host} ${masterPort} ${quorum}`,
            `sentinel down-after-milliseconds ${masterName} 2000`,
            `sentinel failover-timeout ${masterName} 10000`,
            `sentinel parallel-syncs ${masterName} 1`,
            '',
          ].join('\n'),
        );
        const process = await startManagedProcess({
          name: `redis-sentinel-${i}`,
          command: binary,
          args: [config, '--sentinel'],
          ready: ping(port),
        });
        processes.push(process);
        return { host, port, process };
      }),
    );
    await waitFor(
      async () => {
        for (const s of sentinels) {
          if (
            !(await sentinelSeesReplica(
              s.port,
              masterName,
              masterPort,
              replicaPort,
              sentinelCount - 1,
            ))
          ) {
            return false;
          }
        }
        return true;
      },
      {
        what: `${sentinelCount} sentinel(s) to report the master, its replica and each other`,
        timeoutMs: readyTimeoutMs,
      },
    );

    let current = { master: original, replica: originalReplica };
    const failover = async (failoverOptions: { timeoutMs?: number } = {}): Promise<void> => {
      const { master: from, replica: to } = current;
      const first = sentinels[0];
      if (first === undefined) throw new Error('no sentinel');
      await withAdmin(first.port, (c) => c.call('SENTINEL', 'FAILOVER', masterName));
      const timeoutMs = failoverOptions.timeoutMs ?? 30_000;
      await waitFor(
        async () => {
          for (const s of sentinels) {
            if ((await reportedMaster(s.port, masterName)) !== to.port) return false;
          }
          return true;
        },
        { what: `every sentinel to report port ${to.port} as master`, timeoutMs },
      );
      // The former master is demoted by a sentinel (REPLICAOF) and resyncs from the new one.
      await waitFor(() => inSync(to.port, from.port), {
        what: `the former master ${from.port} to replicate from ${to.port}`,
        timeoutMs,
      });
      current = { master: to, replica: from };
    };

    return {
      masterName,
      sentinels,
      sentinelAddresses: sentinels.map((s) => `${s.host}:${s.port}`),
      get master() {
        return current.master;
      },
      get replica() {
        return current.replica;
      },
      startupMs: Date.now() - started,
      failover,
      stop,
    };
  } catch (err) {
    const tails = processes.map((p) => `${p.name}:\n${p.logTail(15)}`).join('\n');
    await stop();
    throw new Error(
      `Redis Sentinel did not start${tails === '' ? '' : `; last output:\n${tails}`}`,
      {
        cause: err,
      },
    );
  }
}

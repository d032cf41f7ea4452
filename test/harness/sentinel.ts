/**
 * A real Redis Sentinel set-up for failover tests: a primary, a replica of it, and three
 * `redis-sentinel` processes monitoring it under the name `mymaster` (quorum 2), on free
 * loopback ports. `url` is the redis+sentinel:// URL a node connects with.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './net.js';
import { run, start, type Proc } from './procs.js';

export interface SentinelSetup {
  url: string;
  primaryPort: number;
  replicaPort: number;
  sentinelPorts: number[];
  primary: Proc;
  /** The port Sentinel names as the primary now. */
  currentPrimaryPort(): Promise<number>;
  stop(): Promise<void>;
}

export const PRIMARY_NAME = 'mymaster';

export async function startSentinels(opts: { downAfterMs?: number } = {}): Promise<SentinelSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-sentinel-'));
  const procs: Proc[] = [];
  const stop = async () => {
    for (const p of procs.reverse()) await p.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [primaryPort, replicaPort] = [await freePort(), await freePort()];
    const server = (port: number, extra: string[]) => {
      const p = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra]);
      procs.push(p);
      return p;
    };
    const primary = server(primaryPort, []);
    await primary.waitForLine(/Ready to accept connections/);
    const replica = server(replicaPort, ['--replicaof', '127.0.0.1', String(primaryPort)]);
    await replica.waitForLine(/MASTER <-> REPLICA sync: Finished with success/, 15_000);
    const sentinelPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      sentinelPorts.push(port);
      const conf = join(dir, `sentinel-${i}.conf`);
      // Sentinel rewrites its config file as it learns the set-up: one writable file each.
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${PRIMARY_NAME} 127.0.0.1 ${primaryPort} 2`,
          `sentinel down-after-milliseconds ${PRIMARY_NAME} ${opts.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${PRIMARY_NAME} 2000`,
          `sentinel parallel-syncs ${PRIMARY_NAME} 1`,
          '',
        ].join('\n'),
      );
      const p = start('redis-sentinel', [conf]);
      procs.push(p);
      await p.waitForLine(/\+monitor master/, 10_000);
    }
    const currentPrimaryPort = async (): Promise<number> => {
      const r = await run('redis-cli', ['-p', String(sentinelPorts[0]), 'sentinel', 'get-master-addr-by-name', PRIMARY_NAME]);
      return Number(r.stdout.trim().split('\n')[1]);
    };
    // Every Sentinel knows the replica and the other two before the test may kill the primary.
    await waitFor(
      async () => {
        for (const port of sentinelPorts) {
          const r = await run('redis-cli', ['-p', String(port), 'sentinel', 'master', PRIMARY_NAME]);
          const lines = r.stdout.trim().split('\n');
          const field = (k: string) => Number(lines[lines.indexOf(k) + 1]);
          if (field('num-slaves') < 1 || field('num-other-sentinels') < 2) return false;
        }
        return true;
      },
      { timeoutMs: 20_000, everyMs: 200, what: 'sentinels that know each other and the replica' },
    );
    return {
      url: `redis+sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${PRIMARY_NAME}`,
      primaryPort,
      replicaPort,
      sentinelPorts,
      primary,
      currentPrimaryPort,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * How a host gives a machine its network. Two drivers:
 *
 *   netns  (./netns.ts) a network namespace per machine: the stand-in for Fly's VM
 *   local  (below)      a plain process on a loopback port: laptops and the `npm start` demo
 *
 * The supervisor (./supervisor.ts) owns processes and states; a driver only makes and removes
 * what a machine's process runs inside, and says how to start a process there.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { Machine } from '../catalog/types.js';

export interface MachineNetwork {
  id: string;
  address: string;
  networkId: number;
}

export interface PreparedLaunch {
  /** Put in front of the machine's command (`ip netns exec <ns> ...`). */
  wrap: string[];
  /** Variables the driver adds (PORT for the local driver). */
  env: Record<string, string>;
  /** Where the proxy dials it instead of its 6PN address. */
  upstream?: string;
}

export interface Driver {
  readonly kind: 'netns' | 'local';
  /** Who machine processes run as (null: the agent's own user). */
  runAs(): { uid: number; gid: number } | null;
  /** Checks that this host can run machines; installs what is shared (the isolation filter, holding `machines`). */
  init(machines: MachineNetwork[]): Promise<void>;
  /** Makes the machine's network (idempotent: a second call re-checks it); `dir` is its folder. */
  prepare(m: Machine, net: MachineNetwork, dir: string): Promise<PreparedLaunch>;
  /** Removes the machine's network and everything in it. Idempotent. */
  teardown(id: string): Promise<void>;
  /** Kills processes left in the machine's network after its process group was killed. */
  killRemaining(id: string): Promise<void>;
  /** Sends `sig` to every process in the machine's network besides its process group (suspend, resume); the local driver has no network of its own. */
  signalAll(id: string, sig: 'SIGSTOP' | 'SIGCONT'): Promise<void>;
  /** Ids of machines whose network exists on this host now (to find what an earlier run left). */
  existing(): Promise<string[]>;
  /** Re-applies the shared filter for exactly these machines (resync). */
  sync(machines: MachineNetwork[]): Promise<void>;
  /** Dropped packets by machine id since the start (and `other`), when the driver filters. */
  drops(): Promise<Map<string, number> | null>;
  close(): Promise<void>;
  /** One line for the start-up banner. */
  describe(): string;
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * No isolation at all: the machine is a process of this host's user, listening on
 * 127.0.0.1:$PORT (kept across restarts of the machine when still free), which becomes its
 * catalog upstream. Its 6PN address is only a name (FLY_PRIVATE_IP); nothing binds it.
 */
export class LocalDriver implements Driver {
  readonly kind = 'local' as const;
  async init(): Promise<void> {}
  runAs(): null {
    return null;
  }

  async prepare(_m: Machine, _net: MachineNetwork, dir: string): Promise<PreparedLaunch> {
    const file = join(dir, 'port');
    let port: number | null = null;
    try {
      const p = Number(readFileSync(file, 'utf8'));
      if (Number.isInteger(p) && p > 0 && (await portFree(p))) port = p;
    } catch {
      // first start
    }
    port ??= await freeLoopbackPort();
    writeFileSync(file, `${port}\n`);
    return { wrap: [], env: { PORT: String(port) }, upstream: `127.0.0.1:${port}` };
  }

  async teardown(): Promise<void> {}
  async killRemaining(): Promise<void> {}
  async signalAll(): Promise<void> {}
  async existing(): Promise<string[]> {
    return [];
  }
  async sync(): Promise<void> {}
  async drops(): Promise<null> {
    return null;
  }
  async close(): Promise<void> {}
  describe(): string {
    return 'local (no isolation: machines are plain processes on 127.0.0.1 ports)';
  }
}

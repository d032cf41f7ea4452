/**
 * Real machines for tests: child processes (test/harness/machine.mjs) bound to their own 6PN
 * addresses that answer with their id and count connections, requests, concurrency and the
 * source addresses that reached them. Read the counts with `stats()`; they never go through a proxy.
 */
import { resolve } from 'node:path';
import { ROOT } from './env.js';
import { start, type Proc } from './procs.js';

export interface MachineStats {
  id: string;
  connections: number;
  active: number;
  maxActive: number;
  requests: number;
  activeRequests: number;
  maxActiveRequests: number;
  /** Source address -> connections from it. */
  remotes: Record<string, number>;
  /** TCP: bytes received, and connections whose caller ended its side (a FIN arrived). */
  bytesIn: number;
  eofs: number;
}

export interface TestMachine {
  id: string;
  kind: 'http' | 'tcp';
  host: string;
  port: number;
  proc: Proc;
  stats(): Promise<MachineStats>;
  resetStats(): Promise<void>;
  stop(): Promise<void>;
}

export interface MachineOptions {
  id: string;
  /** Address to bind (a 6PN machine address inside the test namespace, or 127.0.0.1). */
  host: string;
  /** 0 picks a free port. */
  port?: number;
  /** TCP machines: write "<id>\n" on connect before echoing. */
  greet?: boolean;
  /** TCP machines: write "<id>\n" and end their side at once (a half-close from the machine). */
  finFirst?: boolean;
  /** The machine's region (HTTP machines report it on /echo and match it in /replay's `unless`). */
  region?: string;
}

const SCRIPT = resolve(ROOT, 'test/harness/machine.mjs');

async function startMachine(kind: 'http' | 'tcp', o: MachineOptions): Promise<TestMachine> {
  const args = [SCRIPT, '--kind', kind, '--id', o.id, '--host', o.host, '--port', String(o.port ?? 0)];
  if (o.greet) args.push('--greet');
  if (o.finFirst) args.push('--fin-first');
  if (o.region) args.push('--region', o.region);
  const proc = start(process.execPath, args);
  const line = await proc.waitForLine(/^ready /, 10_000);
  const ready = JSON.parse(line.slice('ready '.length)) as { port: number; statsPort: number };
  const statsUrl = `http://127.0.0.1:${ready.statsPort}`;
  return {
    id: o.id,
    kind,
    host: o.host,
    port: ready.port,
    proc,
    async stats() {
      const r = await fetch(`${statsUrl}/stats`);
      return (await r.json()) as MachineStats;
    },
    async resetStats() {
      await fetch(`${statsUrl}/reset`, { method: 'POST' });
    },
    async stop() {
      await proc.stop('SIGTERM', 2_000);
    },
  };
}

/** An HTTP machine (see machine.mjs for its paths). */
export function startHttpMachine(o: MachineOptions): Promise<TestMachine> {
  return startMachine('http', o);
}

/** A TCP echo machine. */
export function startTcpMachine(o: MachineOptions): Promise<TestMachine> {
  return startMachine('tcp', o);
}

export async function stopMachines(ms: Iterable<TestMachine>): Promise<void> {
  await Promise.all([...ms].map((m) => m.stop()));
}

/**
 * WireGuard test plumbing: private network namespaces made with `ip netns add` (deleted by the
 * test), veth pairs with an IPv6 underlay to them, and laptop tunnels brought up from a peer
 * config file the way `wg-quick up` would, but with `wg-quick strip` + `wg setconf` + `ip`
 * (wg-quick itself needs resolvconf for the DNS line). Every interface gets a unique name:
 * wireguard-go keeps its control sockets in one run directory shared by all namespaces.
 */
import { readFileSync, statSync } from 'node:fs';
import { IN_NETNS } from './env.js';
import { waitFor } from './net.js';
import { run as runProcess, start, type Proc } from './procs.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (never rejects on non-zero); `env` adds to this process's. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return runProcess(cmd, args, {
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    timeoutMs: opts.timeoutMs ?? 30_000,
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
  });
}

let seq = 0;
/** `<prefix><pid><n>`, at most 15 characters (a Linux interface name). */
export function uniqueName(prefix: string): string {
  const name = `${prefix}${process.pid.toString(36)}${(seq++).toString(36)}`;
  if (name.length > 15) throw new Error(`name ${name} is longer than 15 characters`);
  return name;
}

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, { input, timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

export class Netns {
  private constructor(readonly name: string) {}

  static async create(prefix = 'sxns'): Promise<Netns> {
    if (!IN_NETNS) throw new Error('refusing to create network namespaces outside the test namespace');
    const ns = new Netns(uniqueName(prefix));
    await must('ip', ['netns', 'add', ns.name]);
    await must('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Runs a command inside the namespace to completion. */
  exec(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  must(cmd: string, args: string[], input?: string): Promise<string> {
    return must('ip', ['netns', 'exec', this.name, cmd, ...args], input);
  }

  /** Starts a long-running command inside the namespace. */
  start(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Proc {
    return start('ip', ['netns', 'exec', this.name, cmd, ...args], env ? { env: { ...process.env, ...env } } : {});
  }

  /** Kills what still runs inside and deletes the namespace. */
  async delete(): Promise<void> {
    const pids = (await run('ip', ['netns', 'pids', this.name])).stdout.split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await run('ip', ['netns', 'del', this.name]);
  }
}

/**
 * An IPv6 underlay: a bridge in the test's own namespace holding `<prefix>::1/64`, and one veth
 * pair per attached namespace, whose end there gets `<prefix>::<n>/64`.
 */
export class Underlay {
  private next = 2;
  private links: string[] = [];
  private constructor(
    readonly bridge: string,
    readonly prefix: string,
  ) {}

  get hostAddress(): string {
    return `${this.prefix}::1`;
  }

  static async create(prefix: string): Promise<Underlay> {
    if (!IN_NETNS) throw new Error('refusing to change network configuration outside the test namespace');
    const u = new Underlay(uniqueName('sxbr'), prefix);
    await must('ip', ['link', 'add', u.bridge, 'type', 'bridge']);
    await must('ip', ['-6', 'addr', 'add', `${prefix}::1/64`, 'dev', u.bridge, 'nodad']);
    await must('ip', ['link', 'set', u.bridge, 'up']);
    return u;
  }

  /** Connects `ns`; resolves with its underlay address. */
  async attach(ns: Netns): Promise<string> {
    const hostIf = uniqueName('sxv');
    const nsIf = uniqueName('sxv');
    const address = `${this.prefix}::${(this.next++).toString(16)}`;
    await must('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', ns.name]);
    this.links.push(hostIf);
    await must('ip', ['link', 'set', hostIf, 'master', this.bridge, 'up']);
    await must('ip', ['-n', ns.name, '-6', 'addr', 'add', `${address}/64`, 'dev', nsIf, 'nodad']);
    await must('ip', ['-n', ns.name, 'link', 'set', nsIf, 'up']);
    return address;
  }

  async delete(): Promise<void> {
    for (const l of this.links) await run('ip', ['link', 'del', l]);
    await run('ip', ['link', 'del', this.bridge]);
  }
}

/** Values of `Key = value` lines of an INI-style WireGuard config (all occurrences). */
export function confValues(text: string, key: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m && m[1]!.toLowerCase() === key.toLowerCase()) out.push(...m[2]!.split(',').map((s) => s.trim()).filter(Boolean));
  }
  return out;
}

export interface LaptopTunnel {
  ns: Netns;
  iface: string;
  /** The laptop's address (from the config's Address, without prefix length). */
  address: string;
  /** `wg show <iface> dump` peer line of the gateway, parsed: last handshake (s), rx, tx. */
  gatewayStatus(): Promise<{ latest_handshake: number; rx_bytes: number; tx_bytes: number }>;
  stop(): Promise<void>;
}

/**
 * Brings a peer config file up inside `ns` as wg-quick would: wireguard-go on a fresh
 * interface, `wg setconf` with the stripped file, the Address on the interface and a route for
 * each AllowedIPs. DNS is not applied (no resolvconf); tests pass the server to dig.
 */
export async function upLaptopTunnel(ns: Netns, confFile: string, iface = uniqueName('sxl')): Promise<LaptopTunnel> {
  const text = readFileSync(confFile, 'utf8');
  const proc = ns.start('wireguard-go', ['-f', iface], { LOG_LEVEL: 'error' });
  await waitFor(async () => (await ns.exec('wg', ['show', iface, 'listen-port'])).code === 0, { what: `wireguard-go to create ${iface}`, timeoutMs: 5_000 });
  const stripped = await must('wg-quick', ['strip', confFile]);
  // wg opens /dev/stdin by path, which fails on node's socketpair stdin: cat makes it a pipe.
  await ns.must('sh', ['-c', 'cat | wg setconf "$0" /dev/stdin', iface], stripped);
  const addresses = confValues(text, 'Address');
  for (const a of addresses) await must('ip', ['-n', ns.name, 'addr', 'add', a, 'dev', iface, 'nodad']);
  await must('ip', ['-n', ns.name, 'link', 'set', iface, 'mtu', '1420', 'up']);
  for (const r of confValues(text, 'AllowedIPs')) await must('ip', ['-n', ns.name, 'route', 'replace', r, 'dev', iface]);
  const address = (addresses[0] ?? '').replace(/\/\d+$/, '');
  return {
    ns,
    iface,
    address,
    async gatewayStatus() {
      const line = (await ns.must('wg', ['show', iface, 'dump'])).split('\n')[1] ?? '';
      const f = line.split('\t');
      return { latest_handshake: Number(f[4] ?? 0), rx_bytes: Number(f[5] ?? 0), tx_bytes: Number(f[6] ?? 0) };
    },
    async stop() {
      await proc.stop('SIGTERM', 2_000);
      await run('ip', ['-n', ns.name, 'link', 'del', iface]);
    },
  };
}

/**
 * Node one-liners run inside a namespace: a TCP request that prints what the server said (or
 * `ERR <code>`), and a UDP datagram sent from a chosen source address.
 */
export function tcpRequest(ns: Netns, host: string, port: number, opts: { localAddress?: string; timeoutMs?: number; send?: string } = {}): Promise<RunResult> {
  const script = `
const net = require('node:net');
const [host, port, local, ms, send] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), localAddress: local || undefined });
let out = '';
const t = setTimeout(() => { console.log('ERR ETIMEDOUT'); process.exit(2); }, Number(ms));
s.on('connect', () => s.end(send));
s.on('data', (b) => (out += b));
s.on('end', () => { clearTimeout(t); process.stdout.write(out); process.exit(0); });
s.on('error', (e) => { clearTimeout(t); console.log('ERR ' + e.code); process.exit(2); });`;
  return ns.exec(process.execPath, ['-e', script, host, String(port), opts.localAddress ?? '', String(opts.timeoutMs ?? 2_000), opts.send ?? ''], { timeoutMs: (opts.timeoutMs ?? 2_000) + 5_000 });
}

export function udpSend(ns: Netns, host: string, port: number, from: string, payload: string): Promise<RunResult> {
  const script = `
const dgram = require('node:dgram');
const [host, port, from, payload] = process.argv.slice(1);
const s = dgram.createSocket('udp6');
s.bind({ address: from }, () => s.send(payload, Number(port), host, (e) => { if (e) { console.log('ERR ' + e.code); process.exit(2); } s.close(); }));`;
  return ns.exec(process.execPath, ['-e', script, host, String(port), from, payload]);
}

export interface DigResult {
  /** NOERROR, NXDOMAIN, REFUSED... or `no answer (...)` when no server replied. */
  status: string;
  /** Data of each answer record (TXT with its quotes). */
  answers: string[];
  raw: string;
}

/** Real `dig` run inside a namespace (a laptop asking its org's DNS through the tunnel). */
export async function digIn(ns: Netns, server: string, name: string, type: string, timeSeconds = 3): Promise<DigResult> {
  const r = await ns.exec('dig', [`@${server}`, name, type, '+tries=1', `+time=${timeSeconds}`, '+noall', '+comments', '+answer'], { timeoutMs: (timeSeconds + 5) * 1000 });
  const raw = r.stdout + r.stderr;
  const status = /status: ([A-Z]+)/.exec(raw)?.[1] ?? `no answer (exit ${r.code}): ${raw.trim().slice(0, 200)}`;
  const answers: string[] = [];
  for (const line of raw.split('\n')) {
    const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.*)$/.exec(line);
    if (m) answers.push(m[4]!.trim());
  }
  return { status, answers, raw };
}

export interface TestPostgres {
  port: number;
  stop(): Promise<void>;
}

const PG_BIN = '/usr/lib/postgresql/15/bin';

/**
 * A throwaway PostgreSQL on 127.0.0.1 (trust auth, no fsync), run as the `postgres` user since
 * the server refuses root. About a second to start.
 */
export async function startPostgres(port: number): Promise<TestPostgres> {
  const dir = (await must('runuser', ['-u', 'postgres', '--', 'mktemp', '-d', '/tmp/sixpn-pg-XXXXXX'])).trim();
  const asPg = (args: string[]): Promise<string> => must('runuser', ['-u', 'postgres', '--', ...args]);
  await asPg([`${PG_BIN}/initdb`, '-D', `${dir}/data`, '-U', 'postgres', '--auth=trust', '-N']);
  await asPg([`${PG_BIN}/pg_ctl`, '-D', `${dir}/data`, '-w', '-l', `${dir}/log`, '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  return {
    port,
    async stop() {
      await run('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, '-D', `${dir}/data`, '-m', 'immediate', 'stop']);
      await run('rm', ['-rf', dir]);
    },
  };
}

export function hasPostgres(): boolean {
  try {
    return statSync(`${PG_BIN}/initdb`).isFile();
  } catch {
    return false;
  }
}

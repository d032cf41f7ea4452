/**
 * Helpers for tests that go through a Flycast proxy: start `sixpn proxy --config` from a TOML
 * string, and callers bound to a chosen 6PN source address (HTTP via undici, raw TCP).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startSixpn, type Proc } from './procs.js';

export interface ProxyNode {
  proc: Proc;
  dir: string;
  /** The "sixpn ready" banner and the lines after it. */
  banner: string;
  stop(): Promise<number | string>;
}

/** Writes `toml` to a temp dir and runs `sixpn proxy --config` (or `command`) on it until it prints ready. */
export async function startProxyNode(toml: string, env: NodeJS.ProcessEnv = {}, command = 'proxy'): Promise<ProxyNode> {
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-proxy-'));
  const file = join(dir, 'sixpn.toml');
  writeFileSync(file, toml);
  const proc = startSixpn([command, '--config', file], { env: { ...process.env, LOG_LEVEL: 'info', ...env } });
  await proc.waitForLine(/sixpn ready/, 20_000);
  // The banner lines follow the ready line in the same write.
  await new Promise((r) => setTimeout(r, 50));
  return {
    proc,
    dir,
    banner: proc.output(),
    async stop() {
      const code = await proc.stop('SIGTERM', 5_000);
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

const agents = new Map<string, Agent>();
/** An undici Agent whose connections come from `localAddress` (one connection per request in flight). */
export function callerAgent(localAddress: string): Agent {
  let a = agents.get(localAddress);
  if (!a) {
    a = new Agent({ localAddress, connect: { timeout: 5_000 }, pipelining: 1, keepAliveTimeout: 1_000 });
    agents.set(localAddress, a);
  }
  return a;
}

export async function closeCallerAgents(): Promise<void> {
  await Promise.all([...agents.values()].map((a) => a.close()));
  agents.clear();
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One HTTP request from `from` (a 6PN source address). */
export async function httpFrom(from: string, url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  const r = await request(url, { dispatcher: callerAgent(from), method: (opts.method ?? 'GET') as 'GET', headers: opts.headers ?? {}, body: opts.body ?? null });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

/** A raw TCP connection from `from`; resolves once connected. */
export function tcpFrom(from: string, host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress: from, allowHalfOpen: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Everything a socket receives until the peer ends or resets it (or `ms` passes), and whether it did. */
export function readAll(s: net.Socket, ms = 3_000): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    let data = '';
    const t = setTimeout(() => resolve({ data, closed: false }), ms);
    const done = (): void => {
      clearTimeout(t);
      resolve({ data, closed: true });
    };
    s.on('data', (b: Buffer) => (data += b.toString('latin1')));
    s.on('error', () => undefined);
    s.once('end', done);
    s.once('close', done);
  });
}

/** Reads until `n` newline-terminated lines have arrived. */
export function readLines(s: net.Socket, n: number, ms = 5_000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    let data = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${n} lines, got ${JSON.stringify(data)}`)), ms);
    const onData = (b: Buffer): void => {
      data += b.toString();
      const lines = data.split('\n');
      if (lines.length > n) {
        clearTimeout(t);
        s.off('data', onData);
        resolve(lines.slice(0, n));
      }
    };
    s.on('data', onData);
  });
}

export interface RawResponse {
  status: number;
  /** Lower-cased names; repeated names joined with ", ". */
  headers: Record<string, string>;
  body: string;
}

/** Bytes read past the end of a response, kept for the next `exchange` on that socket. */
const leftovers = new WeakMap<net.Socket, Buffer>();

/**
 * Writes `bytes` on a caller connection that stays open (keep-alive) and resolves with the next
 * response on it, read by its Content-Length (the proxy and the test machines always send one).
 */
export function exchange(s: net.Socket, bytes: string, ms = 5_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let data: Buffer = leftovers.get(s) ?? Buffer.alloc(0);
    leftovers.delete(s);
    const done = (err: Error | null, r?: RawResponse): void => {
      clearTimeout(t);
      s.off('data', onData);
      s.off('close', onClose);
      if (err) reject(err);
      else resolve(r!);
    };
    const t = setTimeout(() => done(new Error(`no whole response within ${ms} ms; got ${JSON.stringify(data.toString('latin1'))}`)), ms);
    const onClose = (): void => done(new Error(`connection closed before a whole response; got ${JSON.stringify(data.toString('latin1'))}`));
    const onData = (b: Buffer): void => {
      data = Buffer.concat([data, b]);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = data.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        const name = l.slice(0, i).trim().toLowerCase();
        const value = l.slice(i + 1).trim();
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
      const length = Number(headers['content-length'] ?? 0);
      if (data.length - end - 4 < length) return;
      const body = data.subarray(end + 4, end + 4 + length).toString();
      const rest = data.subarray(end + 4 + length);
      if (rest.length > 0) leftovers.set(s, rest);
      done(null, { status: Number(lines[0]!.split(' ')[1]), headers, body });
    };
    s.on('data', onData);
    s.once('close', onClose);
    if (bytes) s.write(bytes);
    if (data.length > 0) onData(Buffer.alloc(0));
  });
}

/** Sends raw bytes from `from` and returns everything received until the server closes. */
export async function rawHttp(from: string, host: string, port: number, bytes: string, ms = 3_000): Promise<string> {
  const s = await tcpFrom(from, host, port);
  const done = readAll(s, ms);
  s.write(bytes);
  const { data } = await done;
  s.destroy();
  return data;
}

/** Resident set size of a process in bytes (Linux /proc). */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Open sockets of a process (Linux /proc): what a caller that holds connections costs it. */
export async function socketCount(pid: number): Promise<number> {
  const { readdir, readlink } = await import('node:fs/promises');
  const dir = `/proc/${pid}/fd`;
  let n = 0;
  for (const fd of await readdir(dir)) {
    const target = await readlink(`${dir}/${fd}`).catch(() => '');
    if (target.startsWith('socket:')) n++;
  }
  return n;
}

/**
 * The head of a proxy-only node config (region ewr; no health checker or DNS). With `admin`, the
 * control API listens on that loopback port (start the node with command `up` then) so that
 * tests can read /metrics.
 */
export function proxyNodeToml({ catalog = 'path = ""', proxy = '', admin }: { catalog?: string; proxy?: string; admin?: number } = {}): string {
  const control = admin === undefined ? 'enabled = false' : `enabled = true\nlisten = "127.0.0.1:${admin}"\ntoken = "${ADMIN_TOKEN}"\n[demo]\nenabled = false\n[wireguard]\nenabled = false`;
  return `[node]\nregion = "ewr"\n[catalog]\n${catalog}\n[control]\n${control}\n[health]\nenabled = false\n[dns]\nenabled = false\n[proxy]\n${proxy}\n`;
}

export const ADMIN_TOKEN = 'proxy-test-admin-token-0123456789';

/** Sum of a metric's samples on a node's /metrics whose labels include `labels`. */
export async function metricSum(admin: number, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelPart = line.slice(name.length, line.lastIndexOf(' '));
    if (want.every((w) => labelPart.includes(w))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export interface AppSpec {
  name: string;
  org: string;
  protocol: 'http' | 'tcp';
  internalPort: number;
  /** The inside of each `ports` entry after `port = N`, e.g. `, handlers = ["proxy_proto"]`. */
  ports: (number | [number, string])[];
  concurrency?: string;
  machines: { id: string; region?: string; extra?: string }[];
  /** Flycast addresses to allocate for the app in its own org. */
  ips?: number;
}

/** TOML for one app with one service, its machines and its Flycast addresses. */
export function appToml(a: AppSpec): string {
  const ports = a.ports.map((p) => (typeof p === 'number' ? `{ port = ${p} }` : `{ port = ${p[0]}${p[1]} }`)).join(', ');
  const lines = [
    '[[apps]]',
    `name = "${a.name}"`,
    `org = "${a.org}"`,
    '[[apps.services]]',
    `protocol = "${a.protocol}"`,
    `internal_port = ${a.internalPort}`,
    `ports = [${ports}]`,
    ...(a.concurrency ? [`concurrency = ${a.concurrency}`] : []),
  ];
  for (const m of a.machines) lines.push('[[machines]]', `id = "${m.id}"`, `app = "${a.name}"`, `region = "${m.region ?? 'ewr'}"`, ...(m.extra ? [m.extra] : []));
  for (let i = 0; i < (a.ips ?? 1); i++) lines.push('[[ips]]', `app = "${a.name}"`);
  return `\n${lines.join('\n')}\n`;
}

/** TOML for orgs: `{ name: networkId }`. */
export function orgsToml(orgs: Record<string, number>): string {
  return Object.entries(orgs).map(([name, id]) => `[[orgs]]\nname = "${name}"\nnetwork_id = ${id}\n`).join('');
}

/**
 * The table of host checks `sixpn doctor` runs, in the order they are printed. Each entry
 * says which roles need it; add the next need (WireGuard mesh, host agent) as one more entry.
 */
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { accessSync, constants, existsSync, openSync, closeSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import type { Config } from '../config/index.js';
import type { CheckResult, DoctorCheck } from './index.js';
import { MESH_CHECKS } from './mesh-checks.js';

/** A Flycast address to probe with: the range is fdaa::/16 host id 1 of any org. */
const PROBE_FLYCAST = 'fdaa:0:1:0:1::3';
const NEED_NODE: [number, number] = [20, 10];

const ok = (detail: string): CheckResult => ({ status: 'ok', detail });
const fail = (detail: string, fix: string): CheckResult => ({ status: 'fail', detail, fix });
const warn = (detail: string, fix: string): CheckResult => ({ status: 'warn', detail, fix });

function exec(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 3_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : (err as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}`.trim() });
    });
  });
}

const hostPort = (host: string, port: number): string => `${host.includes(':') ? `[${host}]` : host}:${port}`;

/** Binds and releases a TCP (and optionally UDP) port; the error code when it cannot. */
async function tryBind(host: string, port: number, udp: boolean, tcp = true): Promise<string | null> {
  if (tcp) {
    const err = await new Promise<string | null>((resolve) => {
      const s = net.createServer();
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(null)));
    });
    if (err) return `tcp ${err}`;
  }
  if (udp) {
    const err = await new Promise<string | null>((resolve) => {
      const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
      s.once('error', (e: NodeJS.ErrnoException) => {
        s.close();
        resolve(e.code ?? e.message);
      });
      s.bind({ address: host, port, exclusive: true }, () => s.close(() => resolve(null)));
    });
    if (err) return `udp ${err}`;
  }
  return null;
}

/** What a failed bind means and how to fix it. */
function bindFailure(what: string, at: string, err: string, key: string, port: number): CheckResult {
  if (err.endsWith('EADDRINUSE')) return fail(`${what} ${at} is in use (${err})`, `stop what listens there (ss -lntup 'sport = :${port}') or change ${key}`);
  if (err.endsWith('EACCES')) return fail(`${what} ${at}: not allowed (${err}; ports below 1024 need privileges)`, `run as root, or grant node CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep $(command -v node)), or change ${key}`);
  if (err.endsWith('EADDRNOTAVAIL')) return fail(`${what} ${at}: the address is not on this host (${err})`, `change ${key} to an address of this host`);
  return fail(`${what} ${at}: ${err}`, `check ${key}`);
}

/** Linux capability bits in /proc/self/status CapEff. */
function hasCapability(bit: number): boolean {
  if (process.getuid?.() === 0) return true;
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m !== null && (BigInt(`0x${m[1]}`) & (1n << BigInt(bit))) !== 0n;
  } catch {
    return false;
  }
}
const CAP_NET_ADMIN = 12;

const serves6pn = (c: Readonly<Config>): boolean => c.proxy.mode !== 'dev' || c.dns.listen_6pn;
const binds6pn = (c: Readonly<Config>): boolean => c.proxy.mode === 'per-address' || c.dns.listen_6pn;

/** A tool on PATH that answers `--version` (or `version` for wg). */
function toolCheck(id: string, title: string, pick: (c: Readonly<Config>) => string, args: string[], pkg: string, key: string): DoctorCheck {
  return {
    id,
    title,
    roles: ['gateway'],
    async run({ config }) {
      const cmd = pick(config);
      const r = await exec(cmd, args);
      if (r.code === 127) return fail(`${cmd} not found`, `apt-get install ${pkg} (or set [wireguard] ${key} to its path)`);
      if (r.code !== 0) return fail(`${cmd} ${args.join(' ')} failed: ${r.out.split('\n')[0] ?? ''}`, `reinstall ${pkg}`);
      return ok(`${cmd}: ${r.out.split('\n')[0]}`);
    },
  };
}

export const CHECKS: readonly DoctorCheck[] = [
  {
    id: 'node',
    title: 'Node.js',
    roles: 'any',
    async run() {
      const [maj, min] = process.versions.node.split('.').map(Number) as [number, number];
      const good = maj > NEED_NODE[0] || (maj === NEED_NODE[0] && min >= NEED_NODE[1]);
      return good ? ok(`v${process.versions.node} (sixpn needs >= ${NEED_NODE.join('.')})`) : fail(`v${process.versions.node} is too old`, `install Node.js ${NEED_NODE.join('.')} or newer`);
    },
  },
  {
    id: 'store',
    title: 'catalog store',
    roles: 'any',
    async run({ config }) {
      const c = config.catalog;
      if (c.store === 'redis') {
        const { Redis } = await import('ioredis');
        const redis = new Redis(c.redis_url, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
        redis.on('error', () => undefined);
        try {
          await redis.connect();
          const pong = await redis.ping();
          return ok(`redis at ${c.redis_url.replace(/\/\/[^@/]*@/, '//***@')} answers ${pong} (namespace ${c.namespace})`);
        } catch (err) {
          return fail(`redis at ${c.redis_url.replace(/\/\/[^@/]*@/, '//***@')}: ${(err as Error).message}`, 'start redis-server there, or set [catalog] redis_url / SIXPN_REDIS_URL');
        } finally {
          redis.disconnect();
        }
      }
      if (c.path === '') return ok('embedded, in memory only ([catalog] path = ""): nothing survives a restart');
      if (existsSync(c.path)) {
        try {
          JSON.parse(readFileSync(c.path, 'utf8'));
        } catch (err) {
          return fail(`embedded file ${c.path} is not a readable catalog: ${(err as Error).message}`, 'restore it from a backup, or move it away to start with an empty catalog');
        }
        try {
          accessSync(dirname(c.path), constants.W_OK);
        } catch {
          return fail(`embedded file ${c.path}: its folder is not writable`, `give this user write access to ${dirname(c.path)} (writes go to a temp file there, then rename)`);
        }
        return ok(`embedded file ${c.path}: readable, folder writable`);
      }
      let dir = dirname(c.path);
      while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
      try {
        accessSync(dir, constants.W_OK);
      } catch {
        return fail(`embedded file ${c.path} does not exist and ${dir} is not writable`, `create ${dirname(c.path)} writable by this user, or set [catalog] path`);
      }
      return ok(`embedded file ${c.path}: will be created at first start`);
    },
  },
  {
    id: 'control-token',
    title: 'control token',
    roles: ['control'],
    async run({ config }) {
      if (config.control.token === '') return fail('no admin token: the control API refuses to start without one', 'set [control] token or SIXPN_TOKEN to a long random value (openssl rand -hex 24)');
      if (config.control.token.length < 16) return warn(`the token has ${config.control.token.length} characters`, 'use a long random token (openssl rand -hex 24)');
      return ok(`set (${config.control.token.length} characters)`);
    },
  },
  {
    id: 'control-port',
    title: 'control listen port',
    roles: ['control'],
    async run({ config }) {
      const { host, port } = config.control.listen;
      const at = hostPort(host || '::', port);
      const err = await tryBind(host || '::', port, false);
      return err ? bindFailure('admin listener', at, err, '[control] listen', port) : ok(`${at} is free`);
    },
  },
  {
    id: 'dns-port',
    title: 'DNS listen ports',
    roles: ['dns'],
    applies: (c) => c.dns.port !== 0 && (c.dns.listen.length > 0 || c.dns.listen_6pn),
    skipWhy: (c) => (c.dns.port === 0 ? '[dns] port = 0 picks a free port' : 'no [dns] listen addresses and listen_6pn = false'),
    async run({ config }) {
      const port = config.dns.port;
      const hosts = [...config.dns.listen, ...(config.dns.listen_6pn ? ['fdaa::3'] : [])];
      const free: string[] = [];
      for (const host of hosts) {
        const err = await tryBind(host, port, true);
        // A 6PN address that cannot be bound at all is the ip_nonlocal_bind check's to report.
        if (err?.endsWith('EADDRNOTAVAIL') && host === 'fdaa::3') continue;
        if (err) return bindFailure('DNS', hostPort(host, port), err, '[dns] port or listen', port);
        free.push(hostPort(host, port));
      }
      return free.length ? ok(`${free.join(', ')}: udp and tcp free`) : ok('only 6PN listeners (see ip_nonlocal_bind)');
    },
  },
  {
    id: 'flycast-route',
    title: 'route for the Flycast range',
    roles: ['proxy', 'dns'],
    applies: serves6pn,
    skipWhy: () => 'proxy mode "dev" and no 6PN DNS listeners: loopback ports only',
    async run() {
      const r = await exec('ip', ['-6', 'route', 'get', PROBE_FLYCAST]);
      if (r.code === 127) return fail('the ip command (iproute2) is not installed', 'apt-get install iproute2');
      if (r.code === 0 && /^local\s/.test(r.out)) return ok(`${PROBE_FLYCAST} is delivered locally (${r.out.split('\n')[0]!.replace(/\s+/g, ' ').replace(/ (src|metric|pref|proto) .*$/, '')})`);
      return fail(`${PROBE_FLYCAST} is not routed to this host (${r.out.split('\n')[0] || `ip exited ${r.code}`})`, 'ip -6 route add local fdaa::/16 dev lo (and add it to the network config so it survives a reboot)');
    },
  },
  {
    id: 'nonlocal-bind',
    title: 'ip_nonlocal_bind',
    roles: ['proxy', 'dns'],
    applies: binds6pn,
    skipWhy: () => 'no listener binds 6PN addresses (proxy mode routed/dev, [dns] listen_6pn = false)',
    async run() {
      let v = '';
      try {
        v = readFileSync('/proc/sys/net/ipv6/ip_nonlocal_bind', 'utf8').trim();
      } catch {
        v = '?';
      }
      const err = await tryBind(PROBE_FLYCAST, 0, false);
      if (!err) return ok(`net.ipv6.ip_nonlocal_bind = ${v}; a Flycast address (${PROBE_FLYCAST}) can be bound`);
      return fail(
        `net.ipv6.ip_nonlocal_bind = ${v}; binding ${PROBE_FLYCAST} fails (${err}): per-address Flycast listeners and the fdaa::3 resolver need it`,
        'sysctl -w net.ipv6.ip_nonlocal_bind=1 (persist: echo net.ipv6.ip_nonlocal_bind=1 > /etc/sysctl.d/60-sixpn.conf), or [proxy] mode = "routed"',
      );
    },
  },
  {
    id: 'proxy-dev-ports',
    title: 'proxy dev mapping ports',
    roles: ['proxy'],
    applies: (c) => c.proxy.mode === 'dev' && c.proxy.dev_mappings.length > 0,
    skipWhy: () => 'no [[proxy.dev_mappings]]',
    async run({ config }) {
      for (const m of config.proxy.dev_mappings) {
        const err = await tryBind(m.listen_host, m.listen_port, false);
        if (err) return bindFailure('dev mapping', hostPort(m.listen_host, m.listen_port), err, `the [[proxy.dev_mappings]] listen_port ${m.listen_port}`, m.listen_port);
      }
      return ok(`${config.proxy.dev_mappings.length} mapping port${config.proxy.dev_mappings.length === 1 ? '' : 's'} free`);
    },
  },
  {
    id: 'tun',
    title: '/dev/net/tun',
    roles: ['gateway'],
    async run() {
      let st;
      try {
        st = statSync('/dev/net/tun');
      } catch {
        return fail('/dev/net/tun does not exist', 'modprobe tun; in a container: --device /dev/net/tun (docker) or the tun device plugin');
      }
      if (!st.isCharacterDevice()) return fail('/dev/net/tun is not a character device', 'recreate it: mknod /dev/net/tun c 10 200');
      try {
        closeSync(openSync('/dev/net/tun', 'r+'));
      } catch (err) {
        return fail(`/dev/net/tun cannot be opened: ${(err as NodeJS.ErrnoException).code}`, 'run the gateway as root or with CAP_NET_ADMIN');
      }
      return ok('present and opens read-write');
    },
  },
  {
    id: 'net-admin',
    title: 'CAP_NET_ADMIN',
    roles: ['gateway'],
    async run() {
      return hasCapability(CAP_NET_ADMIN) ? ok('this process may configure interfaces, routes and nftables') : fail('this process lacks CAP_NET_ADMIN', 'run the gateway as root, or with --cap-add NET_ADMIN in a container');
    },
  },
  toolCheck('wireguard-go', 'wireguard-go', (c) => c.wireguard.wireguard_go, ['--version'], 'wireguard-go', 'wireguard_go'),
  toolCheck('wg', 'wg (wireguard-tools)', (c) => c.wireguard.wg, ['--version'], 'wireguard-tools', 'wg'),
  {
    id: 'nft',
    title: 'nft (nftables)',
    roles: ['gateway'],
    applies: (c) => c.wireguard.isolation === 'nftables',
    skipWhy: () => '[wireguard] isolation = "none"',
    async run({ config }) {
      const nft = config.wireguard.nft;
      const v = await exec(nft, ['--version']);
      if (v.code === 127) return fail(`${nft} not found`, 'apt-get install nftables (or set [wireguard] nft to its path)');
      const list = await exec(nft, ['list', 'tables']);
      if (list.code !== 0) return fail(`${nft} list tables failed: ${list.out.split('\n')[0] ?? ''}`, 'run as root or with CAP_NET_ADMIN (the gateway installs its per-org filter with nft)');
      return ok(`${v.out.split('\n')[0]}; tables can be listed`);
    },
  },
  {
    id: 'wireguard-port',
    title: 'WireGuard UDP port',
    roles: ['gateway'],
    async run({ config }) {
      const port = config.wireguard.listen_port;
      const err = await tryBind('::', port, true, false);
      return err ? bindFailure('WireGuard', `udp [::]:${port}`, err, '[wireguard] listen_port', port) : ok(`udp [::]:${port} is free`);
    },
  },
  {
    id: 'gateway-key',
    title: 'gateway key file',
    roles: ['gateway'],
    applies: (c) => c.wireguard.public_key === undefined,
    skipWhy: () => '[wireguard] public_key is set',
    async run({ config }) {
      const file = config.wireguard.state_file;
      if (!existsSync(file)) {
        try {
          accessSync(existsSync(dirname(file)) ? dirname(file) : dirname(dirname(file)), constants.W_OK);
        } catch {
          return fail(`${file} does not exist and its folder is not writable`, `create ${dirname(file)} writable by this user, or set [wireguard] state_file`);
        }
        return ok(`${file}: will be created (mode 0600) at first start`);
      }
      const mode = statSync(file).mode & 0o777;
      if (mode & 0o077) return fail(`${file} holds the private key and is mode ${mode.toString(8).padStart(4, '0')}`, `chmod 600 ${file}`);
      return ok(`${file}: mode 0600`);
    },
  },
  ...MESH_CHECKS,
];

/**
 * The checks of the mesh role (src/mesh): what a host needs to join the WireGuard mesh, and
 * which WireGuard it will use. Read-only like every doctor check: nothing is created, the
 * kernel's WireGuard is detected from its loaded module, not by adding a link.
 */
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import type { Config } from '../config/index.js';
import type { CheckResult, DoctorCheck } from './index.js';

const ok = (detail: string): CheckResult => ({ status: 'ok', detail });
const fail = (detail: string, fix: string): CheckResult => ({ status: 'fail', detail, fix });
const warn = (detail: string, fix: string): CheckResult => ({ status: 'warn', detail, fix });

function exec(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 3_000 }, (err, stdout, stderr) => {
      const e = err as NodeJS.ErrnoException | null;
      resolve({ code: e ? (e.code === 'ENOENT' ? 127 : typeof e.code === 'number' ? e.code : 1) : 0, out: `${stdout}${stderr}`.trim() });
    });
  });
}

const first = (s: string): string => s.split('\n')[0] ?? '';

/** The kernel has WireGuard when its module is loaded (or built in: /sys/module/wireguard exists either way). */
export function kernelHasWireguard(): boolean {
  return existsSync('/sys/module/wireguard');
}

/** Which implementation `sixpn up` will use, and why; null when the configured one cannot be had. */
export function meshImplementation(c: Readonly<Config>): { use: 'kernel' | 'userspace' | null; why: string } {
  const kernel = kernelHasWireguard();
  const impl = c.mesh.implementation;
  if (impl === 'kernel') return kernel ? { use: 'kernel', why: '[mesh] implementation = "kernel"' } : { use: null, why: '[mesh] implementation = "kernel" but the kernel has no WireGuard module' };
  if (impl === 'userspace') return { use: 'userspace', why: '[mesh] implementation = "userspace"' };
  return kernel ? { use: 'kernel', why: 'the kernel has WireGuard' } : { use: 'userspace', why: 'the kernel has no WireGuard module' };
}

const ifaceExists = async (c: Readonly<Config>): Promise<boolean> => (await exec(c.mesh.ip, ['link', 'show', 'dev', c.mesh.interface])).code === 0;

export const MESH_CHECKS: readonly DoctorCheck[] = [
  {
    id: 'mesh-forwarding',
    title: 'IPv6 forwarding (mesh)',
    roles: ['mesh'],
    async run() {
      let v = '?';
      try {
        v = readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim();
      } catch {
        // no IPv6, or no /proc
      }
      if (v === '1') return ok('net.ipv6.conf.all.forwarding = 1: packets of machines go into the tunnel and come out of it to them');
      return fail(`net.ipv6.conf.all.forwarding = ${v}: machines cannot reach other hosts, nor other hosts them`, 'sysctl -w net.ipv6.conf.all.forwarding=1 (persist: echo net.ipv6.conf.all.forwarding=1 > /etc/sysctl.d/60-sixpn.conf)');
    },
  },
  {
    id: 'mesh-wireguard',
    title: 'WireGuard implementation (mesh)',
    roles: ['mesh'],
    async run({ config }) {
      const { use, why } = meshImplementation(config);
      if (use === null) return fail(why, 'load it (modprobe wireguard), or set [mesh] implementation = "auto" to use wireguard-go');
      if (use === 'kernel') return ok(`kernel WireGuard (${why})`);
      const cmd = config.mesh.wireguard_go;
      const v = await exec(cmd, ['--version']);
      if (v.code === 127) return fail(`userspace wireguard-go needed (${why}), and ${cmd} is not found`, 'apt-get install wireguard-go (or set [mesh] wireguard_go to its path), or load the kernel module (modprobe wireguard)');
      if (v.code !== 0) return fail(`${cmd} --version failed: ${first(v.out)}`, 'reinstall wireguard-go');
      if (!existsSync('/dev/net/tun')) return fail(`userspace wireguard-go (${why}) needs /dev/net/tun, which does not exist`, 'modprobe tun; in a container: --device /dev/net/tun');
      return ok(`userspace wireguard-go (${why}): ${first(v.out)}`);
    },
  },
  {
    id: 'mesh-wg',
    title: 'wg (mesh)',
    roles: ['mesh'],
    async run({ config }) {
      const v = await exec(config.mesh.wg, ['--version']);
      if (v.code === 127) return fail(`${config.mesh.wg} not found`, 'apt-get install wireguard-tools (or set [mesh] wg to its path)');
      return v.code === 0 ? ok(first(v.out)) : fail(`${config.mesh.wg} --version failed: ${first(v.out)}`, 'reinstall wireguard-tools');
    },
  },
  {
    id: 'mesh-nft',
    title: 'nftables (mesh org filter)',
    roles: ['mesh'],
    applies: (c) => c.mesh.isolation === 'nftables',
    skipWhy: () => '[mesh] isolation = "none"',
    async run({ config }) {
      const nft = config.mesh.nft;
      const v = await exec(nft, ['--version']);
      if (v.code === 127) return fail(`${nft} not found: the mesh cannot refuse packets between orgs`, 'apt-get install nftables (or set [mesh] nft to its path)');
      const list = await exec(nft, ['list', 'tables']);
      if (list.code !== 0) return fail(`${nft} list tables failed: ${first(list.out)}`, 'run as root or with CAP_NET_ADMIN');
      const has = /\binet sixpn_mesh\b/.test(list.out);
      return ok(`${first(v.out)}; ${has ? 'table inet sixpn_mesh is loaded' : 'table inet sixpn_mesh is not loaded yet (sixpn up loads it)'}`);
    },
  },
  {
    id: 'mesh-port',
    title: 'mesh UDP port',
    roles: ['mesh'],
    async run({ config }) {
      const port = config.mesh.listen_port;
      if (await ifaceExists(config)) return ok(`udp ${port} is held by ${config.mesh.interface} (left up by an earlier agent; sixpn up takes it over)`);
      const err = await new Promise<string | null>((resolve) => {
        const s = dgram.createSocket('udp6');
        s.once('error', (e: NodeJS.ErrnoException) => {
          s.close();
          resolve(e.code ?? e.message);
        });
        s.bind({ address: '::', port, exclusive: true }, () => s.close(() => resolve(null)));
      });
      if (err === 'EADDRINUSE') return fail(`udp [::]:${port} is in use`, `stop what listens there (ss -lnup 'sport = :${port}') or change [mesh] listen_port (and [host] wireguard_endpoint)`);
      return err ? fail(`udp [::]:${port}: ${err}`, 'check [mesh] listen_port') : ok(`udp [::]:${port} is free`);
    },
  },
  {
    id: 'mesh-endpoint',
    title: 'mesh endpoint',
    roles: ['mesh'],
    async run({ config }) {
      const ep = config.host.wireguard_endpoint;
      if (!ep) return warn('[host] wireguard_endpoint is not set: other hosts reach this one only after it has dialed them', 'set [host] wireguard_endpoint = "<this host\'s address>:<[mesh] listen_port>"');
      const port = /:(\d+)$/.exec(ep)?.[1];
      if (port !== undefined && Number(port) !== config.mesh.listen_port) return warn(`[host] wireguard_endpoint ${ep} names port ${port}, the tunnel listens on ${config.mesh.listen_port}`, 'make them agree, unless something forwards that port');
      return ok(`other hosts dial ${ep}`);
    },
  },
  {
    id: 'mesh-routes',
    title: 'mesh tunnel and routes',
    roles: ['mesh'],
    async run({ config }) {
      const m = config.mesh;
      const local = await exec(m.ip, ['-6', 'route', 'show', 'table', 'local', 'fdaa::/16']);
      if (local.code === 127) return fail('the ip command (iproute2) is not installed', 'apt-get install iproute2');
      if (!/local fdaa::\/16/.test(local.out)) return fail('fdaa::/16 is not routed locally: machines of this host are not reachable at their 6PN addresses', 'ip -6 route add local fdaa::/16 dev lo (the mesh routes other hosts\' slices more specifically into the tunnel)');
      if (!(await ifaceExists(config))) return ok(`fdaa::/16 is local; ${m.interface} is not up yet (sixpn up creates it and routes other hosts' slices into it)`);
      const peers = await exec(m.wg, ['show', m.interface, 'peers']);
      const routes = await exec(m.ip, ['-6', 'route', 'show', 'table', m.route_table, 'dev', m.interface]);
      const nPeers = peers.code === 0 ? peers.out.split('\n').filter(Boolean).length : 0;
      const nRoutes = routes.code === 0 ? routes.out.split('\n').filter(Boolean).length : 0;
      if (nPeers > 0 && nRoutes === 0) return fail(`${m.interface} has ${nPeers} peers but no routes in table ${m.route_table}`, 'restart the agent (sixpn up) to reconcile; check [mesh] route_table');
      return ok(`fdaa::/16 is local; ${m.interface}: ${nPeers} peer${nPeers === 1 ? '' : 's'}, ${nRoutes} route${nRoutes === 1 ? '' : 's'} in table ${m.route_table}`);
    },
  },
];

/**
 * The netns driver: each machine in a network namespace of its own, the stand-in for Fly's VM.
 *
 *   namespace  `<netns_prefix><machine id>` (`ip netns add`), loopback up
 *   veth pair  host side `sxm<first 8 hex digits>` with fe80::1, machine side `eth0` with fe80::2
 *              and the machine's 6PN address /128 (no DAD: usable at once)
 *   routes     machine: default via fe80::1; host: `<address>/128 via fe80::2` in `route_table`
 *   ports      net.ipv4.ip_unprivileged_port_start = 0 inside (it covers IPv6 too): any port, no root
 *   resolver   /etc/netns/<namespace>/resolv.conf = `nameserver fdaa::3` (what `ip netns exec`
 *              puts over /etc/resolv.conf for the machine's processes)
 *   filter     the machine's entries in the host's nftables table (./firewall.ts)
 *
 * Four processes make a machine (`ip netns add`, one `ip -batch` on each side, one `sysctl`). A prepare
 * that fails half way removes what it made. Machine processes run as `machine_user` through
 * `setpriv` (no root inside: root could leave its namespace or rewrite the filter).
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine } from '../catalog/types.js';
import { ConfigError } from '../errors.js';
import { runTool } from '../gateway/tools.js';
import type { Logger } from '../observe/log.js';
import type { HostConfig } from './config.js';
import type { Driver, MachineNetwork, PreparedLaunch } from './driver.js';
import { counterName, HostFirewall, vethName } from './firewall.js';
import { readText } from './process.js';

const NETNS_DIR = '/run/netns';
const ETC_NETNS = '/etc/netns';
const HOST_LL = 'fe80::1';
const MACHINE_LL = 'fe80::2';

/** uid and gid of a user from /etc/passwd. */
function lookupUser(name: string): { uid: number; gid: number } | null {
  for (const line of (readText('/etc/passwd') ?? '').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

export class NetnsDriver implements Driver {
  readonly kind = 'netns' as const;
  private readonly firewall: HostFirewall | null;
  private user: { uid: number; gid: number } | null = null;

  constructor(
    private readonly cfg: HostConfig,
    private readonly log: Logger,
  ) {
    this.firewall = cfg.isolation === 'nftables' ? new HostFirewall(cfg.nft) : null;
  }

  runAs(): { uid: number; gid: number } | null {
    return this.user;
  }

  nsName(id: string): string {
    return `${this.cfg.netns_prefix}${id}`;
  }

  async init(machines: MachineNetwork[]): Promise<void> {
    if (process.getuid?.() !== 0) throw new ConfigError('host.driver = "netns" needs root (network namespaces, veth, routes); run as root or set driver = "local"');
    try {
      await runTool(this.cfg.ip, ['-V']);
    } catch (err) {
      throw new ConfigError(`host.ip: cannot run ${this.cfg.ip}: ${(err as Error).message}`, { cause: err });
    }
    const fwd = readText('/proc/sys/net/ipv6/conf/all/forwarding')?.trim();
    if (fwd !== '1') {
      throw new ConfigError(
        'host.driver = "netns": IPv6 forwarding is off (net.ipv6.conf.all.forwarding = 0), so machines could reach nothing but the host; ' +
          'turn it on with `sysctl -w net.ipv6.conf.all.forwarding=1` (sixpn does not change sysctls: forwarding stops the host from taking router advertisements)',
      );
    }
    if (this.cfg.machine_user) {
      this.user = lookupUser(this.cfg.machine_user);
      if (!this.user) throw new ConfigError(`host.machine_user: no user ${this.cfg.machine_user} in /etc/passwd`);
      try {
        await runTool('setpriv', ['--version']);
      } catch (err) {
        throw new ConfigError(`host.machine_user: setpriv (util-linux) is needed to run machines as ${this.cfg.machine_user}: ${(err as Error).message}`, { cause: err });
      }
    } else {
      this.log.warn({}, 'host.machine_user is empty: machine processes run as root inside their namespaces and could leave them');
    }
    if (this.firewall) {
      try {
        await this.firewall.init(machines);
      } catch (err) {
        throw new ConfigError(`host.isolation = "nftables" but the filter cannot be installed (${(err as Error).message}); install nftables or set isolation = "none"`, { cause: err });
      }
    } else {
      this.log.warn({}, 'host.isolation = "none": machines may send from any address and reach every org on this host');
    }
    const probe = await runTool(this.cfg.ip, ['-6', 'route', 'get', 'fdaa:0:1:0:1::3']).catch(() => '');
    if (!/^local /.test(probe)) {
      this.log.warn({ route: probe.trim() }, 'Flycast addresses are not local on this host (no `ip -6 route add local fdaa::/16 dev lo`): machines will not reach fdaa::3 or their Flycast addresses here');
    }
  }

  private nsExists(id: string): boolean {
    try {
      return readdirSync(NETNS_DIR).includes(this.nsName(id));
    } catch {
      return false;
    }
  }

  private async healthy(id: string): Promise<boolean> {
    if (!this.nsExists(id)) return false;
    const ok = await Promise.all([
      runTool(this.cfg.ip, ['link', 'show', 'dev', vethName(id)]).then(() => true, () => false),
      runTool(this.cfg.ip, ['-n', this.nsName(id), 'link', 'show', 'dev', 'eth0']).then(() => true, () => false),
    ]);
    return ok.every(Boolean);
  }

  async prepare(_m: Machine, net: MachineNetwork, _dir: string): Promise<PreparedLaunch> {
    const ns = this.nsName(net.id);
    const veth = vethName(net.id);
    try {
      if (!(await this.healthy(net.id))) {
        if (this.nsExists(net.id)) await this.teardown(net.id);
        await runTool(this.cfg.ip, ['netns', 'add', ns]);
        await runTool(this.cfg.ip, ['-batch', '-'], {
          input: [
            `link add ${veth} type veth peer name eth0 netns ${ns}`,
            `link set dev ${veth} addrgenmode none`,
            `addr add ${HOST_LL}/64 dev ${veth} nodad`,
            `link set dev ${veth} up`,
          ].join('\n') + '\n',
        });
        await runTool(this.cfg.ip, ['-n', ns, '-batch', '-'], {
          input: [
            'link set dev lo up',
            'link set dev eth0 addrgenmode none',
            `addr add ${MACHINE_LL}/64 dev eth0 nodad`,
            `addr add ${net.address}/128 dev eth0 nodad`,
            'link set dev eth0 up',
            `route add ::/0 via ${HOST_LL} dev eth0`,
          ].join('\n') + '\n',
        });
        // As in a VM, the machine may listen on any port of its own address (port 7, 80, 443...)
        // although its processes do not run as root. The setting belongs to its namespace.
        await runTool(this.cfg.ip, ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_unprivileged_port_start=0']);
      }
      await runTool(this.cfg.ip, ['-6', 'route', 'replace', `${net.address}/128`, 'via', MACHINE_LL, 'dev', veth, 'table', this.cfg.route_table]);
      const etc = join(ETC_NETNS, ns);
      mkdirSync(etc, { recursive: true });
      writeFileSync(join(etc, 'resolv.conf'), 'nameserver fdaa::3\n');
      await this.firewall?.add(net);
    } catch (err) {
      await this.teardown(net.id).catch(() => undefined);
      throw err;
    }
    const user = this.user ? ['setpriv', `--reuid=${this.user.uid}`, `--regid=${this.user.gid}`, '--clear-groups', '--no-new-privs', '--'] : [];
    return { wrap: [this.cfg.ip, 'netns', 'exec', ns, ...user], env: {} };
  }

  async killRemaining(id: string): Promise<void> {
    await this.signalAll(id, 'SIGKILL');
  }

  /** Every process in the namespace: also those that left the machine's process group (a daemon's own session). */
  async signalAll(id: string, sig: NodeJS.Signals): Promise<void> {
    if (!this.nsExists(id)) return;
    const pids = (await runTool(this.cfg.ip, ['netns', 'pids', this.nsName(id)]).catch(() => '')).split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), sig);
      } catch {
        // gone already
      }
    }
  }

  async teardown(id: string): Promise<void> {
    await this.killRemaining(id);
    // Deleting the host side takes the pair and the machine's /128 route with it at once, even
    // while a dying process still holds the namespace.
    await runTool(this.cfg.ip, ['link', 'del', 'dev', vethName(id)]).catch(() => undefined);
    if (this.nsExists(id)) await runTool(this.cfg.ip, ['netns', 'del', this.nsName(id)]);
    rmSync(join(ETC_NETNS, this.nsName(id)), { recursive: true, force: true });
    await this.firewall?.remove(id);
  }

  async existing(): Promise<string[]> {
    let names: string[];
    try {
      names = readdirSync(NETNS_DIR);
    } catch {
      return [];
    }
    const p = this.cfg.netns_prefix;
    return names.filter((n) => n.startsWith(p) && /^[0-9a-f]{8,32}$/.test(n.slice(p.length))).map((n) => n.slice(p.length));
  }

  async sync(machines: MachineNetwork[]): Promise<void> {
    await this.firewall?.replace(machines);
  }

  async drops(): Promise<Map<string, number> | null> {
    if (!this.firewall) return null;
    const counters = await this.firewall.readCounters();
    return counters;
  }

  async close(): Promise<void> {
    // The filter stays while machines run on (they outlive the agent); the next agent replaces it.
  }

  describe(): string {
    return `netns (namespaces ${this.cfg.netns_prefix}<id>, isolation ${this.cfg.isolation}${this.user ? `, processes as ${this.cfg.machine_user}` : ', processes as root'})`;
  }

  /** Counter name of a machine (for reading `drops()`). */
  static counterOf(id: string): string {
    return counterName(id);
  }
}

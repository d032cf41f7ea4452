/**
 * A lab of hosts for mesh tests (and bench/): an "internet" network namespace holding a bridge
 * and a real redis-server, host namespaces joined to the bridge by veth (IPv6 underlay
 * `fd5a:e5::/64`), each set up the way a 6PN host is (fdaa::/16 local, forwarding on, non-local
 * binds), and the test's own namespace on the bridge too, to reach the control APIs. Nodes run
 * with `nsenter --net` (see TestHost): the machine namespaces they make stay visible.
 * Everything is deleted at the end, whatever a test left behind.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, IN_NETNS } from './env.js';
import { deleteMachineNamespaces } from './host.js';
import { waitFor } from './net.js';
import { run, start, type Proc } from './procs.js';
import { Netns, uniqueName } from './wg.js';

export const UNDERLAY = 'fd5a:e5::';
const INTERNET = `${UNDERLAY}1`;
const OPERATOR = `${UNDERLAY}2`;

/** Resolves true once `ping` gets an answer; throws its own words otherwise, so a timeout says why (no route, no `ping` installed). */
async function pings(r: Promise<{ code: number | null; stdout: string; stderr: string }>): Promise<true> {
  const res = await r;
  if (res.code === 0) return true;
  throw new Error(`ping exited ${res.code}: ${(res.stderr || res.stdout).trim().split('\n').pop()}`);
}

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

export interface LabHostSpec {
  name: string;
  region: string;
  /** Extra TOML appended to the host's config (a seed, the gateway...). */
  extra?: string;
}

export class LabHost {
  node: Proc | null = null;
  constructor(
    readonly lab: MeshLab,
    readonly name: string,
    readonly region: string,
    readonly ns: Netns,
    /** Its underlay address (the mesh endpoint, the control API). */
    readonly address: string,
    /** Its end of the veth to the internet bridge. */
    readonly uplink: string,
    readonly dir: string,
    readonly configFile: string,
    /** Machine namespaces of this host start with this. */
    readonly prefix: string,
    readonly meshIface: string,
  ) {}

  get api(): string {
    return `http://[${this.address}]:4280`;
  }

  /** `sixpn up` inside the host namespace; resolves when it is ready (a loaded 2-core machine has taken 20 s). */
  async start(timeoutMs = 45_000): Promise<Proc> {
    const p = start('nsenter', [`--net=/run/netns/${this.ns.name}`, process.execPath, CLI, 'up', '--config', this.configFile], { env: { ...process.env, LOG_LEVEL: 'info' } });
    this.node = p;
    await p.waitForLine(/sixpn ready/, timeoutMs);
    return p;
  }

  /** SIGKILL the agent (machines and the tunnel outlive it, as on a real host). */
  async kill(): Promise<void> {
    const p = this.node;
    this.node = null;
    if (!p) return;
    p.child.kill('SIGKILL');
    await p.exited;
  }

  /** Cuts (or restores) the host's link to the internet: nothing goes in or out any more. */
  async link(up: boolean): Promise<void> {
    await must('ip', ['-n', this.ns.name, 'link', 'set', 'dev', this.uplink, up ? 'up' : 'down']);
    if (up) await waitFor(() => pings(this.inHost('ping', ['-6', '-c', '1', '-W', '1', INTERNET])), { what: `${this.name} reaches the internet again`, timeoutMs: 10_000 });
  }

  machineNs(id: string): string {
    return `${this.prefix}${id}`;
  }

  /** A command inside a machine's namespace (as root, like `ip netns exec`). */
  inMachine(id: string, cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}) {
    return run('ip', ['netns', 'exec', this.machineNs(id), cmd, ...args], { timeoutMs: opts.timeoutMs ?? 15_000, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  }

  /** A command in the host namespace itself. */
  inHost(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}) {
    return run('ip', ['netns', 'exec', this.ns.name, cmd, ...args], { timeoutMs: opts.timeoutMs ?? 15_000, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  }

  machineNamespaces(): string[] {
    try {
      return readdirSync('/run/netns').filter((n) => n.startsWith(this.prefix));
    } catch {
      return [];
    }
  }
}

export class MeshLab {
  readonly hosts = new Map<string, LabHost>();
  private redis: Proc | null = null;
  private links: string[] = [];
  private extra: Netns[] = [];
  private next = 0x11;

  private constructor(
    readonly internet: Netns,
    readonly bridge: string,
    readonly dir: string,
    readonly token: string,
    readonly redisUrl: string,
    readonly namespace: string,
  ) {}

  static async create(token: string): Promise<MeshLab> {
    if (!IN_NETNS) throw new Error('refusing to build a mesh lab outside the test namespace');
    const internet = await Netns.create('sxnet');
    const bridge = 'br0';
    // A fixed MAC: a bridge otherwise takes the lowest of its ports' MACs, and every host that
    // joins later could change it under the neighbour caches of the hosts already there.
    await must('ip', ['-n', internet.name, 'link', 'add', bridge, 'address', '02:5a:e5:00:00:01', 'type', 'bridge']);
    await must('ip', ['-n', internet.name, '-6', 'addr', 'add', `${INTERNET}/64`, 'dev', bridge, 'nodad']);
    await must('ip', ['-n', internet.name, 'link', 'set', bridge, 'up']);
    const dir = mkdtempSync(join(tmpdir(), 'sixpn-mesh-'));
    const lab = new MeshLab(internet, bridge, dir, token, `redis://[${INTERNET}]:6379`, `mesh${process.pid}`);
    // The test's own namespace on the bridge: it reaches Redis and the control APIs.
    const here = uniqueName('sxop');
    await must('ip', ['link', 'add', here, 'type', 'veth', 'peer', 'name', 'op0', 'netns', internet.name]);
    lab.links.push(here);
    await must('ip', ['-n', internet.name, 'link', 'set', 'op0', 'master', bridge, 'up']);
    await must('ip', ['-6', 'addr', 'add', `${OPERATOR}/64`, 'dev', here, 'nodad']);
    await must('ip', ['link', 'set', here, 'up']);
    lab.redis = internet.start('redis-server', ['--port', '6379', '--bind', INTERNET, '--protected-mode', 'no', '--save', '', '--appendonly', 'no', '--dir', dir]);
    await lab.redis.waitForLine(/Ready to accept connections/, 10_000);
    return lab;
  }

  /** A namespace on the bridge with an underlay address (a laptop, a rogue host). */
  async attach(prefix: string): Promise<{ ns: Netns; address: string; uplink: string }> {
    const ns = await Netns.create(prefix);
    this.extra.push(ns);
    const address = `${UNDERLAY}${(this.next++).toString(16)}`;
    const port = `p${(this.next - 1).toString(16)}`;
    await must('ip', ['link', 'add', 'up0', 'netns', ns.name, 'type', 'veth', 'peer', 'name', port, 'netns', this.internet.name]);
    await must('ip', ['-n', this.internet.name, 'link', 'set', port, 'master', this.bridge, 'up']);
    await must('ip', ['-n', ns.name, '-6', 'addr', 'add', `${address}/64`, 'dev', 'up0', 'nodad']);
    // A cut link (link(false)) keeps the address, as a pulled cable does.
    await ns.must('sysctl', ['-qw', 'net.ipv6.conf.up0.keep_addr_on_down=1']);
    await must('ip', ['-n', ns.name, 'link', 'set', 'up0', 'up']);
    // A new bridge port takes a moment to carry packets: wait until the internet answers.
    await waitFor(() => pings(ns.exec('ping', ['-6', '-c', '1', '-W', '1', INTERNET])), { what: `${ns.name} reaches the internet bridge`, timeoutMs: 10_000 });
    return { ns, address, uplink: 'up0' };
  }

  /** A host namespace with its config written (not started). */
  async addHost(spec: LabHostSpec): Promise<LabHost> {
    const { ns, address, uplink } = await this.attach('sxh');
    this.extra.pop(); // deleted with the host list instead
    await must('ip', ['-n', ns.name, '-6', 'route', 'add', 'local', 'fdaa::/16', 'dev', 'lo']);
    for (const s of ['net.ipv6.ip_nonlocal_bind=1', 'net.ipv6.conf.all.forwarding=1']) await ns.must('sysctl', ['-qw', s]);
    const hostDir = join(this.dir, spec.name);
    mkdirSync(hostDir, { recursive: true });
    const prefix = `${uniqueName('sxm')}-`;
    const meshIface = uniqueName('sxw');
    const configFile = join(hostDir, 'sixpn.toml');
    writeFileSync(
      configFile,
      [
        `[node]\nname = "${spec.name}"\nregion = "${spec.region}"`,
        `[catalog]\nstore = "redis"\nredis_url = "${this.redisUrl}"\nnamespace = "${this.namespace}"`,
        `[control]\nlisten = "[${address}]:4280"\ntoken = "${this.token}"`,
        '[proxy]\nmode = "routed"',
        '[dns]\nupstreams = []',
        `[host]\nenabled = true\nstate_dir = "state"\nnetns_prefix = "${prefix}"\nrestart_backoff = "1s"\nheartbeat_interval = "300ms"\nheartbeat_timeout = "1500ms"\nwireguard_endpoint = "[${address}]:51821"`,
        `[mesh]\ninterface = "${meshIface}"\nstatus_interval = "500ms"\nresync_interval = "2s"`,
        spec.extra ?? '',
      ].join('\n'),
    );
    const h = new LabHost(this, spec.name, spec.region, ns, address, uplink, hostDir, configFile, prefix, meshIface);
    this.hosts.set(spec.name, h);
    return h;
  }

  host(name: string): LabHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no lab host ${name}`);
    return h;
  }

  /** Waits until every running host has every other one as a peer with a handshake. */
  async meshed(names: string[], timeoutMs = 10_000): Promise<void> {
    for (const n of names) {
      const h = this.host(n);
      await waitFor(
        async () => {
          const dump = (await h.inHost('wg', ['show', h.meshIface, 'dump'])).stdout.trim().split('\n').slice(1);
          return dump.length >= names.length - 1 && dump.every((l) => Number(l.split('\t')[4]) > 0);
        },
        { what: `${n} handshaken with every host`, timeoutMs },
      );
    }
  }

  async delete(): Promise<void> {
    for (const h of this.hosts.values()) await h.kill().catch(() => undefined);
    for (const h of this.hosts.values()) {
      await deleteMachineNamespaces(h.machineNamespaces());
      await h.ns.delete();
    }
    for (const ns of this.extra) await ns.delete();
    await this.redis?.stop('SIGKILL');
    await this.internet.delete();
    for (const l of this.links) await run('ip', ['link', 'del', l]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

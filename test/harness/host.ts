/**
 * A host for end-to-end tests: a network namespace (`ip netns add`, inside the test namespace)
 * set up the way a 6PN host is (fdaa::/16 local, IPv6 forwarding on, non-local binds), joined
 * to the test's own namespace by a veth pair with a small IPv4 link so that the test reaches
 * the node's control API. Machine namespaces the node makes (`<prefix><id>`) are removed with
 * it, whatever a test left behind.
 */
import { readdirSync, rmSync } from 'node:fs';
import { CLI, IN_NETNS } from './env.js';
import { run, start, type Proc } from './procs.js';
import { Netns, uniqueName } from './wg.js';

let links = 0;

export class TestHost {
  private constructor(
    readonly ns: Netns,
    /** The host side's IPv4 address on the link to the test namespace. */
    readonly address: string,
    private readonly link: string,
    /** Machine namespaces of this host start with this. */
    readonly prefix: string,
  ) {}

  static async create(): Promise<TestHost> {
    if (!IN_NETNS) throw new Error('refusing to make a host namespace outside the test namespace');
    const ns = await Netns.create('sxhost');
    const n = (process.pid % 200) + (links++ % 50);
    const here = `10.213.${n}.1`;
    const there = `10.213.${n}.2`;
    const link = uniqueName('sxhl');
    const peer = uniqueName('sxhl');
    const must = async (args: string[]) => {
      const r = await run('ip', args);
      if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
    };
    await must(['link', 'add', link, 'type', 'veth', 'peer', 'name', peer, 'netns', ns.name]);
    await must(['addr', 'add', `${here}/30`, 'dev', link]);
    await must(['link', 'set', link, 'up']);
    await must(['-n', ns.name, 'addr', 'add', `${there}/30`, 'dev', peer]);
    await must(['-n', ns.name, 'link', 'set', peer, 'up']);
    await must(['-n', ns.name, '-6', 'route', 'add', 'local', 'fdaa::/16', 'dev', 'lo']);
    for (const s of ['net.ipv6.ip_nonlocal_bind=1', 'net.ipv6.conf.all.forwarding=1']) await ns.must('sysctl', ['-qw', s]);
    return new TestHost(ns, there, link, `${uniqueName('sxm')}-`);
  }

  /**
   * `sixpn up --config FILE` inside the host namespace. With nsenter (network namespace only),
   * not `ip netns exec`: that one also gives the process a mount namespace of its own, and the
   * machine namespaces the node makes (bind mounts under /run/netns) would not be seen outside.
   */
  startNode(configFile: string, env: NodeJS.ProcessEnv = {}): Proc {
    return start('nsenter', [`--net=/run/netns/${this.ns.name}`, process.execPath, CLI, 'up', '--config', configFile], { env: { ...process.env, LOG_LEVEL: 'info', ...env } });
  }

  /** The namespace of a machine of this host. */
  machineNs(id: string): string {
    return `${this.prefix}${id}`;
  }

  /** Runs a command inside a machine's namespace (as root, like `ip netns exec`). */
  inMachine(id: string, cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}) {
    return run('ip', ['netns', 'exec', this.machineNs(id), cmd, ...args], { timeoutMs: opts.timeoutMs ?? 15_000, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  }

  /** Machine namespaces of this host that exist now. */
  machineNamespaces(): string[] {
    try {
      return readdirSync('/run/netns').filter((n) => n.startsWith(this.prefix));
    } catch {
      return [];
    }
  }

  async delete(): Promise<void> {
    await deleteMachineNamespaces(this.machineNamespaces());
    await this.ns.delete();
    await run('ip', ['link', 'del', this.link]);
  }
}

/** Kills what runs in these machine namespaces and deletes them (with their /etc/netns files). */
export async function deleteMachineNamespaces(names: string[]): Promise<void> {
  for (const name of names) {
    const pids = (await run('ip', ['netns', 'pids', name])).stdout.split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
    await run('ip', ['netns', 'del', name]);
    rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
  }
}

/**
 * The mesh's WireGuard interface: the kernel's (`ip link add <if> type wireguard`) where the
 * kernel has it, else Debian's userspace wireguard-go, driven with `wg` either way.
 *
 * It outlives the agent, as the machines and the host filter do: a restarted agent takes the
 * interface over (a kernel link of that name, or the wireguard-go it started, found by the pid
 * file in the state folder, checked to be wireguard-go for this interface in this network
 * namespace) instead of cutting every machine's cross-host traffic. An interface of that name
 * it cannot vouch for, or a wireguard-go control socket of that name answering from another
 * namespace (the socket folder is shared by all of them), is refused: the host's private key is
 * never handed to someone else's WireGuard. The key goes to `wg` through a pipe only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import { runTool } from '../gateway/tools.js';
import type { Logger } from '../observe/log.js';
import type { MeshConfig } from './config.js';

export type Implementation = 'kernel' | 'userspace';

const netnsOf = (pid: number | 'self'): string | null => {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
};

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

export class MeshLink {
  implementation: Implementation = 'userspace';
  /** Why the kernel's WireGuard is not used (for logs and doctor), when it is not. */
  kernelUnavailable = '';
  private child: ChildProcess | null = null;
  private pid = 0;
  private readonly pidFile: string;
  private readonly logFile: string;

  constructor(
    private readonly cfg: MeshConfig,
    stateDir: string,
    private readonly log: Logger,
    /** Called when wireguard-go exited on its own (not at close). */
    private readonly onExit: () => void = () => undefined,
  ) {
    this.pidFile = join(stateDir, 'mesh-wireguard-go.pid');
    this.logFile = join(stateDir, 'mesh-wireguard-go.log');
  }

  get iface(): string {
    return this.cfg.interface;
  }

  /** The interface's kind in this namespace (`wireguard`, `tun`...), or null when there is none. */
  private async kindOf(): Promise<string | null> {
    try {
      const out = await runTool(this.cfg.ip, ['-d', '-j', 'link', 'show', 'dev', this.iface]);
      const [link] = JSON.parse(out) as Array<{ linkinfo?: { info_kind?: string } }>;
      return link?.linkinfo?.info_kind ?? 'unknown';
    } catch {
      return null;
    }
  }

  private socketAnswers(): Promise<boolean> {
    return runTool(this.cfg.wg, ['show', this.iface, 'listen-port']).then(
      () => true,
      () => false,
    );
  }

  /** The wireguard-go an earlier agent started for this interface in this namespace, if it still runs. */
  private ourWireguardGo(): number | null {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return null;
    }
    if (!Number.isInteger(pid) || pid <= 1 || !pidAlive(pid)) return null;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      return null;
    }
    const isOurs = argv.some((a) => a.endsWith('wireguard-go')) && argv.includes(this.iface) && netnsOf(pid) === netnsOf('self');
    return isOurs ? pid : null;
  }

  /** Takes over or creates the interface, then gives it the key, port and MTU and sets it up. */
  async open(privateKey: string): Promise<void> {
    const kind = await this.kindOf();
    if (kind === 'wireguard') {
      this.implementation = 'kernel';
      this.log.info({ interface: this.iface }, 'mesh: taking over the kernel WireGuard interface left by an earlier agent');
    } else if (kind !== null) {
      const pid = this.ourWireguardGo();
      if (pid === null || !(await this.socketAnswers())) {
        throw new ConfigError(`mesh.interface: ${this.iface} already exists here (${kind}) and is not this host's mesh; remove it or choose another [mesh] interface`);
      }
      this.implementation = 'userspace';
      this.pid = pid;
      this.log.info({ interface: this.iface, pid }, 'mesh: taking over the wireguard-go left by an earlier agent');
    } else {
      await this.create();
    }
    await this.configure(privateKey);
  }

  private async create(): Promise<void> {
    if (this.cfg.implementation !== 'userspace') {
      try {
        await runTool(this.cfg.ip, ['link', 'add', 'dev', this.iface, 'type', 'wireguard']);
        this.implementation = 'kernel';
        return;
      } catch (err) {
        this.kernelUnavailable = (err as Error).message.replace(/^.*?: /, '');
        if (this.cfg.implementation === 'kernel') {
          throw new ConfigError(`mesh.implementation = "kernel" but \`ip link add ${this.iface} type wireguard\` failed (${this.kernelUnavailable}); load the wireguard module, or set implementation = "auto"`, { cause: err });
        }
      }
    }
    this.implementation = 'userspace';
    await this.startWireguardGo();
  }

  private async startWireguardGo(): Promise<void> {
    // The control socket folder is shared by every namespace: a live socket of this name is
    // another namespace's wireguard-go, and `wg set` would configure (and hand our key to) it.
    if (await this.socketAnswers()) {
      throw new ConfigError(`mesh.interface: a wireguard-go in another network namespace already serves ${this.iface} (/var/run/wireguard is shared); choose another [mesh] interface`);
    }
    const out = openSync(this.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      // Detached: it keeps carrying the machines' traffic if the agent dies; the next agent adopts it.
      child = spawn(this.cfg.wireguard_go, ['-f', this.iface], { detached: true, stdio: ['ignore', out, out], env: { ...process.env, LOG_LEVEL: 'error' } });
    } finally {
      closeSync(out);
    }
    let spawnError: Error | null = null;
    child.on('error', (err) => (spawnError = err));
    this.child = child;
    child.unref();
    child.on('exit', () => {
      if (this.child !== child) return;
      this.child = null;
      this.pid = 0;
      this.onExit();
    });
    const deadline = Date.now() + 5_000;
    for (;;) {
      if (spawnError) throw new ConfigError(`mesh.wireguard_go: cannot run ${this.cfg.wireguard_go}: ${(spawnError as Error).message}`);
      if (child.exitCode !== null || child.signalCode !== null) throw new ConfigError(`wireguard-go exited (${child.exitCode ?? child.signalCode}) while creating ${this.iface}: ${this.tail()}`);
      if ((await this.kindOf()) !== null && (await this.socketAnswers())) break;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new ConfigError(`wireguard-go did not create ${this.iface} within 5 s: ${this.tail()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    this.pid = child.pid!;
    writeFileSync(this.pidFile, `${this.pid}\n`, { mode: 0o600 });
  }

  private tail(): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-3).join(' | ');
    } catch {
      return '';
    }
  }

  private async configure(privateKey: string): Promise<void> {
    await runTool(this.cfg.wg, ['set', this.iface, 'listen-port', String(this.cfg.listen_port), 'private-key', '/dev/stdin'], { input: `${privateKey}\n`, stdinPipe: true });
    await runTool(this.cfg.ip, ['link', 'set', 'dev', this.iface, 'mtu', String(this.cfg.mtu), 'up']);
  }

  /** False when the userspace implementation died (an adopted one is not our child: it is polled). */
  alive(): boolean {
    return this.implementation === 'kernel' || (this.pid > 0 && pidAlive(this.pid));
  }

  /** Brings a dead wireguard-go back (its peers and routes are gone with it: the caller reconciles). */
  async restart(privateKey: string): Promise<void> {
    this.child = null;
    this.pid = 0;
    await this.startWireguardGo();
    await this.configure(privateKey);
  }

  /** Removes the interface (kernel) or stops wireguard-go (the interface and its routes go with it). */
  async remove(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (this.implementation === 'kernel') {
      await runTool(this.cfg.ip, ['link', 'del', 'dev', this.iface]).catch(() => undefined);
      return;
    }
    if (this.pid > 0) {
      try {
        process.kill(this.pid, 'SIGTERM');
      } catch {
        // gone already
      }
      const deadline = Date.now() + 2_000;
      while (pidAlive(this.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (pidAlive(this.pid)) process.kill(this.pid, 'SIGKILL');
    }
    child?.removeAllListeners('exit');
    this.pid = 0;
    rmSync(this.pidFile, { force: true });
  }
}

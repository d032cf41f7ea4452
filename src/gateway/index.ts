/**
 * The WireGuard gateway role: laptops created with `sixpn wireguard create` connect here and
 * reach their own org's `<prefix>::3` DNS, Flycast addresses and machines.
 *
 * It runs Debian's userspace `wireguard-go -f <interface>` as a child, configures it with `wg`
 * (the gateway's private key goes in through stdin, from the 0600 state file only), and keeps
 * the interface's peers, the per-peer /128 routes and the nftables org filter equal to the
 * catalog's peers: on every peer change (within a few ms), on a view reset and every
 * `resync_interval`. `peerStatus()` serves handshake times and byte counts from a cached
 * `wg show <if> dump`, read every `status_interval`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { normalizeAddress } from '../addressing/index.js';
import type { CatalogChange } from '../catalog/types.js';
import { ConfigError } from '../errors.js';
import { DropLog } from '../observe/drops.js';
import { counter, gauge } from '../observe/metrics.js';
import type { Logger } from '../observe/log.js';
import type { NodeContext, RunningRole } from '../role.js';
import type { WireguardConfig } from './config.js';
import { counterName, NftFirewall, OTHER_COUNTER } from './firewall.js';
import { loadOrCreateGatewayKeys } from './keys.js';
import { diffPeers, parseDump, parseEndpoints, wantedPeers, wgSetArgs, type PeerStatus, type WantedPeer } from './peers.js';
import { runTool, ToolError } from './tools.js';

export type { PeerStatus } from './peers.js';

export interface GatewayRole extends RunningRole {
  readonly name: 'gateway';
  readonly interface: string;
  readonly listenPort: number;
  /** The gateway's public key: every peer config's [Peer] PublicKey. */
  readonly publicKey: string;
  /** Status per peer public key, as of the last `wg show dump` (at most `status_interval` old). */
  peerStatus(): Map<string, PeerStatus>;
  /** Reconciles the interface with the catalog now; resolves when done. */
  sync(): Promise<void>;
}

const peersGauge = gauge({ name: 'sixpn_gateway_peers', help: 'WireGuard peers configured on the gateway interface' });
const droppedCounter = counter({
  name: 'sixpn_gateway_dropped_packets_total',
  help: 'Packets from WireGuard peers dropped because their destination is outside the peer org',
  labelNames: ['org'] as const,
});
const syncErrors = counter({ name: 'sixpn_gateway_sync_errors_total', help: 'Failed reconciles of the WireGuard interface with the catalog' });
const restarts = counter({ name: 'sixpn_gateway_wireguard_restarts_total', help: 'Times wireguard-go exited unexpectedly and was restarted' });


class WireguardGateway implements GatewayRole {
  readonly name = 'gateway' as const;
  readonly interface: string;
  readonly listenPort: number;
  private readonly firewall: NftFirewall | null;
  private child: ChildProcess | null = null;
  private childOutput = '';
  private closing = false;
  private timers: NodeJS.Timeout[] = [];
  private restartTimer: NodeJS.Timeout | null = null;
  private status = new Map<string, PeerStatus>();
  private wanted = new Map<string, WantedPeer>();
  private filterKey = '';
  private warnedSkips = new Set<string>();
  private readonly drops: DropLog<{ peer: string; org: string; public_key: string | null }>;
  /** Where each peer last connected from, kept across restarts (see afterStatus). */
  private readonly endpointsFile: string;
  private endpoints = new Map<string, string>();
  private endpointsSaved = '';
  /** Peers given a remembered endpoint and a keepalive at start, until they handshake. */
  private restoring = new Set<string>();
  private startedAt = Math.floor(Date.now() / 1000);
  private polling = false;
  private pending: Promise<void> | null = null;
  private tail: Promise<void> = Promise.resolve();
  private readonly onChange = (c: CatalogChange): void => {
    if (c.kind === 'peer' || c.kind === 'org') this.kick();
  };
  private readonly onReset = (): void => this.kick();

  constructor(
    private readonly ctx: NodeContext,
    private readonly cfg: WireguardConfig,
    private readonly log: Logger,
    readonly publicKey: string,
    private readonly privateKey: string,
  ) {
    this.interface = cfg.interface;
    this.listenPort = cfg.listen_port;
    this.firewall = cfg.isolation === 'nftables' ? new NftFirewall(cfg.nft, cfg.interface) : null;
    this.endpointsFile = `${cfg.state_file}.endpoints.json`;
    this.drops = new DropLog(droppedCounter, log, 'dropped packets from a peer to addresses outside its org');
  }

  async start(): Promise<void> {
    if (await this.interfaceExists()) {
      throw new ConfigError(`wireguard.interface: ${this.interface} already exists in this network namespace (another gateway running?)`);
    }
    if (this.firewall) {
      try {
        await this.firewall.init();
      } catch (err) {
        throw new ConfigError(
          `wireguard.isolation = "nftables" but the filter cannot be installed (${(err as Error).message}); install nftables or set isolation = "none"`,
          { cause: err },
        );
      }
    }
    try {
      this.endpoints = parseEndpoints(await readFile(this.endpointsFile, 'utf8').catch(() => ''));
      this.endpointsSaved = JSON.stringify(Object.fromEntries(this.endpoints));
      await this.bringUp();
      await this.sync();
    } catch (err) {
      await this.close();
      throw err;
    }
    this.ctx.view.on('change', this.onChange);
    this.ctx.view.on('reset', this.onReset);
    this.timers.push(setInterval(() => this.kick(), this.cfg.resync_interval));
    this.timers.push(setInterval(() => void this.poll(), this.cfg.status_interval));
    for (const t of this.timers) t.unref();
    await this.poll();
    this.log.info({ interface: this.interface, listen_port: this.listenPort, public_key: this.publicKey, peers: this.wanted.size, isolation: this.cfg.isolation }, 'wireguard gateway up');
  }

  private socketAnswers(): Promise<boolean> {
    return runTool(this.cfg.wg, ['show', this.interface, 'listen-port']).then(
      () => true,
      () => false,
    );
  }

  private socketTaken(): ConfigError {
    return new ConfigError(
      `wireguard.interface: another wireguard-go already serves ${this.interface} (its control socket in /var/run/wireguard is shared by all network namespaces); choose another interface name`,
    );
  }

  private async interfaceExists(): Promise<boolean> {
    return runTool('ip', ['link', 'show', 'dev', this.interface]).then(
      () => true,
      () => false,
    );
  }

  /** Starts wireguard-go, gives it the key and port, and sets the link up. */
  private async bringUp(): Promise<void> {
    // wireguard-go's control sockets live in one directory shared by every network namespace:
    // a live socket for this name belongs to a wireguard-go elsewhere, and `wg set` would
    // configure (and hand our key to) that one.
    if (await this.socketAnswers()) throw this.socketTaken();
    this.childOutput = '';
    const child = spawn(this.cfg.wireguard_go, ['-f', this.interface], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // wireguard-go reads LOG_LEVEL too; ours ("info") is not one of its words.
      env: { ...process.env, LOG_LEVEL: 'error' },
    });
    this.child = child;
    const onOutput = (b: Buffer): void => {
      this.childOutput = (this.childOutput + b.toString()).slice(-4000);
    };
    child.stdout?.on('data', onOutput);
    child.stderr?.on('data', onOutput);
    let spawnError: Error | null = null;
    child.on('error', (err) => (spawnError = err));
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = null;
      if (this.closing) return;
      this.log.error({ code, signal, output: this.childOutput.trim().slice(-500) }, 'wireguard-go exited; restarting it in 1 s');
      restarts.inc();
      this.scheduleRestart();
    });

    const deadline = Date.now() + 5_000;
    for (;;) {
      if (spawnError) throw new ConfigError(`wireguard.wireguard_go: cannot run ${this.cfg.wireguard_go}: ${(spawnError as Error).message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        const output = this.childOutput.trim().slice(-500);
        if (/socket in use/i.test(output)) throw this.socketTaken();
        throw new ConfigError(`wireguard-go exited (${child.exitCode ?? child.signalCode}) while creating ${this.interface}: ${output}`);
      }
      // Ours only when the interface is in this namespace and our child is still alive.
      if ((await this.interfaceExists()) && (await this.socketAnswers()) && child.exitCode === null) break;
      if (Date.now() > deadline) throw new ConfigError(`wireguard-go did not create ${this.interface} within 5 s: ${this.childOutput.trim().slice(-500)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // The private key goes through a pipe: never on a command line, never in a temp file.
    await runTool(this.cfg.wg, ['set', this.interface, 'listen-port', String(this.listenPort), 'private-key', '/dev/stdin'], { input: `${this.privateKey}\n`, stdinPipe: true });
    await runTool('ip', ['link', 'set', 'dev', this.interface, 'mtu', String(this.cfg.mtu), 'up']);
  }

  private scheduleRestart(): void {
    if (this.restartTimer || this.closing) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.closing) return;
      this.bringUp()
        .then(() => {
          this.filterKey = '';
          return this.sync();
        })
        .then(
          () => this.log.info({ interface: this.interface }, 'wireguard-go restarted'),
          (err: unknown) => {
            this.log.error({ err }, 'restarting wireguard-go failed');
            this.child?.kill('SIGKILL');
            this.scheduleRestart();
          },
        );
    }, 1_000);
  }

  private kick(): void {
    this.sync().catch(() => undefined);
  }

  /** Queues one reconcile; calls made while one is queued share it. */
  sync(): Promise<void> {
    if (this.pending) return this.pending;
    const run = this.tail.then(() => {
      this.pending = null;
      if (this.closing || !this.child) return;
      return this.reconcile().catch((err: unknown) => {
        syncErrors.inc();
        this.log.error({ err }, 'reconciling the wireguard interface with the catalog failed; retrying at the next change or resync');
        throw err;
      });
    });
    this.pending = run;
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async reconcile(): Promise<void> {
    const view = this.ctx.view;
    const { wanted, skipped } = wantedPeers(view.peers.values(), (org) => view.orgs.get(org)?.network_id);
    for (const s of skipped) {
      const id = `${s.peer.org}/${s.peer.name}/${s.peer.public_key}`;
      if (this.warnedSkips.has(id)) continue;
      this.warnedSkips.add(id);
      this.log.warn({ peer: `${s.peer.org}/${s.peer.name}`, public_key: s.peer.public_key, reason: s.reason }, 'peer not configured on the gateway');
    }
    const actual = parseDump(await runTool(this.cfg.wg, ['show', this.interface, 'dump']));
    const diff = diffPeers(wanted, actual);
    const list = [...wanted.values()];
    // Removals first and additions after the filter knows the new peers: a removed key stops
    // at once, and a new key's first packets are not dropped by a stale filter.
    if (diff.remove.length) await runTool(this.cfg.wg, wgSetArgs(this.interface, { set: [], remove: diff.remove }));
    const filterKey = list.map((p) => `${p.publicKey}=${p.address}`).sort().join(',');
    if (this.firewall && filterKey !== this.filterKey) {
      await this.firewall.apply(list);
      this.filterKey = filterKey;
    }
    if (diff.set.length) {
      // Peers new to this interface that connected before (a restart): reach out to them.
      const restore = new Map<string, string>();
      for (const w of diff.set) {
        const e = this.endpoints.get(w.publicKey);
        if (e && !actual.has(w.publicKey)) restore.set(w.publicKey, e);
      }
      await runTool(this.cfg.wg, wgSetArgs(this.interface, { set: diff.set, remove: [] }, restore));
      for (const key of restore.keys()) this.restoring.add(key);
    }
    await this.reconcileRoutes(list);
    for (const key of diff.remove) this.log.info({ public_key: key }, 'peer removed from the gateway');
    for (const w of diff.set) this.log.info({ peer: w.name, address: w.address, public_key: w.publicKey }, 'peer configured on the gateway');
    this.wanted = wanted;
    peersGauge.set(wanted.size);
  }

  /** One /128 route per peer into the tunnel; routes of removed peers go. */
  private async reconcileRoutes(list: readonly WantedPeer[]): Promise<void> {
    const table = this.cfg.route_table;
    const json = await runTool('ip', ['-j', '-6', 'route', 'show', 'table', table, 'dev', this.interface, 'type', 'unicast']);
    const have = new Set<string>();
    for (const r of JSON.parse(json || '[]') as Array<{ dst?: string }>) {
      const dst = normalizeAddress((r.dst ?? '').replace(/\/128$/, ''));
      if (dst) have.add(dst);
    }
    const want = new Set(list.map((p) => p.address));
    for (const dst of have) if (!want.has(dst)) await runTool('ip', ['-6', 'route', 'del', `${dst}/128`, 'dev', this.interface, 'table', table]).catch(() => undefined);
    for (const dst of want) if (!have.has(dst)) await runTool('ip', ['-6', 'route', 'replace', `${dst}/128`, 'dev', this.interface, 'table', table]);
  }

  /** Refreshes the status cache and the drop counters. */
  private async poll(): Promise<void> {
    if (this.closing || !this.child || this.polling) return;
    this.polling = true;
    try {
      await this.pollOnce();
    } finally {
      this.polling = false;
    }
  }

  private async pollOnce(): Promise<void> {
    try {
      const peers = parseDump(await runTool(this.cfg.wg, ['show', this.interface, 'dump']));
      const status = new Map<string, PeerStatus>();
      for (const [key, p] of peers) {
        const s: PeerStatus = { latest_handshake: p.latest_handshake, rx_bytes: p.rx_bytes, tx_bytes: p.tx_bytes };
        if (p.endpoint) s.endpoint = p.endpoint;
        status.set(key, s);
      }
      this.status = status;
      await this.afterStatus(status);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'reading wireguard peer status failed');
    }
    if (this.firewall) {
      try {
        this.accountDrops(await this.firewall.readCounters());
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'reading the isolation filter counters failed');
      }
    }
  }

  /**
   * Remembers where peers connect from (file next to the state file, 0600, written only when
   * it changes) and takes the start-up keepalive off peers that handshook again.
   */
  private async afterStatus(status: Map<string, PeerStatus>): Promise<void> {
    for (const key of [...this.restoring]) {
      const s = status.get(key);
      if (!s) this.restoring.delete(key);
      else if (s.latest_handshake >= this.startedAt) {
        this.restoring.delete(key);
        await runTool(this.cfg.wg, ['set', this.interface, 'peer', key, 'persistent-keepalive', 'off']).catch(() => undefined);
      }
    }
    // Keyed by the catalog's peers, not the interface's: right after wireguard-go restarted
    // the interface is empty, and its endpoints are exactly what must not be forgotten.
    const next = new Map<string, string>();
    for (const key of this.wanted.keys()) {
      const e = status.get(key)?.endpoint ?? this.endpoints.get(key);
      if (e) next.set(key, e);
    }
    const text = JSON.stringify(Object.fromEntries(next));
    if (text === this.endpointsSaved) return;
    this.endpoints = next;
    const tmp = `${this.endpointsFile}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, `${text}\n`, { mode: 0o600 });
      await rename(tmp, this.endpointsFile);
      this.endpointsSaved = text;
    } catch (err) {
      this.log.warn({ err: (err as Error).message, file: this.endpointsFile }, 'cannot save peer endpoints; peers will reconnect on their own after a restart');
    }
  }

  private accountDrops(counters: Map<string, number>): void {
    const who = new Map<string, { org: string; peer: string; public_key: string | null }>();
    for (const p of this.wanted.values()) who.set(counterName(p.publicKey), { org: p.org, peer: p.name, public_key: p.publicKey });
    who.set(OTHER_COUNTER, { org: 'unknown', peer: 'unknown source', public_key: null });
    this.drops.account(counters, (name) => who.get(name));
  }

  peerStatus(): Map<string, PeerStatus> {
    return new Map(this.status);
  }

  describe(): string[] {
    return [`gateway: wireguard ${this.interface} udp/${this.listenPort}, public key ${this.publicKey}, ${this.wanted.size} peers, isolation ${this.cfg.isolation}`];
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.ctx.view.off('change', this.onChange);
    this.ctx.view.off('reset', this.onReset);
    for (const t of this.timers) clearInterval(t);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.tail;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(t);
    }
    await runTool('ip', ['link', 'del', 'dev', this.interface]).catch(() => undefined);
    // The filter goes last: the tunnel is gone before its rules are.
    await this.firewall?.remove();
    this.log.info({ interface: this.interface }, 'wireguard gateway stopped');
  }
}

/** Makes sure the state file is readable by its owner only (it holds the private key). */
async function tightenStateFile(path: string, log: Logger): Promise<void> {
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) {
    await chmod(path, 0o600);
    log.warn({ state_file: path, mode: (st.mode & 0o777).toString(8) }, 'gateway state file was readable by others; set it to 0600');
  }
}

export async function startGatewayRole(ctx: NodeContext): Promise<GatewayRole> {
  const cfg = ctx.config.wireguard;
  const log = ctx.log.child({ module: 'gateway' });
  const keys = await loadOrCreateGatewayKeys(cfg.state_file);
  await tightenStateFile(cfg.state_file, log);
  if (cfg.public_key && cfg.public_key !== keys.public_key) {
    throw new ConfigError(`wireguard.public_key ${cfg.public_key} does not match the key in ${cfg.state_file} (${keys.public_key}); peer configs would point at the wrong key`);
  }
  const gw = new WireguardGateway(ctx, cfg, log, keys.public_key, keys.private_key);
  await gw.start();
  return gw;
}

export { ToolError };

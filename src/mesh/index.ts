/**
 * The mesh role: this host's WireGuard tunnel to every other host in the catalog, so that a
 * machine reaches every machine of its org on any host at its 6PN address.
 *
 *   link      kernel WireGuard or wireguard-go (./link.ts), with the host's own key pair (the
 *             host role's 0600 `<state_dir>/wireguard.json`; only the public key is in the catalog)
 *   peers     one per other host: AllowedIPs its slices (./peers.ts), its announced endpoint,
 *             a keepalive; reconciled on every host or org change that matters (a heartbeat does
 *             not), on a view reset and every `resync_interval`
 *   routes    the same slices into the tunnel, in `[mesh] route_table`
 *   isolation the `inet sixpn_mesh` table (./firewall.ts): same org only, drops counted per org
 *   status    `wg show dump` every `status_interval`: handshake and bytes per host, for
 *             `sixpn hosts list`; a dead wireguard-go is restarted and re-applied
 *
 * The tunnel, its routes and its filter stay when the agent stops (machines keep running, and
 * keep reaching each other); `[host] stop_on_exit = true` takes them down with the machines.
 */
import { join } from 'node:path';
import { formatHostId } from '../addressing/index.js';
import { localHostName } from '../catalog/source.js';
import type { CatalogChange, Host } from '../catalog/types.js';
import { ConfigError } from '../errors.js';
import { loadOrCreateGatewayKeys } from '../gateway/keys.js';
import { parseDump } from '../gateway/peers.js';
import { runTool } from '../gateway/tools.js';
import { DropLog } from '../observe/drops.js';
import { counter, gauge } from '../observe/metrics.js';
import type { NodeContext, RunningRole } from '../role.js';
import { counterNetwork, MeshFirewall, OTHER_COUNTER } from './firewall.js';
import { MeshLink, type Implementation } from './link.js';
import { diffMesh, meshKey, routeBatch, wantedMeshPeers, wantedRoutes, wgPeerArgs, type MeshPeer } from './peers.js';

/** What `sixpn hosts list` shows of the tunnel to one host, as this host sees it. */
export interface MeshPeerStatus {
  /** Epoch seconds of the last completed handshake; 0: none yet. */
  latest_handshake: number;
  rx_bytes: number;
  tx_bytes: number;
  /** Where its packets come from now (`[addr]:port`). */
  endpoint?: string;
}

export interface MeshRole extends RunningRole {
  readonly name: 'mesh';
  /** This host's name (the one the status is seen from). */
  readonly hostName: string;
  readonly interface: string;
  readonly implementation: Implementation;
  /** Per remote host name, as of the last `wg show dump` (at most `status_interval` old). */
  peerStatus(): Map<string, MeshPeerStatus>;
  /** Reconciles peers, routes and filter with the catalog now. */
  sync(): Promise<void>;
}

const peersGauge = gauge({ name: 'sixpn_mesh_peers', help: 'Other hosts configured as WireGuard peers of this host' });
const handshakenGauge = gauge({ name: 'sixpn_mesh_peers_handshaken', help: 'Mesh peers with a handshake in the last 3 minutes' });
const droppedCounter = counter({
  name: 'sixpn_mesh_dropped_packets_total',
  help: 'Packets through the mesh tunnel dropped because source and destination are not in the same org, by the source org',
  labelNames: ['org'] as const,
});
const syncErrors = counter({ name: 'sixpn_mesh_sync_errors_total', help: 'Failed reconciles of the mesh tunnel with the catalog' });
const restarts = counter({ name: 'sixpn_mesh_wireguard_restarts_total', help: 'Times the mesh wireguard-go exited and was restarted' });

/** WireGuard's own rekey is every 2 minutes: a peer silent for 3 has no session. */
const HANDSHAKE_FRESH_S = 180;

export async function startMeshRole(ctx: NodeContext): Promise<MeshRole> {
  const cfg = ctx.config.mesh;
  const hostCfg = ctx.config.host;
  const log = ctx.log.child({ module: 'mesh' });
  const hostName = localHostName(ctx.config);
  if (hostName === null) throw new ConfigError('mesh: needs the host role with driver = "netns" ([host] enabled = true), or set [mesh] enabled = false');
  const self = ctx.view.hosts.get(hostName);
  if (!self) throw new ConfigError(`mesh: host ${hostName} is not in the catalog (the host role registers it first)`);
  const keys = await loadOrCreateGatewayKeys(join(hostCfg.state_dir, 'wireguard.json'), 'host.state_dir');
  if (self.wireguard?.public_key !== keys.public_key) throw new ConfigError(`mesh: the catalog has another public key for host ${hostName} than ${join(hostCfg.state_dir, 'wireguard.json')} holds; restart the host agent`);

  const view = ctx.view;
  const firewall = cfg.isolation === 'nftables' ? new MeshFirewall(cfg.nft, cfg.interface) : null;
  let closing = false;
  const kick = (): void => void sync().catch(() => undefined);
  const link = new MeshLink(cfg, hostCfg.state_dir, log, () => {
    if (closing) return;
    log.error({ interface: cfg.interface }, 'mesh wireguard-go exited; restarting it in 1 s');
    restarts.inc();
    setTimeout(() => void revive(), 1_000).unref();
  });
  await link.open(keys.private_key);
  if (link.implementation === 'userspace') {
    log.info({ interface: cfg.interface, implementation: 'userspace', why: link.kernelUnavailable || undefined }, link.kernelUnavailable ? `mesh: userspace wireguard-go (the kernel has no WireGuard: ${link.kernelUnavailable})` : 'mesh: userspace wireguard-go');
  } else log.info({ interface: cfg.interface, implementation: 'kernel' }, 'mesh: kernel WireGuard');
  if (firewall) {
    try {
      await firewall.init([...view.orgs.values()].map((o) => o.network_id));
    } catch (err) {
      if (hostCfg.stop_on_exit) await link.remove();
      throw new ConfigError(`mesh.isolation = "nftables" but the filter cannot be installed (${(err as Error).message}); install nftables or set [mesh] isolation = "none"`, { cause: err });
    }
  } else log.warn({}, 'mesh.isolation = "none": the tunnel forwards between orgs; only the host filter and the ACLs keep them apart');

  /** The endpoint each key had when we last set it (see diffMesh). */
  const announced = new Map<string, string | undefined>();
  const hostOfKey = new Map<string, string>();
  const warned = new Set<string>();
  let wanted = new Map<string, MeshPeer>();
  let status = new Map<string, MeshPeerStatus>();
  let pending: Promise<void> | null = null;
  let tail: Promise<void> = Promise.resolve();

  const reconcile = async (): Promise<void> => {
    const { peers, skipped } = wantedMeshPeers(hostName, view.hosts.values(), view.orgs.values());
    for (const s of skipped) {
      const id = `${s.host}: ${s.reason}`;
      if (!warned.has(id)) log.warn({ host: s.host, reason: s.reason }, 'host left out of the mesh');
      warned.add(id);
    }
    await firewall?.apply([...view.orgs.values()].map((o) => o.network_id));
    const actual = parseDump(await runTool(cfg.wg, ['show', cfg.interface, 'dump']));
    const diff = diffMesh(peers, actual, announced);
    // A host that left goes first: its slices stop at once (and may be handed to a newcomer).
    if (diff.remove.length) await runTool(cfg.wg, ['set', cfg.interface, ...diff.remove.flatMap((k) => ['peer', k, 'remove'])]);
    for (const k of diff.remove) {
      log.info({ host: hostOfKey.get(k), public_key: k }, 'host left the mesh');
      announced.delete(k);
      hostOfKey.delete(k);
    }
    const keepalive = Math.round(cfg.keepalive / 1000);
    for (const p of diff.set) {
      // One call per peer: an endpoint that does not resolve fails that peer only.
      try {
        await runTool(cfg.wg, wgPeerArgs(cfg.interface, p, keepalive));
      } catch (err) {
        log.error({ host: p.host, endpoint: p.endpoint, err: (err as Error).message }, 'configuring a mesh peer failed; retrying at the next change or resync');
        syncErrors.inc();
        continue;
      }
      if (!actual.has(p.publicKey)) log.info({ host: p.host, endpoint: p.endpoint ?? null, public_key: p.publicKey, prefixes: p.allowedIps.length }, 'host joined the mesh');
      announced.set(p.publicKey, p.endpoint);
      hostOfKey.set(p.publicKey, p.host);
    }
    await reconcileRoutes(wantedRoutes(peers.values()));
    wanted = peers;
    peersGauge.set(peers.size);
  };

  const reconcileRoutes = async (want: Set<string>): Promise<void> => {
    const json = await runTool(cfg.ip, ['-j', '-6', 'route', 'show', 'table', cfg.route_table, 'dev', cfg.interface]);
    const have = new Set<string>();
    for (const r of JSON.parse(json || '[]') as Array<{ dst?: string }>) if (r.dst) have.add(r.dst);
    const batch = routeBatch(cfg.interface, cfg.route_table, have, want);
    if (batch) await runTool(cfg.ip, ['-6', '-force', '-batch', '-'], { input: batch });
  };

  /** One reconcile at a time; calls made while one waits share it. */
  const sync = (): Promise<void> => {
    if (pending) return pending;
    const run = tail.then(() => {
      pending = null;
      if (closing || !link.alive()) return;
      return reconcile().catch((err: unknown) => {
        syncErrors.inc();
        firewall?.invalidate();
        log.error({ err }, 'reconciling the mesh with the catalog failed; retrying at the next change or resync');
        throw err;
      });
    });
    pending = run;
    tail = run.catch(() => undefined);
    return run;
  };

  let reviving = false;
  const revive = async (): Promise<void> => {
    if (closing || reviving) return;
    reviving = true;
    try {
      await link.restart(keys.private_key);
      announced.clear();
      firewall?.invalidate();
      await sync();
      log.info({ interface: cfg.interface }, 'mesh wireguard-go restarted');
    } catch (err) {
      log.error({ err }, 'restarting the mesh wireguard-go failed; trying again in 1 s');
      setTimeout(() => void revive(), 1_000).unref();
    } finally {
      reviving = false;
    }
  };

  const drops = new DropLog<{ org: string }>(droppedCounter, log, 'dropped packets at the mesh: source and destination not in the same org');
  let polling = false;
  const poll = async (): Promise<void> => {
    if (closing || polling) return;
    polling = true;
    try {
      if (!link.alive()) {
        // An adopted wireguard-go is not our child: its death is seen here.
        if (!reviving) {
          log.error({ interface: cfg.interface }, 'mesh wireguard-go is gone; restarting it');
          restarts.inc();
          await revive();
        }
        return;
      }
      const dump = parseDump(await runTool(cfg.wg, ['show', cfg.interface, 'dump']));
      const next = new Map<string, MeshPeerStatus>();
      const now = Date.now() / 1000;
      let fresh = 0;
      for (const [key, p] of dump) {
        const host = wanted.get(key)?.host ?? hostOfKey.get(key);
        if (!host) continue;
        next.set(host, { latest_handshake: p.latest_handshake, rx_bytes: p.rx_bytes, tx_bytes: p.tx_bytes, ...(p.endpoint ? { endpoint: p.endpoint } : {}) });
        if (p.latest_handshake > 0 && now - p.latest_handshake < HANDSHAKE_FRESH_S) fresh++;
      }
      status = next;
      handshakenGauge.set(fresh);
      if (firewall) {
        const counters = await firewall.readCounters();
        drops.account(counters, (name) => {
          if (name === OTHER_COUNTER) return { org: 'unknown' };
          const n = counterNetwork(name);
          return n === null ? undefined : { org: view.orgByNetworkId(n)?.name ?? 'unknown' };
        });
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'reading the mesh status failed');
    } finally {
      polling = false;
    }
  };

  // Heartbeats change nothing the mesh cares about: only a host whose key, endpoint, id or
  // gateway changed (or that came or went), or an org, triggers a reconcile.
  const seen = new Map<string, string>([...view.hosts.values()].map((h) => [h.name, meshKey(h)]));
  const onChange = (c: CatalogChange): void => {
    if (c.kind === 'org') return kick();
    if (c.kind !== 'host' || c.key === hostName) return;
    const key = c.op === 'put' ? meshKey(c.value as Host) : '';
    if (seen.get(c.key) === key) return;
    if (c.op === 'put') seen.set(c.key, key);
    else seen.delete(c.key);
    kick();
  };
  const onReset = (): void => {
    seen.clear();
    for (const h of view.hosts.values()) seen.set(h.name, meshKey(h));
    kick();
  };

  try {
    await sync();
  } catch (err) {
    if (hostCfg.stop_on_exit) {
      await link.remove();
      await firewall?.removeTable();
    }
    throw err;
  }
  view.on('change', onChange);
  view.on('reset', onReset);
  // A resync also reloads the filter whole: a table flushed or deleted behind our back (by hand,
  // by another tool's `nft flush ruleset`) is back within resync_interval.
  const resync = (): void => {
    firewall?.invalidate();
    kick();
  };
  const timers = [setInterval(resync, cfg.resync_interval), setInterval(() => void poll(), cfg.status_interval)];
  for (const t of timers) t.unref();
  await poll();
  log.info({ host: hostName, host_id: formatHostId(self.host_id), interface: cfg.interface, implementation: link.implementation, listen_port: cfg.listen_port, peers: wanted.size, endpoint: self.wireguard?.endpoint ?? null }, 'mesh up');
  if (!self.wireguard?.endpoint) log.warn({ host: hostName }, 'this host announces no [host] wireguard_endpoint: other hosts reach it only after it has dialed them (it does, to every host that announces one)');

  return {
    name: 'mesh',
    hostName,
    interface: cfg.interface,
    get implementation() {
      return link.implementation;
    },
    peerStatus: () => status,
    sync,
    describe() {
      const up = [...status.values()].filter((s) => s.latest_handshake > 0).length;
      const how = link.implementation === 'kernel' ? 'kernel WireGuard' : 'userspace wireguard-go';
      return [`mesh: ${cfg.interface} udp/${cfg.listen_port} (${how}), ${wanted.size} peer${wanted.size === 1 ? '' : 's'}, ${up} handshaken, isolation ${cfg.isolation}`];
    },
    async close() {
      if (closing) return;
      closing = true;
      view.off('change', onChange);
      view.off('reset', onReset);
      for (const t of timers) clearInterval(t);
      await tail;
      if (hostCfg.stop_on_exit) {
        await link.remove();
        await firewall?.removeTable();
        log.info({ interface: cfg.interface }, 'mesh down (stop_on_exit)');
      } else log.info({ interface: cfg.interface }, 'mesh left up for the machines, which outlive the agent; the next agent takes it over');
    },
  };
}

/**
 * Pure mesh bookkeeping: which WireGuard peers (the other hosts) and routes the catalog wants,
 * and what to change on the interface to get there.
 *
 * **AllowedIPs of a host = its slices**: for every org in the catalog, `fdaa:0:<org>:<host id>::/80`
 * (its machines, and its own address in the org, src/addressing `hostOrgAddress`), plus the same
 * under its gateway host id when it runs the WireGuard gateway (its laptops). Cryptokey routing
 * alone then refuses every packet from a host whose source does not live on that host: it cannot
 * speak for a machine of another host, nor for a laptop it does not serve. Every org rather than
 * only the orgs with a machine there, because a host's Flycast proxy dials on a caller's behalf
 * from its own address in the machine's org (any org may have callers on any host, through an
 * exposure or a laptop), and because the set then changes only when orgs come and go, never when
 * a machine starts: a new machine is reachable at once, with no peer update racing its first
 * packet. Which org may talk to which is the nftables filters' job, on every hop (./firewall.ts,
 * src/host/firewall.ts, src/gateway/firewall.ts).
 *
 * The routes are the same prefixes, into the tunnel, in `[mesh] route_table`.
 */
import { hostSlice } from '../addressing/index.js';
import type { Host, Org } from '../catalog/types.js';
import type { InterfacePeer } from '../gateway/peers.js';

export interface MeshPeer {
  /** The remote host's name. */
  host: string;
  publicKey: string;
  /** `host:port` it announced; absent: it dials us (we learn its endpoint from its packets). */
  endpoint?: string;
  /** Sorted CIDRs: its slice of every org (and of its gateway's laptops). */
  allowedIps: string[];
}

export interface SkippedHost {
  host: string;
  reason: string;
}

/** What makes a host matter to the mesh; a heartbeat changes none of it. */
export function meshKey(h: Host | undefined): string {
  if (!h || h.driver !== 'netns' || !h.wireguard) return '';
  return `${h.host_id}|${h.wireguard.public_key}|${h.wireguard.endpoint ?? ''}|${h.wireguard.gateway_host_id ?? ''}|${h.created_at}`;
}

/**
 * The peers this host (`self`) should have: every other netns host with a key. A key used twice
 * keeps the older host only (one key has one AllowedIPs set; sharing it would let one host speak
 * for the other); a gateway host id another host also claims, or that is some host's own id, is
 * left out with the reason.
 */
export function wantedMeshPeers(self: string, hosts: Iterable<Host>, orgs: Iterable<Org>): { peers: Map<string, MeshPeer>; skipped: SkippedHost[] } {
  const networkIds = [...orgs].map((o) => o.network_id).sort((a, b) => a - b);
  const all = [...hosts].filter((h) => h.driver === 'netns' && h.wireguard).sort((a, b) => a.created_at - b.created_at || (a.name < b.name ? -1 : 1));
  const ownIds = new Set(all.map((h) => h.host_id));
  const me = all.find((h) => h.name === self);
  const keys = new Map<string, string>(me ? [[me.wireguard!.public_key, self]] : []);
  const gateways = new Map<number, string>(me?.wireguard?.gateway_host_id !== undefined ? [[me.wireguard.gateway_host_id, self]] : []);
  const peers = new Map<string, MeshPeer>();
  const skipped: SkippedHost[] = [];
  for (const h of all) {
    if (h.name === self) continue;
    const wg = h.wireguard!;
    const holder = keys.get(wg.public_key);
    if (holder !== undefined) {
      skipped.push({ host: h.name, reason: `public key already used by host ${holder}` });
      continue;
    }
    keys.set(wg.public_key, h.name);
    const ids = [h.host_id];
    const gw = wg.gateway_host_id;
    if (gw !== undefined) {
      const other = gateways.get(gw);
      if (other !== undefined || ownIds.has(gw)) skipped.push({ host: h.name, reason: `gateway host id ${gw.toString(16)} is already ${other !== undefined ? `host ${other}'s gateway` : "a host's own id"}: its laptops are not routed` });
      else {
        gateways.set(gw, h.name);
        ids.push(gw);
      }
    }
    const allowedIps = ids.flatMap((id) => networkIds.map((n) => hostSlice(n, id))).sort();
    peers.set(wg.public_key, { host: h.name, publicKey: wg.public_key, ...(wg.endpoint ? { endpoint: wg.endpoint } : {}), allowedIps });
  }
  return { peers, skipped };
}

export interface MeshDiff {
  /** Peers to add, or whose AllowedIPs or announced endpoint changed. */
  set: MeshPeer[];
  /** Keys on the interface the catalog no longer has. */
  remove: string[];
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * `announced`: the endpoint each key had when it was last set (so a peer's roaming endpoint, which
 * WireGuard updates from its packets, is not fought back to the announced one on every pass).
 */
export function diffMesh(wanted: ReadonlyMap<string, MeshPeer>, actual: ReadonlyMap<string, Pick<InterfacePeer, 'allowedIps'>>, announced: ReadonlyMap<string, string | undefined>): MeshDiff {
  const set: MeshPeer[] = [];
  const remove: string[] = [];
  for (const [key, w] of wanted) {
    const a = actual.get(key);
    if (!a || !sameList([...a.allowedIps].sort(), w.allowedIps) || announced.get(key) !== w.endpoint) set.push(w);
  }
  for (const key of actual.keys()) if (!wanted.has(key)) remove.push(key);
  return { set, remove };
}

/** `wg set <if> peer ...` for one peer: its AllowedIPs (replacing the old list), endpoint and keepalive. */
export function wgPeerArgs(iface: string, p: MeshPeer, keepaliveSeconds: number): string[] {
  const args = ['set', iface, 'peer', p.publicKey, 'allowed-ips', p.allowedIps.join(',')];
  if (p.endpoint) args.push('endpoint', p.endpoint);
  args.push('persistent-keepalive', String(keepaliveSeconds));
  return args;
}

/** The routes into the tunnel: every wanted peer's prefixes. */
export function wantedRoutes(peers: Iterable<MeshPeer>): Set<string> {
  const out = new Set<string>();
  for (const p of peers) for (const r of p.allowedIps) out.add(r);
  return out;
}

/** `ip -6 -batch` lines that make the tunnel's routes in `table` exactly `want` (`have`: what `ip -j route` listed). */
export function routeBatch(iface: string, table: string, have: ReadonlySet<string>, want: ReadonlySet<string>): string {
  const lines: string[] = [];
  for (const r of have) if (!want.has(r)) lines.push(`route del ${r} dev ${iface} table ${table}`);
  for (const r of want) if (!have.has(r)) lines.push(`route replace ${r} dev ${iface} table ${table}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}

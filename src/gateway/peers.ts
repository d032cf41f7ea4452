/**
 * Pure peer bookkeeping for the gateway: which WireGuard peers the catalog wants, what
 * `wg show <if> dump` says the interface has, and the difference between the two.
 *
 * Every catalog peer becomes one WireGuard peer whose AllowedIPs is exactly its /128: the
 * gateway's cryptokey routing then drops any packet from that key whose source is another
 * address, so a peer cannot speak for an address (or an org) that is not its own.
 */
import { normalizeAddress, orgOf } from '../addressing/index.js';
import type { Peer } from '../catalog/types.js';

export interface WantedPeer {
  publicKey: string;
  /** Normalized peer address; AllowedIPs is `<address>/128`. */
  address: string;
  org: string;
  networkId: number;
  /** `<org>/<name>`, for logs. */
  name: string;
}

/** Same shape as the control API's `wireguard list` fields (src/control/wireguard.ts). */
export interface PeerStatus {
  /** Epoch seconds of the last completed handshake, as `wg` reports it; 0 when none yet. */
  latest_handshake: number;
  rx_bytes: number;
  tx_bytes: number;
  /** `[addr]:port` the peer last sent from; absent before its first packet. */
  endpoint?: string;
}

export interface InterfacePeer extends PeerStatus {
  publicKey: string;
  allowedIps: string[];
}

export interface Skipped {
  peer: Peer;
  reason: string;
}

/**
 * The peers the interface should have. A peer whose address is not inside its org's /48, or
 * whose key another (older) peer already uses, is skipped with the reason: one key can only
 * have one AllowedIPs set, and handing it two orgs' addresses would join them.
 */
export function wantedPeers(peers: Iterable<Peer>, networkIdOf: (org: string) => number | undefined): { wanted: Map<string, WantedPeer>; skipped: Skipped[] } {
  const wanted = new Map<string, WantedPeer>();
  const skipped: Skipped[] = [];
  const sorted = [...peers].sort((a, b) => a.created_at - b.created_at || `${a.org}/${a.name}`.localeCompare(`${b.org}/${b.name}`));
  for (const p of sorted) {
    const address = normalizeAddress(p.address);
    const networkId = networkIdOf(p.org);
    if (!address || networkId === undefined || orgOf(address) !== networkId) {
      skipped.push({ peer: p, reason: `address ${p.address} is not inside org ${p.org}'s prefix` });
      continue;
    }
    const other = wanted.get(p.public_key);
    if (other) {
      skipped.push({ peer: p, reason: `public key already used by peer ${other.name}` });
      continue;
    }
    wanted.set(p.public_key, { publicKey: p.public_key, address, org: p.org, networkId, name: `${p.org}/${p.name}` });
  }
  return { wanted, skipped };
}

const num = (s: string | undefined): number => {
  const n = Number(s);
  return Number.isFinite(n) ? n : 0;
};

/**
 * Parses `wg show <if> dump`. The first line describes the interface and holds its private
 * key: it is dropped here and never kept. Each following line is one peer:
 * public-key, preshared-key, endpoint, allowed-ips, latest-handshake (s), rx, tx, keepalive.
 */
export function parseDump(text: string): Map<string, InterfacePeer> {
  const peers = new Map<string, InterfacePeer>();
  const lines = text.split('\n');
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const f = line.split('\t');
    if (f.length < 8) continue;
    const [publicKey, , endpoint, allowed, handshake, rx, tx] = f as [string, string, string, string, string, string, string];
    const peer: InterfacePeer = {
      publicKey,
      allowedIps: allowed === '(none)' ? [] : allowed.split(','),
      latest_handshake: num(handshake),
      rx_bytes: num(rx),
      tx_bytes: num(tx),
    };
    if (endpoint !== '(none)') peer.endpoint = endpoint;
    peers.set(publicKey, peer);
  }
  return peers;
}

export interface PeerDiff {
  /** Peers to add, or whose AllowedIPs to set back to their /128. */
  set: WantedPeer[];
  /** Public keys on the interface that the catalog no longer has. */
  remove: string[];
}

export function diffPeers(wanted: ReadonlyMap<string, WantedPeer>, actual: ReadonlyMap<string, Pick<InterfacePeer, 'allowedIps'>>): PeerDiff {
  const set: WantedPeer[] = [];
  const remove: string[] = [];
  for (const [key, w] of wanted) {
    const a = actual.get(key);
    if (!a || a.allowedIps.length !== 1 || a.allowedIps[0] !== `${w.address}/128`) set.push(w);
  }
  for (const key of actual.keys()) if (!wanted.has(key)) remove.push(key);
  return { set, remove };
}

/**
 * Arguments of one `wg set <if> ...` call applying a diff (empty when nothing changes).
 * `restore` holds remembered endpoints of peers being added: the gateway gets the endpoint and a
 * keepalive, so it initiates the handshake itself instead of waiting for the laptop to notice.
 */
export function wgSetArgs(iface: string, diff: PeerDiff, restore: ReadonlyMap<string, string> = new Map(), keepaliveSeconds = 25): string[] {
  if (diff.set.length === 0 && diff.remove.length === 0) return [];
  const args = ['set', iface];
  for (const key of diff.remove) args.push('peer', key, 'remove');
  for (const w of diff.set) {
    args.push('peer', w.publicKey, 'allowed-ips', `${w.address}/128`);
    const endpoint = restore.get(w.publicKey);
    if (endpoint) args.push('endpoint', endpoint, 'persistent-keepalive', String(keepaliveSeconds));
  }
  return args;
}

/** `[v6]:port` or `v4:port`, as `wg` prints endpoints; anything else is not restored. */
export function isEndpoint(text: string): boolean {
  return /^(\[[0-9a-fA-F:.]+\]|\d{1,3}(\.\d{1,3}){3}):\d{1,5}$/.test(text);
}

/** Reads a remembered-endpoints file: `{ "<public key>": "[addr]:port" }`; bad entries are dropped. */
export function parseEndpoints(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return out;
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return out;
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof value === 'string' && isEndpoint(value)) out.set(key, value);
  }
  return out;
}

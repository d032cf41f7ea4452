/**
 * What the control API tells a new WireGuard peer about its gateway (public key, endpoint),
 * and the live status (handshake, bytes) a local gateway role reports for each peer.
 */
import { isWireguardKey, loadOrCreateGatewayKeys } from '../gateway/keys.js';
import { ConfigError } from '../errors.js';
import type { Config } from '../config/index.js';
import type { RunningRole } from '../role.js';
import type { Peer } from '../catalog/types.js';

/** What a gateway role reports per peer public key (from `wg show <if> dump`). */
export interface PeerStatus {
  /** Epoch seconds of the last handshake; 0 when none yet. */
  latest_handshake: number;
  rx_bytes: number;
  tx_bytes: number;
  endpoint?: string;
}

/** A gateway role handle that can report peer status (the gateway engineer's role implements it). */
export interface PeerStatusSource {
  peerStatus(): Map<string, PeerStatus>;
}

export interface GatewayInfo {
  public_key: string;
  endpoint: string;
}

/**
 * Resolves the gateway's public key once: `[wireguard] public_key` when set (a control node
 * that does not run the gateway), else the gateway's state file on this node. A failure is
 * not cached, so fixing the file fixes the next request.
 */
export function gatewayInfoSource(wg: Readonly<Config['wireguard']>): () => Promise<GatewayInfo> {
  if (wg.public_key !== undefined && !isWireguardKey(wg.public_key)) {
    throw new ConfigError('wireguard.public_key: must be a base64 WireGuard public key (what `wg pubkey` prints)');
  }
  let pending: Promise<GatewayInfo> | null = null;
  return () => {
    if (wg.public_key !== undefined) return Promise.resolve({ public_key: wg.public_key, endpoint: wg.endpoint });
    pending ??= loadOrCreateGatewayKeys(wg.state_file).then(
      (k) => ({ public_key: k.public_key, endpoint: wg.endpoint }),
      (err: unknown) => {
        pending = null;
        throw err;
      },
    );
    return pending;
  };
}

function isStatusSource(role: RunningRole | undefined): role is RunningRole & PeerStatusSource {
  return !!role && typeof (role as Partial<PeerStatusSource>).peerStatus === 'function';
}

/** Peers with the local gateway's status merged in, when this node runs a gateway. */
export function withPeerStatus(peers: Peer[], gateway: RunningRole | undefined): (Peer & Partial<PeerStatus>)[] {
  if (!isStatusSource(gateway)) return peers;
  const status = gateway.peerStatus();
  return peers.map((p) => {
    const s = status.get(p.public_key);
    return s ? { ...p, ...s } : p;
  });
}

/**
 * Org isolation at the gateway, with nftables: a table `sixpn_<interface>` that accepts a packet
 * from a peer only when its destination is inside the peer's own org /48, and a packet to a peer
 * only when its source is inside the peer's org. Everything else from or to the tunnel is
 * dropped. The rules are fixed; the peers live in a set of `peer address . org /48` pairs (one
 * lookup per packet however many peers there are), and a map from peer address to a named
 * counter (`p_<key hex>`) counts each peer's drops. Rendering is pure; `NftFirewall` applies it
 * atomically (`nft -f`, one transaction) and reads the counters back.
 */
import { orgPrefixCidr } from '../addressing/index.js';
import type { WantedPeer } from './peers.js';
import { runTool } from './tools.js';

/** nftables table name for an interface (interface names may hold `=+.-`). */
export function tableName(iface: string): string {
  return `sixpn_${iface.replace(/[^a-zA-Z0-9_]/g, '_')}`;
}

/** The named counter of a peer's drops: stable for its key, safe as an nft identifier. */
export function counterName(publicKey: string): string {
  return `p_${Buffer.from(publicKey, 'base64').subarray(0, 8).toString('hex')}`;
}

/** Drops from tunnel sources that belong to no peer (cannot happen with /128 AllowedIPs; counted if it does). */
export const OTHER_COUNTER = 'other';

/**
 * The nft script that makes the table match `peers`. It creates what is missing, refills the
 * chains, the set and the map, and deletes the counters of peers that are gone
 * (`staleCounters`), all in one transaction: there is never a moment without the filter.
 */
export function renderRuleset(iface: string, peers: Iterable<WantedPeer>, staleCounters: Iterable<string> = []): string {
  const t = `inet ${tableName(iface)}`;
  const dev = JSON.stringify(iface);
  const list = [...peers];
  const lines = [
    `add table ${t}`,
    `add chain ${t} input { type filter hook input priority filter; policy accept; }`,
    `add chain ${t} forward { type filter hook forward priority filter; policy accept; }`,
    `add chain ${t} output { type filter hook output priority filter; policy accept; }`,
    `add chain ${t} from_peers`,
    `add chain ${t} to_peers`,
    `add set ${t} allowed { type ipv6_addr . ipv6_addr; flags interval; }`,
    `add map ${t} drops { type ipv6_addr : counter; }`,
    `add counter ${t} ${OTHER_COUNTER}`,
  ];
  for (const p of list) lines.push(`add counter ${t} ${counterName(p.publicKey)}`);
  for (const chain of ['input', 'forward', 'output', 'from_peers', 'to_peers']) lines.push(`flush chain ${t} ${chain}`);
  lines.push(`flush set ${t} allowed`, `flush map ${t} drops`);
  if (list.length) {
    lines.push(`add element ${t} allowed { ${list.map((p) => `${p.address} . ${orgPrefixCidr(p.networkId)}`).join(', ')} }`);
    lines.push(`add element ${t} drops { ${list.map((p) => `${p.address} : "${counterName(p.publicKey)}"`).join(', ')} }`);
  }
  lines.push(
    `add rule ${t} input iifname ${dev} jump from_peers`,
    `add rule ${t} forward iifname ${dev} jump from_peers`,
    `add rule ${t} forward oifname ${dev} jump to_peers`,
    `add rule ${t} output oifname ${dev} jump to_peers`,
    `add rule ${t} from_peers ip6 saddr . ip6 daddr @allowed accept`,
    `add rule ${t} from_peers counter name ip6 saddr map @drops drop`,
    `add rule ${t} from_peers counter name ${OTHER_COUNTER} drop`,
    `add rule ${t} to_peers ip6 daddr . ip6 saddr @allowed accept`,
    `add rule ${t} to_peers drop`,
  );
  const keep = new Set(list.map((p) => counterName(p.publicKey)));
  for (const c of staleCounters) if (c !== OTHER_COUNTER && !keep.has(c)) lines.push(`delete counter ${t} ${c}`);
  return `${lines.join('\n')}\n`;
}

/** Packets per counter name, from `nft -j list counters table inet <t>`. */
export function parseCounters(json: string): Map<string, number> {
  const out = new Map<string, number>();
  const doc = JSON.parse(json) as { nftables?: Array<{ counter?: { name?: string; packets?: number } }> };
  for (const item of doc.nftables ?? []) {
    const c = item.counter;
    if (c && typeof c.name === 'string' && typeof c.packets === 'number') out.set(c.name, c.packets);
  }
  return out;
}

export class NftFirewall {
  private counters = new Set<string>();
  constructor(
    private readonly nft: string,
    private readonly iface: string,
  ) {}

  get table(): string {
    return tableName(this.iface);
  }

  /** Replaces whatever an earlier run left behind with an empty (drop-everything) filter. */
  async init(): Promise<void> {
    await runTool(this.nft, ['-f', '-'], { input: `add table inet ${this.table}\ndelete table inet ${this.table}\n` });
    this.counters.clear();
    await this.apply([]);
  }

  async apply(peers: readonly WantedPeer[]): Promise<void> {
    await runTool(this.nft, ['-f', '-'], { input: renderRuleset(this.iface, peers, this.counters) });
    this.counters = new Set(peers.map((p) => counterName(p.publicKey)));
  }

  async readCounters(): Promise<Map<string, number>> {
    return parseCounters(await runTool(this.nft, ['-j', 'list', 'counters', 'table', 'inet', this.table]));
  }

  async remove(): Promise<void> {
    await runTool(this.nft, ['delete', 'table', 'inet', this.table]).catch(() => undefined);
  }
}

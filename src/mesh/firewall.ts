/**
 * The org boundary on the mesh hop, with nftables: the table `inet sixpn_mesh` lets a packet
 * through the tunnel interface only when its source and destination are in the same org /48.
 *
 *   forward, from the tunnel  to a machine or a laptop of this host: same org only
 *   forward, into the tunnel  from a machine or a laptop of this host: same org only
 *   output, into the tunnel   the host's own (proxy, health checks, from its address in the org)
 *   input, from the tunnel    to the host itself: replies to its own connections, same org only
 *   tunnel to tunnel          never: a host does not relay between hosts
 *
 * This is the far side of the host filter (src/host/firewall.ts) and of the gateway's: each hop
 * checks again, so one filter failing (or a host that lies) does not join two orgs. The rules
 * are fixed; the orgs live in a set of `/48 . /48` pairs (one lookup per packet), and an interval
 * map from each org's /48 to a named counter `o_<network id, hex>` counts drops by the org of
 * the source (`other`: a source in no org). Refilled in one `nft -f` transaction, counters
 * kept, when orgs come and go; hosts joining or leaving do not touch it.
 */
import { orgPrefixCidr } from '../addressing/index.js';
import { parseCounters } from '../gateway/firewall.js';
import { runTool } from '../gateway/tools.js';

export const MESH_TABLE = 'sixpn_mesh';
export const OTHER_COUNTER = 'other';

export const orgCounter = (networkId: number): string => `o_${networkId.toString(16)}`;

/** The network id a counter name counts, or null (`other`, or not ours). */
export function counterNetwork(name: string): number | null {
  const m = /^o_([0-9a-f]{1,4})$/.exec(name);
  return m ? parseInt(m[1]!, 16) : null;
}

/** The nft script that makes the table hold exactly these orgs; counters of others are deleted. */
export function renderMeshRuleset(iface: string, networkIds: Iterable<number>, staleCounters: Iterable<string> = []): string {
  const t = `inet ${MESH_TABLE}`;
  const dev = JSON.stringify(iface);
  const ids = [...new Set(networkIds)].sort((a, b) => a - b);
  const lines = [`add table ${t}`, `add counter ${t} ${OTHER_COUNTER}`];
  // Counters before the map that names them (nft refuses the element otherwise).
  for (const n of ids) lines.push(`add counter ${t} ${orgCounter(n)}`);
  lines.push(
    `add set ${t} orgs { type ipv6_addr . ipv6_addr; flags interval; }`,
    `add map ${t} drops { type ipv6_addr : counter; flags interval; }`,
    `add chain ${t} input { type filter hook input priority filter; policy accept; }`,
    `add chain ${t} forward { type filter hook forward priority filter; policy accept; }`,
    `add chain ${t} output { type filter hook output priority filter; policy accept; }`,
    `add chain ${t} from_mesh`,
    `add chain ${t} to_mesh`,
    `add chain ${t} mesh_input`,
    `add chain ${t} transit`,
  );
  for (const c of ['input', 'forward', 'output', 'from_mesh', 'to_mesh', 'mesh_input', 'transit']) lines.push(`flush chain ${t} ${c}`);
  lines.push(`flush set ${t} orgs`, `flush map ${t} drops`);
  if (ids.length) {
    lines.push(`add element ${t} orgs { ${ids.map((n) => `${orgPrefixCidr(n)} . ${orgPrefixCidr(n)}`).join(', ')} }`);
    lines.push(`add element ${t} drops { ${ids.map((n) => `${orgPrefixCidr(n)} : "${orgCounter(n)}"`).join(', ')} }`);
  }
  const drop = [`counter name ip6 saddr map @drops drop`, `counter name ${OTHER_COUNTER} drop`];
  lines.push(
    `add rule ${t} input iifname ${dev} jump mesh_input`,
    `add rule ${t} forward iifname ${dev} oifname ${dev} jump transit`,
    `add rule ${t} forward iifname ${dev} jump from_mesh`,
    `add rule ${t} forward oifname ${dev} jump to_mesh`,
    `add rule ${t} output oifname ${dev} jump to_mesh`,
    `add rule ${t} from_mesh ip6 saddr . ip6 daddr @orgs accept`,
    ...drop.map((d) => `add rule ${t} from_mesh ${d}`),
    `add rule ${t} to_mesh ip6 saddr . ip6 daddr @orgs accept`,
    ...drop.map((d) => `add rule ${t} to_mesh ${d}`),
    `add rule ${t} mesh_input ct state established,related ip6 saddr . ip6 daddr @orgs accept`,
    ...drop.map((d) => `add rule ${t} mesh_input ${d}`),
    ...drop.map((d) => `add rule ${t} transit ${d}`),
  );
  const keep = new Set(ids.map(orgCounter));
  for (const c of staleCounters) if (c !== OTHER_COUNTER && !keep.has(c)) lines.push(`delete counter ${t} ${c}`);
  return `${lines.join('\n')}\n`;
}

export class MeshFirewall {
  private counters = new Set<string>();
  private applied = '';

  constructor(
    private readonly nft: string,
    private readonly iface: string,
  ) {}

  /** Takes over the table an earlier agent left (counters kept), in one transaction. */
  async init(networkIds: Iterable<number>): Promise<void> {
    this.counters = new Set(await this.readCounters().then((c) => [...c.keys()], () => []));
    this.applied = '';
    await this.apply(networkIds);
  }

  /** Makes the table hold these orgs; a no-op when they did not change. */
  async apply(networkIds: Iterable<number>): Promise<void> {
    const ids = [...new Set(networkIds)].sort((a, b) => a - b);
    const key = ids.join(',');
    if (key === this.applied) return;
    await runTool(this.nft, ['-f', '-'], { input: renderMeshRuleset(this.iface, ids, this.counters) });
    this.counters = new Set(ids.map(orgCounter));
    this.applied = key;
  }

  /** Forces the next apply to load the table whole (after it may have been changed behind our back). */
  invalidate(): void {
    this.applied = '';
  }

  /** Dropped packets per counter (`o_<hex>`, `other`). */
  async readCounters(): Promise<Map<string, number>> {
    return parseCounters(await runTool(this.nft, ['-j', 'list', 'counters', 'table', 'inet', MESH_TABLE]));
  }

  async removeTable(): Promise<void> {
    await runTool(this.nft, ['delete', 'table', 'inet', MESH_TABLE]).catch(() => undefined);
  }
}

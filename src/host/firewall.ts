/**
 * Org isolation on a host, with nftables: the table `inet sixpn_host` filters every packet that
 * enters from a machine's veth (`sxm<first 8 hex digits of its id>`) and every packet forwarded
 * to one.
 *
 *   prerouting  a machine sends only from its own address (set `sources`: veth . address) or
 *               link-local (neighbour discovery); IPv4 and forged sources are dropped
 *   input       to the host itself a machine reaches only `fdaa::3`, its own org's resolver and
 *               Flycast range (set `services`: address . range), replies to the host's own
 *               connections (proxy, health checks) and neighbour discovery
 *   forward     machine -> anything: only inside its own org /48 (set `orgs`: address . /48);
 *               anything -> machine: only from its org
 *   output      the host itself -> machine: a new connection only from inside the machine's org
 *               (the proxy and health checks dial from the host's own address in that org,
 *               src/catalog/source.ts), else replies and neighbour discovery only: the host is
 *               not trusted either
 *
 * Every drop is counted against the machine it came from (map `drops`: veth -> counter
 * `m_<id8>`), so that the agent reports drops per org and logs them once a minute per machine;
 * drops that no machine's veth explains count in `other`. The rules never change; the machines
 * live in sets. A machine run or destroyed changes only its own elements (one `nft -f`
 * transaction, ~10-30 ms at 100 machines); the whole table is refilled, counters kept, only when
 * an agent takes the table over or a change fails (a refill at 100 machines costs ~150 ms, most of
 * it nft rebuilding the concatenated interval sets).
 */
import { orgPrefixCidr } from '../addressing/index.js';
import { parseCounters } from '../gateway/firewall.js';
import { runTool } from '../gateway/tools.js';

export const TABLE = 'sixpn_host';
/** Host side of every machine's veth pair starts with this; the rules match it with a wildcard. */
export const VETH_PREFIX = 'sxm';
export const OTHER_COUNTER = 'other';

export interface FirewallMachine {
  id: string;
  address: string;
  networkId: number;
}

export const vethName = (machineId: string): string => `${VETH_PREFIX}${machineId.slice(0, 8)}`;
export const counterName = (machineId: string): string => `m_${machineId.slice(0, 8)}`;

/** `fdaa:0:<id>:0:1::/80`: the org's Flycast range. */
export function flycastRange(networkId: number): string {
  return `${orgPrefixCidr(networkId).slice(0, -'::/48'.length)}:0:1::/80`;
}

/** The elements of one machine, as `set { element }` pairs. */
function elementsOf(m: FirewallMachine): [string, string][] {
  const prefix = orgPrefixCidr(m.networkId);
  return [
    ['sources', `"${vethName(m.id)}" . ${m.address}`],
    ['orgs', `${m.address} . ${prefix}`],
    ['services', `${m.address} . ${flycastRange(m.networkId)}, ${m.address} . ${prefix.slice(0, -'/48'.length)}3/128`],
  ];
}

/** The nft script that adds some machines to the table and takes others out, leaving the rest alone. */
export function renderChanges(add: Iterable<FirewallMachine>, remove: Iterable<FirewallMachine>): string {
  const t = `inet ${TABLE}`;
  const lines: string[] = [];
  for (const m of remove) {
    lines.push(`delete element ${t} drops { "${vethName(m.id)}" }`);
    for (const [set, el] of elementsOf(m)) lines.push(`delete element ${t} ${set} { ${el} }`);
    lines.push(`delete counter ${t} ${counterName(m.id)}`);
  }
  for (const m of add) {
    lines.push(`add counter ${t} ${counterName(m.id)}`);
    for (const [set, el] of elementsOf(m)) lines.push(`add element ${t} ${set} { ${el} }`);
    lines.push(`add element ${t} drops { "${vethName(m.id)}" : "${counterName(m.id)}" }`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** The nft script that makes the table hold exactly `machines` (counters of others deleted). */
export function renderRuleset(machines: Iterable<FirewallMachine>, staleCounters: Iterable<string> = []): string {
  const t = `inet ${TABLE}`;
  const list = [...machines];
  const any = `iifname "${VETH_PREFIX}*"`;
  const lines = [
    `add table ${t}`,
    // raw priority: forged packets go before conntrack spends an entry on them
    `add chain ${t} prerouting { type filter hook prerouting priority raw; policy accept; }`,
    `add chain ${t} input { type filter hook input priority filter; policy accept; }`,
    `add chain ${t} forward { type filter hook forward priority filter; policy accept; }`,
    `add chain ${t} output { type filter hook output priority filter; policy accept; }`,
    `add chain ${t} from_machine`,
    `add chain ${t} machine_input`,
    `add chain ${t} machine_forward`,
    `add chain ${t} to_machine`,
    `add chain ${t} host_to_machine`,
    `add set ${t} sources { type ifname . ipv6_addr; }`,
    `add set ${t} orgs { type ipv6_addr . ipv6_addr; flags interval; }`,
    `add set ${t} services { type ipv6_addr . ipv6_addr; flags interval; }`,
    `add map ${t} drops { type ifname : counter; }`,
    `add counter ${t} ${OTHER_COUNTER}`,
  ];
  for (const m of list) lines.push(`add counter ${t} ${counterName(m.id)}`);
  for (const c of ['prerouting', 'input', 'forward', 'output', 'from_machine', 'machine_input', 'machine_forward', 'to_machine', 'host_to_machine']) lines.push(`flush chain ${t} ${c}`);
  lines.push(`flush set ${t} sources`, `flush set ${t} orgs`, `flush set ${t} services`, `flush map ${t} drops`);
  if (list.length) {
    const prefix = (m: FirewallMachine) => orgPrefixCidr(m.networkId);
    lines.push(`add element ${t} sources { ${list.map((m) => `"${vethName(m.id)}" . ${m.address}`).join(', ')} }`);
    lines.push(`add element ${t} orgs { ${list.map((m) => `${m.address} . ${prefix(m)}`).join(', ')} }`);
    lines.push(
      `add element ${t} services { ${list.map((m) => `${m.address} . ${flycastRange(m.networkId)}, ${m.address} . ${prefix(m).slice(0, -'/48'.length)}3/128`).join(', ')} }`,
    );
    lines.push(`add element ${t} drops { ${list.map((m) => `"${vethName(m.id)}" : "${counterName(m.id)}"`).join(', ')} }`);
  }
  const drop = [`counter name iifname map @drops drop`, `counter name ${OTHER_COUNTER} drop`];
  lines.push(
    `add rule ${t} prerouting ${any} jump from_machine`,
    `add rule ${t} from_machine meta nfproto ipv4 ${drop[0]}`,
    `add rule ${t} from_machine ip6 saddr fe80::/10 accept`,
    `add rule ${t} from_machine iifname . ip6 saddr @sources accept`,
    ...drop.map((d) => `add rule ${t} from_machine ${d}`),
    `add rule ${t} input ${any} jump machine_input`,
    `add rule ${t} machine_input ct state established,related accept`,
    `add rule ${t} machine_input icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept`,
    `add rule ${t} machine_input ip6 daddr fdaa::3 accept`,
    `add rule ${t} machine_input ip6 saddr . ip6 daddr @services accept`,
    ...drop.map((d) => `add rule ${t} machine_input ${d}`),
    `add rule ${t} forward ${any} jump machine_forward`,
    `add rule ${t} forward oifname "${VETH_PREFIX}*" jump to_machine`,
    `add rule ${t} machine_forward ip6 saddr . ip6 daddr @orgs accept`,
    ...drop.map((d) => `add rule ${t} machine_forward ${d}`),
    `add rule ${t} to_machine ip6 daddr . ip6 saddr @orgs accept`,
    `add rule ${t} to_machine counter name ${OTHER_COUNTER} drop`,
    `add rule ${t} output oifname "${VETH_PREFIX}*" jump host_to_machine`,
    `add rule ${t} host_to_machine ct state established,related accept`,
    `add rule ${t} host_to_machine ip6 saddr fe80::/10 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, mld-listener-report, mld2-listener-report } accept`,
    `add rule ${t} host_to_machine ip6 daddr . ip6 saddr @orgs accept`,
    `add rule ${t} host_to_machine counter name ${OTHER_COUNTER} drop`,
  );
  const keep = new Set(list.map((m) => counterName(m.id)));
  for (const c of staleCounters) if (c !== OTHER_COUNTER && !keep.has(c)) lines.push(`delete counter ${t} ${c}`);
  return `${lines.join('\n')}\n`;
}

const same = (a: FirewallMachine, b: FirewallMachine): boolean => a.address === b.address && a.networkId === b.networkId;

export class HostFirewall {
  private counters = new Set<string>();
  private wanted = new Map<string, FirewallMachine>();
  /** What the table holds; null: unknown, the next apply refills it whole. */
  private applied: Map<string, FirewallMachine> | null = null;
  private tail: Promise<void> = Promise.resolve();
  private pending: Promise<void> | null = null;

  constructor(private readonly nft: string) {}

  /**
   * Takes over what an earlier agent left, in one transaction with no moment unfiltered: the
   * machines still running (adopted) stay reachable, counters of others are deleted.
   */
  async init(machines: Iterable<FirewallMachine>): Promise<void> {
    this.counters = new Set(await this.readCounters().then((c) => [...c.keys()], () => []));
    this.applied = null;
    await this.replace(machines);
  }

  /** Adds (or updates) a machine; resolves once the filter holds it. */
  add(m: FirewallMachine): Promise<void> {
    this.wanted.set(m.id, m);
    return this.apply();
  }

  remove(id: string): Promise<void> {
    if (!this.wanted.delete(id)) return Promise.resolve();
    return this.apply();
  }

  /** Makes the filter hold exactly these machines. */
  replace(machines: Iterable<FirewallMachine>): Promise<void> {
    this.wanted = new Map([...machines].map((m) => [m.id, m]));
    return this.apply();
  }

  /**
   * One change at a time; calls made while one waits share it (a burst of runs costs two). The
   * difference to what the table holds is applied element by element; a table in an unknown
   * state, or a change nft refuses (the table was changed behind our back), is refilled whole.
   */
  private apply(): Promise<void> {
    if (this.pending) return this.pending;
    const run = this.tail.then(async () => {
      this.pending = null;
      const want = new Map(this.wanted);
      if (this.applied) {
        const applied = this.applied;
        const add = [...want.values()].filter((m) => !applied.has(m.id) || !same(applied.get(m.id)!, m));
        const remove = [...applied.values()].filter((m) => !want.has(m.id) || !same(want.get(m.id)!, m));
        if (add.length === 0 && remove.length === 0) return;
        try {
          await runTool(this.nft, ['-f', '-'], { input: renderChanges(add, remove) });
          this.applied = want;
          this.counters = new Set([...want.keys()].map(counterName));
          return;
        } catch {
          this.applied = null; // fall through to a whole refill
        }
      }
      await runTool(this.nft, ['-f', '-'], { input: renderRuleset(want.values(), this.counters) });
      this.counters = new Set([...want.keys()].map(counterName));
      this.applied = want;
    });
    this.pending = run;
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Dropped packets per counter name (`m_<id8>` or `other`). */
  async readCounters(): Promise<Map<string, number>> {
    return parseCounters(await runTool(this.nft, ['-j', 'list', 'counters', 'table', 'inet', TABLE]));
  }

  async removeTable(): Promise<void> {
    await runTool(this.nft, ['delete', 'table', 'inet', TABLE]).catch(() => undefined);
  }
}

// The host's isolation filter: the rendered nft script (pure) and, inside the test namespace,
// that real nft loads it, keeps per-machine counters across refills and deletes stale ones.
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { counterName, flycastRange, HostFirewall, OTHER_COUNTER, renderChanges, renderRuleset, TABLE, vethName } from '../../../src/host/firewall.js';
import { hasCommand, IN_NETNS } from '../../harness/env.js';

const a = { id: 'a1000000000001', address: 'fdaa:0:18:b00:1:a100:0:2', networkId: 0x18 };
const b = { id: 'b2000000000002', address: 'fdaa:0:30:b00:1:b200:0:2', networkId: 0x30 };

describe('host renderRuleset', () => {
  it('pins each veth to its address, keeps forwarding inside the org, and lets machines reach only their resolver and Flycast range', () => {
    const t = renderRuleset([a, b]);
    expect(vethName(a.id)).toBe('sxma1000000');
    expect(flycastRange(0x18)).toBe('fdaa:0:18:0:1::/80');
    expect(t).toContain(`add element inet ${TABLE} sources { "sxma1000000" . ${a.address}, "sxmb2000000" . ${b.address} }`);
    expect(t).toContain(`add element inet ${TABLE} orgs { ${a.address} . fdaa:0:18::/48, ${b.address} . fdaa:0:30::/48 }`);
    expect(t).toContain(`${a.address} . fdaa:0:18:0:1::/80, ${a.address} . fdaa:0:18::3/128`);
    expect(t).toContain(`add element inet ${TABLE} drops { "sxma1000000" : "${counterName(a.id)}", "sxmb2000000" : "${counterName(b.id)}" }`);
    const chain = (c: string) => t.split('\n').filter((l) => l.startsWith(`add rule inet ${TABLE} ${c} `));
    // every machine chain ends in counted drops
    for (const c of ['from_machine', 'machine_input', 'machine_forward']) expect(chain(c).at(-1)).toBe(`add rule inet ${TABLE} ${c} counter name ${OTHER_COUNTER} drop`);
    expect(chain('from_machine')[0]).toContain('meta nfproto ipv4');
    expect(chain('machine_forward')[0]).toContain('ip6 saddr . ip6 daddr @orgs accept');
    expect(chain('to_machine')[0]).toContain('ip6 daddr . ip6 saddr @orgs accept');
    // the host's own new connections to a machine meet the org rule too (no fe80::1 exception)
    expect(chain('output')).toEqual([`add rule inet ${TABLE} output oifname "sxm*" jump host_to_machine`]);
    expect(chain('host_to_machine')[0]).toContain('ct state established,related accept');
    expect(chain('host_to_machine')[2]).toContain('ip6 daddr . ip6 saddr @orgs accept');
    expect(chain('host_to_machine').at(-1)).toBe(`add rule inet ${TABLE} host_to_machine counter name ${OTHER_COUNTER} drop`);
  });

  it('changes one machine\'s elements only, taking out before putting in', () => {
    const t = renderChanges([a], [b]).trim().split('\n');
    expect(t[0]).toBe(`delete element inet ${TABLE} drops { "sxmb2000000" }`);
    expect(t).toContain(`delete element inet ${TABLE} orgs { ${b.address} . fdaa:0:30::/48 }`);
    expect(t).toContain(`delete counter inet ${TABLE} ${counterName(b.id)}`);
    expect(t.indexOf(`add counter inet ${TABLE} ${counterName(a.id)}`)).toBeGreaterThan(t.indexOf(`delete counter inet ${TABLE} ${counterName(b.id)}`));
    expect(t.at(-1)).toBe(`add element inet ${TABLE} drops { "sxma1000000" : "${counterName(a.id)}" }`);
    expect(renderChanges([], [])).toBe('');
  });

  it('renders an empty filter and deletes counters of machines that are gone', () => {
    const t = renderRuleset([a], [counterName(a.id), counterName(b.id), OTHER_COUNTER]);
    expect(t).toContain(`delete counter inet ${TABLE} ${counterName(b.id)}`);
    expect(t).not.toContain(`delete counter inet ${TABLE} ${counterName(a.id)}`);
    expect(t).not.toContain(`delete counter inet ${TABLE} ${OTHER_COUNTER}`);
    expect(renderRuleset([])).not.toContain('add element');
  });
});

describe.runIf(IN_NETNS && hasCommand('nft'))('HostFirewall with real nft', () => {
  afterAll(() => {
    try {
      execFileSync('nft', ['delete', 'table', 'inet', TABLE], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  });

  it('loads, refills with counters kept, drops stale counters, and takes over an existing table', async () => {
    const fw = new HostFirewall('nft');
    await fw.init([a, b]);
    const listed = execFileSync('nft', ['list', 'table', 'inet', TABLE]).toString();
    expect(listed).toContain('"sxma1000000" . fdaa:0:18:b00:1:a100:0:2');
    expect([...(await fw.readCounters()).keys()].sort()).toEqual([counterName(a.id), counterName(b.id), OTHER_COUNTER].sort());
    await fw.remove(b.id);
    expect([...(await fw.readCounters()).keys()].sort()).toEqual([counterName(a.id), OTHER_COUNTER].sort());
    expect(execFileSync('nft', ['list', 'set', 'inet', TABLE, 'orgs']).toString()).not.toContain(b.address);
    await fw.add(b);
    expect(execFileSync('nft', ['list', 'set', 'inet', TABLE, 'orgs']).toString()).toContain(`${b.address} . fdaa:0:30::/48`);
    // changed behind its back: the next change is refused by nft, and the table is refilled whole
    execFileSync('nft', ['delete', 'element', 'inet', TABLE, 'sources', `{ "sxmb2000000" . ${b.address} }`]);
    await fw.remove(b.id);
    const sources = execFileSync('nft', ['list', 'set', 'inet', TABLE, 'sources']).toString();
    expect(sources).toContain(a.address);
    expect(sources).not.toContain(b.address);
    // a second agent takes the table over in one transaction
    const next = new HostFirewall('nft');
    await next.init([a]);
    expect(execFileSync('nft', ['list', 'set', 'inet', TABLE, 'sources']).toString()).toContain(a.address);
    await next.removeTable();
    expect(() => execFileSync('nft', ['list', 'table', 'inet', TABLE], { stdio: 'pipe' })).toThrow();
  });
});

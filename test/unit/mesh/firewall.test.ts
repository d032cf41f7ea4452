// The mesh hop's org filter: the rendered nft script (pure), and inside the test namespace that
// real nft loads it, refills it in place keeping the per-org drop counters, and deletes stale ones.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { counterNetwork, MESH_TABLE, MeshFirewall, orgCounter, OTHER_COUNTER, renderMeshRuleset } from '../../../src/mesh/firewall.js';
import { hasCommand, IN_NETNS } from '../../harness/env.js';

describe('renderMeshRuleset', () => {
  it('lets through the tunnel only pairs inside one org /48, and counts drops by source org', () => {
    const text = renderMeshRuleset('sixpn-mesh', [0x30, 0x18, 0x18]);
    const t = `inet ${MESH_TABLE}`;
    expect(text).toContain(`add element ${t} orgs { fdaa:0:18::/48 . fdaa:0:18::/48, fdaa:0:30::/48 . fdaa:0:30::/48 }`);
    expect(text).toContain(`add element ${t} drops { fdaa:0:18::/48 : "o_18", fdaa:0:30::/48 : "o_30" }`);
    for (const hook of ['forward iifname "sixpn-mesh" jump from_mesh', 'forward oifname "sixpn-mesh" jump to_mesh', 'output oifname "sixpn-mesh" jump to_mesh', 'input iifname "sixpn-mesh" jump mesh_input']) expect(text).toContain(`add rule ${t} ${hook}`);
    // a host never relays from one host to another, and input takes only replies of its own org
    expect(text).toContain(`add rule ${t} forward iifname "sixpn-mesh" oifname "sixpn-mesh" jump transit`);
    expect(text).toContain(`add rule ${t} mesh_input ct state established,related ip6 saddr . ip6 daddr @orgs accept`);
    const lines = text.trim().split('\n');
    for (const chain of ['from_mesh', 'to_mesh', 'mesh_input', 'transit']) expect(lines.filter((l) => l.includes(` ${chain} `)).at(-1)).toBe(`add rule ${t} ${chain} counter name ${OTHER_COUNTER} drop`);
    // the transit chain accepts nothing
    expect(lines.filter((l) => l.includes(' transit ') && l.includes('accept'))).toEqual([]);
  });

  it('with no org drops everything through the tunnel', () => {
    const text = renderMeshRuleset('m0', []);
    expect(text).not.toContain('add element');
    expect(text).toContain(`flush set inet ${MESH_TABLE} orgs`);
  });

  it('deletes the counters of orgs that are gone, never the shared one', () => {
    const text = renderMeshRuleset('m0', [0x18], ['o_18', 'o_30', OTHER_COUNTER]);
    expect(text).toContain(`delete counter inet ${MESH_TABLE} o_30`);
    expect(text).not.toContain('delete counter inet sixpn_mesh o_18');
    expect(text).not.toContain(`delete counter inet sixpn_mesh ${OTHER_COUNTER}`);
  });

  it('names counters by network id and reads them back', () => {
    expect(orgCounter(0x22b7)).toBe('o_22b7');
    expect(counterNetwork('o_22b7')).toBe(0x22b7);
    expect(counterNetwork(OTHER_COUNTER)).toBeNull();
    expect(counterNetwork('p_0123')).toBeNull();
  });
});

describe.skipIf(!IN_NETNS || !hasCommand('nft'))('MeshFirewall with real nft', () => {
  it('loads, refills in place keeping counters, drops stale counters, and is taken over by a new agent', async () => {
    const nft = (args: string[]): string => execFileSync('nft', args, { encoding: 'utf8' });
    const fw = new MeshFirewall('nft', 'sxmeshfw0');
    try {
      await fw.init([0x18, 0x30]);
      expect([...(await fw.readCounters()).keys()].sort()).toEqual(['o_18', 'o_30', OTHER_COUNTER]);
      await fw.apply([0x18]);
      expect([...(await fw.readCounters()).keys()].sort()).toEqual(['o_18', OTHER_COUNTER]);
      expect(nft(['list', 'set', 'inet', MESH_TABLE, 'orgs'])).not.toContain('fdaa:0:30::');
      // the same orgs again: nothing to do (no nft call): the table stays as it is
      nft(['flush', 'chain', 'inet', MESH_TABLE, 'forward']);
      await fw.apply([0x18]);
      expect(nft(['list', 'chain', 'inet', MESH_TABLE, 'forward'])).not.toContain('jump');
      // invalidated (a resync after the table may have changed): loaded whole again
      fw.invalidate();
      await fw.apply([0x18]);
      expect(nft(['list', 'chain', 'inet', MESH_TABLE, 'forward']).match(/jump/g)).toHaveLength(3);
      // a new agent takes over the table an old one left
      const next = new MeshFirewall('nft', 'sxmeshfw0');
      await next.init([0x18, 0x40]);
      expect([...(await next.readCounters()).keys()].sort()).toEqual(['o_18', 'o_40', OTHER_COUNTER]);
    } finally {
      await fw.removeTable();
    }
    expect(nft(['list', 'tables'])).not.toContain(MESH_TABLE);
  });
});

// The org-isolation filter: rendered nft script (pure), and, inside the test namespace, that
// real nft accepts it, keeps per-peer counters across updates and deletes stale ones.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { counterName, OTHER_COUNTER, parseCounters, renderRuleset, tableName } from '../../../src/gateway/firewall.js';
import { generateKeyPair } from '../../../src/gateway/keys.js';
import type { WantedPeer } from '../../../src/gateway/peers.js';
import { hasCommand, IN_NETNS } from '../../harness/env.js';

const a: WantedPeer = { publicKey: generateKeyPair().public_key, address: 'fdaa:0:18:a7b:d6b:0:1:2', org: 'acme', networkId: 0x18, name: 'acme/a' };
const b: WantedPeer = { publicKey: generateKeyPair().public_key, address: 'fdaa:0:22b7:a7b:d6b:0:1:2', org: 'beta', networkId: 0x22b7, name: 'beta/b' };

describe('renderRuleset', () => {
  it('accepts a peer only towards its own org and counts the rest per peer', () => {
    const text = renderRuleset('wg-a.b', [a, b]);
    expect(tableName('wg-a.b')).toBe('sixpn_wg_a_b');
    expect(text).toContain('add rule inet sixpn_wg_a_b input iifname "wg-a.b" jump from_peers');
    expect(text).toContain(`add element inet sixpn_wg_a_b allowed { ${a.address} . fdaa:0:18::/48, ${b.address} . fdaa:0:22b7::/48 }`);
    expect(text).toContain(`add element inet sixpn_wg_a_b drops { ${a.address} : "${counterName(a.publicKey)}", ${b.address} : "${counterName(b.publicKey)}" }`);
    expect(text).toContain('add rule inet sixpn_wg_a_b from_peers ip6 saddr . ip6 daddr @allowed accept');
    expect(text).toContain('add rule inet sixpn_wg_a_b to_peers ip6 daddr . ip6 saddr @allowed accept');
    // Defaults drop: anything not accepted above, in both directions.
    const lines = text.trim().split('\n');
    expect(lines.filter((l) => l.includes(' from_peers ')).at(-1)).toBe(`add rule inet sixpn_wg_a_b from_peers counter name ${OTHER_COUNTER} drop`);
    expect(lines.filter((l) => l.includes(' to_peers ')).at(-1)).toBe('add rule inet sixpn_wg_a_b to_peers drop');
  });

  it('renders an empty (drop everything) filter without elements', () => {
    const text = renderRuleset('sixpn0', []);
    expect(text).not.toContain('add element');
    expect(text).toContain('flush set inet sixpn_sixpn0 allowed');
  });

  it('deletes counters of peers that are gone, never the shared one', () => {
    const text = renderRuleset('sixpn0', [a], [counterName(a.publicKey), counterName(b.publicKey), OTHER_COUNTER]);
    expect(text).toContain(`delete counter inet sixpn_sixpn0 ${counterName(b.publicKey)}`);
    expect(text).not.toContain(`delete counter inet sixpn_sixpn0 ${counterName(a.publicKey)}`);
    expect(text).not.toContain(`delete counter inet sixpn_sixpn0 ${OTHER_COUNTER}`);
  });

  it('names counters by key, as nft identifiers', () => {
    expect(counterName(a.publicKey)).toMatch(/^p_[0-9a-f]{16}$/);
    expect(counterName(a.publicKey)).not.toBe(counterName(b.publicKey));
  });
});

describe('parseCounters', () => {
  it('reads packets per named counter', () => {
    const json = JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6' } }, { counter: { family: 'inet', name: 'p_01', table: 't', handle: 2, packets: 7, bytes: 560 } }] });
    expect([...parseCounters(json)]).toEqual([['p_01', 7]]);
  });
});

describe.skipIf(!IN_NETNS || !hasCommand('nft'))('renderRuleset with real nft', () => {
  it('loads, updates in place keeping counters, and deletes stale counters', () => {
    const iface = `sxfw${process.pid % 100000}`;
    const table = tableName(iface);
    const nft = (args: string[], input?: string): string => execFileSync('nft', args, { input, encoding: 'utf8' });
    try {
      nft(['-f', '-'], renderRuleset(iface, [a, b]));
      let counters = parseCounters(nft(['-j', 'list', 'counters', 'table', 'inet', table]));
      expect([...counters.keys()].sort()).toEqual([OTHER_COUNTER, counterName(a.publicKey), counterName(b.publicKey)].sort());
      nft(['-f', '-'], renderRuleset(iface, [a], [counterName(a.publicKey), counterName(b.publicKey)]));
      counters = parseCounters(nft(['-j', 'list', 'counters', 'table', 'inet', table]));
      expect([...counters.keys()].sort()).toEqual([OTHER_COUNTER, counterName(a.publicKey)].sort());
      const listing = nft(['list', 'table', 'inet', table]);
      expect(listing).toContain(a.address);
      expect(listing).not.toContain(b.address);
      expect(listing.match(/jump from_peers/g)).toHaveLength(2);
      // Down to no peers and back: the set and map empty out and fill again.
      nft(['-f', '-'], renderRuleset(iface, [], [counterName(a.publicKey)]));
      expect(nft(['list', 'table', 'inet', table])).not.toContain(a.address);
      nft(['-f', '-'], renderRuleset(iface, [a, b]));
      expect(nft(['list', 'set', 'inet', table, 'allowed'])).toContain(b.address);
    } finally {
      execFileSync('nft', ['delete', 'table', 'inet', table], { stdio: 'ignore' });
    }
  });
});

// Peer bookkeeping of the WireGuard gateway: wanted peers from the catalog, `wg show dump`
// parsing (without keeping the interface's private key), and the diff applied with `wg set`.
import { describe, expect, it } from 'vitest';
import type { Peer } from '../../../src/catalog/types.js';
import { generateKeyPair } from '../../../src/gateway/keys.js';
import { diffPeers, parseDump, parseEndpoints, wantedPeers, wgSetArgs } from '../../../src/gateway/peers.js';

const orgs: Record<string, number> = { acme: 0x18, beta: 0x22b7 };
const nid = (o: string): number | undefined => orgs[o];
const peer = (over: Partial<Peer>): Peer => ({
  name: 'laptop',
  org: 'acme',
  region: 'ewr',
  address: 'fdaa:0:18:a7b:d6b:0:1:2',
  public_key: generateKeyPair().public_key,
  created_at: 1,
  ...over,
});

describe('wantedPeers', () => {
  it('maps each catalog peer to its /128 and org', () => {
    const p = peer({ address: 'FDAA:0:18:A7B:D6B:0:1:2' });
    const { wanted, skipped } = wantedPeers([p], nid);
    expect(skipped).toEqual([]);
    expect(wanted.get(p.public_key)).toEqual({ publicKey: p.public_key, address: 'fdaa:0:18:a7b:d6b:0:1:2', org: 'acme', networkId: 0x18, name: 'acme/laptop' });
  });

  it('skips a peer whose address is outside its org, and one of an unknown org', () => {
    const outside = peer({ address: 'fdaa:0:22b7:a7b:d6b:0:1:2' });
    const unknown = peer({ org: 'ghost' });
    const garbage = peer({ address: 'not-an-address' });
    const { wanted, skipped } = wantedPeers([outside, unknown, garbage], nid);
    expect(wanted.size).toBe(0);
    expect(skipped.map((s) => s.peer)).toHaveLength(3);
    for (const p of [outside, unknown, garbage]) expect(skipped.map((s) => s.peer)).toContain(p);
    expect(skipped.find((s) => s.peer === outside)!.reason).toMatch(/not inside org acme's prefix/);
  });

  it('gives a key used twice to the older peer only (one key cannot hold two orgs)', () => {
    const key = generateKeyPair().public_key;
    const young = peer({ name: 'b', org: 'beta', address: 'fdaa:0:22b7:a7b:d6b:0:1:2', public_key: key, created_at: 5 });
    const old = peer({ name: 'a', public_key: key, created_at: 2 });
    const { wanted, skipped } = wantedPeers([young, old], nid);
    expect([...wanted.values()].map((w) => w.name)).toEqual(['acme/a']);
    expect(skipped).toEqual([{ peer: young, reason: 'public key already used by peer acme/a' }]);
  });
});

describe('parseDump', () => {
  const priv = generateKeyPair().private_key;
  const pub = generateKeyPair().public_key;
  const a = generateKeyPair().public_key;
  const b = generateKeyPair().public_key;
  const text = [
    `${priv}\t${pub}\t51820\toff`,
    `${a}\t(none)\t[fd00:99::2]:43382\tfdaa:0:18:a7b:d6b:0:1:2/128\t1795558472\t740\t668\toff`,
    `${b}\t(none)\t(none)\t(none)\t0\t0\t0\toff`,
    '',
  ].join('\n');

  it('reads each peer and never keeps the interface line', () => {
    const peers = parseDump(text);
    expect([...peers.keys()]).toEqual([a, b]);
    expect(peers.get(a)).toEqual({ publicKey: a, allowedIps: ['fdaa:0:18:a7b:d6b:0:1:2/128'], latest_handshake: 1795558472, rx_bytes: 740, tx_bytes: 668, endpoint: '[fd00:99::2]:43382' });
    expect(peers.get(b)).toEqual({ publicKey: b, allowedIps: [], latest_handshake: 0, rx_bytes: 0, tx_bytes: 0 });
    expect(JSON.stringify([...peers.values()])).not.toContain(priv);
  });

  it('ignores truncated lines and empty output', () => {
    expect(parseDump('').size).toBe(0);
    expect(parseDump(`${priv}\t${pub}\t1\toff\n${a}\t(none)\n`).size).toBe(0);
  });
});

describe('diffPeers / wgSetArgs', () => {
  const p1 = peer({ name: 'one' });
  const p2 = peer({ name: 'two', address: 'fdaa:0:18:a7b:d6b:0:2:2' });
  const { wanted } = wantedPeers([p1, p2], nid);
  const stranger = generateKeyPair().public_key;

  it('adds missing peers, fixes widened AllowedIPs and removes peers the catalog lost', () => {
    const actual = new Map([
      [p1.public_key, { allowedIps: ['fdaa:0:18:a7b:d6b:0:1:2/128'] }],
      [p2.public_key, { allowedIps: ['fdaa:0:18::/48'] }],
      [stranger, { allowedIps: ['fdaa:0:22b7::/48'] }],
    ]);
    const diff = diffPeers(wanted, actual);
    expect(diff.set.map((w) => w.name)).toEqual(['acme/two']);
    expect(diff.remove).toEqual([stranger]);
    expect(wgSetArgs('sixpn0', diff)).toEqual(['set', 'sixpn0', 'peer', stranger, 'remove', 'peer', p2.public_key, 'allowed-ips', 'fdaa:0:18:a7b:d6b:0:2:2/128']);
  });

  it('is empty when the interface already matches', () => {
    const actual = new Map([...wanted.values()].map((w) => [w.publicKey, { allowedIps: [`${w.address}/128`] }]));
    const diff = diffPeers(wanted, actual);
    expect(diff).toEqual({ set: [], remove: [] });
    expect(wgSetArgs('sixpn0', diff)).toEqual([]);
  });
});

describe('remembered endpoints', () => {
  const p = peer({});
  const { wanted } = wantedPeers([p], nid);

  it('gives a peer being added its last endpoint and a keepalive, so the gateway starts the handshake', () => {
    const args = wgSetArgs('sixpn0', { set: [...wanted.values()], remove: [] }, new Map([[p.public_key, '[fd5a::2]:43382']]));
    expect(args).toEqual(['set', 'sixpn0', 'peer', p.public_key, 'allowed-ips', 'fdaa:0:18:a7b:d6b:0:1:2/128', 'endpoint', '[fd5a::2]:43382', 'persistent-keepalive', '25']);
  });

  it('reads the endpoints file and drops anything that is not an endpoint', () => {
    const m = parseEndpoints(JSON.stringify({ a: '[fd5a::2]:1', b: '10.0.0.1:51820', c: 'evil.example:1', d: 7, e: '[::1]:1 persistent-keepalive 1' }));
    expect([...m]).toEqual([
      ['a', '[fd5a::2]:1'],
      ['b', '10.0.0.1:51820'],
    ]);
    expect(parseEndpoints('not json').size).toBe(0);
    expect(parseEndpoints('[1,2]').size).toBe(0);
  });
});

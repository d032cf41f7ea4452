// Mesh bookkeeping, pure: which hosts become peers with which AllowedIPs, what changes on the
// interface when hosts and orgs come and go, and the routes that follow.
import { describe, expect, it } from 'vitest';
import type { Host, Org } from '../../../src/catalog/types.js';
import { generateKeyPair } from '../../../src/gateway/keys.js';
import { diffMesh, meshKey, routeBatch, wantedMeshPeers, wantedRoutes, wgPeerArgs } from '../../../src/mesh/peers.js';

const orgs: Org[] = [
  { name: 'acme', network_id: 0x18 } as Org,
  { name: 'globex', network_id: 0x30 } as Org,
];
let created = 1;
const host = (name: string, host_id: number, over: Partial<Host> = {}, wg: Partial<NonNullable<Host['wireguard']>> = {}): Host => ({
  name,
  region: 'ewr',
  host_id,
  state: 'up',
  driver: 'netns',
  heartbeat_at: 1,
  session: 'b/1',
  wireguard: { public_key: generateKeyPair().public_key, endpoint: `[fd5a::${host_id.toString(16)}]:51821`, ...wg },
  created_at: created++,
  updated_at: 1,
  ...over,
});

describe('wantedMeshPeers', () => {
  it('makes every other netns host a peer whose AllowedIPs are its /80 slice of every org', () => {
    const a = host('ewr-1', 0x0a7b007d);
    const b = host('iad-1', 0x00020003);
    const { peers, skipped } = wantedMeshPeers('ewr-1', [a, b], orgs);
    expect(skipped).toEqual([]);
    expect([...peers.values()]).toEqual([{ host: 'iad-1', publicKey: b.wireguard!.public_key, endpoint: '[fd5a::20003]:51821', allowedIps: ['fdaa:0:18:2:3::/80', 'fdaa:0:30:2:3::/80'] }]);
  });

  it('leaves out hosts without a key, process-driver hosts and itself', () => {
    const self = host('ewr-1', 0x10);
    const proc = host('p-1', 0x11, { driver: 'process' });
    const nokey = host('k-1', 0x12, { wireguard: undefined });
    const { peers } = wantedMeshPeers('ewr-1', [self, proc, nokey], orgs);
    expect(peers.size).toBe(0);
  });

  it('gives a public key used twice to the older host only, with the reason', () => {
    const a = host('ewr-1', 0x10);
    const older = host('iad-1', 0x11);
    const copy = host('lhr-1', 0x12, {}, { public_key: older.wireguard!.public_key });
    const { peers, skipped } = wantedMeshPeers('ewr-1', [a, copy, older], orgs);
    expect([...peers.values()].map((p) => p.host)).toEqual(['iad-1']);
    expect(skipped).toEqual([{ host: 'lhr-1', reason: 'public key already used by host iad-1' }]);
  });

  it("routes a gateway host's laptops under its gateway host id, unless another host claims the id", () => {
    const a = host('ewr-1', 0x10);
    const gw = host('iad-1', 0x11, {}, { gateway_host_id: 0x0a7b0d6b });
    const thief = host('lhr-1', 0x12, {}, { gateway_host_id: 0x0a7b0d6b });
    const mine = host('fra-1', 0x13, {}, { gateway_host_id: 0x10 });
    const { peers, skipped } = wantedMeshPeers('ewr-1', [a, gw, thief, mine], orgs);
    expect(peers.get(gw.wireguard!.public_key)!.allowedIps).toEqual(['fdaa:0:18:0:11::/80', 'fdaa:0:18:a7b:d6b::/80', 'fdaa:0:30:0:11::/80', 'fdaa:0:30:a7b:d6b::/80']);
    expect(peers.get(thief.wireguard!.public_key)!.allowedIps).toEqual(['fdaa:0:18:0:12::/80', 'fdaa:0:30:0:12::/80']);
    expect(peers.get(mine.wireguard!.public_key)!.allowedIps).toEqual(['fdaa:0:18:0:13::/80', 'fdaa:0:30:0:13::/80']);
    expect(skipped.map((s) => s.host).sort()).toEqual(['fra-1', 'lhr-1']);
  });

  it('never lets two peers hold the same prefix (WireGuard would move it silently)', () => {
    const hs = [host('a', 0x10), host('b', 0x11), host('c', 0x12, {}, { gateway_host_id: 0x20 }), host('d', 0x13, {}, { gateway_host_id: 0x20 })];
    const { peers } = wantedMeshPeers('a', hs, orgs);
    const all = [...peers.values()].flatMap((p) => p.allowedIps);
    expect(new Set(all).size).toBe(all.length);
  });
});

describe('diffMesh', () => {
  const a = host('ewr-1', 0x10);
  const b = host('iad-1', 0x11);
  const c = host('lhr-1', 0x12);
  const { peers } = wantedMeshPeers('ewr-1', [a, b, c], orgs);
  const kb = b.wireguard!.public_key;
  const kc = c.wireguard!.public_key;

  it('adds new peers, removes gone ones, leaves unchanged ones alone', () => {
    const stale = generateKeyPair().public_key;
    const actual = new Map([
      [kb, { allowedIps: [...peers.get(kb)!.allowedIps].reverse() }],
      [stale, { allowedIps: ['fdaa:0:18:0:99::/80'] }],
    ]);
    const d = diffMesh(peers, actual, new Map([[kb, peers.get(kb)!.endpoint]]));
    expect(d.set.map((p) => p.host)).toEqual(['lhr-1']);
    expect(d.remove).toEqual([stale]);
  });

  it('sets a peer again when its announced endpoint changed, not when it merely roamed', () => {
    const actual = new Map([
      [kb, { allowedIps: peers.get(kb)!.allowedIps }],
      [kc, { allowedIps: peers.get(kc)!.allowedIps }],
    ]);
    const d = diffMesh(peers, actual, new Map([[kb, '[fd5a::old]:51821'], [kc, peers.get(kc)!.endpoint]]));
    expect(d.set.map((p) => p.host)).toEqual(['iad-1']);
  });

  it('sets every peer again when an org appears (AllowedIPs grow)', () => {
    const more = wantedMeshPeers('ewr-1', [a, b, c], [...orgs, { name: 'initech', network_id: 0x40 } as Org]).peers;
    const actual = new Map([...peers].map(([k, p]) => [k, { allowedIps: p.allowedIps }]));
    const announced = new Map([...peers].map(([k, p]) => [k, p.endpoint]));
    expect(diffMesh(more, actual, announced).set).toHaveLength(2);
    expect(diffMesh(peers, actual, announced).set).toHaveLength(0);
  });
});

describe('wg and ip arguments', () => {
  it('replaces the whole AllowedIPs list of a peer with its endpoint and keepalive', () => {
    const p = { host: 'iad-1', publicKey: 'k=', endpoint: '[fd5a::11]:51821', allowedIps: ['fdaa:0:18:0:11::/80', 'fdaa:0:30:0:11::/80'] };
    expect(wgPeerArgs('sixpn-mesh', p, 25)).toEqual(['set', 'sixpn-mesh', 'peer', 'k=', 'allowed-ips', 'fdaa:0:18:0:11::/80,fdaa:0:30:0:11::/80', 'endpoint', '[fd5a::11]:51821', 'persistent-keepalive', '25']);
    const { endpoint: _e, ...noEndpoint } = p;
    expect(wgPeerArgs('m', noEndpoint, 25)).not.toContain('endpoint');
  });

  it('routes exactly the wanted prefixes into the tunnel', () => {
    const want = wantedRoutes([{ host: 'x', publicKey: 'k', allowedIps: ['fdaa:0:18:0:11::/80', 'fdaa:0:30:0:11::/80'] }]);
    const batch = routeBatch('m0', 'local', new Set(['fdaa:0:18:0:11::/80', 'fdaa:0:18:0:99::/80']), want);
    expect(batch.trim().split('\n')).toEqual(['route del fdaa:0:18:0:99::/80 dev m0 table local', 'route replace fdaa:0:30:0:11::/80 dev m0 table local']);
    expect(routeBatch('m0', 'local', want, want)).toBe('');
  });

  it('meshKey ignores heartbeats and changes with what the mesh uses', () => {
    const h = host('a', 0x10);
    expect(meshKey({ ...h, heartbeat_at: 999, updated_at: 999 })).toBe(meshKey(h));
    expect(meshKey({ ...h, wireguard: { ...h.wireguard!, endpoint: '[fd5a::1]:1' } })).not.toBe(meshKey(h));
    expect(meshKey({ ...h, driver: 'process' })).toBe('');
  });
});

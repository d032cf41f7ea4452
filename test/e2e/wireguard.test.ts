// The WireGuard gateway end to end at the tunnel level: a gateway in the test's namespace, two
// laptops (org acme, org beta) in their own namespaces over an IPv6 underlay, real wireguard-go
// and wg on both sides. Handshake and traffic, org isolation at the gateway, forged sources
// dropped by cryptokey routing, removal within 1 s, and a restart that keeps the gateway key.
import { createServer as createTcpServer, type Server } from 'node:net';
import { createSocket, type Socket } from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orgDnsAddress, orgPrefixCidr, parseHostId } from '../../src/addressing/index.js';
import type { Peer } from '../../src/catalog/types.js';
import { loadConfig } from '../../src/config/index.js';
import { counterName, parseCounters, tableName } from '../../src/gateway/firewall.js';
import { startGatewayRole, type GatewayRole } from '../../src/gateway/index.js';
import { generateKeyPair, renderPeerConfig } from '../../src/gateway/keys.js';
import { startNode, type RunningNode } from '../../src/node.js';
import { hasCommand, IN_NETNS } from '../harness/env.js';
import { freePort, sleep, waitFor } from '../harness/net.js';
import { Netns, Underlay, tcpRequest, udpSend, uniqueName, upLaptopTunnel, type LaptopTunnel } from '../harness/wg.js';

const ACME = 0x7a01;
const BETA = 0x7a02;
const ready = IN_NETNS && hasCommand('wireguard-go') && hasCommand('wg') && hasCommand('nft');

describe.skipIf(!ready)('wireguard gateway (tunnel level)', () => {
  let dir: string;
  let configFile: string;
  let underlay: Underlay;
  let lapA: Netns;
  let lapB: Netns;
  let node: RunningNode | null = null;
  let iface: string;
  const tunnels: LaptopTunnel[] = [];
  const servers: (Server | Socket)[] = [];
  let peerA: Peer;
  let peerB: Peer;
  let tunA: LaptopTunnel;
  let tunB: LaptopTunnel;
  let acmeEcho: number;
  let betaEcho: number;

  const gateway = (): GatewayRole => node!.ctx.roles.get('gateway') as GatewayRole;
  const startGateway = async (): Promise<void> => {
    node = await startNode(loadConfig(configFile), ['gateway'], { gateway: startGatewayRole });
  };
  /** What `sixpn wireguard create` does: a key pair here, only the public key to the catalog, a config file. */
  const createPeer = async (org: string, name: string): Promise<{ peer: Peer; file: string }> => {
    const keys = generateKeyPair();
    const cfg = node!.ctx.config;
    const peer = await node!.ctx.store.createPeer({ name, org, region: 'ewr', public_key: keys.public_key }, { gatewayHostId: parseHostId(cfg.wireguard.host_id)! });
    const nid = org === 'acme' ? ACME : BETA;
    const file = join(dir, `${name}.conf`);
    writeFileSync(
      file,
      renderPeerConfig({ privateKey: keys.private_key, address: peer.address, dns: orgDnsAddress(nid), gatewayPublicKey: gateway().publicKey, allowedIps: orgPrefixCidr(nid), endpoint: cfg.wireguard.endpoint }),
      { mode: 0o600 },
    );
    return { peer, file };
  };
  /** A TCP server on a 6PN address of this namespace that answers with the caller's address. */
  const echoOn = async (address: string): Promise<number> => {
    const port = await freePort();
    const srv = createTcpServer((s) => {
      s.on('error', () => undefined);
      s.end(`from ${s.remoteAddress}\n`);
    });
    await new Promise<void>((r) => srv.listen(port, address, r));
    servers.push(srv);
    return port;
  };
  const counters = (): Map<string, number> => parseCounters(execFileSync('nft', ['-j', 'list', 'counters', 'table', 'inet', tableName(iface)], { encoding: 'utf8' }));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-wg-'));
    const rand = Math.floor(Math.random() * 0xffff).toString(16);
    underlay = await Underlay.create(`fd5a:${rand}:0:1`);
    lapA = await Netns.create('sxla');
    lapB = await Netns.create('sxlb');
    await underlay.attach(lapA);
    await underlay.attach(lapB);
    iface = uniqueName('sxgw');
    const port = await freePort();
    configFile = join(dir, 'gateway.toml');
    writeFileSync(
      configFile,
      `[node]
host_id = "a7b:7d"
[catalog]
store = "embedded"
path = "catalog.json"
[log]
level = "warn"
[wireguard]
enabled = true
interface = "${iface}"
listen_port = ${port}
endpoint = "[${underlay.hostAddress}]:${port}"
state_file = "state/gateway.json"
status_interval = "300ms"
[[orgs]]
name = "acme"
network_id = ${ACME}
[[orgs]]
name = "beta"
network_id = ${BETA}
`,
    );
    await startGateway();
    acmeEcho = await echoOn(orgDnsAddress(ACME));
    betaEcho = await echoOn(orgDnsAddress(BETA));
  });

  afterAll(async () => {
    for (const t of tunnels) await t.stop().catch(() => undefined);
    await node?.stop();
    for (const s of servers) 'close' in s && s.close();
    await lapA?.delete();
    await lapB?.delete();
    await underlay?.delete();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the gateway key in a 0600 state file only', () => {
    const state = join(dir, 'state/gateway.json');
    expect(statSync(state).mode & 0o777).toBe(0o600);
    const keys = JSON.parse(readFileSync(state, 'utf8')) as { private_key: string; public_key: string };
    expect(keys.public_key).toBe(gateway().publicKey);
    expect(execFileSync('wg', ['pubkey'], { input: `${keys.private_key}\n`, encoding: 'utf8' }).trim()).toBe(keys.public_key);
    expect(execFileSync('wg', ['show', iface, 'public-key'], { encoding: 'utf8' }).trim()).toBe(keys.public_key);
    expect(gateway().describe!().join('\n')).not.toContain(keys.private_key);
  });

  it('configures a new catalog peer at once; the laptop handshakes and reaches its org', async () => {
    const created = Date.now();
    const a = await createPeer('acme', uniqueName('lapa'));
    peerA = a.peer;
    await waitFor(() => execFileSync('wg', ['show', iface, 'allowed-ips'], { encoding: 'utf8' }).includes(`${peerA.public_key}\t${peerA.address}/128`), { timeoutMs: 1_000, what: 'peer A on the gateway interface' });
    tunA = await upLaptopTunnel(lapA, a.file);
    tunnels.push(tunA);
    const r = await tcpRequest(lapA, orgDnsAddress(ACME), acmeEcho);
    expect(r.stdout.trim()).toBe(`from ${peerA.address}`);
    const hs = await tunA.gatewayStatus();
    expect(hs.latest_handshake).toBeGreaterThan(0);
    console.log(`create -> first handshake + first reply: ${Date.now() - created} ms`);
    const status = await waitFor(
      () => {
        const s = gateway().peerStatus().get(peerA.public_key);
        return s?.endpoint ? s : null;
      },
      { what: 'peer status', timeoutMs: 3_000 },
    );
    expect(status.latest_handshake).toBeGreaterThan(0);
    expect(status.rx_bytes).toBeGreaterThan(0);
    expect(status.endpoint).toMatch(/^\[fd5a:/);

    const b = await createPeer('beta', uniqueName('lapb'));
    peerB = b.peer;
    tunB = await upLaptopTunnel(lapB, b.file);
    tunnels.push(tunB);
    expect((await tcpRequest(lapB, orgDnsAddress(BETA), betaEcho)).stdout.trim()).toBe(`from ${peerB.address}`);
  });

  it("drops and counts a peer's packets to another org's addresses", async () => {
    // A laptop can route anything into its tunnel: widen A's AllowedIPs to beta's /48 as an attacker would.
    const gwKey = gateway().publicKey;
    await lapA.must('wg', ['set', tunA.iface, 'peer', gwKey, 'allowed-ips', `${orgPrefixCidr(ACME)},${orgPrefixCidr(BETA)}`]);
    await lapA.must('ip', ['route', 'replace', orgPrefixCidr(BETA), 'dev', tunA.iface]);
    const before = counters().get(counterName(peerA.public_key)) ?? 0;
    const r = await tcpRequest(lapA, orgDnsAddress(BETA), betaEcho, { timeoutMs: 1_000 });
    expect(r.stdout.trim()).toBe('ERR ETIMEDOUT');
    expect((counters().get(counterName(peerA.public_key)) ?? 0) - before).toBeGreaterThan(0);
    // Peer-to-peer across orgs is dropped as well.
    const toPeer = await tcpRequest(lapA, peerB.address, 22, { timeoutMs: 1_000 });
    expect(toPeer.stdout.trim()).toBe('ERR ETIMEDOUT');
    // Its own org still works.
    expect((await tcpRequest(lapA, orgDnsAddress(ACME), acmeEcho)).stdout.trim()).toBe(`from ${peerA.address}`);
    // And the other way round.
    await lapB.must('wg', ['set', tunB.iface, 'peer', gwKey, 'allowed-ips', `${orgPrefixCidr(ACME)},${orgPrefixCidr(BETA)}`]);
    await lapB.must('ip', ['route', 'replace', orgPrefixCidr(ACME), 'dev', tunB.iface]);
    expect((await tcpRequest(lapB, orgDnsAddress(ACME), acmeEcho, { timeoutMs: 1_000 })).stdout.trim()).toBe('ERR ETIMEDOUT');
    expect(counters().get(counterName(peerB.public_key))).toBeGreaterThan(0);
  });

  it('drops a packet whose source is outside the peer\'s /128 inside the tunnel (cryptokey routing)', async () => {
    const sink = createSocket('udp6');
    const got: string[] = [];
    sink.on('message', (msg, from) => got.push(`${from.address} ${msg.toString()}`));
    const port = await freePort();
    await new Promise<void>((r) => sink.bind(port, orgDnsAddress(ACME), r));
    servers.push(sink);
    const forgedSameOrg = `fdaa:0:${ACME.toString(16)}:a7b:d6b:ffff:fff0:2`;
    const forgedOtherOrg = peerB.address;
    await lapA.must('wg', ['set', tunA.iface, 'peer', gateway().publicKey, 'allowed-ips', '::/0']);
    for (const f of [forgedSameOrg, forgedOtherOrg]) await lapA.must('ip', ['addr', 'add', `${f}/128`, 'dev', tunA.iface, 'nodad']);
    const otherBefore = counters().get('other') ?? 0;
    const rxBefore = gateway().peerStatus().get(peerA.public_key)?.rx_bytes ?? 0;
    for (const f of [forgedSameOrg, forgedOtherOrg]) expect((await udpSend(lapA, orgDnsAddress(ACME), port, f, `forged ${f}`)).code).toBe(0);
    expect((await udpSend(lapA, orgDnsAddress(ACME), port, tunA.address, 'genuine')).code).toBe(0);
    await waitFor(() => got.length > 0, { what: 'the genuine datagram' });
    await sleep(300);
    expect(got).toEqual([`${peerA.address} genuine`]);
    // The forged packets reached the gateway (bytes counted) but never its network stack:
    // wireguard-go dropped them before the filter could see them.
    await waitFor(() => (gateway().peerStatus().get(peerA.public_key)?.rx_bytes ?? 0) > rxBefore, { what: 'rx bytes' });
    expect(counters().get('other') ?? 0).toBe(otherBefore);
  });

  it('removes a peer within 1 s; its next request fails and its key no longer handshakes', async () => {
    const t0 = Date.now();
    await node!.ctx.store.removePeer('acme', peerA.name);
    await waitFor(() => !execFileSync('wg', ['show', iface, 'peers'], { encoding: 'utf8' }).includes(peerA.public_key), { timeoutMs: 1_000, everyMs: 5, what: 'peer A gone from the interface' });
    const removedMs = Date.now() - t0;
    expect(removedMs).toBeLessThan(1_000);
    expect((await tcpRequest(lapA, orgDnsAddress(ACME), acmeEcho, { timeoutMs: 1_000 })).stdout.trim()).toBe('ERR ETIMEDOUT');
    // A fresh tunnel from the same file must handshake first: it never completes.
    await tunA.stop();
    tunnels.splice(tunnels.indexOf(tunA), 1);
    const again = await upLaptopTunnel(lapA, join(dir, `${peerA.name}.conf`));
    tunnels.push(again);
    expect((await tcpRequest(lapA, orgDnsAddress(ACME), acmeEcho, { timeoutMs: 1_500 })).stdout.trim()).toBe('ERR ETIMEDOUT');
    expect((await again.gatewayStatus()).latest_handshake).toBe(0);
    expect(gateway().peerStatus().has(peerA.public_key)).toBe(false);
  });

  it('restarts with the same key: the interface and filter go on stop, peers reconnect with their configs', async () => {
    const key = gateway().publicKey;
    await node!.stop();
    node = null;
    expect(() => execFileSync('ip', ['link', 'show', iface], { stdio: 'pipe' })).toThrow();
    expect(() => execFileSync('nft', ['list', 'table', 'inet', tableName(iface)], { stdio: 'pipe' })).toThrow();
    await startGateway();
    expect(gateway().publicKey).toBe(key);
    // B's laptop is untouched: it re-handshakes on its own once the old session goes unanswered.
    const t0 = Date.now();
    await waitFor(async () => (await tcpRequest(lapB, orgDnsAddress(BETA), betaEcho, { timeoutMs: 1_000 })).stdout.trim() === `from ${peerB.address}`, {
      timeoutMs: 40_000,
      everyMs: 200,
      what: 'peer B through the restarted gateway',
    });
    console.log(`peer B back through the restarted gateway after ${Date.now() - t0} ms`);
  }, 60_000);
});

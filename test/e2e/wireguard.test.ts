// A laptop's view of the WireGuard gateway, end to end: `sixpn up` (control API, DNS, Flycast
// proxy, gateway) in the test's namespace; two laptops (org acme, org beta) in namespaces of
// their own behind an IPv6 underlay, each bringing up the exact file `sixpn wireguard create`
// wrote, with real wireguard-go, wg, dig, curl and psql. Checks: DNS and Flycast (HTTP, PostgreSQL) of the
// own org through the tunnel; nothing across orgs (DNS answers, filter drops, counted); forged
// sources dropped by cryptokey routing; `wireguard remove` effective within 1 s; a restart that
// keeps the gateway key so the same configs reconnect.
import { createSocket } from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orgDnsAddress, orgPrefixCidr } from '../../src/addressing/index.js';
import { counterName, parseCounters, tableName } from '../../src/gateway/firewall.js';
import { hasCommand, IN_NETNS } from '../harness/env.js';
import { freePort, sleep, waitFor } from '../harness/net.js';
import { startHttpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { runSixpn, startSixpn, type Proc } from '../harness/procs.js';
import { digIn, hasPostgres, Netns, startPostgres, Underlay, tcpRequest, udpSend, uniqueName, upLaptopTunnel, type LaptopTunnel, type TestPostgres } from '../harness/wg.js';

const ACME = 0x7a01;
const BETA = 0x7a02;
const ready = IN_NETNS && ['wireguard-go', 'wg', 'wg-quick', 'nft', 'dig', 'curl', 'psql', 'runuser'].every(hasCommand) && hasPostgres();

interface ListedPeer {
  name: string;
  public_key: string;
  address: string;
  latest_handshake?: number;
  rx_bytes?: number;
  tx_bytes?: number;
  endpoint?: string;
}

describe.skipIf(!ready)('wireguard gateway: laptops through the tunnel', () => {
  let dir: string;
  let configFile: string;
  let underlay: Underlay;
  let lapA: Netns;
  let lapB: Netns;
  let node: Proc | null = null;
  let iface: string;
  let env: NodeJS.ProcessEnv;
  let gatewayKey: string;
  const machines: TestMachine[] = [];
  let postgres: TestPostgres | null = null;
  const tunnels: LaptopTunnel[] = [];
  const names = { a: uniqueName('lapa'), b: uniqueName('lapb') };
  let tunA: LaptopTunnel;
  let tunB: LaptopTunnel;
  let webFlycast: string;
  let pgFlycast: string;

  const sixpn = (args: string[]) => runSixpn(args, { env, cwd: dir });
  const startGateway = async (): Promise<void> => {
    node = startSixpn(['up', '--config', configFile], { env });
    await node.waitForLine(/sixpn ready/, 20_000);
  };
  const counters = (): Map<string, number> => parseCounters(execFileSync('nft', ['-j', 'list', 'counters', 'table', 'inet', tableName(iface)], { encoding: 'utf8' }));
  /** The control API's peer list with the gateway's status merged in (what `wireguard list` shows). */
  const listPeers = async (org: string): Promise<ListedPeer[]> => {
    const res = await fetch(`${env.SIXPN_API_URL}/v1/orgs/${org}/wireguard`, { headers: { authorization: `Bearer ${env.SIXPN_TOKEN}` } });
    expect(res.status).toBe(200);
    return (await res.json()) as ListedPeer[];
  };
  const curl = (ns: Netns, url: string, maxTime = 3) => ns.exec('curl', ['-sS', '-g', '-m', String(maxTime), '-o', '-', '-w', '\\n%{http_code}', url], { timeoutMs: (maxTime + 5) * 1000 });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-wg-'));
    underlay = await Underlay.create(`fd5a:${Math.floor(Math.random() * 0xffff).toString(16)}:0:1`);
    lapA = await Netns.create('sxla');
    lapB = await Netns.create('sxlb');
    await underlay.attach(lapA);
    await underlay.attach(lapB);
    machines.push(await startHttpMachine({ id: 'a0010001000000aa', host: '127.0.0.1' }));
    machines.push(await startHttpMachine({ id: 'a0020001000000aa', host: '127.0.0.1' }));
    const [web, api] = machines as [TestMachine, TestMachine];
    postgres = await startPostgres(await freePort());
    iface = uniqueName('sxgw');
    const wgPort = await freePort();
    const apiPort = await freePort();
    const token = `t-${Math.random().toString(36).slice(2)}-0123456789`;
    env = { ...process.env, SIXPN_API_URL: `http://127.0.0.1:${apiPort}`, SIXPN_TOKEN: token, LOG_LEVEL: 'warn' };
    configFile = join(dir, 'gateway.toml');
    writeFileSync(
      configFile,
      `[node]
region = "ewr"
[catalog]
path = "catalog.json"
[control]
listen = "127.0.0.1:${apiPort}"
token = "${token}"
[health]
enabled = false
[wireguard]
enabled = true
interface = "${iface}"
listen_port = ${wgPort}
endpoint = "[${underlay.hostAddress}]:${wgPort}"
state_file = "state/gateway.json"
status_interval = "300ms"

[[orgs]]
name = "acme"
network_id = ${ACME}
[[orgs]]
name = "beta"
network_id = ${BETA}

[[apps]]
name = "web"
org = "acme"
[[apps.services]]
protocol = "tcp"
internal_port = 8080
ports = [{ port = 80, handlers = ["http"] }]
[[apps]]
name = "pg"
org = "acme"
[[apps.services]]
protocol = "tcp"
internal_port = 5432
ports = [{ port = 5432 }]
[[apps]]
name = "api"
org = "beta"
[[apps.services]]
protocol = "tcp"
internal_port = 8080
ports = [{ port = 80, handlers = ["http"] }]

[[machines]]
id = "${web.id}"
app = "web"
region = "ewr"
upstream = "127.0.0.1:${web.port}"
[[machines]]
id = "a0010002000000aa"
app = "pg"
region = "ewr"
upstream = "127.0.0.1:${postgres.port}"
[[machines]]
id = "${api.id}"
app = "api"
region = "ewr"
upstream = "127.0.0.1:${api.port}"

[[ips]]
app = "web"
[[ips]]
app = "pg"
[[ips]]
app = "api"
`,
    );
    await startGateway();
  });

  afterAll(async () => {
    for (const t of tunnels) await t.stop().catch(() => undefined);
    await node?.stop();
    await stopMachines(machines);
    await postgres?.stop();
    await lapA?.delete();
    await lapB?.delete();
    await underlay?.delete();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the gateway key in its 0600 state file and nowhere in the node output', () => {
    const state = join(dir, 'state/gateway.json');
    expect(statSync(state).mode & 0o777).toBe(0o600);
    const keys = JSON.parse(readFileSync(state, 'utf8')) as { private_key: string; public_key: string };
    gatewayKey = keys.public_key;
    expect(execFileSync('wg', ['pubkey'], { input: `${keys.private_key}\n`, encoding: 'utf8' }).trim()).toBe(keys.public_key);
    expect(execFileSync('wg', ['show', iface, 'public-key'], { encoding: 'utf8' }).trim()).toBe(keys.public_key);
    expect(node!.output()).toContain(keys.public_key);
    expect(node!.output()).not.toContain(keys.private_key);
  });

  it('a peer from `wireguard create` handshakes and resolves its own org only', async () => {
    const created = Date.now();
    const r = await sixpn(['wireguard', 'create', 'acme', 'ewr', names.a, '--output', join(dir, `${names.a}.conf`)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/cannot be recovered/);
    const conf = readFileSync(join(dir, `${names.a}.conf`), 'utf8');
    expect(conf).toContain(`PublicKey = ${gatewayKey}`);
    expect(conf).toContain(`DNS = ${orgDnsAddress(ACME)}`);
    tunA = await upLaptopTunnel(lapA, join(dir, `${names.a}.conf`));
    tunnels.push(tunA);
    const apps = await digIn(lapA, orgDnsAddress(ACME), '_apps.internal', 'TXT');
    console.log(`create -> first DNS answer through the tunnel: ${Date.now() - created} ms`);
    expect(apps.status).toBe('NOERROR');
    expect(apps.answers.join(' ').split(/[",\s]+/).filter(Boolean).sort()).toEqual(['pg', 'web']);
    expect((await tunA.gatewayStatus()).latest_handshake).toBeGreaterThan(0);
    const listed = await waitFor(
      async () => (JSON.parse((await sixpn(['wireguard', 'list', 'acme', '--json'])).stdout) as ListedPeer[]).find((p) => p.name === names.a && (p.latest_handshake ?? 0) > 0),
      { what: 'handshake in wireguard list', timeoutMs: 5_000, everyMs: 200 },
    );
    expect(listed.address).toBe(tunA.address);
    expect(listed.rx_bytes).toBeGreaterThan(0);
    expect(listed.endpoint).toMatch(/^\[fd5a:/);
  });

  it("reaches its org's Flycast addresses: HTTP with curl, PostgreSQL with psql", async () => {
    webFlycast = (await digIn(lapA, orgDnsAddress(ACME), 'web.flycast', 'AAAA')).answers[0]!;
    pgFlycast = (await digIn(lapA, orgDnsAddress(ACME), 'pg.flycast', 'AAAA')).answers[0]!;
    expect(webFlycast).toMatch(/^fdaa:0:7a01:0:1::/);
    const res = await curl(lapA, `http://[${webFlycast}]/`);
    expect(res.stdout.trim().split('\n').at(-1), res.stderr).toBe('200');
    expect(res.stdout).toContain('a0010001000000aa');
    const pg = await lapA.exec('psql', ['-h', pgFlycast, '-p', '5432', '-U', 'postgres', '-w', '-Atc', "select 'sum=' || 40 + 2"], { timeoutMs: 10_000 });
    expect(pg.stdout.trim(), pg.stderr).toBe('sum=42');
  });

  it("gives a peer of another org nothing of acme: DNS answers, proxy and filter", async () => {
    const r = await sixpn(['wireguard', 'create', 'beta', 'ewr', names.b, '--output', join(dir, `${names.b}.conf`)]);
    expect(r.code, r.stderr).toBe(0);
    tunB = await upLaptopTunnel(lapB, join(dir, `${names.b}.conf`));
    tunnels.push(tunB);
    const apps = await digIn(lapB, orgDnsAddress(BETA), '_apps.internal', 'TXT');
    expect(apps.answers.join(' ').replace(/"/g, '')).toBe('api');
    const acmeNames = ['web.internal', 'web.flycast', 'top1.nearest.of.web.internal', 'a0010001.vm.web.internal'];
    for (const a of await Promise.all(acmeNames.map((n) => digIn(lapB, orgDnsAddress(BETA), n, 'AAAA')))) {
      expect(['NXDOMAIN', 'REFUSED']).toContain(a.status);
      expect(a.answers).toEqual([]);
    }
    // A laptop controls its own routing: send acme's /48 into the tunnel as an attacker would.
    await lapB.must('wg', ['set', tunB.iface, 'peer', gatewayKey, 'allowed-ips', `${orgPrefixCidr(ACME)},${orgPrefixCidr(BETA)}`]);
    await lapB.must('ip', ['route', 'replace', orgPrefixCidr(ACME), 'dev', tunB.iface]);
    const peerB = (await listPeers('beta'))[0]!;
    const before = counters().get(counterName(peerB.public_key)) ?? 0;
    const [dns, http, pg, p2p] = await Promise.all([
      digIn(lapB, orgDnsAddress(ACME), 'web.internal', 'AAAA', 1),
      curl(lapB, `http://[${webFlycast}]/`, 1),
      lapB.exec('psql', ['-h', pgFlycast, '-p', '5432', '-U', 'postgres', '-w', '-Atc', 'select 1'], { timeoutMs: 10_000, env: { PGCONNECT_TIMEOUT: '2' } }),
      // Peer to peer across orgs too.
      tcpRequest(lapB, tunA.address, 22, { timeoutMs: 1_000 }),
    ]);
    expect(dns.status).toMatch(/no answer/);
    expect(http.stdout.trim().split('\n').at(-1)).toBe('000');
    expect(pg.code).not.toBe(0);
    expect(pg.stderr).toMatch(/timeout expired/);
    expect(p2p.stdout.trim()).toBe('ERR ETIMEDOUT');
    expect((counters().get(counterName(peerB.public_key)) ?? 0) - before).toBeGreaterThan(0);
    const dropLine = await waitFor(
      () => node!.output().split('\n').find((l) => l.includes('dropped packets from a peer to addresses outside its org') && l.includes(`beta/${names.b}`)),
      { what: 'drop log line', timeoutMs: 3_000 },
    );
    expect(JSON.parse(dropLine)).toMatchObject({ module: 'gateway', org: 'beta', public_key: peerB.public_key });
    const metrics = await (await fetch(`${env.SIXPN_API_URL}/metrics`, { headers: { authorization: `Bearer ${env.SIXPN_TOKEN}` } })).text();
    expect(Number(/^sixpn_gateway_dropped_packets_total\{org="beta"\} (\d+)/m.exec(metrics)?.[1] ?? 0)).toBeGreaterThan(0);
    expect(metrics).toMatch(/^sixpn_gateway_peers 2$/m);
  });

  it("drops a packet whose source is outside the peer's /128 inside the tunnel (cryptokey routing)", async () => {
    const sink = createSocket('udp6');
    const got: string[] = [];
    sink.on('message', (msg, from) => got.push(`${from.address} ${msg.toString()}`));
    const port = await freePort();
    await new Promise<void>((r) => sink.bind(port, orgDnsAddress(ACME), r));
    try {
      const forgedSameOrg = `fdaa:0:${ACME.toString(16)}:a7b:d6b:ffff:fff0:2`;
      const forgedOtherOrg = tunB.address;
      await lapA.must('wg', ['set', tunA.iface, 'peer', gatewayKey, 'allowed-ips', '::/0']);
      for (const f of [forgedSameOrg, forgedOtherOrg]) await lapA.must('ip', ['addr', 'add', `${f}/128`, 'dev', tunA.iface, 'nodad']);
      const otherBefore = counters().get('other') ?? 0;
      const { rx_bytes: rxBefore = 0 } = (await listPeers('acme')).find((p) => p.name === names.a)!;
      for (const f of [forgedSameOrg, forgedOtherOrg]) expect((await udpSend(lapA, orgDnsAddress(ACME), port, f, `forged ${f}`)).code).toBe(0);
      expect((await udpSend(lapA, orgDnsAddress(ACME), port, tunA.address, 'genuine')).code).toBe(0);
      await waitFor(() => got.length > 0, { what: 'the genuine datagram' });
      await sleep(300);
      expect(got).toEqual([`${tunA.address} genuine`]);
      // The forged packets reached the gateway (bytes counted) but never its network stack:
      // wireguard-go dropped them before the nftables filter could see them.
      await waitFor(async () => ((await listPeers('acme')).find((p) => p.name === names.a)!.rx_bytes ?? 0) > rxBefore, { what: 'rx bytes' });
      expect(counters().get('other') ?? 0).toBe(otherBefore);
    } finally {
      sink.close();
    }
  });

  it('`wireguard remove` stops the peer within 1 s and its key no longer handshakes', async () => {
    const key = (await listPeers('acme')).find((p) => p.name === names.a)!.public_key;
    const r = await sixpn(['wireguard', 'remove', 'acme', names.a]);
    expect(r.code, r.stderr).toBe(0);
    const t0 = Date.now();
    await waitFor(() => !execFileSync('wg', ['show', iface, 'peers'], { encoding: 'utf8' }).includes(key), { timeoutMs: 1_000, everyMs: 5, what: 'peer A gone from the interface' });
    console.log(`wireguard remove -> peer gone from the interface: ${Date.now() - t0} ms after the command returned`);
    const res = await curl(lapA, `http://[${webFlycast}]/`, 1);
    expect(res.stdout.trim().split('\n').at(-1)).toBe('000');
    // A fresh tunnel from the same file must handshake first: it never completes.
    await tunA.stop();
    tunnels.splice(tunnels.indexOf(tunA), 1);
    const again = await upLaptopTunnel(lapA, join(dir, `${names.a}.conf`));
    tunnels.push(again);
    expect((await tcpRequest(lapA, pgFlycast, 5432, { timeoutMs: 1_500 })).stdout.trim()).toBe('ERR ETIMEDOUT');
    expect((await again.gatewayStatus()).latest_handshake).toBe(0);
  });

  it('restarts a wireguard-go that died, with its key and peers', async () => {
    const wgGo = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(node!.child.pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((f) => f[1] === 'wireguard-go');
    expect(wgGo).toBeDefined();
    process.kill(Number(wgGo![0]), 'SIGKILL');
    await node!.waitForLine(/wireguard-go exited; restarting it/, 5_000);
    await waitFor(async () => (await digIn(lapB, orgDnsAddress(BETA), '_apps.internal', 'TXT', 1)).status === 'NOERROR', { timeoutMs: 15_000, what: 'peer B after the restart' });
    expect(execFileSync('wg', ['show', iface, 'public-key'], { encoding: 'utf8' }).trim()).toBe(gatewayKey);
    expect(execFileSync('wg', ['show', iface, 'allowed-ips'], { encoding: 'utf8' })).toContain(`${tunB.address}/128`);
  });

  it('restarts with the same key: interface and filter go on stop, laptops reconnect with their configs', async () => {
    // Where B connected from is remembered (0600, next to the state file), so that the restarted
    // gateway can start the handshake itself instead of waiting for B's rekey timer.
    const endpointsFile = join(dir, 'state/gateway.json.endpoints.json');
    // Written on the status poll after a change (the status cache itself may be a few ms ahead),
    // so both are read again on each try; what was last seen goes into the failure message.
    let seen = 'nothing read yet';
    await waitFor(
      async () => {
        const peerB = (await listPeers('beta'))[0]!;
        const text = readFileSync(endpointsFile, 'utf8').trim();
        seen = `B's endpoint in the status: ${peerB.endpoint ?? '(none)'}; the file: ${text}`;
        return peerB.endpoint !== undefined && (JSON.parse(text) as Record<string, string>)[peerB.public_key] === peerB.endpoint;
      },
      { what: 'B in the endpoints file', timeoutMs: 10_000 },
    ).catch((err: Error) => {
      throw new Error(`${err.message} (${seen})`);
    });
    expect(statSync(endpointsFile).mode & 0o777).toBe(0o600);
    expect(await node!.stop()).toBe(0);
    node = null;
    expect(() => execFileSync('ip', ['link', 'show', iface], { stdio: 'pipe' })).toThrow();
    expect(() => execFileSync('nft', ['list', 'table', 'inet', tableName(iface)], { stdio: 'pipe' })).toThrow();
    await startGateway();
    expect(execFileSync('wg', ['show', iface, 'public-key'], { encoding: 'utf8' }).trim()).toBe(gatewayKey);
    // B's laptop is untouched: it re-handshakes on its own once its old session goes unanswered.
    const t0 = Date.now();
    await waitFor(async () => (await digIn(lapB, orgDnsAddress(BETA), '_apps.internal', 'TXT', 1)).status === 'NOERROR', {
      timeoutMs: 40_000,
      everyMs: 200,
      what: 'peer B through the restarted gateway',
    });
    console.log(`peer B resolving through the restarted gateway after ${Date.now() - t0} ms`);
    const res = await curl(lapB, `http://[${(await digIn(lapB, orgDnsAddress(BETA), 'api.flycast', 'AAAA')).answers[0]}]/`);
    expect(res.stdout.trim().split('\n').at(-1)).toBe('200');
  }, 60_000);
});

// The mesh across hosts, end to end: three host namespaces (ewr, iad, lhr) joined by veth to an
// "internet" bridge, one real Redis there, `sixpn up` on each (host, mesh, DNS, routed proxy,
// control), wireguard-go tunnels between them, machines of two orgs on every host. From inside
// the machines: curl, a 10 MiB TCP stream, ping6, dig. Then the org boundary on every hop (a
// host whose own filters are gone, a forged source), Flycast failover across hosts, and a host
// whose agent is killed and whose link is cut; a laptop of the lhr gateway reaching every host.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostOrgAddress } from '../../src/addressing/index.js';
import type { Machine } from '../../src/catalog/types.js';
import { machineProgram } from '../harness/machine-program.mjs';
import { CLI, hasCommand, IN_NETNS } from '../harness/env.js';
import { MeshLab, type LabHost } from '../harness/mesh.js';
import { uniqueName, upLaptopTunnel } from '../harness/wg.js';
import { waitFor } from '../harness/net.js';
import { run, runSixpn } from '../harness/procs.js';

const ready = IN_NETNS && ['nft', 'curl', 'dig', 'wg', 'wireguard-go', 'redis-server', 'nsenter', 'setpriv'].every(hasCommand);
const MACHINE = machineProgram(); // readable by the machines' unprivileged user
const TOKEN = 'mesh-e2e-token-0123456789';
const REGIONS = ['ewr', 'iad', 'lhr'] as const;
type Region = (typeof REGIONS)[number];
const WEB_FLYCAST = 'fdaa:0:18:0:1::3';
const INTRA_FLYCAST = 'fdaa:0:30:0:1::3';
/** acme web machines and globex intranet machines, one of each per host; tcp echo of acme in lhr. */
const ID = {
  web: { ewr: 'a1000000000001', iad: 'a2000000000002', lhr: 'a3000000000003' },
  intra: { ewr: 'b1000000000001', iad: 'b2000000000002', lhr: 'b3000000000003' },
  echo: 'c3000000000003',
} as const;

const SEED = [
  '[[orgs]]\nname = "acme"\nnetwork_id = 24',
  '[[orgs]]\nname = "globex"\nnetwork_id = 48',
  '[[apps]]\nname = "web"\norg = "acme"\n  [[apps.services]]\n  protocol = "http"\n  internal_port = 8080\n  ports = [{ port = 80 }]',
  '[[apps]]\nname = "echo"\norg = "acme"\n  [[apps.services]]\n  protocol = "tcp"\n  internal_port = 7\n  ports = [{ port = 7 }]',
  '[[apps]]\nname = "intranet"\norg = "globex"\n  [[apps.services]]\n  protocol = "http"\n  internal_port = 8080\n  ports = [{ port = 80 }]',
  '[[ips]]\napp = "web"\n[[ips]]\napp = "intranet"',
].join('\n');

describe.skipIf(!ready)('mesh: 6PN across three hosts', () => {
  let lab: MeshLab;
  const hosts = {} as Record<Region, LabHost>;
  const addr: Record<string, string> = {};
  let lied = false;

  const cli = (h: LabHost, args: string[]) => runSixpn(['--api', h.api, '--token', TOKEN, ...args]);
  const metric = async (h: LabHost, name: string, org: string): Promise<number> => {
    const res = await request(`${h.api}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const text = await res.body.text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{org="${org}"}`));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  const curl = (h: LabHost, id: string, url: string, timeout = '3') => h.inMachine(id, 'curl', ['-sS', '-g', '-m', timeout, url]);
  const runMachine = async (h: LabHost, app: string, id: string, kind: string, port: number) => {
    const r = await cli(h, ['machines', 'run', '--app', app, '--region', h.region, '--id', id, '--', 'node', MACHINE, '--kind', kind, '--id', `${app}-${h.region}`, '--host', '::', '--port', String(port), '--log']);
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse((await cli(h, ['machines', 'list', '--app', app, '--json'])).stdout) as Machine[];
    const m = list.find((x) => x.id === id)!;
    expect(m.host).toBe(h.name);
    addr[id] = m.address;
  };

  beforeAll(async () => {
    lab = await MeshLab.create(TOKEN);
    // lhr also runs the WireGuard gateway for laptops
    const gateway = (h: string) => `[wireguard]\nenabled = true\ninterface = "${uniqueName('sxg')}"\nlisten_port = 51820\nendpoint = "[${h}]:51820"\nstate_file = "state/gateway.json"\nstatus_interval = "300ms"`;
    for (const r of REGIONS) {
      hosts[r] = await lab.addHost({ name: `${r}-1`, region: r, extra: r === 'ewr' ? SEED : '' });
      if (r === 'lhr') appendFileSync(hosts[r].configFile, `\n${gateway(hosts[r].address)}\n`);
    }
    const t0 = Date.now();
    const step = (what: string) => console.log(`mesh e2e setup: ${what} at ${Date.now() - t0} ms`);
    await hosts.ewr.start();
    await Promise.all([hosts.iad.start(), hosts.lhr.start()]);
    step('three hosts up');
    await lab.meshed(REGIONS.map((r) => `${r}-1`));
    step('meshed');
    for (const r of REGIONS) {
      await runMachine(hosts[r], 'web', ID.web[r], 'http', 8080);
      await runMachine(hosts[r], 'intranet', ID.intra[r], 'http', 8080);
    }
    await runMachine(hosts.lhr, 'echo', ID.echo, 'tcp', 7);
    step('machines run');
    for (const id of Object.keys(addr)) {
      const h = REGIONS.map((r) => hosts[r]).find((x) => x.machineNamespaces().includes(x.machineNs(id)))!;
      await waitFor(async () => (await curl(h, id, `http://[${addr[id]}]:8080/`, '1')).code === 0 || id === ID.echo, { what: `machine ${id} serving`, timeoutMs: 10_000 });
    }
    step('machines serving');
  }, 180_000);

  afterAll(async () => {
    await lab?.delete();
  }, 60_000);

  it('same org across hosts: HTTP from every host to every other', async () => {
    for (const from of REGIONS) {
      for (const to of REGIONS) {
        const r = await curl(hosts[from], ID.web[from], `http://[${addr[ID.web[to]]}]:8080/`);
        expect(r.code, `${from} -> ${to}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toBe(`web-${to}\n`);
      }
    }
  });

  it('same org across hosts: 10 MiB over TCP arrive byte-exact, and ping6 answers', async () => {
    // From the ewr web machine to the lhr echo machine and back: random bytes made in the
    // machine, their hash against the hash of what comes back.
    const script = `const c=require('crypto');const data=c.randomBytes(${10 * 1024 * 1024});const want=c.createHash('sha256').update(data).digest('hex');const h=c.createHash('sha256');let n=0;const s=require('net').connect({host:process.argv[1],port:7},()=>s.end(data));s.on('data',b=>{h.update(b);n+=b.length;});s.on('close',()=>{const got=h.digest('hex');console.log(n+' '+(got===want?'same':'differs'));});`;
    const r = await hosts.ewr.inMachine(ID.web.ewr, 'node', ['-e', script, addr[ID.echo]!], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`${10 * 1024 * 1024} same`);
    for (const to of ['iad', 'lhr'] as const) {
      const p = await hosts.ewr.inMachine(ID.web.ewr, 'ping', ['-6', '-c', '2', '-i', '0.2', '-W', '2', addr[ID.web[to]]!]);
      expect(p.code, p.stdout + p.stderr).toBe(0);
      expect(p.stdout).toMatch(/2 received/);
    }
  });

  it('hosts list shows the mesh: a handshake and bytes to every other host', async () => {
    const t = await cli(hosts.ewr, ['hosts', 'list']);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout.split('\n')[0]).toMatch(/MESH/);
    const list = JSON.parse((await cli(hosts.ewr, ['hosts', 'list', '--json'])).stdout) as Array<{ name: string; mesh?: { self?: boolean; latest_handshake?: number; rx_bytes?: number; tx_bytes?: number } }>;
    for (const r of ['iad', 'lhr'] as const) {
      const h = list.find((x) => x.name === `${r}-1`)!;
      expect(h.mesh?.latest_handshake).toBeGreaterThan(0);
      expect(h.mesh?.rx_bytes).toBeGreaterThan(0);
      expect(h.mesh?.tx_bytes).toBeGreaterThan(0);
    }
    expect(list.find((x) => x.name === 'ewr-1')!.mesh?.self).toBe(true);
    expect(t.stdout).toMatch(/iad-1\s.*handshake (just now|\d+[sm] ago), rx \d+(\.\d)? [KMG]?i?B tx/);
    expect(t.stdout).toMatch(/ewr-1\s.*self \(wireguard-go\)/);
  });

  it('another org across hosts: nothing connects, neither to machines nor through Flycast', async () => {
    for (const to of ['iad', 'lhr'] as const) {
      const r = await curl(hosts.ewr, ID.intra.ewr, `http://[${addr[ID.web[to]]}]:8080/`, '1');
      expect(r.code).not.toBe(0);
      const p = await hosts.ewr.inMachine(ID.intra.ewr, 'ping', ['-6', '-c', '1', '-W', '1', addr[ID.web[to]]!]);
      expect(p.code).not.toBe(0);
    }
    const f = await curl(hosts.ewr, ID.intra.ewr, `http://[${WEB_FLYCAST}]/`, '1');
    expect(f.code).not.toBe(0);
    // its own org's Flycast works from the same machine
    const own = await curl(hosts.ewr, ID.intra.ewr, `http://[${INTRA_FLYCAST}]/`);
    expect(own.stdout).toBe('intranet-ewr\n');
  });

  it('the far host refuses another org too, when the sending host no longer filters', async () => {
    // ewr lies: its own filters are gone (host, mesh). iad's mesh filter still drops globex -> acme.
    const before = await metric(hosts.iad, 'sixpn_mesh_dropped_packets_total', 'globex');
    try {
      // ewr's own resync (every resync_interval) loads its mesh filter back whole, and a probe
      // sent after that is dropped at ewr, never reaching iad: so each try takes the filters
      // away again right before its probe, until iad has counted one.
      const curlExits: number[] = [];
      await waitFor(
        async () => {
          for (const t of ['sixpn_mesh', 'sixpn_host']) await hosts.ewr.inHost('nft', ['delete', 'table', 'inet', t]);
          curlExits.push((await curl(hosts.ewr, ID.intra.ewr, `http://[${addr[ID.web.iad]}]:8080/`, '1')).code);
          return (await metric(hosts.iad, 'sixpn_mesh_dropped_packets_total', 'globex')) > before;
        },
        { what: 'iad counts the globex drop', timeoutMs: 10_000, everyMs: 500 },
      );
      // not one probe got through
      expect(curlExits.length).toBeGreaterThan(0);
      expect(curlExits.filter((c) => c === 0)).toEqual([]);
    } finally {
      lied = true;
    }
  });

  it('a forged source never arrives: cryptokey routing refuses an address that does not live on the sender', async () => {
    // From ewr's host namespace (filters still gone from the test before, or not: both must hold),
    // a UDP packet to the lhr web machine with the iad web machine's address as source.
    const target = addr[ID.web.lhr]!;
    const forged = addr[ID.web.iad]!;
    const ns = hosts.lhr.machineNs(ID.web.lhr);
    await hosts.lhr.inMachine(ID.web.lhr, 'nft', ['-f', '-'], { input: `table inet probe {\n counter forged {}\n counter honest {}\n chain in { type filter hook input priority -10; udp dport 9999 ip6 saddr ${forged} counter name forged; udp dport 9999 counter name honest; }\n}\n` });
    const send = (src: string) =>
      hosts.ewr.inHost('node', ['-e', `const s=require('dgram').createSocket('udp6');s.bind({address:'${src}'},()=>{let n=0;const go=()=>s.send('forged',9999,'${target}',()=>{if(++n<5)setTimeout(go,50);else s.close();});go();});`]);
    const sent = await send(forged);
    expect(sent.code, sent.stderr).toBe(0);
    // An honest packet on the same path (ewr's own acme address) does arrive: the probe counts.
    const honest = await send(hostOrgAddress(24, await hostId(hosts.ewr)));
    expect(honest.code, honest.stderr).toBe(0);
    await waitFor(async () => counterOf(await hosts.lhr.inMachine(ID.web.lhr, 'nft', ['-j', 'list', 'counters', 'table', 'inet', 'probe']), 'honest') > 0, { what: `honest packets reach ${ns}`, timeoutMs: 5_000 });
    const counts = await hosts.lhr.inMachine(ID.web.lhr, 'nft', ['-j', 'list', 'counters', 'table', 'inet', 'probe']);
    expect(counterOf(counts, 'forged')).toBe(0);
    if (lied) {
      // a new agent puts ewr's filters back
      await hosts.ewr.kill();
      await hosts.ewr.start();
      const nft = await hosts.ewr.inHost('nft', ['list', 'tables']);
      expect(nft.stdout).toContain('sixpn_mesh');
      expect(nft.stdout).toContain('sixpn_host');
      await lab.meshed(REGIONS.map((r) => `${r}-1`));
    }
  });

  it('DNS: dig inside a machine on each host gives the same org answers', async () => {
    const answers: string[] = [];
    for (const r of REGIONS) {
      const d = await hosts[r].inMachine(ID.web[r], 'dig', ['+short', '+time=2', '+tries=1', '@fdaa::3', 'web.internal', 'AAAA']);
      expect(d.code, d.stderr).toBe(0);
      answers.push(d.stdout.trim().split('\n').sort().join(','));
      const other = await hosts[r].inMachine(ID.intra[r], 'dig', ['+short', '+time=2', '+tries=1', '@fdaa::3', 'web.internal', 'AAAA']);
      expect(other.stdout.trim()).toBe('');
    }
    expect(answers[0]!.split(',').sort()).toEqual(REGIONS.map((r) => addr[ID.web[r]]).sort());
    expect(new Set(answers).size).toBe(1);
  });

  it('doctor on a mesh host says which WireGuard it uses and that the tunnel has its peers and routes; on a bare server what to fix', async () => {
    type Line = { id: string; status: string; detail: string; fix?: string };
    const doctor = async (ns: string) => {
      const r = await run('nsenter', [`--net=/run/netns/${ns}`, process.execPath, CLI, 'doctor', '--config', hosts.ewr.configFile, '--json']);
      return { code: r.code, lines: new Map((JSON.parse(r.stdout).lines as Line[]).map((l) => [l.id, l])) };
    };
    const good = await doctor(hosts.ewr.ns.name);
    for (const id of ['mesh-forwarding', 'mesh-wireguard', 'mesh-wg', 'mesh-nft', 'mesh-port', 'mesh-endpoint', 'mesh-routes']) expect(good.lines.get(id)?.status, `${id}: ${good.lines.get(id)?.detail}`).toBe('ok');
    expect(good.lines.get('mesh-wireguard')!.detail).toMatch(/^userspace wireguard-go \(the kernel has no WireGuard module\)/);
    expect(good.lines.get('mesh-routes')!.detail).toMatch(/2 peers, 6 routes/); // iad and lhr, and lhr's gateway: one /80 per org each
    expect(good.lines.get('mesh-port')!.detail).toContain('held by');
    // a server on the bridge with nothing set up: no forwarding, no local fdaa::/16
    const { ns } = await lab.attach('sxbare');
    const bare = await doctor(ns.name);
    expect(bare.code).toBe(1);
    expect(bare.lines.get('mesh-forwarding')).toMatchObject({ status: 'fail', fix: expect.stringContaining('sysctl -w net.ipv6.conf.all.forwarding=1') });
    expect(bare.lines.get('mesh-routes')).toMatchObject({ status: 'fail', fix: expect.stringContaining('ip -6 route add local fdaa::/16 dev lo') });
    expect(bare.lines.get('mesh-port')!.status).toBe('ok');
  });

  it('a laptop peer of the lhr gateway reaches its org on every host, and nothing of the other org', async () => {
    const conf = join(hosts.lhr.dir, 'laptop.conf');
    const r = await cli(hosts.lhr, ['wireguard', 'create', 'acme', 'lhr', 'laptop', '--output', conf]);
    expect(r.code, r.stderr).toBe(0);
    const { ns } = await lab.attach('sxlap');
    const tun = await upLaptopTunnel(ns, conf);
    try {
      for (const to of REGIONS) {
        const ok = await ns.exec('curl', ['-sS', '-g', '-m', '3', `http://[${addr[ID.web[to]]}]:8080/`]);
        expect(ok.stdout, `laptop -> web-${to}: ${ok.stderr}`).toBe(`web-${to}\n`);
        const no = await ns.exec('curl', ['-sS', '-g', '-m', '1', `http://[${addr[ID.intra[to]]}]:8080/`]);
        expect(no.code, `laptop -> intranet-${to} must fail`).not.toBe(0);
      }
      expect((await tun.gatewayStatus()).latest_handshake).toBeGreaterThan(0);
    } finally {
      await tun.stop();
    }
  });

  it('Flycast from ewr lands in ewr, moves to iad when ewr stops, to lhr when the iad host dies', async () => {
    const from = () => curl(hosts.ewr, ID.web.ewr, `http://[${WEB_FLYCAST}]/`, '5');
    expect((await from()).stdout).toBe('web-ewr\n');
    const stop = await cli(hosts.ewr, ['machines', 'stop', ID.web.ewr]);
    expect(stop.code, stop.stderr).toBe(0);
    await waitFor(async () => (await from()).stdout === 'web-iad\n', { what: 'Flycast from ewr moves to iad', timeoutMs: 10_000 });
    // DNS leaves the dead host's machines out, too, once it is silent
    await hosts.iad.kill();
    await hosts.iad.link(false);
    const t0 = Date.now();
    await waitFor(async () => (await from()).stdout === 'web-lhr\n', { what: 'Flycast from ewr moves to lhr', timeoutMs: 15_000 });
    const moved = Date.now() - t0;
    expect(moved).toBeLessThan(10_000);
    for (let i = 0; i < 10; i++) expect((await from()).stdout).toBe('web-lhr\n');
    const d = await hosts.ewr.inMachine(ID.intra.ewr, 'dig', ['+short', '+time=2', '+tries=1', '@fdaa::3', 'web.internal', 'AAAA']);
    expect(d.stdout.trim()).toBe('');
    await waitFor(
      async () => {
        const a = (await hosts.lhr.inMachine(ID.web.lhr, 'dig', ['+short', '+time=2', '+tries=1', '@fdaa::3', 'web.internal', 'AAAA'])).stdout.trim().split('\n');
        return !a.includes(addr[ID.web.iad]!) && a.includes(addr[ID.web.lhr]!);
      },
      { what: 'DNS on lhr leaves the iad machine out', timeoutMs: 10_000 },
    );
    // back: link and agent
    await hosts.iad.link(true);
    await hosts.iad.start();
    await waitFor(
      async () => {
        const a = (await hosts.lhr.inMachine(ID.web.lhr, 'dig', ['+short', '+time=2', '+tries=1', '@fdaa::3', 'web.internal', 'AAAA'])).stdout.trim().split('\n');
        return a.includes(addr[ID.web.iad]!);
      },
      { what: 'DNS on lhr has the iad machine again', timeoutMs: 15_000 },
    );
    await waitFor(async () => (await from()).stdout === 'web-iad\n', { what: 'Flycast from ewr back to iad', timeoutMs: 15_000 });
  }, 90_000);
});

async function hostId(h: LabHost): Promise<number> {
  const list = JSON.parse((await runSixpn(['--api', h.api, '--token', TOKEN, 'hosts', 'list', '--json'])).stdout) as Array<{ name: string; host_id: number }>;
  return list.find((x) => x.name === h.name)!.host_id;
}

function counterOf(r: { stdout: string }, name: string): number {
  const j = JSON.parse(r.stdout || '{}') as { nftables?: Array<{ counter?: { name: string; packets: number } }> };
  return j.nftables?.find((e) => e.counter?.name === name)?.counter?.packets ?? 0;
}


// Machines that sixpn runs, end to end: one host (a network namespace set up like a 6PN host),
// `sixpn up` with the host, DNS, routed Flycast proxy and control roles, two orgs and four
// machines running real commands (small HTTP and TCP servers) each in its own namespace. From
// inside the machines: curl, nc and dig. Then crashes, an agent killed and restarted, logs, bad
// input and destroy, checked against the kernel's own view (namespaces, links, routes, nft).
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Machine } from '../../src/catalog/types.js';
import { machineProgram } from '../harness/machine-program.mjs';
import { hasCommand, IN_NETNS } from '../harness/env.js';
import { TestHost } from '../harness/host.js';
import { waitFor } from '../harness/net.js';
import { run, runSixpn, startSixpn, type Proc } from '../harness/procs.js';

const ready = IN_NETNS && ['nft', 'curl', 'nc', 'dig', 'setpriv'].every(hasCommand);
const MACHINE = machineProgram(); // readable by the machines' unprivileged user
const TOKEN = 'host-e2e-token-0123456789';
const WEB_FLYCAST = 'fdaa:0:18:0:1::3';
const ECHO_FLYCAST = 'fdaa:0:18:0:1::4';
const INTRA_FLYCAST = 'fdaa:0:30:0:1::3';
const IDS = { web1: 'a1000000000001', web2: 'a2000000000002', echo1: 'a3000000000003', intra1: 'b1000000000001' };

describe.skipIf(!ready)('host: machines in their own network namespaces', () => {
  let host: TestHost;
  let dir: string;
  let cfg: string;
  let node: Proc;
  let api: string;
  const m: Record<keyof typeof IDS, Machine> = {} as never;

  const cli = (args: string[]) => runSixpn(['--api', api, '--token', TOKEN, ...args]);
  const call = async (method: string, path: string) => {
    const res = await request(api + path, { method: method as 'GET', headers: { authorization: `Bearer ${TOKEN}` } });
    const text = await res.body.text();
    return { status: res.statusCode, text, json: () => JSON.parse(text) as any };
  };
  const machines = async (app: string): Promise<Machine[]> => (await call('GET', `/v1/apps/${app}/machines`)).json();
  const dropped = async (org: string): Promise<number> => {
    const text = (await call('GET', '/metrics')).text;
    const line = text.split('\n').find((l) => l.startsWith(`sixpn_host_dropped_packets_total{org="${org}"}`));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  const curl = (from: keyof typeof IDS, url: string, extra: string[] = []) => host.inMachine(IDS[from], 'curl', ['-sS', '-g', '-m', '2', ...extra, url]);
  /** For what must not connect: a short timeout, it only has to fail. */
  const curlRefused = (from: keyof typeof IDS, url: string, extra: string[] = []) => host.inMachine(IDS[from], 'curl', ['-sS', '-g', '-m', '1', ...extra, url]);
  const startNode = async () => {
    const p = host.startNode(cfg);
    await p.waitForLine(/sixpn ready/, 20_000);
    return p;
  };

  beforeAll(async () => {
    host = await TestHost.create();
    dir = mkdtempSync(join(tmpdir(), 'sixpn-host-e2e-'));
    api = `http://${host.address}:4280`;
    cfg = join(dir, 'sixpn.toml');
    const app = (name: string, org: string, proto: string, port: number, internal: number) =>
      `[[apps]]\nname = "${name}"\norg = "${org}"\n  [[apps.services]]\n  protocol = "${proto}"\n  internal_port = ${internal}\n  ports = [{ port = ${port} }]\n`;
    writeFileSync(
      cfg,
      [
        '[node]\nname = "ewr-1"\nregion = "ewr"',
        '[catalog]\npath = "catalog.json"',
        `[control]\nlisten = "${host.address}:4280"\ntoken = "${TOKEN}"`,
        '[proxy]\nmode = "routed"',
        '[dns]\nupstreams = []',
        '[health]\nenabled = false',
        `[host]\nenabled = true\nstate_dir = "state"\nnetns_prefix = "${host.prefix}"\nrestart_backoff = "1s"\nheartbeat_interval = "300ms"\nheartbeat_timeout = "3s"`,
        '[[orgs]]\nname = "acme"\nnetwork_id = 24',
        '[[orgs]]\nname = "globex"\nnetwork_id = 48',
        app('web', 'acme', 'http', 80, 8080),
        app('echo', 'acme', 'tcp', 7, 7),
        app('intranet', 'globex', 'http', 80, 8080),
        '[[ips]]\napp = "web"\n[[ips]]\napp = "echo"\n[[ips]]\napp = "intranet"',
      ].join('\n'),
    );
    node = await startNode();
  });

  afterAll(async () => {
    await node?.stop();
    await host?.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  it('registers the host: hosts list shows it up with its host id and key', async () => {
    const t = await cli(['hosts', 'list']);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/^NAME\s+REGION\s+HOST ID\s+STATUS\s+DRIVER\s+MACHINES\s+HEARTBEAT\s+WIREGUARD\s+MESH \(from ewr-1\)\n/);
    expect(t.stdout).toMatch(/self \((wireguard-go|kernel)\)/);
    expect(t.stdout).toMatch(/ewr-1\s+ewr\s+[0-9a-f]+:[0-9a-f]+\s+up\s+netns\s+0\s+just now/);
    const [h] = JSON.parse((await cli(['hosts', 'list', '--json'])).stdout);
    expect(h).toMatchObject({ name: 'ewr-1', region: 'ewr', status: 'up', state: 'up', driver: 'netns', machines: 0 });
    expect(h.wireguard.public_key).toMatch(/=$/);
  });

  it('runs four machines of two orgs, each in its own namespace on its 6PN address', async () => {
    const runOne = async (app: string, id: string, kind: string, port: number, name: string) => {
      const r = await cli(['machines', 'run', '--app', app, '--region', 'ewr', '--id', id, '--env', `WHO=${name}`, '--', 'node', MACHINE, '--kind', kind, '--id', name, '--host', '::', '--port', String(port), '--greet', '--log']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Machine ${id} of ${app} is started on host ewr-1 in ewr at fdaa:0:`));
    };
    // at once: the host sets up four namespaces and filter entries side by side
    await Promise.all([
      runOne('web', IDS.web1, 'http', 8080, 'web1'),
      runOne('web', IDS.web2, 'http', 8080, 'web2'),
      runOne('echo', IDS.echo1, 'tcp', 7, 'echo1'),
      runOne('intranet', IDS.intra1, 'http', 8080, 'intra1'),
    ]);
    for (const [name, id] of Object.entries(IDS)) {
      const app = name.startsWith('web') ? 'web' : name === 'echo1' ? 'echo' : 'intranet';
      m[name as keyof typeof IDS] = (await machines(app)).find((x) => x.id === id)!;
    }
    expect(m.intra1.address.startsWith('fdaa:0:30:')).toBe(true);
    const list = await cli(['machines', 'list', '--app', 'web']);
    expect(list.stdout).toMatch(new RegExp(`${IDS.web1}\\s+web\\s+ewr\\s+ewr-1\\s+started`));
    // the machine's side: its address, its route, its resolver, its user and Fly's variables
    const addr = await host.inMachine(IDS.web1, 'ip', ['-6', '-o', 'addr', 'show', 'dev', 'eth0']);
    expect(addr.stdout).toContain(`${m.web1.address}/128`);
    expect((await host.inMachine(IDS.web1, 'ip', ['-6', 'route'])).stdout).toMatch(/default via fe80::1 dev eth0/);
    expect((await host.inMachine(IDS.web1, 'cat', ['/etc/resolv.conf'])).stdout).toBe('nameserver fdaa::3\n');
    const pid = readFileSync(join(dir, 'state/machines', IDS.web1, 'pid'), 'utf8').trim();
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    expect(env).toEqual(expect.arrayContaining([`FLY_APP_NAME=web`, `FLY_MACHINE_ID=${IDS.web1}`, 'FLY_REGION=ewr', `FLY_PRIVATE_IP=${m.web1.address}`, 'WHO=web1']));
    expect(env.some((e) => e.startsWith('SIXPN_'))).toBe(false);
    expect((await run('ps', ['-o', 'user=', '-p', pid])).stdout.trim()).toBe('nobody');
  });

  it('same org: curl and nc reach the other machine and the org\'s Flycast addresses; dig answers for the org', async () => {
    expect((await curl('web2', `http://[${m.web1.address}]:8080/`)).stdout).toBe('web1\n');
    const tcp = await host.inMachine(IDS.web2, 'nc', ['-N', '-w', '2', m.echo1.address, '7'], { input: 'ping\n' });
    expect(tcp.stdout).toBe('echo1\nping\n');
    const viaFlycast = new Set<string>();
    // ties between two idle machines go at random, so ask until both have answered (six
    // requests all landing on one machine happen one run in 32; forty, one in 500 billion)
    for (let i = 0; i < 40 && viaFlycast.size < 2; i++) viaFlycast.add((await curl('echo1', `http://[${WEB_FLYCAST}]/`)).stdout);
    expect([...viaFlycast].sort()).toEqual(['web1\n', 'web2\n']);
    const tcpFly = await host.inMachine(IDS.web1, 'nc', ['-N', '-w', '2', ECHO_FLYCAST, '7'], { input: 'hello\n' });
    expect(tcpFly.stdout).toBe('echo1\nhello\n');
    const dig = await host.inMachine(IDS.web2, 'dig', ['@fdaa::3', '+short', '+time=2', 'web.internal', 'AAAA']);
    expect(dig.stdout.trim().split('\n').sort()).toEqual([m.web1.address, m.web2.address].sort());
    // the machine's own resolv.conf points at fdaa::3 too
    expect((await host.inMachine(IDS.web2, 'dig', ['+short', '+time=2', 'echo.internal', 'AAAA'])).stdout.trim()).toBe(m.echo1.address);
    expect((await host.inMachine(IDS.web2, 'dig', ['@fdaa::3', '+short', '+time=2', '_apps.internal', 'TXT'])).stdout.trim()).toBe('"echo,web"');
    const other = await host.inMachine(IDS.web2, 'dig', ['@fdaa::3', '+time=2', 'intranet.internal', 'AAAA']);
    expect(other.stdout).toMatch(/status: NXDOMAIN/);
    expect((await host.inMachine(IDS.intra1, 'dig', ['@fdaa::3', '+short', '+time=2', 'intranet.internal', 'AAAA'])).stdout.trim()).toBe(m.intra1.address);
  });

  it('other org: zero bytes reach its machine (its own log proves it), the drop counter moves and is logged', async () => {
    const before = await dropped('acme');
    const [direct, fly, udp, dig] = await Promise.all([
      curlRefused('web2', `http://[${m.intra1.address}]:8080/`),
      curlRefused('web2', `http://[${INTRA_FLYCAST}]/`),
      host.inMachine(IDS.web2, 'nc', ['-u', '-w', '1', m.intra1.address, '8080'], { input: 'x' }),
      // the globex resolver address is another org's too
      host.inMachine(IDS.web2, 'dig', ['@fdaa:0:30::3', '+time=1', '+tries=1', 'intranet.internal']),
    ]);
    expect(direct.code).not.toBe(0);
    expect(direct.stdout).toBe('');
    expect(fly.code).not.toBe(0);
    expect(udp.stdout).toBe('');
    expect(dig.stdout).toMatch(/timed out|no servers/);
    await waitFor(async () => (await dropped('acme')) > before, { what: 'acme drops counted', timeoutMs: 5_000 });
    const logs = await cli(['logs', '--app', 'intranet']);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).not.toMatch(/connection from fdaa:0:18:/);
    await node.waitForLine(new RegExp(`"machine":"${IDS.web2}".*dropped packets from a machine`), 5_000);
  });

  it('a forged source never arrives', async () => {
    const before = await dropped('acme');
    const forged = ['fdaa:0:18::99', 'fdaa:0:30::99'];
    for (const f of forged) await host.inMachine(IDS.web2, 'ip', ['-6', 'addr', 'add', `${f}/128`, 'dev', 'eth0', 'nodad']);
    const tries = await Promise.all(
      forged.flatMap((f) => [
        curlRefused('web2', `http://[${m.web1.address}]:8080/`, ['--interface', f]),
        curlRefused('web2', `http://[${WEB_FLYCAST}]/`, ['--interface', f]),
        host.inMachine(IDS.web2, 'nc', ['-u', '-w', '1', '-s', f, m.echo1.address, '7'], { input: 'forged' }),
      ]),
    );
    for (const t of tries) expect(t.stdout).toBe('');
    for (const f of forged) await host.inMachine(IDS.web2, 'ip', ['-6', 'addr', 'del', `${f}/128`, 'dev', 'eth0']);
    const logs = (await cli(['logs', '--app', 'web', '--machine', IDS.web1])).stdout;
    expect(logs).not.toMatch(/connection from fdaa:0:(18|30)::99/);
    await waitFor(async () => (await dropped('acme')) > before, { what: 'forged packets counted', timeoutMs: 5_000 });
    // and the genuine source still works
    expect((await curl('web2', `http://[${m.web1.address}]:8080/`)).stdout).toBe('web1\n');
  });

  it('kill -9: exit recorded, restart policy applied, Flycast traffic moves to the others meanwhile', async () => {
    // A caller inside echo1 asks the web Flycast address every 20 ms for 3 s.
    const script = `const out={ok:0,fail:0,who:{}};const end=Date.now()+3000;(async()=>{while(Date.now()<end){try{const r=await fetch('http://[${WEB_FLYCAST}]/');const t=(await r.text()).trim();if(r.status===200){out.ok++;out.who[t]=(out.who[t]||0)+1}else out.fail++}catch(e){out.fail++}await new Promise(r=>setTimeout(r,20))}console.log(JSON.stringify(out))})()`;
    const loop = host.inMachine(IDS.echo1, process.execPath, ['-e', script], { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 500));
    const pid = Number(readFileSync(join(dir, 'state/machines', IDS.web1, 'pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    const down = await waitFor(async () => (await machines('web')).find((x) => x.id === IDS.web1 && x.state === 'starting'), { what: 'web1 restarting' });
    expect(down.last_exit).toMatchObject({ exit_code: null, signal: 'SIGKILL', requested: false });
    expect(down.restarts).toBe(1);
    const res = JSON.parse((await loop).stdout) as { ok: number; fail: number; who: Record<string, number> };
    expect(res.fail).toBe(0);
    expect(res.ok).toBeGreaterThan(50);
    expect(res.who.web2).toBeGreaterThan(res.who.web1 ?? 0); // web1 was gone for a second of the three
    const back = await waitFor(async () => (await machines('web')).find((x) => x.id === IDS.web1 && x.state === 'started'), { what: 'web1 started again' });
    expect(Number(readFileSync(join(dir, 'state/machines', IDS.web1, 'pid'), 'utf8'))).not.toBe(pid);
    expect(back.state_reason).toBeUndefined();
    await waitFor(async () => (await curl('web2', `http://[${m.web1.address}]:8080/`)).stdout === 'web1\n', { what: 'web1 answers again' });
  });

  it('a killed agent restarts to the same machines: adopted, none orphaned, none started twice', async () => {
    const pidsBefore = Object.fromEntries(Object.values(IDS).map((id) => [id, readFileSync(join(dir, 'state/machines', id, 'pid'), 'utf8').trim()]));
    node.child.kill('SIGKILL');
    await node.exited;
    node = await startNode();
    await new Promise((r) => setTimeout(r, 1500));
    for (const [id, pid] of Object.entries(pidsBefore)) {
      expect(readFileSync(join(dir, 'state/machines', id, 'pid'), 'utf8').trim()).toBe(pid);
      const inNs = (await run('ip', ['netns', 'pids', host.machineNs(id)])).stdout.split(/\s+/).filter(Boolean);
      expect(inNs).toEqual([pid]);
    }
    expect(host.machineNamespaces().sort()).toEqual(Object.values(IDS).map((id) => host.machineNs(id)).sort());
    const all = [...(await machines('web')), ...(await machines('echo')), ...(await machines('intranet'))];
    expect(all.map((x) => `${x.id} ${x.state}`).sort()).toEqual(Object.values(IDS).map((id) => `${id} started`).sort());
    expect(node.output()).toMatch(/took over the host from an earlier agent/);
    expect((await curl('web2', `http://[${m.web1.address}]:8080/`)).stdout).toBe('web1\n');
  });

  it('logs: lines tagged with machine, region and time; one machine; --follow', async () => {
    const all = await cli(['logs', '--app', 'web']);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z app\\[${IDS.web1}\\] ewr \\[info\\] connection from `, 'm'));
    expect(all.stdout).toMatch(new RegExp(`app\\[${IDS.web2}\\] ewr \\[info\\] connection from `));
    expect(all.stdout).toMatch(new RegExp(`app\\[${IDS.web1}\\] ewr \\[sixpn\\] process killed by SIGKILL; restart 1 in 1000 ms`));
    const one = await cli(['logs', '--app', 'web', '--machine', IDS.web2, '--json']);
    const lines = one.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(new Set(lines.map((l) => l.machine))).toEqual(new Set([IDS.web2]));
    expect(lines[0]).toMatchObject({ app: 'web', region: 'ewr', host: 'ewr-1' });
    const follow = startSixpn(['logs', '--app', 'echo', '--follow', '--lines', '1', '--api', api, '--token', TOKEN]);
    try {
      await follow.waitForLine(/app\[/, 5_000);
      await host.inMachine(IDS.web2, 'nc', ['-N', '-w', '2', m.echo1.address, '7'], { input: 'x\n' });
      await follow.waitForLine(new RegExp(`app\\[${IDS.echo1}\\] ewr \\[info\\] connection from ${m.web2.address}`), 5_000);
    } finally {
      await follow.stop();
    }
    const none = await cli(['logs', '--app', 'nope']);
    expect(none.code).toBe(4);
  });

  it('bad input: a clear error and nothing half-made', async () => {
    const nsBefore = host.machineNamespaces().sort();
    const count = async () => (await machines('web')).length;
    const before = await count();
    const cases: [string[], number, RegExp][] = [
      [['--app', 'nope', '--region', 'ewr', '--', 'sleep', '9'], 4, /app nope not found/],
      [['--app', 'web', '--region', 'syd', '--', 'sleep', '9'], 4, /no host in region syd is up \(hosts up: ewr-1 in ewr\)/],
      [['--app', 'web', '--region', 'zzz', '--', 'sleep', '9'], 4, /no host in region zzz is up/],
      [['--app', 'web', '--host', 'nope', '--', 'sleep', '9'], 4, /host nope not found/],
      [['--app', 'web', '--region', 'ewr', '--env', 'BAD-KEY=1', '--', 'sleep', '9'], 2, /config\.env\.BAD-KEY: must be a variable name/],
      [['--app', 'web', '--region', 'ewr', '--env', 'FLY_REGION=x', '--', 'sleep', '9'], 2, /FLY_\* variables are set by the host/],
      [['--app', 'web', '--region', 'ewr', '--kill-signal', 'HUP', '--', 'sleep', '9'], 2, /kill_signal/],
      [['--app', 'web', '--region', 'ewr', '--restart', 'sometimes', '--', 'sleep', '9'], 2, /restart\.policy/],
      [['--app', 'web', '--region', 'ewr'], 2, /needs the command after --/],
      [['--app', 'web', '--region', 'ewr', '--id', 'c0ffee00000001', '--', 'no-such-program-xyz'], 1, /machine c0ffee00000001 could not start on host ewr-1: command not found: no-such-program-xyz .*it was not kept/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(['machines', 'run', ...args])));
    cases.forEach(([args, code, msg], i) => {
      const r = results[i]!;
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    });
    expect(await count()).toBe(before);
    expect(host.machineNamespaces().sort()).toEqual(nsBefore);
    expect(existsSync(join(dir, 'state/machines/c0ffee00000001'))).toBe(false);
    expect(existsSync(`/etc/netns/${host.machineNs('c0ffee00000001')}`)).toBe(false);
    // a machine registered by hand keeps its direct meaning of stop and start
    const hand = await cli(['machines', 'register', '--app', 'web', '--region', 'iad', '--id', 'e1000000000001', '--upstream', '127.0.0.1:9']);
    expect(hand.code, hand.stderr).toBe(0);
    expect((await cli(['machines', 'stop', 'e1000000000001'])).stdout).toBe('Machine e1000000000001 is stopped\n');
    expect((await cli(['machines', 'start', 'e1000000000001'])).stdout).toBe('Machine e1000000000001 is started\n');
    expect((await cli(['machines', 'restart', 'e1000000000001'])).stderr).toMatch(/registered by hand/);
    expect((await cli(['machines', 'list', '--app', 'web'])).stdout).toMatch(/e1000000000001\s+web\s+iad\s+-\s+started/);
    expect((await cli(['machines', 'remove', 'e1000000000001'])).code).toBe(0);
    // a run machine's state cannot be patched around its host
    const patch = await request(`${api}/v1/machines/${IDS.web1}`, { method: 'PATCH', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: '{"state":"stopped"}' });
    expect(patch.statusCode).toBe(400);
    expect(await patch.body.text()).toMatch(/is run by a host/);
  });

  it('stop, start and restart go through the host; destroy leaves no namespace, veth, route or address behind', async () => {
    const stop = await cli(['machines', 'stop', IDS.web2]);
    expect(stop.stdout).toBe(`Machine ${IDS.web2} is stopped\n`);
    const after = (await machines('web')).find((x) => x.id === IDS.web2)!;
    expect(after.last_exit).toMatchObject({ signal: 'SIGINT', requested: true });
    expect((await run('ip', ['netns', 'pids', host.machineNs(IDS.web2)])).stdout.trim()).toBe('');
    for (let i = 0; i < 4; i++) expect((await curl('echo1', `http://[${WEB_FLYCAST}]/`)).stdout).toBe('web1\n');
    expect((await cli(['machines', 'start', IDS.web2])).stdout).toBe(`Machine ${IDS.web2} is started\n`);
    await waitFor(async () => (await curl('web1', `http://[${m.web2.address}]:8080/`)).stdout === 'web2\n', { what: 'web2 back' });
    expect((await cli(['machines', 'restart', IDS.web2])).stdout).toBe(`Machine ${IDS.web2} is started\n`);

    const d = await cli(['machines', 'destroy', ...Object.values(IDS)]);
    expect(d.code, d.stderr).toBe(0);
    expect(host.machineNamespaces()).toEqual([]);
    const links = (await host.ns.exec('ip', ['-o', 'link'])).stdout;
    expect(links).not.toMatch(/sxm/);
    const routes = (await host.ns.exec('ip', ['-6', 'route', 'show', 'table', 'local'])).stdout;
    for (const x of Object.values(m)) expect(routes).not.toContain(x.address);
    expect((await host.ns.exec('nft', ['list', 'set', 'inet', 'sixpn_host', 'sources'])).stdout).not.toMatch(/fdaa/);
    for (const id of Object.values(IDS)) {
      expect(existsSync(`/etc/netns/${host.machineNs(id)}`)).toBe(false);
      expect(existsSync(join(dir, 'state/machines', id))).toBe(false);
    }
    expect(await machines('web')).toEqual([]);
    const hosts = JSON.parse((await cli(['hosts', 'list', '--json'])).stdout);
    expect(hosts[0].machines).toBe(0);
  });
});

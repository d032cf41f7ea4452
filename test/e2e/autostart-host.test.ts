// Scale to zero for machines that sixpn runs (issue 16), end to end: one host (a network
// namespace set up like a 6PN host), `sixpn up` with the host agent, routed Flycast proxy and
// control API; apps created with `sixpn apps create --services fly.toml` from real fly.toml files
// ([http_service] with auto_stop_machines = "stop", [[services]] with "suspend"); callers are
// curl and nc inside a client machine of the same org. Autostop stops (or freezes) the idle
// machine through the host agent, the next Flycast caller brings it back and is served; a
// suspended machine resumes as the same process; a machine that never listens answers 503
// SIXPN_START_FAILED after start_timeout; nothing is left running at the end.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Machine } from '../../src/catalog/types.js';
import { machineProgram } from '../harness/machine-program.mjs';
import { hasCommand, IN_NETNS } from '../harness/env.js';
import { TestHost } from '../harness/host.js';
import { waitFor } from '../harness/net.js';
import { run, runSixpn, type Proc } from '../harness/procs.js';

const ready = IN_NETNS && ['nft', 'curl', 'nc', 'setpriv'].every(hasCommand);
const MACHINE = machineProgram(); // readable by the machines' unprivileged user
const TOKEN = 'autostart-host-e2e-token-0123456789';
// Ids of this run only: the last test looks for leftover processes machine-wide by FLY_MACHINE_ID.
const RUN = (process.pid % 0xffff).toString(16).padStart(4, '0');
const IDS = { client: `c1${RUN}00000001`, web: `a1${RUN}00000001`, frozen: `a2${RUN}00000001`, deaf: `a3${RUN}00000001` };
const START_TIMEOUT = 4_000;
const IDLE = 2_000;

/** The process state letter in /proc/PID/stat: R, S, T (stopped by a signal), ... */
function procState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

describe.skipIf(!ready)('autostart and autostop for machines a host runs (e2e)', () => {
  let host: TestHost;
  let dir: string;
  let node: Proc;
  let api: string;
  const flycast: Record<string, string> = {};

  const cli = (args: string[]) => runSixpn(['--api', api, '--token', TOKEN, ...args]);
  const machine = async (id: string): Promise<Machine> => {
    const res = await request(`${api}/v1/machines/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return (await res.body.json()) as Machine;
  };
  const state = (id: string, want: Machine['state'], timeoutMs = 15_000) => waitFor(async () => ((await machine(id)).state === want ? true : null), { what: `${id} ${want}`, timeoutMs });
  const pidOf = (id: string): number => Number(readFileSync(join(dir, 'state/machines', id, 'pid'), 'utf8'));
  /** curl from the client machine: the body, then the status and seconds to the first byte. */
  const curl = async (url: string, maxSeconds = 10) => {
    const r = await curlRaw(url, maxSeconds);
    const lines = r.stdout.split('\n');
    const [status, seconds] = (lines.pop() ?? '').split(' ');
    return { ...r, body: lines.join('\n'), status: Number(status), seconds: Number(seconds) };
  };
  const curlRaw = (url: string, maxSeconds: number) => host.inMachine(IDS.client, 'curl', ['-sS', '-g', '-m', String(maxSeconds), '-w', '\n%{http_code} %{time_starttransfer}', url], { timeoutMs: (maxSeconds + 5) * 1000 });
  const runMachine = async (app: string, id: string, kind: string, port: number) => {
    const r = await cli(['machines', 'run', '--app', app, '--region', 'ewr', '--id', id, '--', 'node', MACHINE, '--kind', kind, '--id', app, '--host', '::', '--port', String(port), '--greet']);
    expect(r.code, r.stderr).toBe(0);
  };

  beforeAll(async () => {
    host = await TestHost.create();
    dir = mkdtempSync(join(tmpdir(), 'sixpn-autostart-host-e2e-'));
    api = `http://${host.address}:4280`;
    const cfg = join(dir, 'sixpn.toml');
    writeFileSync(
      cfg,
      [
        '[node]\nname = "ewr-1"\nregion = "ewr"',
        '[catalog]\npath = "catalog.json"',
        `[control]\nlisten = "${host.address}:4280"\ntoken = "${TOKEN}"`,
        '[proxy]\nmode = "routed"\nconnect_timeout = "500ms"',
        '[dns]\nupstreams = []',
        '[health]\nenabled = false',
        `[host]\nenabled = true\nstate_dir = "state"\nnetns_prefix = "${host.prefix}"\nrestart_backoff = "1s"\nheartbeat_interval = "300ms"\nheartbeat_timeout = "3s"`,
        `[autostart]\nstart_timeout = "${START_TIMEOUT}ms"\nidle_period = "${IDLE}ms"\ncheck_interval = "500ms"`,
        '[[orgs]]\nname = "acme"\nnetwork_id = 24',
        '[[apps]]\nname = "client"\norg = "acme"',
      ].join('\n'),
    );
    node = host.startNode(cfg);
    await node.waitForLine(/sixpn ready/, 20_000);
  }, 60_000);

  afterAll(async () => {
    await node?.stop();
    await host?.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  it('apps create --services reads both fly.toml shapes; keys sixpn does not do are named in warnings', async () => {
    const web = join(dir, 'web.fly.toml');
    writeFileSync(web, 'app = "web"\nprimary_region = "ewr"\n\n[http_service]\ninternal_port = 8080\nforce_https = true\nauto_stop_machines = "stop"\nauto_start_machines = true\nmin_machines_running = 0\n\n[http_service.concurrency]\ntype = "requests"\nsoft_limit = 50\nhard_limit = 60\n');
    const r = await cli(['apps', 'create', 'web', '--org', 'acme', '--services', web]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^Warning: http_service\.force_https: not used by sixpn/m);
    expect(r.stdout).toMatch(/services: http 80->8080, auto_stop stop/);
    const frozen = join(dir, 'frozen.fly.toml');
    writeFileSync(frozen, 'primary_region = "ewr"\n[[services]]\nprotocol = "tcp"\ninternal_port = 7\nauto_stop_machines = "suspend"\n[[services.ports]]\nport = 7\n');
    expect((await cli(['apps', 'create', 'frozen', '--org', 'acme', '--services', frozen])).code).toBe(0);
    const deaf = join(dir, 'deaf.fly.toml');
    writeFileSync(deaf, '[http_service]\ninternal_port = 8080\nauto_stop_machines = "stop"\n');
    expect((await cli(['apps', 'create', 'deaf', '--org', 'acme', '--services', deaf])).code).toBe(0);
    const bad = join(dir, 'bad.fly.toml');
    writeFileSync(bad, '[http_service]\ninternal_port = 8080\nmin_machines_running = "one"\n');
    const refused = await cli(['apps', 'create', 'bad', '--org', 'acme', '--services', bad]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/http_service\.min_machines_running/);
    for (const app of ['web', 'frozen', 'deaf']) {
      const a = await cli(['ips', 'allocate-v6', '--private', '--app', app]);
      expect(a.code, a.stderr).toBe(0);
      flycast[app] = /(fdaa:[0-9a-f:]+)/.exec(a.stdout)![1]!;
    }
    // deaf listens on the wrong port: it starts, but never accepts on its service's 8080
    await Promise.all([runMachine('client', IDS.client, 'http', 8080), runMachine('web', IDS.web, 'http', 8080), runMachine('frozen', IDS.frozen, 'tcp', 7), runMachine('deaf', IDS.deaf, 'http', 9090)]);
  });

  it('autostop: the idle web machine is stopped through the host agent after idle_period', async () => {
    await state(IDS.web, 'stopped');
    const m = await machine(IDS.web);
    expect(node.output()).toMatch(new RegExp(`"machine":"${IDS.web}".*"idle_ms":${IDLE},"action":"stop".*autostop: stopping an idle machine`));
    expect(m.last_exit).toMatchObject({ requested: true });
    expect((await run('ip', ['netns', 'pids', host.machineNs(IDS.web)])).stdout.trim()).toBe('');
    // the client app does not autostop
    expect((await machine(IDS.client)).state).toBe('started');
  });

  it('curl through the Flycast address of an app whose only machine is stopped: 200 from the started machine', async () => {
    const r = await curl(`http://[${flycast.web}]/`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.status, r.body).toBe(200);
    expect(r.body).toBe('web\n');
    const m = await machine(IDS.web);
    expect(m.state).toBe('started');
    expect(node.output()).toMatch(new RegExp(`"machine":"${IDS.web}".*"how":"started".*machine up for Flycast callers`));
    // and it is stopped again once idle
    await state(IDS.web, 'stopped');
  });

  it('20 callers arriving over the start while it is stopped: all 200, the machine started once', async () => {
    const before = (await machine(IDS.web)).last_exit;
    // One every 20 ms: the later ones come while the host already reports it started but its
    // server does not listen yet; they wait with the first ones instead of being refused.
    const script = `Promise.all(Array.from({length:20},(_,i)=>new Promise(r=>setTimeout(r,i*20)).then(()=>fetch('http://[${flycast.web}]/')).then(async r=>r.status+' '+(await r.text()).trim()).catch(e=>'error '+e.message))).then(r=>console.log(JSON.stringify(r)))`;
    const out = await host.inMachine(IDS.client, process.execPath, ['-e', script], { timeoutMs: 20_000 });
    expect(JSON.parse(out.stdout)).toEqual(Array(20).fill('200 web'));
    const m = await machine(IDS.web);
    expect(m.state).toBe('started');
    expect(m.restarts ?? 0).toBe(0);
    expect(m.last_exit).toEqual(before); // one process: no start, exit and start again
    const ups = node.output().split('\n').filter((l) => l.includes(`"machine":"${IDS.web}"`) && l.includes('machine up for Flycast callers'));
    expect(ups).toHaveLength(2); // the single caller before, these twenty now
  });

  it('suspend: the idle frozen machine is suspended (SIGSTOP, state T); a TCP caller resumes the same process', async () => {
    const pid = pidOf(IDS.frozen);
    await state(IDS.frozen, 'suspended');
    expect(procState(pid)).toBe('T');
    const t0 = Date.now();
    const r = await host.inMachine(IDS.client, 'nc', ['-N', '-w', '5', flycast.frozen!, '7'], { input: 'hello\n' });
    const took = Date.now() - t0;
    expect(r.stdout).toBe('frozen\nhello\n');
    expect(pidOf(IDS.frozen)).toBe(pid);
    expect(procState(pid)).not.toBe('T');
    expect((await machine(IDS.frozen)).state).toBe('started');
    expect(took).toBeLessThan(START_TIMEOUT);
    expect(node.output()).toMatch(new RegExp(`"machine":"${IDS.frozen}".*"how":"resumed".*machine up for Flycast callers`));
  });

  it('a machine that never accepts on its service port: 503 SIXPN_START_FAILED after start_timeout, and it is marked failed', async () => {
    await state(IDS.deaf, 'stopped');
    const r = await curl(`http://[${flycast.deaf}]/`);
    expect(r.status, r.stderr).toBe(503);
    expect(r.seconds, r.body).toBeGreaterThanOrEqual(START_TIMEOUT / 1000 - 0.2);
    expect(r.body).toMatch(new RegExp(`^503 machine ${IDS.deaf} of app deaf could not be started for this request: it started but did not accept connections on \\[fdaa:[0-9a-f:]+\\]:8080 within ${START_TIMEOUT} ms \\(request id `));
    const m = await machine(IDS.deaf);
    expect(m.state).toBe('failed');
    expect(m.state_reason).toMatch(/^autostart: it started but did not accept/);
    expect(node.output()).toMatch(/"code":"SIXPN_START_FAILED"/);
  });

  it('nothing is left running: destroy removes every machine and namespace', async () => {
    const d = await cli(['machines', 'destroy', ...Object.values(IDS)]);
    expect(d.code, d.stderr).toBe(0);
    expect(host.machineNamespaces()).toEqual([]);
    // no process anywhere still carries one of these machines' ids
    const left: string[] = [];
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      let env = '';
      try {
        env = readFileSync(`/proc/${pid}/environ`, 'utf8');
      } catch {
        continue;
      }
      if (Object.values(IDS).some((id) => env.includes(`FLY_MACHINE_ID=${id}\0`))) left.push(`${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')} ${procState(Number(pid))}`);
    }
    expect(left).toEqual([]);
  });
});

// Scale to zero over Flycast with machines registered by hand (issue 16), end to end: two proxy
// nodes on one real Redis catalog (node A on the Flycast addresses, node B in dev mode on a
// loopback port mapped to the same address), apps in fly.toml's words, and `[[autostart.hooks]]`
// start/stop commands that run and kill real machine processes (test/harness/machine.mjs).
// A caller to a stopped app is served; 100 callers across both nodes start the machine once;
// idle machines are stopped by their stop hook while min_machines_running holds; a start that
// fails or never accepts answers 503 SIXPN_START_FAILED and marks the machine failed.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { RedisStore } from '../../src/catalog/redis.js';
import type { Machine } from '../../src/catalog/types.js';
import { IN_NETNS, ROOT } from '../harness/env.js';
import { ADMIN_TOKEN, closeCallerAgents, httpFrom, metricSum, readAll, startProxyNode, tcpFrom, type ProxyNode } from '../harness/flycast.js';
import { freePort, waitFor } from '../harness/net.js';
import { startRedis, type TestRedis } from '../harness/redis.js';

const HOST = parseHostId('a7b:7d')!;
const ORG = 0x2d;
const CALLER = 'fdaa:0:2d:a7b:7d:0:ca11:1';
const MACHINE = join(ROOT, 'test/harness/machine.mjs');
const IDS = { lazy: '2d00a001', pair1: '2d00b001', pair2: '2d00b002', many1: '2d00c001', many2: '2d00c002', many3: '2d00c003', deaf: '2d00d001', broken: '2d00e001', echo: '2d00f001' };
const addr = (id: string): string => machineAddress(ORG, HOST, id);
const START_TIMEOUT = 3_000;
const IDLE = 1_500;

describe.skipIf(!IN_NETNS)('autostart and autostop over Flycast, machines registered by hand, two nodes on one Redis (e2e)', () => {
  let redis: TestRedis;
  let store: RedisStore;
  let a: ProxyNode;
  let b: ProxyNode;
  let adminA: number;
  let adminB: number;
  let devPort: number;
  let dir: string;
  const ip: Record<string, string> = {};
  const namespace = `autostart-${process.pid}`;

  /** Hook commands: start writes a line to starts.log and leaves the machine process behind; stop kills it. */
  const hooks = (kind: 'http' | 'tcp', port: number) => {
    const start = `echo {machine} >> ${dir}/starts.log; ${process.execPath} ${MACHINE} --kind ${kind} --id {machine} --host {address} --port ${port} ${kind === 'tcp' ? '--greet ' : ''}> ${dir}/{machine}.out 2>&1 & echo $! > ${dir}/{machine}.pid`;
    const stop = `echo {machine} >> ${dir}/stops.log; kill $(cat ${dir}/{machine}.pid) && rm ${dir}/{machine}.pid`;
    return `start = ["sh", "-c", ${JSON.stringify(start)}]\nstop = ["sh", "-c", ${JSON.stringify(stop)}]`;
  };
  const app = (name: string, service: string, machines: string[], extra = '') =>
    `[[apps]]\nname = "${name}"\norg = "acme"\n${extra}[[apps.services]]\n${service}\n` +
    machines.map((id) => `[[machines]]\nid = "${id}"\napp = "${name}"\nregion = "ewr"\nstate = "stopped"\n`).join('') +
    `[[ips]]\napp = "${name}"\n`;
  const http = (port: number, more = '') => `protocol = "http"\ninternal_port = 8080\nports = [{ port = ${port} }]\nauto_stop_machines = "stop"\n${more}`;
  const head = (name: string, admin: number, proxy: string) =>
    `[node]\nname = "${name}"\nregion = "ewr"\n[catalog]\nstore = "redis"\nredis_url = "${redis.url}"\nnamespace = "${namespace}"\n` +
    `[control]\nenabled = true\nlisten = "127.0.0.1:${admin}"\ntoken = "${ADMIN_TOKEN}"\n[demo]\nenabled = false\n[wireguard]\nenabled = false\n[health]\nenabled = false\n[dns]\nenabled = false\n` +
    `[proxy]\n${proxy}\nconnect_timeout = "500ms"\n` +
    `[autostart]\nstart_timeout = "${START_TIMEOUT}ms"\nidle_period = "${IDLE}ms"\ncheck_interval = "300ms"\n` +
    [
      ['lazy', hooks('http', 8080)],
      ['pair', hooks('http', 8080)],
      ['many', hooks('http', 8080)],
      ['deaf', 'start = ["true"]'],
      ['broken', 'start = ["sh", "-c", "echo no disk for {machine} >&2; exit 3"]'],
      ['echo', hooks('tcp', 7000)],
    ]
      .map(([name, h]) => `[[autostart.hooks]]\napp = "${name}"\n${h}\n`)
      .join('');

  const machine = async (id: string): Promise<Machine> => (await store.snapshot()).machines.find((m) => m.id === id)!;
  const starts = (): string[] => (existsSync(join(dir, 'starts.log')) ? readFileSync(join(dir, 'starts.log'), 'utf8').trim().split('\n').filter(Boolean) : []);
  const running = (id: string): boolean => existsSync(join(dir, `${id}.pid`));
  const state = async (id: string, want: Machine['state'], timeoutMs = 10_000) => waitFor(async () => ((await machine(id)).state === want ? true : null), { what: `${id} ${want}`, timeoutMs });
  const PORTS: Record<string, number> = { lazy: 80, pair: 81, many: 82, deaf: 83, broken: 84 };
  const viaA = (name: string, path = '/') => httpFrom(CALLER, `http://[${ip[name]}]:${PORTS[name]}${path}`);
  /** Node B: a loopback caller on its dev mapping (the mapping names the caller the ACL sees). */
  const loopback = new Agent({ pipelining: 1, keepAliveTimeout: 1_000 });
  const viaB = async (path = '/') => {
    const r = await request(`http://127.0.0.1:${devPort}${path}`, { dispatcher: loopback });
    return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-autostart-e2e-'));
    redis = await startRedis();
    [adminA, adminB, devPort] = [await freePort(), await freePort(), await freePort()];
    const seed =
      '[[orgs]]\nname = "acme"\nnetwork_id = 45\n' +
      app('lazy', http(80), [IDS.lazy]) +
      app('pair', http(81, 'min_machines_running = 1\n'), [IDS.pair1, IDS.pair2], 'primary_region = "ewr"\n') +
      app('many', http(82, 'concurrency = { type = "requests", soft_limit = 40, hard_limit = 60 }\n'), [IDS.many1, IDS.many2, IDS.many3]) +
      app('deaf', http(83), [IDS.deaf]) +
      app('broken', http(84), [IDS.broken]) +
      app('echo', 'protocol = "tcp"\ninternal_port = 7000\nports = [{ port = 7000 }]\nauto_stop_machines = "stop"\n', [IDS.echo]);
    a = await startProxyNode(head('node-a', adminA, 'mode = "per-address"') + seed, {}, 'up');
    store = await RedisStore.open({ url: redis.url, namespace, regions: ['ewr', 'iad'] });
    const snap = await store.snapshot();
    for (const f of snap.flycast) ip[f.app] = f.address;
    b = await startProxyNode(
      head('node-b', adminB, `mode = "dev"\ndev_mappings = [{ listen_port = ${devPort}, flycast = "${ip.lazy}", port = 80, as_caller = "${CALLER}" }]`),
      {},
      'up',
    );
  }, 60_000);

  afterAll(async () => {
    await closeCallerAgents();
    await loopback.close();
    await store?.close();
    await b?.stop();
    await a?.stop();
    await redis?.stop();
    // Nothing left running: every machine process a start hook left behind is killed.
    for (const id of Object.values(IDS)) {
      const pidFile = join(dir, `${id}.pid`);
      if (existsSync(pidFile)) {
        try {
          process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves a caller of an app whose only machine is stopped: its start hook runs once, then the request is forwarded', async () => {
    expect((await machine(IDS.lazy)).state).toBe('stopped');
    const r = await viaA('lazy');
    expect(r.status, r.text).toBe(200);
    expect(r.text).toBe(`${IDS.lazy}\n`);
    expect(starts()).toEqual([IDS.lazy]);
    const m = await machine(IDS.lazy);
    expect(m.state).toBe('started');
    expect(m.state_reason).toMatch(/started by its start hook/);
    expect(await metricSum(adminA, 'sixpn_autostart_starts_total', { outcome: 'started' })).toBe(1);
    // the next caller goes straight to it
    expect((await viaA('lazy')).text).toBe(`${IDS.lazy}\n`);
    expect(starts()).toHaveLength(1);
  });

  it('autostop: the idle machine is stopped by its stop hook after idle_period; the next caller starts it again', async () => {
    const t0 = Date.now();
    await state(IDS.lazy, 'stopped');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(IDLE / 2);
    expect((await machine(IDS.lazy)).state_reason).toMatch(/autostop: no traffic for 1500ms/);
    expect(running(IDS.lazy)).toBe(false);
    // and node B, in its own process, serves the next caller by starting it again
    const r = await viaB();
    expect(r.status, r.text).toBe(200);
    expect(r.text).toBe(`${IDS.lazy}\n`);
    expect(starts()).toEqual([IDS.lazy, IDS.lazy]);
  });

  it('100 concurrent callers through two nodes while the only machine is stopped: all served, one start in all', async () => {
    await state(IDS.lazy, 'stopped');
    const before = starts().length;
    const calls = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? viaA('lazy') : viaB()));
    const replies = await Promise.all(calls);
    expect(replies.map((r) => r.status), [...new Set(replies.filter((r) => r.status !== 200).map((r) => r.text))].join(' | ')).toEqual(Array(100).fill(200));
    expect(new Set(replies.map((r) => r.text))).toEqual(new Set([`${IDS.lazy}\n`]));
    expect(starts().slice(before)).toEqual([IDS.lazy]);
    // one node won the catalog's compare-and-set and started it; the other joined that start
    const started = (await metricSum(adminA, 'sixpn_autostart_starts_total', { outcome: 'started' })) + (await metricSum(adminB, 'sixpn_autostart_starts_total', { outcome: 'started' }));
    const joined = (await metricSum(adminA, 'sixpn_autostart_starts_total', { outcome: 'joined' })) + (await metricSum(adminB, 'sixpn_autostart_starts_total', { outcome: 'joined' }));
    expect(started).toBe(3); // one per test so far
    expect(joined).toBeGreaterThanOrEqual(1);
  });

  it('100 concurrent callers over soft_limit 40: as many machines start as the limits need (three), and all are served', async () => {
    const replies = await Promise.all(Array.from({ length: 100 }, () => viaA('many', '/sleep?ms=300')));
    expect(replies.map((r) => r.status), [...new Set(replies.filter((r) => r.status !== 200).map((r) => r.text))].join(' | ')).toEqual(Array(100).fill(200));
    const who = new Set(replies.map((r) => r.text.trim()));
    expect([...who].sort()).toEqual([IDS.many1, IDS.many2, IDS.many3]);
    expect(starts().filter((s) => s.startsWith('2d00c')).sort()).toEqual([IDS.many1, IDS.many2, IDS.many3]);
  });

  it('autostop keeps min_machines_running in the primary region: of two started machines one is stopped, one stays', async () => {
    // start both: callers over soft_limit 20 (the default) need two
    const replies = await Promise.all(Array.from({ length: 30 }, () => viaA('pair', '/sleep?ms=300')));
    expect(replies.map((r) => r.status)).toEqual(Array(30).fill(200));
    await waitFor(async () => ((await machine(IDS.pair1)).state === 'started' && (await machine(IDS.pair2)).state === 'started' ? true : null), { what: 'both pair machines started' });
    await waitFor(async () => ((await machine(IDS.pair1)).state === 'stopped' || (await machine(IDS.pair2)).state === 'stopped' ? true : null), { what: 'one pair machine stopped' });
    // several more sweeps (300 ms apart, idle_period 1.5 s long past): the last one stays
    await new Promise((r) => setTimeout(r, IDLE + 1_000));
    const states = [(await machine(IDS.pair1)).state, (await machine(IDS.pair2)).state].sort();
    expect(states).toEqual(['started', 'stopped']);
  });

  it('a start hook that fails: the caller gets 503 with the reason and its request id at once, the machine is marked failed', async () => {
    const t0 = Date.now();
    const r = await viaA('broken');
    expect(r.status).toBe(503);
    expect(Date.now() - t0).toBeLessThan(START_TIMEOUT);
    expect(r.text).toMatch(new RegExp(`^503 machine ${IDS.broken} of app broken could not be started for this request: start hook sh exited with code 3: no disk for ${IDS.broken} \\(request id [0-9a-z-]+\\)\\n$`));
    expect(r.headers['fly-request-id']).toBeTruthy();
    expect(r.text).toContain(String(r.headers['fly-request-id']));
    const m = await machine(IDS.broken);
    expect(m.state).toBe('failed');
    expect(m.state_reason).toMatch(/^autostart: start hook sh exited with code 3/);
    // a failed machine is not tried again: the next caller is told there is nothing to start
    const again = await viaA('broken');
    expect(again.status).not.toBe(200);
    expect(again.text).not.toMatch(/start hook/);
  });

  it('a machine that starts but never accepts: 503 SIXPN_START_FAILED after start_timeout, the machine is marked failed', async () => {
    const t0 = Date.now();
    const r = await viaA('deaf');
    const took = Date.now() - t0;
    expect(r.status).toBe(503);
    expect(took).toBeGreaterThanOrEqual(START_TIMEOUT - 100);
    expect(took).toBeLessThan(START_TIMEOUT + 2_000);
    expect(r.text).toMatch(new RegExp(`could not be started for this request: its start hook succeeded but it did not accept connections on \\[${addr(IDS.deaf)}\\]:8080 within ${START_TIMEOUT} ms`));
    expect((await machine(IDS.deaf)).state).toBe('failed');
    expect(await metricSum(adminA, 'sixpn_proxy_errors_total', { code: 'SIXPN_START_FAILED' })).toBeGreaterThanOrEqual(2);
  });

  it('TCP: a connection to a stopped machine waits for its start and is then piped to it', async () => {
    expect((await machine(IDS.echo)).state).toBe('stopped');
    const s = await tcpFrom(CALLER, ip.echo!, 7000);
    const got = readAll(s, 5_000);
    s.end('ping\n');
    const { data } = await got;
    expect(data).toBe(`${IDS.echo}\nping\n`);
    expect((await machine(IDS.echo)).state).toBe('started');
  });
});

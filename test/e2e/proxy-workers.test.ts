// `[proxy] workers = 2`: two worker processes share the Flycast listeners (node:cluster), each
// with its share of every hard_limit, so the node as a whole never goes above it, and the node
// reports as one: the primary's /metrics and /v1/status sum both workers' traffic, a passive
// ejection by the workers shows once in its event feed, and a worker killed with SIGKILL is
// restarted without the node's counters going backwards. Autostart and autostop work from the
// workers (their machine writes go through the primary's store): a stopped app is started for a
// caller, stopped again when idle, and started again. Real processes: the sixpn node (with
// its control API), its workers, HTTP and TCP machines, callers from the org's address.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { IN_NETNS, ROOT } from '../harness/env.js';
import { ADMIN_TOKEN, appToml, closeCallerAgents, httpFrom, metricSum, orgsToml, proxyNodeToml, rawHttp, readLines, startProxyNode, tcpFrom, type ProxyNode } from '../harness/flycast.js';
import { startHttpMachine, startTcpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { freePort, sleep, waitFor } from '../harness/net.js';

const HOST = parseHostId('a7b:7d')!;
const NET = 0x2e;
const INSIDER = 'fdaa:0:2e:a7b:7d:0:ca11:1';
const addr = (id: string): string => machineAddress(NET, HOST, id);
const WEB_ID = '2e000001';
const ECHO_ID = '2e000002';
const WEB_IP = 'fdaa:0:2e:0:1::3';
const ECHO_IP = 'fdaa:0:2e:0:1::4';
const FLAKY_IP = 'fdaa:0:2e:0:1::5';
const MANY_IP = 'fdaa:0:2e:0:1::6';
const GOOD_ID = '2e000003';
const MANY_ID = '2e000005';
/** A machine of app flaky where nothing listens: every connect to it is refused. */
const DEAD_ID = '2e000004';
/** App lazy: one machine, stopped, started by an autostart hook when a caller comes. */
const LAZY_ID = '2e000006';
const LAZY_IP = 'fdaa:0:2e:0:1::7';
const WEB_REQUESTS = 'sixpn_proxy_http_requests_total';
const AUTH = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** App lazy (scale to zero) and the autostart hooks that run and kill its machine process, writing into `dir`. */
function lazyToml(dir: string): string {
  const machine = join(ROOT, 'test/harness/machine.mjs');
  const start = `echo {machine} >> ${dir}/starts.log; ${process.execPath} ${machine} --kind http --id {machine} --host {address} --port 8080 > ${dir}/{machine}.out 2>&1 & echo $! > ${dir}/{machine}.pid`;
  const stop = `kill $(cat ${dir}/{machine}.pid) && rm ${dir}/{machine}.pid`;
  return [
    '[autostart]',
    'start_timeout = "5s"',
    'idle_period = "1500ms"',
    'check_interval = "300ms"',
    '[[autostart.hooks]]',
    'app = "lazy"',
    `start = ["sh", "-c", ${JSON.stringify(start)}]`,
    `stop = ["sh", "-c", ${JSON.stringify(stop)}]`,
    '[[apps]]',
    'name = "lazy"',
    'org = "workers"',
    '[[apps.services]]',
    'protocol = "http"',
    'internal_port = 8080',
    'ports = [{ port = 80 }]',
    'auto_stop_machines = "stop"',
    'min_machines_running = 0',
    '[[machines]]',
    `id = "${LAZY_ID}"`,
    'app = "lazy"',
    'region = "ewr"',
    'state = "stopped"',
    '[[ips]]',
    'app = "lazy"',
  ].join('\n');
}

/** Child processes of `pid` (the workers). */
function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** One request on a connection of its own (the primary hands connections to the workers in turn); resolves with the status. */
async function oneShot(ip: string, path = '/', ms = 3_000): Promise<number> {
  const text = await rawHttp(INSIDER, ip, 80, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, ms);
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
}

/** The node's JSON log lines from `from` (an offset in its output) on. */
function logLines(proxy: ProxyNode, from: number): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const l of proxy.proc.output().slice(from).split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      // a line cut at the offset
    }
  }
  return out;
}

/** Access-log lines of `app` per worker index, from `from` on. */
function servedByWorker(proxy: ProxyNode, from: number, app: string): Map<number, number> {
  const by = new Map<number, number>();
  for (const l of logLines(proxy, from)) if (l.msg === 'request' && l.app === app) by.set(l.worker as number, (by.get(l.worker as number) ?? 0) + 1);
  return by;
}

describe.skipIf(!IN_NETNS)('flycast proxy with workers = 2 (e2e)', () => {
  let proxy: ProxyNode;
  let web: TestMachine;
  let echo: TestMachine;
  let good: TestMachine;
  let many: TestMachine;
  let admin: number;
  const hookDir = mkdtempSync(join(tmpdir(), 'sixpn-workers-hooks-'));

  const api = async (path: string): Promise<any> => (await fetch(`http://127.0.0.1:${admin}${path}`, { headers: AUTH })).json();
  const appStatus = async (app: string): Promise<{ active_connections: number | null; request_rate: number | null }> => {
    const st = await api('/v1/status');
    return (st.orgs as { apps: { name: string }[] }[]).flatMap((o) => o.apps).find((a) => a.name === app) as never;
  };

  beforeAll(async () => {
    [web, echo, good, many] = await Promise.all([
      startHttpMachine({ id: WEB_ID, host: addr(WEB_ID), port: 8080 }),
      startTcpMachine({ id: ECHO_ID, host: addr(ECHO_ID), port: 7000, greet: true }),
      startHttpMachine({ id: GOOD_ID, host: addr(GOOD_ID), port: 8080 }),
      startHttpMachine({ id: MANY_ID, host: addr(MANY_ID), port: 8080 }),
    ]);
    admin = await freePort();
    // No queue: a caller over its worker's share is refused at once, so the counts are exact.
    // The access log says which worker served each request. Ejections of 5 s: long enough for
    // both workers to eject the dead machine before the first takes it back.
    const toml = `${proxyNodeToml({ admin, proxy: 'workers = 2\nqueue_timeout = "0s"\naccess_log = true' })}
[health.passive]
base_ejection = "5s"
${orgsToml({ workers: NET })}
${appToml({ name: 'web', org: 'workers', protocol: 'http', internalPort: 8080, ports: [80], concurrency: '{ type = "requests", soft_limit = 5, hard_limit = 5 }', machines: [{ id: WEB_ID }] })}
${appToml({ name: 'echo', org: 'workers', protocol: 'tcp', internalPort: 7000, ports: [7000], concurrency: '{ type = "connections", soft_limit = 3, hard_limit = 3 }', machines: [{ id: ECHO_ID }] })}
${appToml({ name: 'flaky', org: 'workers', protocol: 'http', internalPort: 8080, ports: [80], machines: [{ id: GOOD_ID }, { id: DEAD_ID }] })}
${appToml({ name: 'many', org: 'workers', protocol: 'http', internalPort: 8080, ports: [80], concurrency: '{ type = "requests", soft_limit = 50, hard_limit = 50 }', machines: [{ id: MANY_ID }] })}
${lazyToml(hookDir)}
`;
    proxy = await startProxyNode(toml, {}, 'up');
  });

  afterAll(async () => {
    await closeCallerAgents();
    await proxy?.stop();
    await stopMachines([web, echo, good, many].filter(Boolean));
    const pid = join(hookDir, `${LAZY_ID}.pid`);
    if (existsSync(pid)) process.kill(Number(readFileSync(pid, 'utf8')), 'SIGTERM');
    rmSync(hookDir, { recursive: true, force: true });
  });

  it('runs two worker processes that both serve', async () => {
    expect(children(proxy.proc.child.pid!)).toHaveLength(2);
    expect(proxy.banner).toContain('2 workers');
    const r = await httpFrom(INSIDER, `http://[${WEB_IP}]/`);
    expect(r.status).toBe(200);
    expect(r.text).toBe(`${WEB_ID}\n`);
  });

  it("sums both workers' requests on the primary's /metrics and /v1/status: 20 requests, 20 counted, both workers served", async () => {
    const before = await metricSum(admin, WEB_REQUESTS, { app: 'web' });
    const from = proxy.proc.output().length;
    for (let i = 0; i < 20; i++) expect(await oneShot(WEB_IP)).toBe(200);
    expect((await metricSum(admin, WEB_REQUESTS, { app: 'web' })) - before).toBe(20);
    expect(await metricSum(admin, WEB_REQUESTS, { app: 'web', machine: WEB_ID, status_class: '2xx' })).toBe(before + 20);
    await waitFor(() => [...servedByWorker(proxy, from, 'web').values()].reduce((a, b) => a + b, 0) === 20, { what: '20 access-log lines' });
    const by = servedByWorker(proxy, from, 'web');
    expect([...by.keys()].sort()).toEqual([0, 1]);
    expect(by.get(0)! + by.get(1)!).toBe(20);
    // The dashboard's sampler reads the same sums: the rate shows in the node's status.
    await waitFor(async () => ((await appStatus('web')).request_rate ?? 0) > 0, { what: 'a request rate for web in /v1/status', timeoutMs: 5_000 });
    expect(await metricSum(admin, 'sixpn_proxy_active_connections', { app: 'web' })).toBe(0);
  });

  it('sums active connections across workers while requests are in flight, and is back at 0 after', async () => {
    // An app with room (a worker takes whatever connections the primary hands it, not always
    // an even split): 8 requests held 1.5 s, spread over both workers.
    const from = proxy.proc.output().length;
    const slow = Array.from({ length: 8 }, () => oneShot(MANY_IP, '/sleep?ms=1500', 5_000));
    await waitFor(async () => (await metricSum(admin, 'sixpn_proxy_active_connections', { app: 'many', machine: MANY_ID })) === 8, { what: '8 active connections on /metrics' });
    expect((await appStatus('many')).active_connections).toBe(8);
    expect(await Promise.all(slow)).toEqual(Array(8).fill(200));
    await waitFor(() => [...servedByWorker(proxy, from, 'many').values()].reduce((a, b) => a + b, 0) === 8, { what: '8 access-log lines' });
    expect([...servedByWorker(proxy, from, 'many').keys()].sort()).toEqual([0, 1]);
    await waitFor(async () => (await metricSum(admin, 'sixpn_proxy_active_connections', { app: 'many' })) === 0, { what: '0 active connections' });
    expect((await appStatus('many')).active_connections).toBe(0);
  });

  it('holds hard_limit for the node as a whole: 20 concurrent requests, exactly 5 served at once, the rest 503', async () => {
    await web.resetStats();
    const replies = await Promise.all(Array.from({ length: 20 }, () => httpFrom(INSIDER, `http://[${WEB_IP}]/sleep?ms=1000`)));
    const ok = replies.filter((r) => r.status === 200).length;
    const full = replies.filter((r) => r.status === 503).length;
    const s = await web.stats();
    // Never above hard_limit on the machine, whatever the workers did.
    expect(s.maxActiveRequests).toBeLessThanOrEqual(5);
    // One worker's share is at most 3 (5 = 3 + 2): 5 served means both workers served theirs.
    expect(ok).toBe(5);
    expect(full).toBe(15);
    // Released: the next request is served again.
    expect((await httpFrom(INSIDER, `http://[${WEB_IP}]/`)).status).toBe(200);
  });

  it('holds a TCP service hard_limit (3) across workers: the 4th..8th connections are closed unserved', async () => {
    const socks = await Promise.all(Array.from({ length: 8 }, () => tcpFrom(INSIDER, ECHO_IP, 7000)));
    const greeted = await Promise.all(socks.map((s) => readLines(s, 1, 1_500).then(() => true, () => false)));
    expect(greeted.filter(Boolean).length).toBe(3);
    await waitFor(async () => (await echo.stats()).active === 3, { what: '3 connections on the echo machine' });
    expect((await echo.stats()).maxActive).toBeLessThanOrEqual(3);
    for (const s of socks) s.destroy();
    await sleep(200);
  });

  it("shows a machine that refuses connects, ejected by both workers, once in the primary's event feed, and back once", async () => {
    const from = proxy.proc.output().length;
    const ejectedBy = (): Set<number> => new Set(logLines(proxy, from).filter((l) => l.machine === DEAD_ID && l.ejected_ms !== undefined).map((l) => l.worker as number));
    // Callers are served by the good machine (the proxy retries); each worker ejects the dead
    // one after 3 failed connects of its own.
    for (let i = 0; i < 200 && ejectedBy().size < 2; i++) expect(await oneShot(FLAKY_IP)).toBe(200);
    await waitFor(() => ejectedBy().size === 2, { what: 'both workers ejecting the dead machine' });
    const ejections = async (): Promise<{ at: number; message: string; data: { ejected: boolean; until?: number } }[]> =>
      (await api(`/v1/events?kind=ejection&machine=${DEAD_ID}`)).events;
    await waitFor(async () => (await ejections()).length > 0, { what: 'an ejection event', timeoutMs: 5_000 });
    const [ejected] = await ejections();
    expect(ejected).toMatchObject({ kind: 'ejection', level: 'warn', app: 'flaky', org: 'workers', data: { ejected: true } });
    expect(ejected!.message).toMatch(new RegExp(`^machine ${DEAD_ID} of flaky ejected from this node's rotation for [\\d.]+s after failed connects$`));
    // Back in the node's rotation when the later of the two ejections ran out: one event.
    await waitFor(async () => (await ejections()).length === 2, { what: 'the machine back in rotation', timeoutMs: 15_000 });
    await sleep(1_500);
    const events = await ejections();
    expect(events.map((e) => e.data.ejected)).toEqual([true, false]);
    expect(events[1]!.message).toBe(`machine ${DEAD_ID} of flaky back in this node's rotation`);
    expect(events[1]!.at).toBeGreaterThanOrEqual(ejected!.data.until!);
  });

  it("restarts a worker killed with SIGKILL, and the node's counters do not go backwards", async () => {
    const pid = proxy.proc.child.pid!;
    const before = await metricSum(admin, WEB_REQUESTS, { app: 'web' });
    const kids = children(pid);
    expect(kids).toHaveLength(2);
    const from = proxy.proc.output().length;
    process.kill(kids[0]!, 'SIGKILL');
    // Read all through the restart: never below what was counted before.
    let last = before;
    await waitFor(
      async () => {
        const now = await metricSum(admin, WEB_REQUESTS, { app: 'web' });
        expect(now).toBeGreaterThanOrEqual(last);
        last = now;
        const k = children(pid);
        return k.length === 2 && !k.includes(kids[0]!);
      },
      { what: 'a new worker', everyMs: 50 },
    );
    // The primary logs asynchronously: its line may come after the new worker.
    const died = await waitFor(() => logLines(proxy, from).find((l) => l.msg === 'proxy worker died; starting another'), { what: 'the log line of the death' });
    expect(died).toMatchObject({ signal: 'SIGKILL' });
    // What the killed worker had counted stays: the last answer it gave, right before.
    expect(await metricSum(admin, WEB_REQUESTS, { app: 'web' })).toBe(before);
    // The other worker serves until the new one listens; then the new one takes its turn and
    // counts from 0 on top of what its predecessor counted.
    const served = proxy.proc.output().length;
    let sent = 0;
    await waitFor(
      async () => {
        expect(await oneShot(WEB_IP)).toBe(200);
        sent++;
        return servedByWorker(proxy, served, 'web').has(died!.worker as number);
      },
      { what: 'the restarted worker serving', everyMs: 50 },
    );
    for (let i = 0; i < 10; i++) expect(await oneShot(WEB_IP)).toBe(200);
    expect(await metricSum(admin, WEB_REQUESTS, { app: 'web' })).toBe(before + sent + 10);
    expect(await metricSum(admin, 'sixpn_proxy_active_connections', { app: 'web' })).toBe(0);
  });

  it('starts a stopped machine for a caller from a worker, stops it when idle, and starts it again (autostart writes go through the primary)', async () => {
    const state = async (): Promise<string> => ((await api('/v1/apps/lazy/machines')) as { id: string; state: string }[]).find((m) => m.id === LAZY_ID)!.state;
    const from = proxy.proc.output().length;
    expect(await state()).toBe('stopped');
    const first = await httpFrom(INSIDER, `http://[${LAZY_IP}]/`);
    // On failure: the answer and the node's lines about the app or autostart.
    const context = (): string => proxy.proc.output().slice(from).split('\n').filter((l) => /lazy|autostart/.test(l)).join('\n');
    expect(first.status, `${first.text}\n${context()}`).toBe(200);
    expect(first.text).toBe(`${LAZY_ID}\n`);
    expect(await state()).toBe('started');
    // No caller for idle_period: a worker's autostop stops it through the stop hook.
    await waitFor(async () => (await state()) === 'stopped', { what: 'lazy stopped when idle', timeoutMs: 15_000 });
    await waitFor(() => !existsSync(join(hookDir, `${LAZY_ID}.pid`)), { what: 'the stop hook ran', timeoutMs: 5_000 });
    const again = await httpFrom(INSIDER, `http://[${LAZY_IP}]/`);
    expect(again.status).toBe(200);
    expect(readFileSync(join(hookDir, 'starts.log'), 'utf8').trim().split('\n')).toEqual([LAZY_ID, LAZY_ID]);
    // Nothing a worker wrote failed on the way (its store is the primary's).
    const errors = logLines(proxy, from).filter((l) => (l.level as number) >= 40 && /machine|activity/.test(String(l.msg)));
    expect(errors).toEqual([]);
  });

  it('drains and exits 0 on SIGTERM, workers included, even one started again a moment before', async () => {
    const pid = proxy.proc.child.pid!;
    const [gone, kept] = children(pid);
    // SIGTERM while the replacement of a dead worker still loads: it drains once ready, at once
    // (a drain sent before it listened would be lost, and the node would wait drain_timeout).
    process.kill(gone!, 'SIGKILL');
    await waitFor(() => children(pid).length === 2 && !children(pid).includes(gone!), { what: 'a replacement worker', everyMs: 5 });
    const kids = children(pid);
    const t0 = Date.now();
    expect(await proxy.stop()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(4_000);
    for (const k of [...kids, kept!]) expect(() => process.kill(k, 0)).toThrow();
    proxy = undefined as unknown as ProxyNode;
  });
});

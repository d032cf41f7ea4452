// The Flycast proxy end to end, in the private network namespace: `sixpn proxy --config` with a
// Redis catalog (so the test changes machines and addresses while it runs), real HTTP and TCP
// machines bound to their own 6PN addresses in ewr, iad and syd, callers bound to 6PN source
// addresses of the owning org and of another org.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { RedisStore } from '../../src/catalog/redis.js';
import { IN_NETNS } from '../harness/env.js';
import { appToml, closeCallerAgents, httpFrom, orgsToml, proxyNodeToml, readAll, readLines, startProxyNode, tcpFrom, type ProxyNode } from '../harness/flycast.js';
import { startHttpMachine, startTcpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { sleep, waitFor } from '../harness/net.js';
import { startRedis, type TestRedis } from '../harness/redis.js';

const HOST = parseHostId('a7b:7d')!;
const ACME = 0x18;
const OTHER = 0x30;
const INSIDER = 'fdaa:0:18:a7b:7d:0:ca11:1';
const OUTSIDER = 'fdaa:0:30:a7b:7d:0:ca11:1';
const addr = (id: string): string => machineAddress(ACME, HOST, id);

// web (http, requests soft 2 / hard 3): 3 in ewr, 2 in iad, 1 in syd.
const WEB = [
  ['a0000001', 'ewr'],
  ['a0000002', 'ewr'],
  ['a0000003', 'ewr'],
  ['a0000004', 'iad'],
  ['a0000005', 'iad'],
  ['a0000006', 'syd'],
] as const;
// echo (tcp, greets with its id): 3 in ewr.
const ECHO = ['b0000001', 'b0000002', 'b0000003'];
// flaky (http): one live machine and one registered address where nothing listens.
const FLAKY_LIVE = 'c0000001';
const FLAKY_DEAD = 'c0000002';

const WEB_IP = 'fdaa:0:18:0:1::3';
const ECHO_IP = 'fdaa:0:18:0:1::4';
const FLAKY_IP = 'fdaa:0:18:0:1::5';

function toml(redisUrl: string, namespace: string): string {
  const catalog = `store = "redis"\nredis_url = "${redisUrl}"\nnamespace = "${namespace}"`;
  const proxy = 'mode = "per-address"\nqueue_timeout = "400ms"\nconnect_timeout = "1s"\ndrain_timeout = "5s"';
  return `${proxyNodeToml({ catalog, proxy })}
${orgsToml({ acme: ACME, other: OTHER })}
${appToml({ name: 'web', org: 'acme', protocol: 'http', internalPort: 8080, ports: [80], concurrency: '{ type = "requests", soft_limit = 2, hard_limit = 3 }', machines: WEB.map(([id, region]) => ({ id, region })) })}
${appToml({ name: 'echo', org: 'acme', protocol: 'tcp', internalPort: 7000, ports: [7000], concurrency: '{ type = "connections", soft_limit = 100, hard_limit = 200 }', machines: ECHO.map((id) => ({ id })) })}
${appToml({ name: 'flaky', org: 'acme', protocol: 'http', internalPort: 8080, ports: [80], machines: [{ id: FLAKY_LIVE }, { id: FLAKY_DEAD }] })}
`;
}

describe.skipIf(!IN_NETNS)('flycast proxy (e2e)', () => {
  let redis: TestRedis;
  let store: RedisStore;
  let proxy: ProxyNode;
  const web = new Map<string, TestMachine>();
  const echo = new Map<string, TestMachine>();
  let flakyLive: TestMachine;
  const all = (): TestMachine[] => [...web.values(), ...echo.values(), flakyLive];
  const namespace = `proxy-e2e-${process.pid}`;

  beforeAll(async () => {
    redis = await startRedis();
    const started = await Promise.all([
      ...WEB.map(([id]) => startHttpMachine({ id, host: addr(id), port: 8080 })),
      ...ECHO.map((id) => startTcpMachine({ id, host: addr(id), port: 7000, greet: true })),
      startHttpMachine({ id: FLAKY_LIVE, host: addr(FLAKY_LIVE), port: 8080 }),
    ]);
    for (const m of started) {
      if (m.id.startsWith('a')) web.set(m.id, m);
      else if (m.id.startsWith('b')) echo.set(m.id, m);
      else flakyLive = m;
    }
    proxy = await startProxyNode(toml(redis.url, namespace));
    store = await RedisStore.open({ url: redis.url, namespace, regions: ['ewr', 'iad', 'syd', 'lhr'] });
  });

  afterAll(async () => {
    await closeCallerAgents();
    await store?.close();
    await proxy?.stop();
    await stopMachines(all().filter(Boolean));
    await redis?.stop();
  });

  const resetAll = (): Promise<void[]> => Promise.all(all().map((m) => m.resetStats()));
  const totalConnections = async (): Promise<number> => (await Promise.all(all().map((m) => m.stats()))).reduce((n, s) => n + s.connections, 0);

  it('prints what it serves in the banner', () => {
    expect(proxy.banner).toContain(`proxy: [${WEB_IP}]:80 -> web (http)`);
    expect(proxy.banner).toContain(`proxy: [${ECHO_IP}]:7000 -> echo (tcp)`);
  });

  it('denies callers outside the owning org: HTTP 403, TCP closed, and no machine sees a connection', async () => {
    await resetAll();
    const r = await httpFrom(OUTSIDER, `http://[${WEB_IP}]/`);
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/^403 forbidden: caller fdaa:0:30:a7b:7d:0:ca11:1 is not a member of org acme \(request id \S+\)\n$/);
    expect(r.text.split('\n')).toHaveLength(2);
    const s = await tcpFrom(OUTSIDER, ECHO_IP, 7000);
    s.write('hello\n');
    const got = await readAll(s);
    expect(got).toEqual({ data: '', closed: true });
    await sleep(100);
    expect(await totalConnections()).toBe(0);
    await waitFor(() => /"caller":"fdaa:0:30:a7b:7d:0:ca11:1".*"flycast":"fdaa:0:18:0:1::4".*caller denied/.test(proxy.proc.output()), { what: 'denial log line' });
  });

  it('sends an insider to the nearest region (ewr) while it has room', async () => {
    await resetAll();
    const seen = new Set<string>();
    // Sequential requests tie at zero outstanding and break ties at random: 40 requests miss
    // one of three machines with probability ~3e-7 (12 did 2% of the time).
    for (let i = 0; i < 40; i++) {
      const r = await httpFrom(INSIDER, `http://[${WEB_IP}]/`);
      expect(r.status).toBe(200);
      seen.add(r.text.trim());
    }
    expect([...seen].sort()).toEqual(['a0000001', 'a0000002', 'a0000003']);
  });

  it('spills to iad at soft_limit, fills to hard_limit nearest first, never above it, then 503', async () => {
    await resetAll();
    const held: Promise<{ status: number; text: string }>[] = [];
    const fire = (n: number): void => {
      for (let i = 0; i < n; i++) held.push(httpFrom(INSIDER, `http://[${WEB_IP}]/sleep?ms=3000`));
    };
    const active = async (): Promise<Record<string, number>> => {
      const o: Record<string, number> = {};
      for (const [id, m] of web) o[id] = (await m.stats()).activeRequests;
      return o;
    };
    // 6 under soft limit in ewr (2 each).
    fire(6);
    await waitFor(async () => Object.values(await active()).reduce((a, b) => a + b, 0) === 6, { what: '6 in flight' });
    expect(await active()).toEqual({ a0000001: 2, a0000002: 2, a0000003: 2, a0000004: 0, a0000005: 0, a0000006: 0 });
    // ewr is at soft limit: the next 4 spill to iad, not syd.
    fire(4);
    await waitFor(async () => Object.values(await active()).reduce((a, b) => a + b, 0) === 10, { what: '10 in flight' });
    expect(await active()).toEqual({ a0000001: 2, a0000002: 2, a0000003: 2, a0000004: 2, a0000005: 2, a0000006: 0 });
    // Every near region at soft limit: syd still has room under soft limit, so it takes the next 2.
    fire(2);
    await waitFor(async () => (await active()).a0000006 === 2, { what: 'syd at soft limit' });
    // All at soft limit: up to hard limit, nearest first (ewr, then iad, then syd).
    fire(3);
    await waitFor(async () => Object.values(await active()).reduce((a, b) => a + b, 0) === 15, { what: '15 in flight' });
    expect(await active()).toEqual({ a0000001: 3, a0000002: 3, a0000003: 3, a0000004: 2, a0000005: 2, a0000006: 2 });
    fire(3);
    await waitFor(async () => Object.values(await active()).reduce((a, b) => a + b, 0) === 18, { what: '18 in flight' });
    // All at hard limit: the next one waits in the queue (400 ms) and is refused with 503.
    const refused = await httpFrom(INSIDER, `http://[${WEB_IP}]/`);
    expect(refused.status).toBe(503);
    expect(refused.text).toMatch(/^503 all machines are at their hard limit \(request id \S+\)/);
    await waitFor(() => proxy.proc.output().split('\n').some((l) => l.includes(`"request_id":"${refused.headers['fly-request-id'] as string}"`) && l.includes('"code":"SIXPN_NO_CAPACITY"')), { what: 'the 503 logged with its code' });
    const results = await Promise.all(held);
    expect(results.every((r) => r.status === 200)).toBe(true);
    for (const m of web.values()) expect((await m.stats()).maxActiveRequests).toBeLessThanOrEqual(3);
  });

  it('a queued request gets the slot a finished one frees', async () => {
    const held = Array.from({ length: 18 }, () => httpFrom(INSIDER, `http://[${WEB_IP}]/sleep?ms=250`));
    await sleep(100);
    const queued = await httpFrom(INSIDER, `http://[${WEB_IP}]/`);
    expect(queued.status).toBe(200);
    await Promise.all(held);
  });

  it('spreads 30 long-lived TCP connections over 3 machines 10 each (least connections)', async () => {
    await resetAll();
    const sockets = [];
    const counts = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const s = await tcpFrom(INSIDER, ECHO_IP, 7000);
      const [id] = await readLines(s, 1);
      counts.set(id!, (counts.get(id!) ?? 0) + 1);
      sockets.push(s);
    }
    for (const n of counts.values()) expect(Math.abs(n - 10)).toBeLessThanOrEqual(1);
    expect(counts.size).toBe(3);
    for (const m of echo.values()) expect((await m.stats()).active).toBe(counts.get(m.id));
    // Bytes echo through, half-close is respected: the caller ends, still reads the echo.
    const s = sockets[0]!;
    const rest = readAll(s);
    s.end('ping\n');
    expect(await rest).toEqual({ data: 'ping\n', closed: true });
    for (const x of sockets) x.destroy();
  });

  it('gives nothing to a stopped or an unhealthy machine', async () => {
    await store.updateMachine('a0000001', { state: 'stopped' });
    await store.updateMachine('a0000002', { health: { status: 'unhealthy', reason: 'test' } });
    await sleep(200);
    await resetAll();
    for (let i = 0; i < 10; i++) expect((await httpFrom(INSIDER, `http://[${WEB_IP}]/`)).text.trim()).toBe('a0000003');
    expect((await web.get('a0000001')!.stats()).requests).toBe(0);
    expect((await web.get('a0000002')!.stats()).requests).toBe(0);
    await store.updateMachine('a0000001', { state: 'started' });
    await store.updateMachine('a0000002', { health: { status: 'healthy', reason: '' } });
  });

  it('gives a machine re-admitted after being unhealthy a slow start (default 10 s ramp)', async () => {
    await store.updateMachine('a0000003', { health: { status: 'unhealthy', reason: 'test' } });
    await store.updateMachine('a0000003', { health: { status: 'healthy', reason: '' } });
    await sleep(100);
    await resetAll();
    for (let i = 0; i < 30; i++) expect((await httpFrom(INSIDER, `http://[${WEB_IP}]/`)).status).toBe(200);
    // Without slow start a third of these (10) would go to a0000003; within the first second of
    // its window it is skipped with probability > 0.9.
    expect((await web.get('a0000003')!.stats()).requests).toBeLessThanOrEqual(4);
    expect((await web.get('a0000001')!.stats()).requests).toBeGreaterThanOrEqual(13);
  });

  it('retries a refused machine invisibly: every request succeeds', async () => {
    await resetAll();
    const statuses = [];
    for (let i = 0; i < 12; i++) statuses.push((await httpFrom(INSIDER, `http://[${FLAKY_IP}]/`)).status);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect((await flakyLive.stats()).requests).toBe(12);
    await waitFor(() => /"machine":"c0000002".*machine connect failed/.test(proxy.proc.output()), { what: 'connect failure log line' });
    // Three failed connects in a row eject it from this node (passive ejection), so later
    // requests stop paying for the failed connect.
    for (let i = 0; i < 12; i++) expect((await httpFrom(INSIDER, `http://[${FLAKY_IP}]/`)).status).toBe(200);
    await waitFor(() => /"machine":"c0000002".*"ejected_ms":10000.*ejected from this node/.test(proxy.proc.output()), { what: 'ejection log line' });
  });

  it('serves a Flycast address allocated while running and stops serving a released one', async () => {
    const ip = await store.allocateFlycast('web', 'acme');
    await waitFor(async () => (await httpFrom(INSIDER, `http://[${ip.address}]/`).catch(() => null))?.status === 200, { what: 'new address served' });
    await store.releaseFlycast(ip.address);
    await waitFor(
      async () => {
        try {
          await tcpFrom(INSIDER, ip.address, 80).then((s) => s.destroy());
          return false;
        } catch (err) {
          return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
        }
      },
      { what: 'released address closed' },
    );
  });

  it('drains on SIGTERM: the in-flight request finishes, then it exits 0', async () => {
    const inflight = httpFrom(INSIDER, `http://[${WEB_IP}]/sleep?ms=800`);
    await waitFor(async () => (await Promise.all([...web.values()].map((m) => m.stats()))).some((s) => s.activeRequests > 0), { what: 'request in flight' });
    proxy.proc.child.kill('SIGTERM');
    await sleep(100);
    await expect(tcpFrom(INSIDER, WEB_IP, 80)).rejects.toThrow(/ECONNREFUSED/);
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(await proxy.proc.exited).toBe(0);
  });
});

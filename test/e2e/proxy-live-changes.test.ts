// The Flycast proxy while the catalog changes under open connections (Redis catalog, changed by
// the test): access taken away (a Flycast address released, an org's exposure removed, the app
// deleted) closes kept-alive HTTP connections once their requests end and TCP streams at once;
// a machine entry no dial can use (already stored, whatever the API now accepts) is a connect
// failure for its app's callers and never takes the node down.
import { Redis } from 'ioredis';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { RedisStore } from '../../src/catalog/redis.js';
import type { Machine } from '../../src/catalog/types.js';
import { IN_NETNS } from '../harness/env.js';
import { appToml, closeCallerAgents, exchange, httpFrom, metricSum, orgsToml, proxyNodeToml, rawHttp, readAll, readLines, startProxyNode, tcpFrom, type ProxyNode } from '../harness/flycast.js';
import { startHttpMachine, startTcpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { freePort, waitFor } from '../harness/net.js';
import { startRedis, type TestRedis } from '../harness/redis.js';

const HOST = parseHostId('a7b:7d')!;
const OWNER = 0x2d;
const PARTNER = 0x2e;
const INSIDER = 'fdaa:0:2d:a7b:7d:0:ca11:1';
const PARTNER_CALLER = 'fdaa:0:2e:a7b:7d:0:ca11:1';
const WEB_ID = '2d000001';
const ECHO_ID = '2d000002';
const addr = (id: string): string => machineAddress(OWNER, HOST, id);
const GET = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';

/** Resolves with how long the peer took to close `s` (ms), or null if it stayed open for `ms`. */
async function closedWithin(s: net.Socket, ms: number): Promise<number | null> {
  const t0 = Date.now();
  const { closed } = await readAll(s, ms);
  return closed ? Date.now() - t0 : null;
}

describe.skipIf(!IN_NETNS)('flycast proxy: catalog changes under open connections (e2e)', () => {
  let redis: TestRedis;
  let store: RedisStore;
  let proxy: ProxyNode;
  let web: TestMachine;
  let echo: TestMachine;
  let admin: number;
  const namespace = `proxy-live-${process.pid}`;

  beforeAll(async () => {
    redis = await startRedis();
    [web, echo] = await Promise.all([startHttpMachine({ id: WEB_ID, host: addr(WEB_ID), port: 8080 }), startTcpMachine({ id: ECHO_ID, host: addr(ECHO_ID), port: 7000, greet: true })]);
    const catalog = `store = "redis"\nredis_url = "${redis.url}"\nnamespace = "${namespace}"`;
    admin = await freePort();
    proxy = await startProxyNode(`${proxyNodeToml({ catalog, admin, proxy: 'connect_timeout = "500ms"' })}
${orgsToml({ owner: OWNER, partner: PARTNER })}
${appToml({ name: 'web', org: 'owner', protocol: 'http', internalPort: 8080, ports: [80], machines: [{ id: WEB_ID }] })}
${appToml({ name: 'echo', org: 'owner', protocol: 'tcp', internalPort: 7000, ports: [7000], machines: [{ id: ECHO_ID }] })}
${appToml({ name: 'badtcp', org: 'owner', protocol: 'tcp', internalPort: 7000, ports: [7001], machines: [] })}
${appToml({ name: 'badhttp', org: 'owner', protocol: 'http', internalPort: 8080, ports: [81], machines: [] })}
`, {}, 'up');
    store = await RedisStore.open({ url: redis.url, namespace, regions: ['ewr', 'iad'] });
  });

  afterAll(async () => {
    await closeCallerAgents();
    await store?.close();
    await proxy?.stop();
    await stopMachines([web, echo].filter(Boolean));
    await redis?.stop();
  });

  const served = async (ip: string): Promise<void> => {
    await waitFor(async () => (await httpFrom(INSIDER, `http://[${ip}]/`).catch(() => null))?.status === 200, { what: `${ip} served` });
  };

  it('closes kept-alive HTTP connections of a released address: idle ones at once, busy ones after their response', async () => {
    const ip = (await store.allocateFlycast('web')).address;
    await served(ip);
    const idle = await tcpFrom(INSIDER, ip, 80);
    expect((await exchange(idle, GET)).status).toBe(200);
    const busy = await tcpFrom(INSIDER, ip, 80);
    expect((await exchange(busy, GET)).status).toBe(200);
    const slow = exchange(busy, 'GET /sleep?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitFor(async () => (await web.stats()).activeRequests === 1, { what: 'slow request in flight' });
    await store.releaseFlycast(ip);
    expect(await closedWithin(idle, 3_000)).toBeLessThan(1_000);
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(answer.body).toBe(`${WEB_ID}\n`);
    expect(await closedWithin(busy, 3_000)).toBeLessThan(1_000);
  });

  it('closes TCP streams through a released address within a second', async () => {
    const ip = (await store.allocateFlycast('echo')).address;
    const s = await waitFor(() => tcpFrom(INSIDER, ip, 7000).catch(() => null), { what: `${ip} served` });
    expect(await readLines(s, 1)).toEqual([ECHO_ID]);
    await store.releaseFlycast(ip);
    expect(await closedWithin(s, 3_000)).toBeLessThan(1_000);
    await waitFor(async () => (await echo.stats()).active === 0, { timeoutMs: 1_000, what: 'machine side closed too' });
  });

  it("closes the connections of another org's callers when the app's exposure into that org is removed", async () => {
    const ip = (await store.allocateFlycast('web', 'partner')).address;
    await waitFor(async () => (await httpFrom(PARTNER_CALLER, `http://[${ip}]/`).catch(() => null))?.status === 200, { what: 'exposed address served' });
    const s = await tcpFrom(PARTNER_CALLER, ip, 80);
    expect((await exchange(s, GET)).status).toBe(200);
    await store.releaseFlycast(ip);
    expect(await closedWithin(s, 3_000)).toBeLessThan(1_000);
  });

  it('closes connections to an app that is deleted', async () => {
    await store.createApp({ name: 'doomed', org: 'owner', services: [{ protocol: 'http', internal_port: 8080, ports: [{ port: 80 }] }] });
    await store.registerMachine({ app: 'doomed', region: 'ewr', upstream: `[${addr(WEB_ID)}]:8080` }, { hostId: HOST });
    const ip = (await store.allocateFlycast('doomed')).address;
    await served(ip);
    const s = await tcpFrom(INSIDER, ip, 80);
    expect((await exchange(s, GET)).status).toBe(200);
    await store.deleteApp('doomed');
    expect(await closedWithin(s, 3_000)).toBeLessThan(1_000);
  });

  describe('a stored machine entry that no dial can use', () => {
    let badTcpIp: string;
    let badHttpIp: string;

    beforeAll(async () => {
      badTcpIp = (await store.allocateFlycast('badtcp')).address;
      badHttpIp = (await store.allocateFlycast('badhttp')).address;
      // Written as an older version (or a hand edit) could have stored them, past today's API
      // checks: the data path must cope with whatever the catalog holds.
      const r = new Redis(redis.url);
      try {
        const now = Date.now();
        const entry = (id: string, app: string, upstream: string): Machine => ({
          id,
          app,
          region: 'ewr',
          address: addr(id),
          state: 'started',
          health: { status: 'unknown', reason: '', changed_at: now },
          upstream,
          created_at: now,
          updated_at: now,
        });
        const entries = [entry('2d0000b1', 'badtcp', '127.0.0.1:99999'), entry('2d0000b2', 'badhttp', '127.0.0.1:99999'), entry('2d0000b3', 'badhttp', 'no-such-host.invalid:80')];
        for (const m of entries) await r.hset(`${namespace}:machines`, m.id, JSON.stringify(m));
        await r.publish(`${namespace}:changes`, JSON.stringify({ o: 'test', n: 0, c: entries.map((m) => ({ kind: 'machine', op: 'put', key: m.id, value: m, at: now })) }));
      } finally {
        r.disconnect();
      }
      await waitFor(async () => (await tcpFrom(INSIDER, badTcpIp, 7001).catch(() => null)) !== null, { what: 'bad apps listening' });
    });

    it('is a connect failure for TCP, HTTP and Upgrade callers, and the node keeps serving everyone else', async () => {
      const errors = (proto: string): Promise<number> => metricSum(admin, 'sixpn_proxy_errors_total', { proto, code: 'SIXPN_UPSTREAM_UNREACHABLE' });
      const [tcpBefore, httpBefore] = [await errors('tcp'), await errors('http')];
      const s = await tcpFrom(INSIDER, badTcpIp, 7001);
      s.write('hello');
      expect(await readAll(s)).toEqual({ data: '', closed: true });
      const alive = (): void => expect(proxy.proc.child.exitCode, `the proxy exited:\n${proxy.proc.output().slice(-1500)}`).toBeNull();
      alive();
      const r = await httpFrom(INSIDER, `http://[${badHttpIp}]:81/`);
      expect(r.status).toBe(502);
      alive();
      const up = await rawHttp(INSIDER, badHttpIp, 81, 'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
      expect(up).toMatch(/^HTTP\/1\.1 502 /);
      alive();
      const ip = (await store.allocateFlycast('web')).address;
      await served(ip);
      const e = (await store.allocateFlycast('echo')).address;
      const t = await waitFor(() => tcpFrom(INSIDER, e, 7000).catch(() => null), { what: 'echo served' });
      expect(await readLines(t, 1)).toEqual([ECHO_ID]);
      t.destroy();
      alive();
      // Each failed caller was counted once at the edge under its error code.
      expect(await errors('tcp')).toBe(tcpBefore + 1);
      expect(await errors('http')).toBe(httpBefore + 2);
    });
  });
});

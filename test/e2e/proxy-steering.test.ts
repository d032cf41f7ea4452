// Request steering over Flycast (issue 17): the caller's routing headers and a machine's
// fly-replay, through a real `sixpn proxy` (the HTTP/1 engine), with real machine processes in
// three regions.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { IN_NETNS } from '../harness/env.js';
import { appToml, callerAgent, closeCallerAgents, httpFrom, metricSum, orgsToml, proxyNodeToml, startProxyNode, type ProxyNode } from '../harness/flycast.js';
import { startHttpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { freePort, waitFor } from '../harness/net.js';

const CALLER = 'fdaa:0:18::99';

/** web: one machine in each of ewr (the proxy's region), iad and lhr, and a stopped one in syd. */
const MACHINES = [
  { id: 'e0000001', app: 'web', region: 'ewr' },
  { id: '10000001', app: 'web', region: 'iad' },
  { id: 'a0000001', app: 'web', region: 'lhr' },
  { id: 'c0000001', app: 'api', region: 'iad' },
  { id: 'b0000001', app: 'evil', region: 'ewr' },
  { id: 'd0000001', app: 'slow', region: 'ewr' },
];

interface Echo {
  id: string;
  region: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  bytes: number;
  sha256: string;
}

describe.skipIf(!IN_NETNS)('flycast proxy: request steering (e2e)', () => {
  let node: ProxyNode;
  let admin = 0;
  const machines: TestMachine[] = [];
  const flycast: Record<string, string> = {};
  let web = '';
  /** The proxy's log lines so far, parsed. */
  const logs = (): Record<string, unknown>[] =>
    node.proc
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    for (const m of MACHINES) machines.push(await startHttpMachine({ id: m.id, host: '127.0.0.1', region: m.region }));
    const upstream = (id: string) => `upstream = "127.0.0.1:${machines.find((m) => m.id === id)!.port}"`;
    const app = (name: string, org: string, concurrency?: string) =>
      appToml({
        name,
        org,
        protocol: 'http',
        internalPort: 8080,
        ports: [80],
        ...(concurrency ? { concurrency } : {}),
        machines: [
          ...MACHINES.filter((m) => m.app === name).map((m) => ({ id: m.id, region: m.region, extra: upstream(m.id) })),
          ...(name === 'web' ? [{ id: 'f0000001', region: 'syd', extra: 'state = "stopped"\nupstream = "127.0.0.1:9"' }] : []),
        ],
      });
    admin = await freePort();
    node = await startProxyNode(
      proxyNodeToml({ admin, proxy: 'queue_timeout = "5s"\nconnect_timeout = "1s"' }) +
        orgsToml({ acme: 24, globex: 48 }) +
        app('web', 'acme') +
        app('api', 'acme') +
        app('evil', 'globex') +
        app('slow', 'acme', '{ type = "requests", soft_limit = 1, hard_limit = 1 }'),
      {},
      'up', // with the control API, for /metrics
    );
    for (const [, addr, name] of node.banner.matchAll(/\[([0-9a-f:]+)\]:80 -> ([a-z]+) \(http\)/g)) flycast[name!] = addr!;
    web = `http://[${flycast.web}]`;
  });

  afterAll(async () => {
    await closeCallerAgents();
    await node?.stop();
    await stopMachines(machines);
  });

  const get = async (path: string, headers: Record<string, string> = {}) => {
    const r = await httpFrom(CALLER, `${web}${path}`, { headers });
    return { ...r, echo: r.status === 200 && r.text.startsWith('{') ? (JSON.parse(r.text) as Echo) : null };
  };

  describe('caller headers', () => {
    it('without a header: the nearest region (ewr)', async () => {
      const r = await get('/echo');
      expect(r.echo!.id).toBe('e0000001');
    });

    it.each([
      ['fly-prefer-region', 'lhr', 'a0000001'],
      ['fly-prefer-region', 'syd, iad', '10000001'], // syd has no started machine: the next in the list
      ['fly-force-region', 'lhr', 'a0000001'],
      ['fly-force-region', 'iad', '10000001'],
      ['fly-prefer-instance-id', 'a0000001', 'a0000001'],
      ['fly-force-instance-id', '10000001', '10000001'],
      ['fly-prefer-instance-id', 'f0000001', 'e0000001'], // stopped: the normal pick
    ])('%s: %s -> %s, and the header never reaches the machine', async (name, value, want) => {
      for (let i = 0; i < 4; i++) {
        const r = await get('/echo', { [name]: value, 'fly-replay-src': 'instance=forged', 'fly-replay-failed': 'forged' });
        expect(r.status).toBe(200);
        expect(r.echo!.id).toBe(want);
        for (const h of ['fly-prefer-region', 'fly-force-region', 'fly-prefer-instance-id', 'fly-force-instance-id', 'fly-replay-src', 'fly-replay-failed']) expect(r.echo!.headers[h]).toBeUndefined();
        expect(r.echo!.headers['fly-region']).toBe('ewr');
      }
    });

    it.each([
      [{ 'fly-prefer-region': 'xyz' }, 400, /fly-prefer-region: unknown region "xyz"/],
      [{ 'fly-force-region': 'nowhere' }, 400, /fly-force-region: unknown region "nowhere"/],
      [{ 'fly-force-instance-id': 'not-an-id' }, 400, /not a machine id/],
      [{ 'fly-prefer-instance-id': 'ffffffff' }, 400, /no machine ffffffff in app web/],
      [{ 'fly-force-instance-id': 'ffffffff' }, 404, /no machine ffffffff in app web/],
      [{ 'fly-force-instance-id': 'b0000001' }, 404, /no machine b0000001 in app web/], // another org's machine
      [{ 'fly-force-instance-id': 'f0000001' }, 503, /machine f0000001 of app web is not available/],
      [{ 'fly-force-region': 'syd' }, 503, /no machine of app web started and healthy in region syd/],
      [{ 'fly-force-region': 'fra' }, 503, /in region fra/],
    ])('%j -> %i with the reason', async (headers, status, reason) => {
      const before = await Promise.all(machines.map((m) => m.stats()));
      const r = await get('/echo', headers);
      expect(r.status).toBe(status);
      expect(r.text).toMatch(reason);
      expect(r.headers['fly-request-id']).toBeTruthy();
      const after = await Promise.all(machines.map((m) => m.stats()));
      expect(after.map((s) => s.requests)).toEqual(before.map((s) => s.requests)); // nothing reached a machine
    });
  });

  describe('fly-replay', () => {
    const replay = (to: string, extra = '') => `/replay?to=${encodeURIComponent(to)}${extra}`;

    it.each([
      ['region=lhr', 'a0000001', '&unless=lhr'],
      ['region="syd,iad"', '10000001', '&unless=iad'],
      ['instance=a0000001', 'a0000001', '&unless=a0000001'],
      ['prefer_instance=10000001', '10000001', '&unless=10000001'],
      ['elsewhere=true', '10000001', '&unless=iad'], // ewr left out: the next nearest is iad
      ['app=api', 'c0000001', '&unless=c0000001'],
      ['app=api;region=iad', 'c0000001', '&unless=c0000001'],
    ])('%s lands on %s, which learns where it came from', async (to, want, extra) => {
      const r = await get(replay(to, extra));
      expect(r.status).toBe(200);
      expect(r.headers['fly-replay']).toBeUndefined();
      expect(r.echo!.id).toBe(want);
      expect(r.echo!.headers['fly-replay-src']).toMatch(/^instance=e0000001;region=ewr;t=\d{16}$/);
      const t = Number(/t=(\d+)/.exec(r.echo!.headers['fly-replay-src']!)![1]);
      expect(Math.abs(t / 1000 - Date.now())).toBeLessThan(10_000);
    });

    it('state= goes into fly-replay-src', async () => {
      const r = await get(replay('region=iad;state="primary write"', '&unless=iad'));
      expect(r.echo!.headers['fly-replay-src']).toMatch(/;state="primary write"$/);
    });

    it('a POST with a 512 KiB body is replayed to the primary region byte for byte', async () => {
      const body = randomBytes(512 * 1024);
      const r = await request(`${web}${replay('region=iad', '&unless=iad')}`, { dispatcher: callerAgent(CALLER), method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
      const echo = (await r.body.json()) as Echo;
      expect(r.statusCode).toBe(200);
      expect(echo.id).toBe('10000001');
      expect(echo.method).toBe('POST');
      expect(echo.bytes).toBe(body.length);
      expect(echo.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    });

    it('a chunked body answered before it was read (early=1) is replayed whole too', async () => {
      const parts = [randomBytes(100_000), randomBytes(200_000), randomBytes(50_000)];
      async function* gen() {
        for (const p of parts) {
          yield p;
          await new Promise((res) => setTimeout(res, 20));
        }
      }
      const r = await request(`${web}${replay('region=lhr', '&unless=lhr&early=1')}`, { dispatcher: callerAgent(CALLER), method: 'PUT', body: Readable.from(gen()) });
      const echo = (await r.body.json()) as Echo;
      expect(echo.id).toBe('a0000001');
      expect(echo.headers['transfer-encoding']).toBe('chunked');
      expect(echo.sha256).toBe(createHash('sha256').update(Buffer.concat(parts)).digest('hex'));
    });

    it('a 2 MiB body cannot be replayed: 413 naming the limit, and no truncated body anywhere', async () => {
      const before = (await machines[1]!.stats()).requests;
      const r = await request(`${web}${replay('region=iad', '&unless=iad')}`, { dispatcher: callerAgent(CALLER), method: 'POST', body: randomBytes(2 * 1024 * 1024) });
      const text = await r.body.text();
      expect(r.statusCode).toBe(413);
      expect(text).toMatch(/body is over 1048576 bytes \(1 MiB\)/);
      expect((await machines[1]!.stats()).requests).toBe(before); // iad never saw a part of it
    });

    it('an app of another org is never a target: 403 and a log line', async () => {
      const before = (await machines[4]!.stats()).requests;
      const r = await get(replay('app=evil'));
      expect(r.status).toBe(403);
      expect(r.text).toMatch(/app evil is not in org acme/);
      expect((await machines[4]!.stats()).requests).toBe(before);
      await waitFor(() => logs().some((l) => l.code === 'SIXPN_FORBIDDEN' && l.app === 'web' && l.machine === 'e0000001' && /app evil is not in org acme/.test(String(l.msg))), { what: 'the refusal logged' });
    });

    it('a replay that asks for another replay is followed at most twice, then answered 508', async () => {
      // Every web machine answers elsewhere=true (only the one that asked is left out of the
      // next pick): ewr -> iad -> ewr, whose third ask is the one not followed.
      const before = await Promise.all(machines.slice(0, 3).map((m) => m.stats()));
      const r = await get(replay('elsewhere=true'));
      expect(r.status).toBe(508);
      expect(r.text).toMatch(/after 2 replays of this request: not followed \(at most 2\)/);
      const after = await Promise.all(machines.slice(0, 3).map((m) => m.stats()));
      expect(after.map((s, i) => s.requests - before[i]!.requests)).toEqual([2, 1, 0]);
      await waitFor(() => logs().some((l) => l.code === 'SIXPN_REPLAY_LOOP'), { what: 'the loop logged' });
    });

    it('a chain of two replays lands (ewr -> iad -> lhr) and names its last hop', async () => {
      const r = await get(`${replay('region=iad')}&to_iad=${encodeURIComponent('region=lhr;state=2nd')}&unless=lhr`);
      expect(r.echo!.id).toBe('a0000001');
      expect(r.echo!.headers['fly-replay-src']).toMatch(/^instance=10000001;region=iad;t=\d+;state=2nd$/);
    });

    it.each([
      ['region=xyz', 502, /unknown region "xyz"/],
      ['planet=mars', 502, /unknown field "planet"/],
      ['app=nope', 502, /no app nope/],
      ['instance=c0000001', 502, /no machine c0000001 in app web/],
    ])('a fly-replay the proxy cannot follow (%s) is %i with the reason', async (to, status, reason) => {
      const r = await get(replay(to));
      expect(r.status).toBe(status);
      expect(r.text).toMatch(reason);
    });

    it('a replay to a region without a machine is 503 naming it', async () => {
      const r = await get(replay('region=syd'));
      expect(r.status).toBe(503);
      expect(r.text).toMatch(/no machine of app web started and healthy in region syd/);
    });

    it.each(['force_self', 'prefer_self'])('fallback=%s takes a failed replay back to the machine that asked, with fly-replay-failed', async (mode) => {
      const body = randomBytes(64 * 1024);
      const r = await request(`${web}${replay(`region=syd;timeout=200ms;fallback=${mode}`)}`, { dispatcher: callerAgent(CALLER), method: 'POST', body });
      const echo = (await r.body.json()) as Echo;
      expect(r.statusCode).toBe(200);
      expect(echo.id).toBe('e0000001');
      expect(echo.headers['fly-replay-failed']).toMatch(/^app=web;reason="503 no machine of app web started and healthy in region syd"$/);
      expect(echo.headers['fly-replay-src']).toBeUndefined();
      expect(echo.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    });

    it('timeout= bounds the wait for room at the target (the queue would wait 5 s)', async () => {
      const slow = machines.find((m) => m.id === 'd0000001')!;
      const held = httpFrom(CALLER, `http://[${flycast.slow}]/sleep?ms=2500`);
      await waitFor(async () => (await slow.stats()).activeRequests === 1, { timeoutMs: 5_000, what: 'the slow machine busy' });
      const t0 = Date.now();
      const r = await get(replay('app=slow;timeout=300ms'));
      const took = Date.now() - t0;
      expect(r.status).toBe(503);
      expect(r.text).toMatch(/hard limit/);
      expect(took).toBeGreaterThanOrEqual(250);
      expect(took).toBeLessThan(2_000);
      expect((await held).status).toBe(200);
    });

    it('counts replays by app and outcome', async () => {
      for (const outcome of ['replayed', 'loop', 'body_too_large', 'forbidden', 'invalid', 'fallback', 'failed']) {
        expect(await metricSum(admin, 'sixpn_proxy_replays_total', { app: 'web', outcome }), outcome).toBeGreaterThan(0);
      }
      for (const outcome of ['steered', 'refused']) expect(await metricSum(admin, 'sixpn_proxy_steered_requests_total', { app: 'web', outcome }), outcome).toBeGreaterThan(0);
    });
  });
});

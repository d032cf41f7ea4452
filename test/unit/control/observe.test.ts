import { createHmac } from 'node:crypto';
import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { activeConnections, httpRequests } from '../../../src/proxy/metrics.js';
import { DASHBOARD_COOKIE } from '../../../src/control/auth.js';
import { startTestNode, TOKEN, type TestNode } from '../../harness/test-node.js';

let node: TestNode | null = null;
afterEach(async () => {
  await node?.close();
  node = null;
});

const auth = { authorization: `Bearer ${TOKEN}` };

/** Reads server-sent `status` events from /v1/status/events until `until` returns true. */
function readEvents(url: string, headers: Record<string, string>, until: (status: any, n: number) => boolean, timeoutMs = 3000): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const got: any[] = [];
    const req = request(`${url}/v1/status/events`, { headers }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
      let buf = '';
      res.on('data', (b: Buffer) => {
        buf += b.toString();
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = frame.split('\n').find((l) => l.startsWith('data: '));
          if (!frame.includes('event: status') || !data) continue;
          const s = JSON.parse(data.slice(6));
          got.push(s);
          if (until(s, got.length)) {
            clearTimeout(t);
            req.destroy();
            resolve(got);
          }
        }
      });
    });
    const t = setTimeout(() => {
      req.destroy();
      reject(new Error(`no matching event in ${timeoutMs} ms; got ${got.length}`));
    }, timeoutMs);
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end();
  });
}

describe('observe routes', () => {
  it('answers /healthz without a token and tells nothing else', async () => {
    node = await startTestNode();
    const r = await fetch(`${node.url}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('ok\n');
  });

  it('passes every other path on (returns false)', async () => {
    node = await startTestNode();
    const r = await fetch(`${node.url}/v1/apps`);
    expect(r.status).toBe(404);
    expect((await r.json()).error.message).toBe('not an observe route');
  });

  it('serves /metrics without a token on a loopback listener, with the catalog and process metrics', async () => {
    node = await startTestNode();
    await node.store.updateMachine('e286d4c2a17d89', { state: 'stopped' });
    const r = await fetch(`${node.url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/plain');
    const text = await r.text();
    expect(text).toMatch(/^sixpn_catalog_changes_total\{kind="machine",op="put"\} [1-9]/m);
    expect(text).toMatch(/^sixpn_catalog_change_lag_seconds_count [1-9]/m);
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });

  it('requires the bearer token for /metrics when the admin listener is not loopback', async () => {
    node = await startTestNode({ control: { token: TOKEN, listen: '0.0.0.0:4280' } });
    const denied = await fetch(`${node.url}/metrics`);
    expect(denied.status).toBe(401);
    expect((await denied.json()).error.code).toBe('SIXPN_UNAUTHORIZED');
    expect((await fetch(`${node.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const ok = await fetch(`${node.url}/metrics`, { headers: auth });
    expect(ok.status).toBe(200);
  });

  it('refuses /v1/status without a token, a wrong token, or a forged cookie', async () => {
    node = await startTestNode();
    expect((await fetch(`${node.url}/v1/status`)).status).toBe(401);
    expect((await fetch(`${node.url}/v1/status`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    expect((await fetch(`${node.url}/v1/status`, { headers: { cookie: `${DASHBOARD_COOKIE}=${TOKEN}` } })).status).toBe(401);
    expect((await fetch(`${node.url}/v1/status/events`)).status).toBe(401);
  });

  it('refuses everything when no token is configured', async () => {
    node = await startTestNode({ control: { token: '' } });
    expect((await fetch(`${node.url}/v1/status`, { headers: { authorization: 'Bearer ' } })).status).toBe(401);
    expect((await fetch(`${node.url}/dashboard?token=`, { redirect: 'manual' })).status).toBe(401);
  });

  it('returns the status tree: orgs -> apps -> regions (nearest first) -> machines, with Flycast addresses', async () => {
    node = await startTestNode();
    const r = await fetch(`${node.url}/v1/status`, { headers: auth });
    expect(r.status).toBe(200);
    const s = await r.json();
    expect(s.node).toMatchObject({ name: 'sixpn', region: 'ewr' });
    expect(s.totals).toMatchObject({ orgs: 2, apps: 3, machines: 3, started: 3, flycast: 2 });
    expect(s.orgs.map((o: any) => o.name)).toEqual(['acme', 'demo']);
    const demo = s.orgs[1];
    expect(demo.prefix).toBe('fdaa:0:18::/48');
    const hello = demo.apps.find((a: any) => a.name === 'hello');
    expect(hello.services).toEqual(['http 80 -> 8080']);
    expect(hello.flycast).toEqual([{ address: 'fdaa:0:18:0:1::3', org: 'demo' }]);
    expect(hello.regions.map((g: any) => g.region)).toEqual(['ewr', 'lhr']);
    expect(hello.regions[0].city).toBeTruthy();
    expect(hello.regions[0].machines[0]).toMatchObject({ id: 'e286d4c2a17d89', state: 'started', health: { status: 'unknown' } });
  });

  it('reports active connections and request rates from the proxy metrics', async () => {
    node = await startTestNode();
    activeConnections.set({ app: 'hello', machine: 'e286d4c2a17d89' }, 3);
    const first = await (await fetch(`${node.url}/v1/status`, { headers: auth })).json();
    const m0 = first.orgs[1].apps.find((a: any) => a.name === 'hello').regions[0].machines[0];
    expect(m0.active_connections).toBe(3);
    httpRequests.inc({ app: 'hello', status_class: '2xx' }, 50);
    const events = await readEvents(node.url, auth, (s) => (s.orgs[1].apps.find((a: any) => a.name === 'hello').request_rate ?? 0) > 0, 6000);
    const hello = events.at(-1).orgs[1].apps.find((a: any) => a.name === 'hello');
    expect(hello.request_rate).toBeGreaterThan(5);
    expect(hello.active_connections).toBe(3);
    // The proxy counts requests per app only: machines show no made-up rate.
    expect(hello.regions[0].machines[0].request_rate).toBeNull();
    activeConnections.set({ app: 'hello', machine: 'e286d4c2a17d89' }, 0);
  });

  it('pushes a status event within the debounce after a catalog change', async () => {
    node = await startTestNode();
    const store = node.store;
    let changedAt = 0;
    const events = await readEvents(node.url, auth, (s, n) => {
      if (n === 1) {
        changedAt = Date.now();
        void store.updateMachine('9080e254f03418', { state: 'stopped', health: { status: 'unhealthy', reason: 'connect refused' } });
        return false;
      }
      const m = s.orgs[1].apps.find((a: any) => a.name === 'hello').regions[1].machines[0];
      return m.state === 'stopped';
    });
    expect(Date.now() - changedAt).toBeLessThan(1000);
    const m = events.at(-1).orgs[1].apps.find((a: any) => a.name === 'hello').regions[1].machines[0];
    expect(m.health).toMatchObject({ status: 'unhealthy', reason: 'connect refused' });
  });

  it('trades ?token= for an HttpOnly SameSite=Strict cookie that opens status but not with a wrong token', async () => {
    node = await startTestNode();
    const bad = await fetch(`${node.url}/dashboard?token=wrong`, { redirect: 'manual' });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('set-cookie')).toContain('Max-Age=0');
    const r = await fetch(`${node.url}/dashboard?token=${TOKEN}`, { redirect: 'manual' });
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toBe('/dashboard');
    const cookie = r.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).not.toContain(TOKEN);
    const pair = cookie.split(';')[0]!;
    const s = await fetch(`${node.url}/v1/status`, { headers: { cookie: pair } });
    expect(s.status).toBe(200);
    // The cookie is not the admin token: it does not open token-only routes.
    const other = await startTestNode({ control: { token: TOKEN, listen: '0.0.0.0:1' } });
    try {
      expect((await fetch(`${other.url}/metrics`, { headers: { cookie: pair } })).status).toBe(401);
    } finally {
      await other.close();
    }
  });

  it('opens a session from a POSTed token and refuses a wrong or oversized one', async () => {
    node = await startTestNode();
    expect((await fetch(`${node.url}/dashboard/session`, { method: 'POST', body: 'wrong' })).status).toBe(401);
    expect((await fetch(`${node.url}/dashboard/session`, { method: 'POST', body: 'x'.repeat(10_000) })).status).toBe(413);
    const ok = await fetch(`${node.url}/dashboard/session`, { method: 'POST', body: TOKEN });
    expect(ok.status).toBe(204);
    expect(ok.headers.get('set-cookie')).toMatch(/^sixpn_dashboard=/);
    const out = await fetch(`${node.url}/dashboard/session`, { method: 'DELETE' });
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
  });

  it('answers a session body with bad percent-encoding with 400, not 500', async () => {
    node = await startTestNode();
    for (const body of ['token=%E0%A4%A', 'token=%zz', 'token=%']) {
      const r = await fetch(`${node.url}/dashboard/session`, { method: 'POST', body });
      expect(r.status, body).toBe(400);
      const e = (await r.json()).error;
      expect(e.code).toBe('SIXPN_INVALID');
      expect(e.message).toMatch(/percent-encoding/);
    }
    expect((await fetch(`${node.url}/dashboard/session`, { method: 'POST', body: `token=${encodeURIComponent(TOKEN)}` })).status).toBe(204);
  });

  it('serves the dashboard page with a strict CSP and no catalog data in it', async () => {
    node = await startTestNode();
    for (const path of ['/', '/dashboard']) {
      const r = await fetch(`${node.url}${path}`);
      expect(r.status).toBe(200);
      const csp = r.headers.get('content-security-policy')!;
      expect(csp).toContain("default-src 'none'");
      expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
      const html = await r.text();
      expect(html).toContain('<title>sixpn dashboard</title>');
      expect(html).not.toContain('hello');
      expect(html).not.toContain('fdaa:0:18');
    }
  });

  it('answers 405 for a wrong method on its routes', async () => {
    node = await startTestNode();
    const r = await fetch(`${node.url}/v1/status`, { method: 'POST', headers: auth });
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('GET, HEAD');
  });

  it('ends open event streams when the server stops listening', async () => {
    node = await startTestNode();
    const n = node;
    const ended = new Promise<number>((resolve) => {
      const req = request(`${n.url}/v1/status/events`, { headers: auth }, (res) => {
        res.resume();
        res.on('end', () => resolve(Date.now()));
      });
      req.end();
    });
    await new Promise((r) => setTimeout(r, 200));
    const closing = Date.now();
    n.server.close();
    expect((await ended) - closing).toBeLessThan(1500);
  });
});

describe('dashboard sessions (issue 11 item 11)', () => {
  const login = async (n: TestNode): Promise<string> => {
    const r = await fetch(`${n.url}/dashboard/session`, { method: 'POST', body: TOKEN });
    expect(r.status).toBe(204);
    return r.headers.get('set-cookie')!;
  };
  const statusWith = async (n: TestNode, cookie: string): Promise<number> => (await fetch(`${n.url}/v1/status`, { headers: { cookie: cookie.split(';')[0]! } })).status;

  it('gives each login its own cookie with an expiry, and logging out revokes it for every copy', async () => {
    node = await startTestNode();
    const a = await login(node);
    const b = await login(node);
    expect(a.split(';')[0]).not.toBe(b.split(';')[0]);
    expect(a).toMatch(/; Max-Age=43200(;|$)/);
    expect(a).not.toContain(TOKEN);
    expect(await statusWith(node, a)).toBe(200);
    const out = await fetch(`${node.url}/dashboard/session`, { method: 'DELETE', headers: { cookie: a.split(';')[0]! } });
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
    // A copy of the logged-out cookie (another tab, a stolen one) no longer works; the other session does.
    expect(await statusWith(node, a)).toBe(401);
    expect(await statusWith(node, b)).toBe(200);
  });

  it('ends a session after [control] dashboard_session', async () => {
    node = await startTestNode({ control: { token: TOKEN, listen: '127.0.0.1:0', dashboard_session: '1s' } });
    const c = await login(node);
    expect(c).toMatch(/; Max-Age=1(;|$)/);
    expect(await statusWith(node, c)).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await statusWith(node, c)).toBe(401);
  });

  it('revokes sessions without rotating the admin token: one by id, or all of them', async () => {
    node = await startTestNode();
    const a = await login(node);
    const sessions = (await node.store.listTokens()).filter((t) => t.kind === 'dashboard');
    expect(sessions).toHaveLength(1);
    expect(sessions[0]!.name).toBe('dashboard session from 127.0.0.1');
    await node.store.revokeToken(sessions[0]!.id);
    expect(await statusWith(node, a)).toBe(401);
    const b = await login(node);
    const c = await login(node);
    expect(await node.store.revokeTokens('dashboard')).toBe(2);
    expect(await statusWith(node, b)).toBe(401);
    expect(await statusWith(node, c)).toBe(401);
    expect((await fetch(`${node.url}/v1/status`, { headers: auth })).status).toBe(200);
    // The old fixed grant (an HMAC of the token) is not a session.
    const hmac = createHmac('sha256', TOKEN).update('sixpn dashboard read-only grant v1').digest('base64url');
    expect(await statusWith(node, `${DASHBOARD_COOKIE}=${hmac}`)).toBe(401);
  });
});

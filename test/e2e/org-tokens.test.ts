/**
 * Per-org tokens against a real `sixpn control` (issue 11, "Per-org tokens"): every /v1 route
 * called with a token of the org that owns the thing (it works, as with the admin token) and
 * with a token of another org (403 naming what the token lacks, and the catalog unchanged);
 * the platform's routes (orgs, tokens) refuse every org token; exposing an app into another
 * org needs a token of both. The node also runs a host (issue 14, local driver), so the routes of
 * machines that hosts run (run, stop, start, restart, destroy, logs) and of hosts are in the
 * table too; hosts are the platform's: an org token sees only those running its orgs' machines.
 * Then the CLI: `sixpn tokens create|list|revoke`.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControl, type ApiResult, type TestControl } from '../harness/control.js';
import { runSixpn } from '../harness/procs.js';
import { buildRoutes } from '../../src/control/routes.js';
import { generateKeyPair } from '../../src/gateway/keys.js';

let c: TestControl;
/** Tokens of org acme, of org globex, and of both. */
let acme = '';
let globex = '';
let both = '';
let webMachine = '';
/** A machine of web that the node's host runs. */
let runMachine = '';
let webIp = '';
let n = 0;
const uniq = (p: string): string => `${p}${++n}`;

async function admin(method: string, path: string, body?: unknown): Promise<any> {
  const r = await c.api(method, path, body);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBeLessThan(300);
  return r.body;
}

async function orgToken(orgs: string[]): Promise<string> {
  return (await admin('POST', '/v1/tokens', { orgs, name: orgs.join('+') })).token;
}

/** Everything the catalog holds, read with the admin token. */
async function everything(): Promise<unknown> {
  const get = (p: string) => admin('GET', p);
  const apps: { name: string }[] = await get('/v1/apps');
  const perApp = await Promise.all(apps.map(async (a) => [await get(`/v1/apps/${a.name}/machines`), await get(`/v1/apps/${a.name}/ips`)]));
  return { orgs: await get('/v1/orgs'), apps, perApp, peers: [await get('/v1/orgs/acme/wireguard'), await get('/v1/orgs/globex/wireguard')], tokens: await get('/v1/tokens') };
}

/** What a host runs: a small HTTP server on the PORT the local driver gives it, that logs. */
const SERVER = `require('http').createServer((q,s)=>s.end('hi')).listen(process.env.PORT,'127.0.0.1',()=>console.log('listening'))`;
const runConfig = { cmd: [process.execPath, '-e', SERVER] };
/** The node's host: `[node] name`. */
const HOST = 'sixpn';

beforeAll(async () => {
  c = await startControl({
    command: 'up',
    extraToml: [
      '[wireguard]\nstate_file = "gateway.json"\nendpoint = "gw.test:51820"',
      '[proxy]\nenabled = false\n[dns]\nenabled = false\n[health]\nenabled = false',
      '[host]\nenabled = true\ndriver = "local"\nstate_dir = "host"\nstop_on_exit = true',
    ].join('\n'),
  });
  await admin('POST', '/v1/orgs', { name: 'acme', network_id: 0x18 });
  await admin('POST', '/v1/orgs', { name: 'globex', network_id: 0x22b7 });
  await admin('POST', '/v1/apps', { name: 'web', org: 'acme', services: [{ protocol: 'http', internal_port: 8080, ports: [{ port: 80 }] }] });
  await admin('POST', '/v1/apps', { name: 'db', org: 'globex' });
  webMachine = (await admin('POST', '/v1/apps/web/machines', { region: 'ams' })).id;
  await admin('POST', '/v1/apps/db/machines', { region: 'ams' });
  runMachine = (await admin('POST', '/v1/apps/web/machines', { region: 'ams', config: runConfig })).id;
  webIp = (await admin('POST', '/v1/apps/web/ips', { type: 'private_v6' })).address;
  await admin('POST', '/v1/apps/db/ips', { type: 'private_v6' });
  await admin('POST', '/v1/orgs/acme/wireguard', { name: 'laptop', region: 'ams', public_key: generateKeyPair().public_key });
  await admin('POST', '/v1/orgs/globex/wireguard', { name: 'ci', region: 'ams', public_key: generateKeyPair().public_key });
  acme = await orgToken(['acme']);
  globex = await orgToken(['globex']);
  both = await orgToken(['acme', 'globex']);
});

afterAll(async () => {
  await c?.stop();
});

/**
 * One route: `call` gives the request (after `setup`, run with the admin token, made what it
 * needs); acme's token must get `ok`, globex's 403. `platform` routes refuse both.
 */
interface Row {
  route: string;
  setup?: () => Promise<Record<string, string>>;
  call: (v: Record<string, string>) => [string, string, unknown?];
  ok: number;
  platform?: boolean;
  /** What the wrong org's 403 says, when not "belongs to org acme". */
  denied?: RegExp;
}

const tmpApp = async () => {
  const app = uniq('tmp');
  await admin('POST', '/v1/apps', { name: app, org: 'acme' });
  return { app };
};
const tmpMachine = async () => ({ id: (await admin('POST', '/v1/apps/web/machines', { region: 'ams' })).id as string });
const tmpRun = async () => ({ id: (await admin('POST', '/v1/apps/web/machines', { region: 'ams', config: runConfig })).id as string });

const rows: Row[] = [
  { route: 'GET /v1/orgs/:org', call: () => ['GET', '/v1/orgs/acme'], ok: 200 },
  { route: 'GET /v1/apps?org=', call: () => ['GET', '/v1/apps?org=acme'], ok: 200 },
  { route: 'POST /v1/apps', call: () => ['POST', '/v1/apps', { name: uniq('new'), org: 'acme' }], ok: 201 },
  { route: 'GET /v1/apps/:app', call: () => ['GET', '/v1/apps/web'], ok: 200 },
  { route: 'DELETE /v1/apps/:app', setup: tmpApp, call: (v) => ['DELETE', `/v1/apps/${v.app}`], ok: 204 },
  { route: 'PUT /v1/apps/:app/services', call: () => ['PUT', '/v1/apps/web/services', [{ protocol: 'http', internal_port: 8081, ports: [{ port: 80 }] }]], ok: 200 },
  { route: 'GET /v1/apps/:app/machines', call: () => ['GET', '/v1/apps/web/machines'], ok: 200 },
  { route: 'POST /v1/apps/:app/machines', call: () => ['POST', '/v1/apps/web/machines', { region: 'ams' }], ok: 201 },
  { route: 'GET /v1/machines/:id', call: () => ['GET', `/v1/machines/${webMachine}`], ok: 200 },
  { route: 'PATCH /v1/machines/:id', call: () => ['PATCH', `/v1/machines/${webMachine}`, { region: 'fra' }], ok: 200 },
  { route: 'POST /v1/machines/:id/stop', call: () => ['POST', `/v1/machines/${webMachine}/stop`], ok: 200 },
  { route: 'POST /v1/machines/:id/start', call: () => ['POST', `/v1/machines/${webMachine}/start`], ok: 200 },
  { route: 'DELETE /v1/machines/:id', setup: tmpMachine, call: (v) => ['DELETE', `/v1/machines/${v.id}`], ok: 204 },
  // Machines a host runs (issue 14): the same routes, through the host, and theirs.
  { route: 'POST /v1/apps/:app/machines (run)', call: () => ['POST', '/v1/apps/web/machines', { region: 'ams', config: runConfig }], ok: 201 },
  { route: 'GET /v1/machines/:id (run)', call: () => ['GET', `/v1/machines/${runMachine}`], ok: 200 },
  { route: 'PATCH /v1/machines/:id (run)', call: () => ['PATCH', `/v1/machines/${runMachine}`, { state: 'stopped' }], ok: 400 },
  { route: 'POST /v1/machines/:id/stop (run)', call: () => ['POST', `/v1/machines/${runMachine}/stop`], ok: 200 },
  { route: 'POST /v1/machines/:id/start (run)', call: () => ['POST', `/v1/machines/${runMachine}/start`], ok: 200 },
  { route: 'POST /v1/machines/:id/restart', call: () => ['POST', `/v1/machines/${runMachine}/restart`], ok: 200 },
  { route: 'POST /v1/machines/:id/suspend', call: () => ['POST', `/v1/machines/${runMachine}/suspend`], ok: 200 },
  { route: 'DELETE /v1/machines/:id (run)', setup: tmpRun, call: (v) => ['DELETE', `/v1/machines/${v.id}`], ok: 200 },
  { route: 'GET /v1/apps/:app/logs', call: () => ['GET', '/v1/apps/web/logs'], ok: 200 },
  { route: 'GET /v1/apps/:app/logs?follow=', call: () => ['GET', '/v1/apps/web/logs?follow=1&lines=1'], ok: 200 },
  // A host is seen by an org token only while it runs a machine of the token's orgs (globex has none there).
  { route: 'GET /v1/hosts/:name', call: () => ['GET', `/v1/hosts/${HOST}`], ok: 200, denied: /host sixpn runs no machine of org globex; this token is for org globex only/ },
  { route: 'GET /v1/apps/:app/ips', call: () => ['GET', '/v1/apps/web/ips'], ok: 200 },
  { route: 'POST /v1/apps/:app/ips', call: () => ['POST', '/v1/apps/web/ips', { type: 'private_v6' }], ok: 201 },
  {
    route: 'DELETE /v1/apps/:app/ips/:address',
    setup: async () => ({ ip: (await admin('POST', '/v1/apps/web/ips', { type: 'private_v6' })).address }),
    call: (v) => ['DELETE', `/v1/apps/web/ips/${v.ip}`],
    ok: 204,
  },
  { route: 'GET /v1/orgs/:org/wireguard', call: () => ['GET', '/v1/orgs/acme/wireguard'], ok: 200 },
  { route: 'POST /v1/orgs/:org/wireguard', call: () => ['POST', '/v1/orgs/acme/wireguard', { name: uniq('p'), region: 'ams', public_key: generateKeyPair().public_key }], ok: 201 },
  {
    route: 'DELETE /v1/orgs/:org/wireguard/:name',
    setup: async () => ({ name: (await admin('POST', '/v1/orgs/acme/wireguard', { name: uniq('q'), region: 'ams', public_key: generateKeyPair().public_key })).peer.name }),
    call: (v) => ['DELETE', `/v1/orgs/acme/wireguard/${v.name}`],
    ok: 204,
  },
  // The platform's: no org token, of any org, may do these.
  { route: 'POST /v1/orgs', call: () => ['POST', '/v1/orgs', { name: uniq('org') }], ok: 201, platform: true },
  {
    route: 'DELETE /v1/orgs/:org',
    setup: async () => ({ org: (await admin('POST', '/v1/orgs', { name: uniq('gone') })).name }),
    call: (v) => ['DELETE', `/v1/orgs/${v.org}`],
    ok: 204,
    platform: true,
  },
  { route: 'GET /v1/tokens', call: () => ['GET', '/v1/tokens'], ok: 200, platform: true },
  { route: 'POST /v1/tokens', call: () => ['POST', '/v1/tokens', { orgs: ['acme'] }], ok: 201, platform: true },
  {
    route: 'DELETE /v1/tokens/:id',
    setup: async () => ({ id: (await admin('POST', '/v1/tokens', { orgs: ['acme'] })).id }),
    call: (v) => ['DELETE', `/v1/tokens/${v.id}`],
    ok: 204,
    platform: true,
  },
  { route: 'DELETE /v1/tokens?kind=', call: () => ['DELETE', '/v1/tokens?kind=dashboard'], ok: 200, platform: true },
  // The admin token gets past the check: the host still runs machines, so 409.
  { route: 'DELETE /v1/hosts/:name', call: () => ['DELETE', `/v1/hosts/${HOST}`], ok: 409, platform: true },
];

describe('org tokens: every route with the right and the wrong org', () => {
  for (const row of rows) {
    it(row.route, async () => {
      const v = (await row.setup?.()) ?? {};
      const [method, path, body] = row.call(v);
      const before = await everything();
      for (const tok of row.platform ? [globex, acme, both] : [globex]) {
        const r: ApiResult = await c.api(method, path, body, tok);
        expect(r.status, JSON.stringify(r.body)).toBe(403);
        expect(r.body.error.code).toBe('SIXPN_FORBIDDEN');
        expect(r.body.error.message).toMatch(row.platform ? /needs the admin token; this token is for org/ : (row.denied ?? /belongs to org acme; this token is for org globex only/));
      }
      expect(await everything()).toEqual(before);
      const ok = /[?&]follow=1/.test(path) ? await firstLine(path, acme) : await c.api(method, path, body, row.platform ? c.token : acme);
      expect(ok.status, JSON.stringify(ok.body)).toBe(row.ok);
    });
  }

  it('covers every route the API has', () => {
    const router = buildRoutes({
      store: null as never,
      hostId: 0,
      gatewayHostId: 0,
      gatewayInfo: null as never,
      gatewayRole: () => undefined,
      view: null as never,
      hostStaleAfterMs: 0,
      hostRole: () => undefined,
    });
    // The three unfiltered lists are checked below (they answer 200 with the token's orgs only).
    const covered = new Set([...rows.map((r) => r.route.replace(/\?.*$| \(run\)$/, '')), 'GET /v1/orgs', 'GET /v1/apps', 'GET /v1/hosts']);
    expect([...covered].sort()).toEqual(router.list().sort());
  });

  it('lists only the orgs and apps of the token', async () => {
    const names = (r: ApiResult) => r.body.map((x: { name: string }) => x.name).sort();
    expect(names(await c.api('GET', '/v1/orgs', undefined, acme))).toEqual(['acme']);
    expect(names(await c.api('GET', '/v1/orgs', undefined, globex))).toEqual(['globex']);
    expect(names(await c.api('GET', '/v1/orgs', undefined, both))).toEqual(['acme', 'globex']);
    const acmeApps = names(await c.api('GET', '/v1/apps', undefined, acme));
    expect(acmeApps).toContain('web');
    expect(acmeApps).not.toContain('db');
    expect(names(await c.api('GET', '/v1/apps', undefined, globex))).toEqual(['db']);
  });

  it('lists only the hosts that run machines of the token, counting only those, without the agent\'s details', async () => {
    const webRuns = (await admin('GET', '/v1/apps/web/machines')).filter((m: { host?: string }) => m.host === HOST).length;
    const dbRun = (await admin('POST', '/v1/apps/db/machines', { region: 'ams', config: runConfig })).id;
    try {
      const all = (await c.api('GET', '/v1/hosts')).body;
      expect(all).toEqual([expect.objectContaining({ name: HOST, status: 'up', machines: webRuns + 1, session: expect.any(String), wireguard: { public_key: expect.any(String) } })]);
      const { session: _s, wireguard: _w, ...shown } = all[0];
      const live = { heartbeat_at: expect.any(Number), heartbeat_age_ms: expect.any(Number), updated_at: expect.any(Number) };
      expect((await c.api('GET', '/v1/hosts', undefined, acme)).body).toEqual([{ ...shown, ...live, machines: webRuns }]);
      expect((await c.api('GET', '/v1/hosts', undefined, globex)).body).toEqual([{ ...shown, ...live, machines: 1 }]);
      expect((await c.api('GET', '/v1/hosts', undefined, both)).body).toEqual([{ ...shown, ...live, machines: webRuns + 1 }]);
      expect((await c.api('GET', `/v1/hosts/${HOST}`, undefined, globex)).body).toEqual({ ...shown, ...live, machines: 1 });
    } finally {
      await admin('DELETE', `/v1/machines/${dbRun}`);
    }
    expect((await c.api('GET', '/v1/hosts', undefined, globex)).body).toEqual([]);
    // A host that does not exist gets the same answer as one the token may not see.
    const none = await c.api('GET', '/v1/hosts/nope', undefined, acme);
    expect(none.status).toBe(403);
    expect(none.body.error.message).toMatch(/^host nope runs no machine of org acme/);
    expect((await c.api('GET', '/v1/hosts/nope')).status).toBe(404);
  });

  it('does not name the hosts in placement errors for an org token', async () => {
    const asOrg = await c.api('POST', '/v1/apps/web/machines', { region: 'syd', config: runConfig }, acme);
    expect(asOrg.status).toBe(404);
    expect(asOrg.body.error.message).toBe('no host in region syd is up');
    const asAdmin = await c.api('POST', '/v1/apps/web/machines', { region: 'syd', config: runConfig });
    expect(asAdmin.body.error.message).toBe(`no host in region syd is up (hosts up: ${HOST} in ams)`);
    // An org token runs, stops and reads the logs of its own org's machines only.
    const db = await c.api('POST', '/v1/apps/db/machines', { region: 'ams', config: runConfig }, acme);
    expect(db.status).toBe(403);
    expect((await c.api('GET', '/v1/apps/db/logs', undefined, acme)).status).toBe(403);
  });

  it('exposes an app into another org only with a token of both orgs (or the admin token)', async () => {
    const before = await everything();
    for (const tok of [acme, globex]) {
      const r = await c.api('POST', '/v1/apps/web/ips', { type: 'private_v6', org: 'globex' }, tok);
      expect(r.status).toBe(403);
    }
    const denied = await c.api('POST', '/v1/apps/web/ips', { type: 'private_v6', org: 'globex' }, acme);
    expect(denied.body.error.message).toMatch(/exposing app web into org globex needs a token of both orgs \(acme and globex\) or the admin token/);
    expect(await everything()).toEqual(before);
    const ok = await c.api('POST', '/v1/apps/web/ips', { type: 'private_v6', org: 'globex' }, both);
    expect(ok.status).toBe(201);
    expect(ok.body.address.startsWith('fdaa:0:22b7:0:1::')).toBe(true);
    // Allocating in the app's own org, named explicitly, needs only that org.
    expect((await c.api('POST', '/v1/apps/web/ips', { type: 'private_v6', org: 'acme' }, acme)).status).toBe(201);
  });

  it("lets an org token point a machine's upstream only inside its own org's prefix", async () => {
    const dbMachine = (await admin('GET', '/v1/apps/db/machines'))[0];
    const before = await everything();
    // Another org's machine, loopback (the admin API lives there), an outside address, a hostname.
    for (const upstream of [`[${dbMachine.address}]:8080`, '127.0.0.1:5432', '[::1]:9901', '10.0.0.5:80', 'db.internal:80']) {
      const made = await c.api('POST', '/v1/apps/web/machines', { region: 'ams', upstream }, acme);
      expect(made.status, upstream).toBe(403);
      expect(made.body.error.message).toContain("outside org acme's prefix fdaa:0:18::/48");
      const patched = await c.api('PATCH', `/v1/machines/${webMachine}`, { upstream }, acme);
      expect(patched.status, upstream).toBe(403);
    }
    expect(await everything()).toEqual(before);
    // Inside its own prefix it may; the admin token may point anywhere.
    const own = await c.api('PATCH', `/v1/machines/${webMachine}`, { upstream: '[fdaa:0:18:a7b:9:0:0:5]:8080' }, acme);
    expect(own.status).toBe(200);
    expect((await c.api('PATCH', `/v1/machines/${webMachine}`, { upstream: '127.0.0.1:9' })).status).toBe(200);
    expect((await c.api('PATCH', `/v1/machines/${webMachine}`, { upstream: null }, acme)).status).toBe(200);
  });

  it('keeps region and upstream of a machine a host runs with the host', async () => {
    for (const patch of [{ region: 'fra' }, { upstream: '127.0.0.1:9' }]) {
      const r = await c.api('PATCH', `/v1/machines/${runMachine}`, patch);
      expect(r.status).toBe(400);
      expect(r.body.error.message).toMatch(/is run by host|runs on host/);
    }
    expect((await admin('GET', `/v1/machines/${runMachine}`)).region).toBe('ams');
  });

  it('refuses the other org for what it names in a body or a query, and status for any org token', async () => {
    expect((await c.api('POST', '/v1/apps', { name: 'sneaky', org: 'globex' }, acme)).status).toBe(403);
    expect((await c.api('GET', '/v1/apps?org=globex', undefined, acme)).status).toBe(403);
    expect((await c.api('DELETE', `/v1/apps/db/ips/${webIp}`, undefined, acme)).status).toBe(403);
    // The status document covers every org: only the admin token (or its dashboard session) reads it.
    expect((await c.api('GET', '/v1/status', undefined, acme)).status).toBe(401);
  });

  it('stops working at once when revoked, and when its org is deleted', async () => {
    const t = await admin('POST', '/v1/tokens', { orgs: ['acme'], name: 'short-lived' });
    expect((await c.api('GET', '/v1/apps/web', undefined, t.token)).status).toBe(200);
    expect((await c.api('DELETE', `/v1/tokens/${t.id}`)).status).toBe(204);
    const r = await c.api('GET', '/v1/apps/web', undefined, t.token);
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe('SIXPN_UNAUTHORIZED');
    await admin('POST', '/v1/orgs', { name: 'initech' });
    const i = await admin('POST', '/v1/tokens', { orgs: ['initech'] });
    await admin('DELETE', '/v1/orgs/initech');
    await admin('POST', '/v1/orgs', { name: 'initech' });
    expect((await c.api('GET', '/v1/orgs/initech', undefined, i.token)).status).toBe(401);
  });

  it('never shows a secret or a hash after creation, and the catalog file holds only hashes', async () => {
    const t = await admin('POST', '/v1/tokens', { orgs: ['globex'], expiry: '30d' });
    expect(t.token).toMatch(/^sixpn_org_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(t.expires_at - t.created_at).toBe(30 * 86_400_000);
    const listed = (await admin('GET', '/v1/tokens')).find((x: { id: string }) => x.id === t.id);
    expect(listed).toEqual({ id: t.id, kind: 'org', name: 'org token for globex', orgs: ['globex'], created_at: t.created_at, expires_at: t.expires_at });
    expect(c.catalogText()).not.toContain(t.token);
    expect(c.catalogText()).not.toContain(t.token.slice(-43));
    expect((await c.api('POST', '/v1/tokens', { orgs: ['globex'], expiry: '100y' })).status).toBe(400);
    expect((await c.api('POST', '/v1/tokens', { orgs: ['nope'] })).status).toBe(404);
    expect((await c.api('POST', '/v1/tokens', { orgs: [] })).status).toBe(400);
  });
});

describe('sixpn tokens (CLI)', () => {
  const cli = (args: string[], token = c.token) => runSixpn([...args, '--api', c.url, '--token', token]);

  it('creates a token printed once on stdout, lists it without its secret, and revokes it', async () => {
    const created = await cli(['tokens', 'create', '--org', 'acme', '--expiry', '30d', '--name', 'ci deploy']);
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^sixpn_org_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toMatch(/^Created org token "ci deploy" \(id ([0-9a-f]{16})\) for org acme, expires \d{4}-\d\d-\d\d \d\d:\d\d UTC\.\nThis is the only time it is shown/);
    const id = /\(id ([0-9a-f]{16})\)/.exec(created.stderr)![1]!;
    // The org token works with the CLI for its org, and is refused for the other.
    const apps = await cli(['apps', 'list', '--json'], token);
    expect(JSON.parse(apps.stdout).map((a: { org: string }) => a.org).every((o: string) => o === 'acme')).toBe(true);
    const other = await cli(['machines', 'list', '--app', 'db'], token);
    expect(other.code).toBe(3);
    expect(other.stderr).toMatch(/^Error: app db belongs to org globex; this token is for org acme only/);
    const list = await cli(['tokens', 'list']);
    expect(list.stdout).toMatch(new RegExp(`^${id}\\s+org\\s+ci deploy\\s+acme\\s`, 'm'));
    expect(list.stdout).not.toContain(token.slice(-43));
    expect((await cli(['tokens', 'list'], token)).code).toBe(3);
    const revoked = await cli(['tokens', 'revoke', id]);
    expect(revoked.stdout).toBe(`Revoked token ${id}\n`);
    expect((await cli(['apps', 'list'], token)).code).toBe(3);
    expect((await cli(['tokens', 'revoke', id])).code).toBe(4);
  });

  it('refuses a bad expiry and a missing --org', async () => {
    const bad = await cli(['tokens', 'create', '--org', 'acme', '--expiry', 'forever']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expiry/);
    expect((await cli(['tokens', 'create'])).code).toBe(2);
  });
});

/** The status and first NDJSON line of a followed log (the stream stays open: it is cut after one line). */
async function firstLine(path: string, token: string): Promise<ApiResult> {
  const res = await request(c.url + path, { headers: { authorization: `Bearer ${token}` } });
  let text = '';
  for await (const chunk of res.body) {
    text += String(chunk);
    if (text.includes('\n')) break;
  }
  res.body.destroy();
  return { status: res.statusCode, body: JSON.parse(text.split('\n')[0]!) };
}

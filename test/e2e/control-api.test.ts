/**
 * The control API as a real process (`sixpn control`), spoken to over HTTP with undici: auth,
 * every bad-input case of the foundation issue (4xx, error body, catalog unchanged), the happy
 * paths, and start-up refusals.
 */
import { statSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControl, type ApiResult, type TestControl } from '../harness/control.js';
import { run, runSixpn } from '../harness/procs.js';
import { generateKeyPair, publicKeyOf } from '../../src/gateway/keys.js';

let c: TestControl;
let machineId = '';
let globexIp = '';
let webIp = '';
const peerKey = generateKeyPair();

/** Everything a client can see, read through the API. */
async function snapshot(): Promise<unknown> {
  const get = async (p: string) => (await c.api('GET', p)).body;
  return {
    orgs: await get('/v1/orgs'),
    apps: await get('/v1/apps'),
    machines: [await get('/v1/apps/web/machines'), await get('/v1/apps/db/machines')],
    ips: [await get('/v1/apps/web/ips'), await get('/v1/apps/db/ips')],
    peers: [await get('/v1/orgs/acme/wireguard'), await get('/v1/orgs/globex/wireguard')],
  };
}

/** Runs `req`, expects a 4xx with an error body, and checks that nothing changed. */
async function refusedUnchanged(req: () => Promise<ApiResult>, status: number, code: string): Promise<ApiResult> {
  const fileBefore = c.catalogText();
  const before = await snapshot();
  const res = await req();
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body?.error?.code).toBe(code);
  expect(typeof res.body?.error?.message).toBe('string');
  expect(res.body.error.message.length).toBeGreaterThan(5);
  expect(c.catalogText()).toBe(fileBefore);
  expect(await snapshot()).toEqual(before);
  return res;
}

beforeAll(async () => {
  c = await startControl({ extraToml: '[wireguard]\nstate_file = "gateway.json"\nendpoint = "gw.test:51820"\nhost_id = "a7b:d6b"' });
  expect((await c.api('POST', '/v1/orgs', { name: 'acme', network_id: 0x18 })).status).toBe(201);
  expect((await c.api('POST', '/v1/orgs', { name: 'globex', network_id: 0x22b7 })).status).toBe(201);
  const service = { protocol: 'http', internal_port: 8080, ports: [{ port: 80, handlers: ['http'] }] };
  expect((await c.api('POST', '/v1/apps', { name: 'web', org: 'acme', services: [service] })).status).toBe(201);
  expect((await c.api('POST', '/v1/apps', { name: 'db', org: 'globex' })).status).toBe(201);
  const m = await c.api('POST', '/v1/apps/web/machines', { region: 'ams', upstream: '127.0.0.1:9' });
  expect(m.status).toBe(201);
  machineId = m.body.id;
  webIp = (await c.api('POST', '/v1/apps/web/ips', { type: 'private_v6' })).body.address;
  globexIp = (await c.api('POST', '/v1/apps/db/ips', { type: 'private_v6' })).body.address;
  const p = await c.api('POST', '/v1/orgs/acme/wireguard', { name: 'laptop', region: 'ams', public_key: peerKey.public_key });
  expect(p.status).toBe(201);
});

afterAll(async () => {
  await c?.stop();
});

describe('control API: auth', () => {
  const attempts: [string, string, unknown?][] = [
    ['GET', '/v1/orgs'],
    ['POST', '/v1/orgs', { name: 'evil', network_id: 99 }],
    ['DELETE', '/v1/apps/web'],
    ['POST', '/v1/apps/web/ips', { type: 'private_v6' }],
    ['POST', '/v1/machines/MID/stop'],
    ['DELETE', '/v1/orgs/acme/wireguard/laptop'],
  ];
  for (const [method, path, body] of attempts) {
    it(`${method} ${path} without or with a wrong token is 401 and changes nothing`, async () => {
      const p = path.replace('MID', machineId);
      for (const tok of [null, 'wrong-token', '']) {
        const r = await refusedUnchanged(() => c.api(method, p, body, tok), 401, 'SIXPN_UNAUTHORIZED');
        expect(r.body.error.message).toMatch(/token/);
      }
    });
  }

  it('accepts only the Bearer scheme', async () => {
    const { request } = await import('undici');
    const res = await request(`${c.url}/v1/orgs`, { headers: { authorization: `Basic ${c.token}` } });
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/Bearer/);
    await res.body.text();
    expect((await c.api('GET', '/v1/orgs')).status).toBe(200);
  });
});

describe('control API: bad input is a 4xx with an error body and changes nothing', () => {
  const cases: [string, () => Promise<ApiResult>, number, string][] = [
    ['malformed JSON', () => c.raw('POST', '/v1/orgs', '{"name":'), 400, 'SIXPN_INVALID'],
    ['a JSON array where an object is expected', () => c.api('POST', '/v1/orgs', [1, 2]), 400, 'SIXPN_INVALID'],
    ['a duplicate org name', () => c.api('POST', '/v1/orgs', { name: 'acme' }), 409, 'SIXPN_CONFLICT'],
    ['a network id in use', () => c.api('POST', '/v1/orgs', { name: 'other', network_id: 0x18 }), 409, 'SIXPN_CONFLICT'],
    ['an invalid org name', () => c.api('POST', '/v1/orgs', { name: 'Bad_Name' }), 400, 'SIXPN_INVALID'],
    ['a network id out of range', () => c.api('POST', '/v1/orgs', { name: 'big', network_id: 70000 }), 400, 'SIXPN_INVALID'],
    ['a duplicate app name', () => c.api('POST', '/v1/apps', { name: 'web', org: 'acme' }), 409, 'SIXPN_CONFLICT'],
    ['an app in an unknown org', () => c.api('POST', '/v1/apps', { name: 'newapp', org: 'nope' }), 404, 'SIXPN_NOT_FOUND'],
    ['an invalid app name', () => c.api('POST', '/v1/apps', { name: '-bad', org: 'acme' }), 400, 'SIXPN_INVALID'],
    ['an invalid service', () => c.api('POST', '/v1/apps', { name: 'newapp', org: 'acme', services: [{ internal_port: 0, ports: [] }] }), 400, 'SIXPN_INVALID'],
    ['invalid services on update', () => c.api('PUT', '/v1/apps/web/services', { services: [{ protocol: 'udp', internal_port: 1, ports: [{ port: 1 }] }] }), 400, 'SIXPN_INVALID'],
    ['services of an unknown app', () => c.api('PUT', '/v1/apps/nope/services', { services: [] }), 404, 'SIXPN_NOT_FOUND'],
    ['a machine of an unknown app', () => c.api('POST', '/v1/apps/nope/machines', { region: 'ams' }), 404, 'SIXPN_NOT_FOUND'],
    ['a machine in an unknown region', () => c.api('POST', '/v1/apps/web/machines', { region: 'zzz' }), 400, 'SIXPN_INVALID'],
    ['a machine address in another org', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', address: 'fdaa:0:22b7:a7b:7d:1:2:2' }), 400, 'SIXPN_INVALID'],
    ['a machine address that is not one', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', address: 'not-an-ip' }), 400, 'SIXPN_INVALID'],
    ['a duplicate machine id', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', id: machineId }), 409, 'SIXPN_CONFLICT'],
    ['an invalid machine id', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', id: 'XYZ' }), 400, 'SIXPN_INVALID'],
    ['an unknown machine field', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', bogus: 1 }), 400, 'SIXPN_INVALID'],
    ['an invalid upstream', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', upstream: 'nohost' }), 400, 'SIXPN_INVALID'],
    // Issue 11 item 4: a port a dial cannot use used to be stored, then crashed the proxy.
    ['an upstream port over 65535', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', upstream: '127.0.0.1:99999' }), 400, 'SIXPN_INVALID'],
    ['an upstream port 0', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', upstream: '127.0.0.1:0' }), 400, 'SIXPN_INVALID'],
    ['an upstream IPv4 that is not one', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', upstream: '300.1.1.1:80' }), 400, 'SIXPN_INVALID'],
    ['an upstream IPv6 that is not one', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', upstream: '[fdaa::zz]:80' }), 400, 'SIXPN_INVALID'],
    ['an upstream hostname with a bad label', () => c.api('POST', '/v1/apps/web/machines', { region: 'ams', upstream: 'db-.internal:5432' }), 400, 'SIXPN_INVALID'],
    ['an upstream port over 65535 on update', () => c.api('PATCH', `/v1/machines/${machineId}`, { upstream: '127.0.0.1:65536' }), 400, 'SIXPN_INVALID'],
    ['an invalid machine state', () => c.api('PATCH', `/v1/machines/${machineId}`, { state: 'paused' }), 400, 'SIXPN_INVALID'],
    ['a patch of an unknown machine', () => c.api('PATCH', '/v1/machines/00000000aaaa', { state: 'stopped' }), 404, 'SIXPN_NOT_FOUND'],
    ['stopping an unknown machine', () => c.api('POST', '/v1/machines/00000000aaaa/stop'), 404, 'SIXPN_NOT_FOUND'],
    ['removing an unknown machine', () => c.api('DELETE', '/v1/machines/00000000aaaa'), 404, 'SIXPN_NOT_FOUND'],
    ['a public IP type', () => c.api('POST', '/v1/apps/web/ips', { type: 'public_v4' }), 400, 'SIXPN_INVALID'],
    ['an IP in an unknown org', () => c.api('POST', '/v1/apps/web/ips', { type: 'private_v6', org: 'nope' }), 404, 'SIXPN_NOT_FOUND'],
    ['an IP for an unknown app', () => c.api('POST', '/v1/apps/nope/ips', { type: 'private_v6' }), 404, 'SIXPN_NOT_FOUND'],
    ['releasing an IP of another org', () => c.api('DELETE', `/v1/apps/db/ips/${globexIp}?org=acme`), 403, 'SIXPN_FORBIDDEN'],
    ['releasing another app\'s IP', () => c.api('DELETE', `/v1/apps/web/ips/${globexIp}`), 404, 'SIXPN_NOT_FOUND'],
    ['releasing something that is not an address', () => c.api('DELETE', '/v1/apps/web/ips/not-an-ip'), 400, 'SIXPN_INVALID'],
    ['a peer with a bad public key', () => c.api('POST', '/v1/orgs/acme/wireguard', { region: 'ams', public_key: 'nope' }), 400, 'SIXPN_INVALID'],
    [
      'a peer sent with a private key',
      () => c.api('POST', '/v1/orgs/acme/wireguard', { region: 'ams', public_key: generateKeyPair().public_key, private_key: peerKey.private_key }),
      400,
      'SIXPN_INVALID',
    ],
    ['a peer name over 15 characters', () => c.api('POST', '/v1/orgs/acme/wireguard', { name: 'waytoolongname123', region: 'ams', public_key: generateKeyPair().public_key }), 400, 'SIXPN_INVALID'],
    ['a duplicate peer name', () => c.api('POST', '/v1/orgs/acme/wireguard', { name: 'laptop', region: 'ams', public_key: generateKeyPair().public_key }), 409, 'SIXPN_CONFLICT'],
    ['a peer of an unknown org', () => c.api('POST', '/v1/orgs/nope/wireguard', { region: 'ams', public_key: generateKeyPair().public_key }), 404, 'SIXPN_NOT_FOUND'],
    ['a peer in an unknown region', () => c.api('POST', '/v1/orgs/acme/wireguard', { region: 'zzz', public_key: generateKeyPair().public_key }), 400, 'SIXPN_INVALID'],
    ['removing an unknown peer', () => c.api('DELETE', '/v1/orgs/acme/wireguard/ghost'), 404, 'SIXPN_NOT_FOUND'],
    ['deleting an org still in use', () => c.api('DELETE', '/v1/orgs/acme'), 409, 'SIXPN_CONFLICT'],
    ['deleting an unknown org', () => c.api('DELETE', '/v1/orgs/nope'), 404, 'SIXPN_NOT_FOUND'],
    ['deleting an unknown app', () => c.api('DELETE', '/v1/apps/nope'), 404, 'SIXPN_NOT_FOUND'],
    ['an unknown route', () => c.api('GET', '/v1/bogus'), 404, 'SIXPN_NOT_FOUND'],
    ['a wrong method', () => c.api('PUT', '/v1/orgs', {}), 405, 'SIXPN_METHOD_NOT_ALLOWED'],
    ['a body over 1 MiB', () => c.raw('POST', '/v1/orgs', JSON.stringify({ name: 'huge', pad: 'x'.repeat(1.5 * 1024 * 1024) })), 413, 'SIXPN_INVALID'],
    ['bad percent-encoding in the path', () => c.api('GET', '/v1/apps/%E0%A4%A'), 400, 'SIXPN_INVALID'],
  ];
  for (const [what, req, status, code] of cases) {
    it(what, async () => {
      await refusedUnchanged(req, status, code);
    });
  }

  it('names the bad field in the message', async () => {
    const r = await c.api('POST', '/v1/apps/web/machines', { region: 'zzz' });
    expect(r.body.error.message).toMatch(/region/);
    const w = await c.api('PUT', '/v1/orgs', {});
    expect(w.body.error.message).toMatch(/GET, POST/);
  });

  it('keeps serving after all that', async () => {
    const r = await c.api('GET', `/v1/machines/${machineId}`);
    expect(r.status).toBe(200);
    expect(r.body.id).toBe(machineId);
  });
});

describe('control API: what it does', () => {
  it('shows orgs with their prefix and resolver', async () => {
    const r = await c.api('GET', '/v1/orgs/acme');
    expect(r.body).toEqual({ name: 'acme', network_id: 0x18, prefix: 'fdaa:0:18::/48', dns: 'fdaa:0:18::3' });
  });

  it('picks a free network id when none is given', async () => {
    const r = await c.api('POST', '/v1/orgs', { name: 'initech' });
    expect(r.status).toBe(201);
    expect([0x18, 0x22b7]).not.toContain(r.body.network_id);
    expect((await c.api('DELETE', '/v1/orgs/initech')).status).toBe(204);
    expect((await c.api('GET', '/v1/orgs/initech')).status).toBe(404);
  });

  it('filters apps by org', async () => {
    const r = await c.api('GET', '/v1/apps?org=globex');
    expect(r.body.map((a: { name: string }) => a.name)).toEqual(['db']);
  });

  it('stops, starts and patches machines', async () => {
    expect((await c.api('POST', `/v1/machines/${machineId}/stop`)).body.state).toBe('stopped');
    expect((await c.api('GET', `/v1/machines/${machineId}`)).body.state).toBe('stopped');
    expect((await c.api('POST', `/v1/machines/${machineId}/start`)).body.state).toBe('started');
    const p = await c.api('PATCH', `/v1/machines/${machineId}`, { health: { status: 'unhealthy', reason: 'test' }, region: 'fra' });
    expect(p.status).toBe(200);
    expect(p.body.health.status).toBe('unhealthy');
    expect(p.body.region).toBe('fra');
    expect(p.body.address).toMatch(/^fdaa:0:18:a7b:7d:/);
  });

  it('allocates distinct Flycast addresses in the org prefix, cross-org when asked', async () => {
    expect(webIp).toBe('fdaa:0:18:0:1::3');
    const cross = await c.api('POST', '/v1/apps/web/ips', { type: 'private_v6', org: 'globex' });
    expect(cross.status).toBe(201);
    expect(cross.body.address.startsWith('fdaa:0:22b7:0:1::')).toBe(true);
    expect(cross.body.address).not.toBe(globexIp);
    expect(cross.body.org).toBe('globex');
    expect((await c.api('DELETE', `/v1/apps/web/ips/${cross.body.address}?org=globex`)).status).toBe(204);
  });

  it('creates a peer from a public key only and answers with the gateway it talks to', async () => {
    const k = generateKeyPair();
    const r = await c.api('POST', '/v1/orgs/globex/wireguard', { region: 'ams', public_key: k.public_key });
    expect(r.status).toBe(201);
    expect(r.body.peer.name).toMatch(/^interactive-[a-z0-9]{3}$/);
    expect(r.body.peer.address).toMatch(/^fdaa:0:22b7:a7b:d6b:/);
    expect(r.body.dns).toBe('fdaa:0:22b7::3');
    expect(r.body.allowed_ips).toBe('fdaa:0:22b7::/48');
    expect(r.body.gateway.endpoint).toBe('gw.test:51820');
    // The gateway key comes from its state file, created 0600, and is a real key pair.
    const state = JSON.parse(readFileSync(join(c.dir, 'gateway.json'), 'utf8'));
    expect(statSync(join(c.dir, 'gateway.json')).mode & 0o777).toBe(0o600);
    expect(publicKeyOf(state.private_key)).toBe(r.body.gateway.public_key);
    const list = await c.api('GET', '/v1/orgs/globex/wireguard');
    expect(list.body.map((p: { public_key: string }) => p.public_key)).toEqual([k.public_key]);
    expect(c.catalogText()).not.toContain(state.private_key);
    expect((await c.api('DELETE', `/v1/orgs/globex/wireguard/${r.body.peer.name}`)).status).toBe(204);
  });

  it('destroys an app with its machines and addresses', async () => {
    expect((await c.api('POST', '/v1/apps', { name: 'tmpapp', org: 'acme' })).status).toBe(201);
    const m = await c.api('POST', '/v1/apps/tmpapp/machines', { region: 'ams' });
    await c.api('POST', '/v1/apps/tmpapp/ips', { type: 'private_v6' });
    expect((await c.api('DELETE', '/v1/apps/tmpapp')).status).toBe(204);
    expect((await c.api('GET', `/v1/machines/${m.body.id}`)).status).toBe(404);
    expect((await c.api('GET', '/v1/apps/tmpapp/ips')).status).toBe(404);
  });
});

describe('a loopback admin listener answers only requests addressed to it (issue 11 item 11: DNS rebinding)', () => {
  /** Real curl, with the Host header a browser on a re-bound page would send. */
  async function curl(url: string, path: string, host: string | null, token?: string): Promise<{ status: number; body: string }> {
    const args = ['-s', '-w', '\n%{http_code}', ...(host === null ? [] : ['-H', `Host: ${host}`]), ...(token ? ['-H', `Authorization: Bearer ${token}`] : []), `${url}${path}`];
    const r = await run('curl', args);
    const i = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
  }
  const port = () => new URL(c.url).port;

  it.each(['evil.example', 'evil.example:PORT', 'rebind.attacker.test:PORT', '[2001:db8::1]:PORT', '10.0.0.1:PORT', 'localhost.evil.example'])('refuses Host %s on /metrics, /healthz, the dashboard and the API', async (h) => {
    const host = h.replace('PORT', port());
    for (const [path, token] of [['/metrics'], ['/healthz'], ['/dashboard'], ['/v1/orgs', c.token]] as const) {
      const r = await curl(c.url, path, host, token);
      expect(r.status, `${path} ${r.body}`).toBe(403);
      expect(JSON.parse(r.body).error).toMatchObject({ code: 'SIXPN_FORBIDDEN', message: expect.stringMatching(/DNS-rebinding/) });
    }
  });

  it.each(['127.0.0.1:PORT', '127.0.0.1', 'localhost:PORT', 'LOCALHOST', 'sixpn.localhost:PORT', '[::1]:PORT'])('serves Host %s', async (h) => {
    const r = await curl(c.url, '/metrics', h.replace('PORT', port()));
    expect(r.status).toBe(200);
    expect(r.body).toMatch(/^sixpn_/m);
  });

  it('serves the names of [control] allowed_hosts too', async () => {
    const other = await startControl({ extraToml: 'allowed_hosts = ["sixpn.example.internal"]' });
    try {
      expect((await curl(other.url, '/metrics', 'sixpn.example.internal:443')).status).toBe(200);
      expect((await curl(other.url, '/metrics', 'evil.example')).status).toBe(403);
    } finally {
      await other.stop();
    }
  });
});

describe('control role start-up', () => {
  it('refuses to start without a token (exit 78, names the key)', async () => {
    const file = join(c.dir, 'notoken.toml');
    writeFileSync(file, '[catalog]\npath = ""\n[control]\nlisten = "127.0.0.1:0"\n');
    const env = { ...process.env };
    delete env.SIXPN_TOKEN;
    const r = await runSixpn(['control', '--config', file], { env });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/^Error: control\.token/m);
  });

  it('names a bad config key (exit 78)', async () => {
    const file = join(c.dir, 'bad.toml');
    writeFileSync(file, '[control]\nlisten = "nowhere"\ntokn = "x"\n');
    const r = await runSixpn(['control', '--config', file]);
    expect(r.code, r.stderr).toBe(78);
    expect(r.stderr).toMatch(/control\.listen/);
    expect(r.stderr).toMatch(/tokn/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('creates no peer when the gateway key file is unusable', async () => {
    const bad = await startControl({ extraToml: '[wireguard]\nstate_file = "gw-broken.json"' });
    try {
      writeFileSync(join(bad.dir, 'gw-broken.json'), '{"private_key": "not a key"}');
      await bad.api('POST', '/v1/orgs', { name: 'acme', network_id: 0x18 });
      const before = bad.catalogText();
      const r = await bad.api('POST', '/v1/orgs/acme/wireguard', { name: 'p1', region: 'ams', public_key: generateKeyPair().public_key });
      expect(r.status).toBe(500);
      expect(r.body.error.code).toBe('SIXPN_CONFIG');
      expect(r.body.error.message).toMatch(/wireguard\.state_file/);
      expect(bad.catalogText()).toBe(before);
      expect((await bad.api('GET', '/v1/orgs/acme/wireguard')).body).toEqual([]);
      expect(readFileSync(join(bad.dir, 'gw-broken.json'), 'utf8')).toBe('{"private_key": "not a key"}');
    } finally {
      await bad.stop();
    }
  });
});

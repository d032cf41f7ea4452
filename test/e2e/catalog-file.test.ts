/**
 * The embedded store's file on a real filesystem, through a real `sixpn control` / `sixpn up`:
 * a write that fails (the folder made read-only for that process alone, by remounting its bind
 * mount inside a private mount namespace) changes nothing, in memory either, and the same request
 * succeeds once the folder is writable again; a stored entry a dial cannot use is skipped at
 * start, loudly, instead of crashing the node when a connection reaches it.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControl, type TestControl } from '../harness/control.js';
import { hasCommand } from '../harness/env.js';
import { freePort } from '../harness/net.js';

const canMount = process.getuid?.() === 0 && hasCommand('unshare') && hasCommand('nsenter');

describe.skipIf(!canMount)('embedded store on a read-only filesystem (issue 11 item 5)', () => {
  let dir: string;
  let c: TestControl;
  const names = async (): Promise<string[]> => (await c.api('GET', '/v1/orgs')).body.map((o: { name: string }) => o.name);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-rofs-'));
    c = await startControl({ dir, mountNamespace: true });
    expect((await c.api('POST', '/v1/orgs', { name: 'acme', network_id: 0x18 })).status).toBe(201);
    expect((await c.api('POST', '/v1/apps', { name: 'web', org: 'acme' })).status).toBe(201);
  });

  afterAll(async () => {
    await c?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers 503 to every write while the folder is read-only, and none of them takes effect', async () => {
    const before = c.catalogText();
    const snapshot = async () => [await names(), (await c.api('GET', '/v1/apps')).body, (await c.api('GET', '/v1/apps/web/ips')).body];
    const seen = await snapshot();
    await c.readOnly(true);
    try {
      const writes: [string, string, unknown?][] = [
        ['POST', '/v1/orgs', { name: 'globex', network_id: 0x22b7 }],
        ['POST', '/v1/orgs', { name: 'initech' }],
        ['POST', '/v1/apps', { name: 'db', org: 'acme' }],
        ['PUT', '/v1/apps/web/services', [{ protocol: 'tcp', internal_port: 5432, ports: [{ port: 5432 }] }]],
        ['POST', '/v1/apps/web/ips', { type: 'private_v6' }],
        ['DELETE', '/v1/apps/web'],
      ];
      for (const [method, path, body] of writes) {
        // Twice: a retry must meet the same state, not a 409 for what the first one "did".
        for (let i = 0; i < 2; i++) {
          const r = await c.api(method, path, body);
          expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(503);
          expect(r.body.error.code).toBe('SIXPN_STORE_UNAVAILABLE');
          expect(r.body.error.message).toMatch(/read-only|EROFS/);
        }
      }
      expect(await snapshot()).toEqual(seen);
      expect((await c.api('GET', '/v1/orgs/globex')).status).toBe(404);
      // Concurrent writes share one failed write: all of them fail, none shows up.
      const burst = await Promise.all(Array.from({ length: 20 }, () => c.api('POST', '/v1/apps/web/ips', { type: 'private_v6' })));
      expect(burst.map((r) => r.status)).toEqual(Array(20).fill(503));
      expect((await c.api('GET', '/v1/apps/web/ips')).body).toEqual([]);
      expect(c.catalogText()).toBe(before);
    } finally {
      await c.readOnly(false);
    }
  });

  it('takes the same writes once the folder is writable again, and they survive a restart', async () => {
    expect((await c.api('POST', '/v1/orgs', { name: 'globex', network_id: 0x22b7 })).status).toBe(201);
    const ip = await c.api('POST', '/v1/apps/web/ips', { type: 'private_v6' });
    expect(ip.status).toBe(201);
    // The failed allocations used no address: the first one that worked gets the first address.
    expect(ip.body.address).toBe('fdaa:0:18:0:1::3');
    await c.stop();
    c = await startControl({ dir });
    expect(await names()).toEqual(['acme', 'globex']);
    expect((await c.api('GET', '/v1/apps/web/ips')).body.map((f: { address: string }) => f.address)).toEqual(['fdaa:0:18:0:1::3']);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('a stored machine entry a dial cannot use (issue 11 item 4)', () => {
  let dir: string;
  let c: TestControl;
  let echo: Server;
  let proxyPort: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-badentry-'));
    const machine = (id: string, upstream: string) => ({
      id,
      app: 'echo',
      region: 'ams',
      address: `fdaa:0:18:a7b:7d:${id.slice(0, 4)}:${id.slice(4, 8)}:2`,
      state: 'started',
      health: { status: 'unknown', reason: '', changed_at: 1 },
      upstream,
      created_at: 1,
      updated_at: 1,
    });
    // What an older version let the API store, and what used to crash the node on every restart.
    writeFileSync(
      join(dir, 'catalog.json'),
      JSON.stringify({
        format: 'sixpn-catalog/1',
        orgs: [{ name: 'acme', network_id: 0x18 }],
        apps: [{ name: 'echo', org: 'acme', services: [{ protocol: 'tcp', internal_port: 7, ports: [{ port: 7 }] }] }],
        machines: [machine('bbbbbbbb0002', '127.0.0.1:99999')],
        flycast: [{ address: 'fdaa:0:18:0:1::3', app: 'echo', org: 'acme', type: 'private_v6', region: 'global', created_at: 1 }],
        peers: [],
        sequences: { flycast: { acme: 3 }, peer: {} },
      }),
    );
    echo = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    proxyPort = await freePort();
    c = await startControl({
      dir,
      command: 'up',
      extraToml: [
        '[dns]\nenabled = false\n[health]\nenabled = false',
        '[proxy]\nmode = "dev"\nconnect_timeout = "500ms"',
        `[[proxy.dev_mappings]]\nlisten_port = ${proxyPort}\nflycast = "fdaa:0:18:0:1::3"\nport = 7\nas_caller = "fdaa:0:18:a7b:d6b:0:a00:2"`,
      ].join('\n'),
    });
  });

  afterAll(async () => {
    await c?.stop();
    echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Sends `text` through the proxy's dev mapping and reads until the proxy closes (or resets) it. */
  function through(text: string): Promise<string> {
    return new Promise((resolve) => {
      const s = connect(proxyPort, '127.0.0.1');
      let got = '';
      s.on('data', (b) => {
        got += b.toString();
        if (got === text) s.end();
      });
      s.on('error', () => undefined);
      s.on('close', () => resolve(got));
      s.on('connect', () => s.write(text));
      setTimeout(() => s.destroy(), 3000);
    });
  }

  it('is skipped at start with a warning naming it, and connections to its app do not take the node down', async () => {
    expect(c.proc.output()).toMatch(/catalog entry skipped: machine bbbbbbbb0002 is invalid \(upstream: .*127\.0\.0\.1:99999.*port 99999 is out of range/);
    expect((await c.api('GET', '/v1/apps/echo/machines')).body).toEqual([]);
    for (let i = 0; i < 5; i++) expect(await through('hello')).toBe('');
    expect(c.proc.child.exitCode).toBeNull();
    expect((await c.api('GET', '/v1/orgs')).status).toBe(200);
  });

  it('serves the app once a usable machine is registered', async () => {
    const port = (echo.address() as AddressInfo).port;
    expect((await c.api('POST', '/v1/apps/echo/machines', { id: 'aaaaaaaa0001', region: 'ams', upstream: `127.0.0.1:${port}` })).status).toBe(201);
    expect(await through('hello')).toBe('hello');
    // The skipped entry is still in the file until someone removes it.
    expect(c.catalogText()).toContain('127.0.0.1:99999');
    expect((await c.api('DELETE', '/v1/machines/bbbbbbbb0002')).status).toBe(204);
    expect(c.catalogText()).not.toContain('127.0.0.1:99999');
  });
});

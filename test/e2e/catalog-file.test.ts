/**
 * The embedded store's file on a real filesystem, through a real `sixpn control`: a write that
 * fails (the folder made read-only for that process alone, by remounting its bind mount inside
 * a private mount namespace) changes nothing, in memory either, and the same request succeeds
 * once the folder is writable again.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControl, type TestControl } from '../harness/control.js';
import { hasCommand } from '../harness/env.js';

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

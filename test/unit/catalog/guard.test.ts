/**
 * The catalog guard over real Redis stores (two "nodes", each a RedisStore behind its guard,
 * with a CatalogView): a wiped namespace is noticed by both (diverged, writes refused, views kept);
 * adopt on one makes both follow the new catalog; another catalog's identity is refused; a
 * corrupt snapshot is a clear error.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CatalogGuard } from '../../../src/catalog/guard.js';
import { RedisStore } from '../../../src/catalog/redis.js';
import { CatalogView } from '../../../src/catalog/view.js';
import { SixpnError } from '../../../src/errors.js';
import { waitFor } from '../../harness/net.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';

const regions = ['ewr', 'iad', 'lhr', 'ams'];
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

let redis: TestRedis;
let admin: Redis;
let dir = '';
let seq = 0;
const open: { guard: CatalogGuard; view: CatalogView }[] = [];

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
});
afterEach(async () => {
  for (const n of open.splice(0)) {
    n.view.close();
    await n.guard.close();
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function node(ns: string, name: string, snapshotPath: string | null = join(dir, `${name}.json`)) {
  const store = await RedisStore.open({ url: redis.url, namespace: ns, regions });
  const guard = await CatalogGuard.open({ store, where: `${redis.url} (namespace ${ns})`, node: name, snapshotPath, snapshotIntervalMs: 20, checkIntervalMs: 100, log: quiet });
  const view = await CatalogView.open(guard);
  guard.attach(view);
  open.push({ guard, view });
  return { guard, view };
}

async function code(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(SixpnError);
  return (err as SixpnError).code;
}

describe('catalog guard', () => {
  it('notices a wiped store on every node, keeps the views, refuses writes; adopt on one node makes both follow', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-guard-'));
    const ns = `guard-${process.pid}-${++seq}`;
    const a = await node(ns, 'a');
    const b = await node(ns, 'b');
    await a.guard.createOrg({ name: 'acme', network_id: 0x18 });
    await a.guard.createApp({ name: 'web', org: 'acme', services: [] });
    await waitFor(() => b.view.apps.has('web'), { what: 'web on b' });
    const id = a.guard.status().identity;
    expect(b.guard.status().identity).toBe(id);
    // Nothing to adopt while the store holds this catalog.
    expect(await code(a.guard.adopt())).toBe('SIXPN_CONFLICT');

    // Wiped (only this namespace: REDIS_URL may be a shared server).
    await admin.del(...(await admin.keys(`${ns}:*`)));
    for (const n of [a, b]) await waitFor(() => n.guard.state === 'diverged', { what: 'diverged', timeoutMs: 3_000 });
    for (const n of [a, b]) {
      expect(n.view.apps.has('web')).toBe(true);
      expect(n.guard.status()).toMatchObject({ state: 'diverged', identity: id, store_identity: null });
      expect(await code(n.guard.createApp({ name: 'api', org: 'acme', services: [] }))).toBe('SIXPN_CATALOG_DIVERGED');
    }
    // The write was refused in the store too: nothing of it is there.
    expect(await admin.keys(`${ns}:apps`)).toEqual([]);

    const adopted = await a.guard.adopt();
    expect(adopted.replaces).toEqual([id]);
    for (const n of [a, b]) {
      await waitFor(() => n.guard.state === 'ok' && !n.view.apps.has('web'), { what: 'adopted (empty)', timeoutMs: 3_000 });
      expect(n.guard.status().identity).toBe(adopted.id);
    }
    await b.guard.createOrg({ name: 'globex', network_id: 0x22 });
    await waitFor(() => a.view.orgs.has('globex'), { what: 'globex on a' });
  });

  it('refuses a store that holds another catalog, and a corrupt snapshot', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-guard-'));
    const ns = `guard-${process.pid}-${++seq}`;
    const a = await node(ns, 'a');
    await a.guard.createOrg({ name: 'acme', network_id: 0x18 });
    await waitFor(async () => (await import('node:fs')).existsSync(join(dir, 'a.json')), { what: 'snapshot' });
    const other = `guard-${process.pid}-${++seq}`;
    const b = await node(other, 'b2');
    await b.guard.createOrg({ name: 'x', network_id: 0x19 });
    // Node a's snapshot, pointed at another catalog: diverged at once.
    const c = await node(other, 'c', join(dir, 'a.json'));
    expect(c.guard.state).toBe('diverged');
    expect(c.guard.status().message).toMatch(/holds another catalog/);
    expect(c.view.orgs.has('acme')).toBe(true);
    expect(c.view.orgs.has('x')).toBe(false);

    writeFileSync(join(dir, 'bad.json'), '{"format":"sixpn-catalog/1"');
    const store = await RedisStore.open({ url: redis.url, namespace: ns, regions });
    const err = await CatalogGuard.open({ store, where: 'x', node: 'd', snapshotPath: join(dir, 'bad.json'), snapshotIntervalMs: 20, checkIntervalMs: 100, log: quiet }).catch((e: Error) => e);
    await store.close();
    expect(String(err)).toMatch(/the catalog snapshot .*bad\.json is corrupt \(.*\); move it away/);
  });
});

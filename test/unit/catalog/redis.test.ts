/**
 * The Redis catalog store against a real redis-server: the shared store contract (each
 * `open()` is a separate RedisStore, so "other node" tests cross real connections), then what
 * only a shared store has: Redis going away and coming back, and many writers racing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inOrg, isFlycastAddress } from '../../../src/addressing/index.js';
import { RedisStore } from '../../../src/catalog/redis.js';
import type { StoreEvent } from '../../../src/catalog/store.js';
import type { CatalogChange } from '../../../src/catalog/types.js';
import { CatalogView } from '../../../src/catalog/view.js';
import { SixpnError, StoreUnavailableError } from '../../../src/errors.js';
import { freePort, sleep, waitFor } from '../../harness/net.js';
import { start, type Proc } from '../../harness/procs.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { storeContract } from './contract.js';

const regions = ['ewr', 'iad', 'lhr', 'ams', 'syd', 'ord'];
const HOST = { hostId: 0x0a7b007d };
const svc = { protocol: 'http' as const, internal_port: 8080, ports: [{ port: 80 }] };

let redis: TestRedis;
let admin: Redis;
let seq = 0;
let ns = '';
const freshNamespace = () => (ns = `sixpn-test-${process.pid}-${++seq}`);

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});

afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
});

/** Leaves an external REDIS_URL as clean as it was found. */
async function dropNamespace(name: string): Promise<void> {
  const keys = await admin.keys(`${name}:*`);
  if (keys.length) await admin.del(...keys);
}

storeContract('redis', {
  fresh: async () => void freshNamespace(),
  open: () => RedisStore.open({ url: redis.url, namespace: ns, regions }),
  cleanup: () => dropNamespace(ns),
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SixpnError);
  return (err as SixpnError).code;
}

describe('redis store with many writers', () => {
  const stores: RedisStore[] = [];
  const openStore = async () => {
    const s = await RedisStore.open({ url: redis.url, namespace: ns, regions });
    stores.push(s);
    return s;
  };

  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await dropNamespace(ns);
  });

  async function seed() {
    freshNamespace();
    const s = await openStore();
    await s.createOrg({ name: 'acme', network_id: 0x18 });
    await s.createOrg({ name: 'globex', network_id: 0x22b7 });
    await s.createApp({ name: 'web', org: 'acme', services: [svc] });
    return s;
  }

  it('gives 200 concurrent Flycast allocations from 4 stores 200 distinct addresses, each change delivered once to each store', async () => {
    await seed();
    const four = [stores[0]!, await openStore(), await openStore(), await openStore()];
    const seen = four.map(() => [] as StoreEvent[]);
    four.forEach((s, i) => s.subscribe((e) => seen[i]!.push(e)));
    const ips = await Promise.all(Array.from({ length: 200 }, (_, i) => four[i % 4]!.allocateFlycast('web')));
    const addresses = ips.map((ip) => ip.address);
    expect(new Set(addresses).size).toBe(200);
    for (const a of addresses) {
      expect(inOrg(a, 0x18)).toBe(true);
      expect(isFlycastAddress(a)).toBe(true);
    }
    expect((await four[0]!.snapshot()).flycast.map((f) => f.address).sort()).toEqual([...addresses].sort());
    // A mutation resolves after its change reached this store's own listeners; the others get it soon after.
    await waitFor(() => seen.every((s) => s.length >= 200), { timeoutMs: 5000, what: 'changes on every store' });
    for (const s of seen) {
      const keys = s.filter((e) => e.kind === 'flycast').map((e) => (e as CatalogChange).key);
      expect(keys).toHaveLength(200);
      expect(new Set(keys).size).toBe(200);
    }
  });

  it("hands a store's own change to its listeners once, before the mutation resolves", async () => {
    const a = await seed();
    const seen: StoreEvent[] = [];
    a.subscribe((e) => seen.push(e));
    const app = await a.createApp({ name: 'api', org: 'acme' });
    expect(seen).toEqual([{ kind: 'app', op: 'put', key: 'api', value: app, at: expect.any(Number) }]);
    await sleep(50);
    expect(seen).toHaveLength(1);
  });

  it('never acts on a stale cached org or app: a write checks it, an error is re-read', async () => {
    const a = await seed();
    await a.allocateFlycast('web'); // a now holds app web and org acme in its cache
    // Remove the app behind the store's back (no change published), so a's cache is stale.
    await admin.hdel(`${ns}:apps`, 'web');
    expect(await codeOf(a.allocateFlycast('web'))).toBe('SIXPN_NOT_FOUND');
    await a.createApp({ name: 'api', org: 'acme' });
    await admin.hdel(`${ns}:apps`, 'api');
    // The cache says "api exists", but the conflict is only reported after a fresh read: it does not.
    const api = await a.createApp({ name: 'api', org: 'acme' });
    expect(api.name).toBe('api');
    expect((await a.snapshot()).flycast).toHaveLength(1);
  });

  it('lets exactly one of many concurrent registrations of one machine id win', async () => {
    await seed();
    const four = [stores[0]!, await openStore(), await openStore(), await openStore()];
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => four[i % 4]!.registerMachine({ id: 'f066b83b2c4e71', app: 'web', region: 'ewr' }, HOST)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as SixpnError).code).toBe('SIXPN_CONFLICT');
    // Different ids, same address (same first 8 hex digits on the same host): one wins too.
    const same = await Promise.allSettled(['aaaaaaaa000001', 'aaaaaaaa000002', 'aaaaaaaa000003', 'aaaaaaaa000004'].map((id, i) => four[i]!.registerMachine({ id, app: 'web', region: 'ewr' }, HOST)));
    expect(same.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((await four[0]!.snapshot()).machines).toHaveLength(2);
  });

  it('never leaves machines of a deleted app behind when registrations race the delete', async () => {
    const a = await seed();
    const b = await openStore();
    const registering = Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).registerMachine({ app: 'web', region: 'ewr' }, HOST).then(
      () => 'ok',
      (e: SixpnError) => e.code,
    ));
    await sleep(1);
    await a.deleteApp('web');
    const outcomes = await Promise.all(registering);
    for (const o of outcomes) expect(['ok', 'SIXPN_NOT_FOUND']).toContain(o);
    const snap = await a.snapshot();
    expect(snap.apps).toHaveLength(0);
    expect(snap.machines).toHaveLength(0);
  });

  it('publishes in write order: a view on a third store ends equal to the store after racing updates', async () => {
    const a = await seed();
    const b = await openStore();
    const view = await CatalogView.open(await openStore());
    const m = await a.registerMachine({ app: 'web', region: 'ewr' }, HOST);
    const states = ['started', 'stopped'] as const;
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).updateMachine(m.id, { state: states[i % 2]!, health: { status: i % 3 ? 'healthy' : 'unhealthy', reason: `run ${i}` } })));
    const final = (await a.snapshot()).machines[0]!;
    await waitFor(() => view.machines.get(m.id)?.health.reason === final.health.reason, { timeoutMs: 5000, what: 'view to settle' });
    expect(view.machines.get(m.id)).toEqual(final);
    view.close();
  });

  it('skips an invalid stored entry loudly (snapshot and published change) instead of serving it (issue 11 item 4)', async () => {
    const a = await seed();
    const good = await a.registerMachine({ id: 'aaaaaaaa0001', app: 'web', region: 'ewr', upstream: '127.0.0.1:9001' }, HOST);
    // What an older node or a hand edit could leave in Redis: a port no dial can use, and garbage.
    await admin.hset(`${ns}:machines`, 'bbbbbbbb0002', JSON.stringify({ ...good, id: 'bbbbbbbb0002', address: 'fdaa:0:18:a7b:7d:bbbb:bbbb:2', upstream: '127.0.0.1:99999' }));
    await admin.hset(`${ns}:machines`, 'cccccccc0003', '{not json');
    const warnings: string[] = [];
    const log = { info: () => undefined, warn: (obj: object, msg: string) => void warnings.push(`${(obj as { key: string }).key}: ${msg}`) };
    const b = await RedisStore.open({ url: redis.url, namespace: ns, regions, log });
    stores.push(b);
    const view = await CatalogView.open(b);
    expect([...view.machines.keys()]).toEqual(['aaaaaaaa0001']);
    expect((await b.snapshot()).machines.map((m) => m.id)).toEqual(['aaaaaaaa0001']);
    expect([...warnings].sort()).toEqual([expect.stringMatching(/^bbbbbbbb0002: .*port 99999 is out of range/), expect.stringMatching(/^cccccccc0003: .*not JSON/)]);
    // Logged once per entry, however often the snapshot is read.
    await b.snapshot();
    expect(warnings).toHaveLength(2);
    // A published put with a bad value takes the machine out of the view rather than into the proxy.
    const bad = { kind: 'machine', op: 'put', key: 'aaaaaaaa0001', value: { ...good, upstream: '127.0.0.1:0' }, at: Date.now() };
    await admin.publish(`${ns}:changes`, JSON.stringify({ o: 'older-node', n: 1, c: [bad] }));
    await waitFor(() => !view.machines.has('aaaaaaaa0001'), { timeoutMs: 5000, what: 'the bad put to remove the machine' });
    expect(warnings.at(-1)).toMatch(/^aaaaaaaa0001: .*port 0 is out of range/);
    // The entries stay in Redis: nothing is dropped behind the operator's back.
    expect(await admin.hlen(`${ns}:machines`)).toBe(3);
    view.close();
  });

  it('ignores foreign messages on its channel and reloads views after its subscriber is cut off', async () => {
    const a = await seed();
    const view = await CatalogView.open(await openStore());
    let resets = 0;
    view.on('reset', () => resets++);
    await admin.publish(`${ns}:changes`, 'not json');
    await admin.publish(`${ns}:changes`, '{"c": 5}');
    await admin.publish(`${ns}:changes`, '{"o": "x", "n": 1, "c": [{"kind": "app", "op": "put", "key": "evil", "at": 1}]}');
    await a.createApp({ name: 'first', org: 'acme' });
    await waitFor(() => view.apps.has('first'), { timeoutMs: 5000, what: 'a change after the foreign ones' });
    expect(view.apps.has('evil')).toBe(false);
    // Cut every pub/sub connection; a change made meanwhile is not delivered, so the view must reload.
    const clients = (await admin.client('LIST')) as string;
    const subs = clients.split('\n').filter((l) => l.includes(`name=sixpn-catalog-sub-${ns} `));
    expect(subs.length).toBeGreaterThanOrEqual(2);
    for (const l of subs) await admin.client('KILL', 'ID', /id=(\d+)/.exec(l)![1]!);
    await a.createApp({ name: 'api', org: 'acme' });
    await waitFor(() => resets >= 1 && view.apps.has('api'), { timeoutMs: 5000, what: 'reset and reload' });
    await a.createApp({ name: 'db', org: 'acme' });
    await waitFor(() => view.apps.has('db'), { timeoutMs: 5000, what: 'changes after the reset' });
    view.close();
  });
});

describe('redis store when redis is down', () => {
  let proc: Proc | null = null;
  let dir = '';

  /** A redis-server that keeps its data across a restart (append-only file, fsync always). */
  const startPersistent = async (port: number): Promise<Proc> => {
    const p = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
    await p.waitForLine(/Ready to accept connections/);
    return p;
  };

  afterEach(async () => {
    await proc?.stop('SIGKILL');
    proc = null;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to open with a clear error naming the URL', async () => {
    const port = await freePort();
    const url = `redis://:secret@127.0.0.1:${port}`;
    const t0 = Date.now();
    const err = await RedisStore.open({ url, namespace: 'x', regions }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
    expect((err as Error).message).not.toContain('secret');
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('fails fast while down, changes nothing, then recovers on restart and views reload', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-redis-down-'));
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    proc = await startPersistent(port);
    freshNamespace();
    const a = await RedisStore.open({ url, namespace: ns, regions });
    const b = await RedisStore.open({ url, namespace: ns, regions });
    try {
      await a.createOrg({ name: 'acme', network_id: 0x18 });
      await a.createApp({ name: 'web', org: 'acme', services: [svc] });
      const m = await a.registerMachine({ app: 'web', region: 'ewr' }, HOST);
      const view = await CatalogView.open(b);
      let resets = 0;
      view.on('reset', () => resets++);
      const before = await a.snapshot();

      await proc.stop('SIGKILL');
      proc = null;
      for (const attempt of [() => a.allocateFlycast('web'), () => a.updateMachine(m.id, { state: 'stopped' }), () => b.snapshot()]) {
        const t0 = Date.now();
        const err = await attempt().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(StoreUnavailableError);
        expect((err as Error).message).toContain(url);
        expect(Date.now() - t0).toBeLessThan(2500);
      }
      // Readers keep serving from their view while the store is down.
      expect(view.machines.get(m.id)?.state).toBe('started');

      proc = await startPersistent(port);
      const after = await waitFor(() => a.snapshot().catch(() => null), { timeoutMs: 5000, what: 'store to reconnect' });
      expect(after).toEqual(before);
      await waitFor(() => resets >= 1, { timeoutMs: 5000, what: 'view reset after the subscriber reconnected' });
      const ip = await a.allocateFlycast('web');
      expect(ip.address).toBe('fdaa:0:18:0:1::3');
      await waitFor(() => view.flycast.has(ip.address), { timeoutMs: 5000, what: 'change after recovery' });
      view.close();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

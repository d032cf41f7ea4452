import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { seedCatalog, type Seed } from '../../../src/catalog/seed.js';
import { SixpnError } from '../../../src/errors.js';

const seed: Seed = {
  orgs: [{ name: 'acme', network_id: 0x18 }],
  apps: [{ name: 'web', org: 'acme', services: [{ protocol: 'http', internal_port: 8080, ports: [{ port: 80, handlers: [] }], concurrency: { type: 'requests', soft_limit: 5, hard_limit: 10 }, tcp_checks: [], http_checks: [] }] }],
  machines: [{ id: 'aaaaaaaa0001', app: 'web', region: 'ewr', upstream: '127.0.0.1:9001' }],
  ips: [{ app: 'web' }, { app: 'web' }],
};

describe('seedCatalog', () => {
  it('creates what is missing and is idempotent', async () => {
    const store = await MemoryStore.open({ regions: ['ewr'] });
    await seedCatalog(store, seed, 0x0a7b007d);
    await seedCatalog(store, seed, 0x0a7b007d);
    const snap = await store.snapshot();
    expect(snap.orgs).toHaveLength(1);
    expect(snap.machines.map((m) => m.upstream)).toEqual(['127.0.0.1:9001']);
    expect(snap.flycast.map((f) => f.address)).toEqual(['fdaa:0:18:0:1::3', 'fdaa:0:18:0:1::4']);
  });

  it('updates the services of an existing app', async () => {
    const store = await MemoryStore.open({ regions: ['ewr'] });
    await seedCatalog(store, seed, 0x0a7b007d);
    await seedCatalog(store, { ...seed, apps: [{ ...seed.apps[0]!, services: [] }] }, 0x0a7b007d);
    expect((await store.snapshot()).apps[0]!.services).toEqual([]);
  });

  it('refuses an org whose network id differs from the catalog', async () => {
    const store = await MemoryStore.open({ regions: ['ewr'] });
    await seedCatalog(store, seed, 0x0a7b007d);
    const err = await seedCatalog(store, { ...seed, orgs: [{ name: 'acme', network_id: 0x19 }] }, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SixpnError);
    expect((err as SixpnError).code).toBe('SIXPN_CONFLICT');
  });
});

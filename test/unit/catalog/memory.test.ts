import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/catalog/memory.js';
import type { CatalogStore } from '../../../src/catalog/store.js';
import { SixpnError } from '../../../src/errors.js';
import { storeContract } from './contract.js';

const regions = ['ewr', 'iad', 'lhr', 'ams', 'syd', 'ord'];

// In memory only: one store shared by "both nodes" (the embedded store is single-process).
let mem: CatalogStore | null = null;
storeContract('embedded (memory)', {
  fresh: async () => {
    mem = await MemoryStore.open({ regions });
  },
  open: async () => mem!,
  cleanup: async () => undefined,
});

// Persisted to a file.
let dir = '';
let fileStore: CatalogStore | null = null;
storeContract('embedded (file)', {
  fresh: async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-cat-'));
    fileStore = await MemoryStore.open({ regions, path: join(dir, 'catalog.json') });
  },
  open: async () => fileStore!,
  cleanup: async () => rmSync(dir, { recursive: true, force: true }),
});

describe('embedded store file', () => {
  it('survives a restart with the same catalog and sequence counters', async () => {
    const d = mkdtempSync(join(tmpdir(), 'sixpn-cat-'));
    const path = join(d, 'sub', 'catalog.json');
    const a = await MemoryStore.open({ regions, path });
    await a.createOrg({ name: 'acme', network_id: 0x18 });
    await a.createApp({ name: 'web', org: 'acme' });
    const ip = await a.allocateFlycast('web');
    await a.releaseFlycast(ip.address);
    await a.close();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const b = await MemoryStore.open({ regions, path });
    expect((await b.snapshot()).apps.map((x) => x.name)).toEqual(['web']);
    // the released address is not handed out again after a restart
    expect((await b.allocateFlycast('web')).address).not.toBe(ip.address);
    await b.close();
    rmSync(d, { recursive: true, force: true });
  });

  it('loads a file written before hosts existed, and keeps hosts across a restart', async () => {
    const d = mkdtempSync(join(tmpdir(), 'sixpn-cat-'));
    const path = join(d, 'catalog.json');
    writeFileSync(path, JSON.stringify({ format: 'sixpn-catalog/1', orgs: [{ name: 'acme', network_id: 24 }], apps: [], machines: [], flycast: [], peers: [], sequences: { flycast: {}, peer: {} } }));
    const a = await MemoryStore.open({ regions, path });
    expect((await a.snapshot()).hosts).toEqual([]);
    const h = await a.registerHost({ name: 'ewr-1', region: 'ewr', driver: 'netns', session: 'x' }, { reservedHostIds: [], staleAfterMs: 1000 });
    await a.close();
    const b = await MemoryStore.open({ regions, path });
    expect((await b.snapshot()).hosts).toEqual([h]);
    await b.close();
    rmSync(d, { recursive: true, force: true });
  });

  it('coalesces a burst of changes into few writes and loses none', async () => {
    const d = mkdtempSync(join(tmpdir(), 'sixpn-cat-'));
    const path = join(d, 'catalog.json');
    const a = await MemoryStore.open({ regions, path });
    await a.createOrg({ name: 'acme', network_id: 0x18 });
    await a.createApp({ name: 'web', org: 'acme' });
    await Promise.all(Array.from({ length: 200 }, () => a.allocateFlycast('web')));
    const onDisk = JSON.parse(readFileSync(path, 'utf8')) as { flycast: unknown[] };
    expect(onDisk.flycast).toHaveLength(200);
    await a.close();
    rmSync(d, { recursive: true, force: true });
  });

  it.each([
    ['not json', '{ nope'],
    ['wrong shape', JSON.stringify({ format: 'sixpn-catalog/1', orgs: 'x' })],
    ['unknown format', JSON.stringify({ hello: 1 })],
  ])('refuses to start on a corrupt file (%s) instead of an empty catalog', async (_what, text) => {
    const d = mkdtempSync(join(tmpdir(), 'sixpn-cat-'));
    const path = join(d, 'catalog.json');
    writeFileSync(path, text);
    const err = await MemoryStore.open({ regions, path }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SixpnError);
    expect((err as SixpnError).code).toBe('SIXPN_STORE_UNAVAILABLE');
    expect((err as Error).message).toContain(path);
    expect(readFileSync(path, 'utf8')).toBe(text);
    rmSync(d, { recursive: true, force: true });
  });
});

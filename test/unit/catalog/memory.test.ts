import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
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

/** A logger that keeps what it is told. */
function captureLog() {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  return { lines, warn: (obj: object, msg: string) => void lines.push({ obj: obj as Record<string, unknown>, msg }) };
}

describe('embedded store file: bad stored entries (issue 11 item 4)', () => {
  const good = { id: 'aaaaaaaa0001', app: 'web', region: 'ewr', address: 'fdaa:0:18:a7b:7d:aaaa:aaaa:2', state: 'started', health: { status: 'unknown', reason: '', changed_at: 1 }, upstream: '127.0.0.1:9001', created_at: 1, updated_at: 1 };
  const badPort = { ...good, id: 'bbbbbbbb0002', address: 'fdaa:0:18:a7b:7d:bbbb:bbbb:2', upstream: '127.0.0.1:99999' };
  const badAddress = { ...good, id: 'cccccccc0003', address: 'not-an-address', upstream: undefined };
  // Written by a newer version: a field this one does not know is no reason to skip the machine.
  const newer = { ...good, id: 'dddddddd0004', address: 'fdaa:0:18:a7b:7d:dddd:dddd:2', host: 'h1' };
  const file = (machines: unknown[]) =>
    JSON.stringify({
      format: 'sixpn-catalog/1',
      orgs: [{ name: 'acme', network_id: 0x18 }],
      apps: [{ name: 'web', org: 'acme', services: [] }, { name: 'bad', org: 'acme', services: [{ internal_port: 70000, ports: [{ port: 80 }] }] }],
      machines,
      flycast: [{ address: 'fdaa:0:18:0:1::3', app: 'web', org: 'acme', type: 'private_v6', region: 'global', created_at: 1 }, { address: 'fdaa::zz', app: 'web', org: 'acme', type: 'private_v6', region: 'global', created_at: 1 }],
      peers: [],
      sequences: { flycast: { acme: 3 }, peer: {} },
    });

  it('skips each invalid entry loudly at load, serves the rest, and keeps the entry in the file', async () => {
    const d = mkdtempSync(join(tmpdir(), 'sixpn-cat-'));
    const path = join(d, 'catalog.json');
    writeFileSync(path, file([good, badPort, badAddress, newer]));
    const log = captureLog();
    const s = await MemoryStore.open({ regions, path, log });
    const snap = await s.snapshot();
    expect(snap.machines.map((m) => m.id)).toEqual(['aaaaaaaa0001', 'dddddddd0004']);
    expect(snap.apps.map((a) => a.name)).toEqual(['web']);
    expect(snap.flycast.map((f) => f.address)).toEqual(['fdaa:0:18:0:1::3']);
    const said = log.lines.map((l) => `${l.obj.kind} ${l.obj.key}: ${l.obj.reason}`);
    expect(said).toEqual([
      expect.stringMatching(/^app bad: services\.0\.internal_port: /),
      expect.stringMatching(/^machine bbbbbbbb0002: upstream: .*port 99999 is out of range/),
      expect.stringMatching(/^machine cccccccc0003: address: .*not a canonical IPv6 address/),
      expect.stringMatching(/^flycast fdaa::zz: address: /),
    ]);
    expect(log.lines.every((l) => /skipped/.test(l.msg) && l.obj.file === path)).toBe(true);
    // A later write keeps the skipped entries as they were: nothing vanishes from the file.
    await s.createOrg({ name: 'globex', network_id: 0x22b7 });
    const onDisk = JSON.parse(readFileSync(path, 'utf8'));
    expect(onDisk.machines).toEqual([good, newer, badPort, badAddress].map((m) => JSON.parse(JSON.stringify(m))));
    expect(onDisk.apps).toHaveLength(2);
    expect(onDisk.flycast).toHaveLength(2);
    // A skipped machine's id is not handed out again; removing it cleans the file.
    await expect(s.registerMachine({ id: 'bbbbbbbb0002', app: 'web', region: 'ewr' }, { hostId: 0x0a7b007d })).rejects.toMatchObject({ code: 'SIXPN_CONFLICT' });
    await s.removeMachine('bbbbbbbb0002');
    expect(JSON.parse(readFileSync(path, 'utf8')).machines.map((m: { id: string }) => m.id)).toEqual(['aaaaaaaa0001', 'dddddddd0004', 'cccccccc0003']);
    await s.close();
    rmSync(d, { recursive: true, force: true });
  });
});

describe('embedded store file: stale temp files (issue 11 item 12)', () => {
  it('removes temp files of dead writers, of this pid and old ones; keeps a live writer\'s and other files\'', async () => {
    const d = mkdtempSync(join(tmpdir(), 'sixpn-cat-'));
    const path = join(d, 'catalog.json');
    writeFileSync(path, JSON.stringify({ format: 'sixpn-catalog/1', orgs: [], apps: [], machines: [], flycast: [], peers: [], sequences: { flycast: {}, peer: {} } }));
    // A pid that is surely dead: a child that already exited (and was reaped).
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const live = spawn('sleep', ['30']);
    const reused = spawn('sleep', ['30']);
    try {
      const names = [`catalog.json.${dead}.tmp`, `catalog.json.${process.pid}.tmp`, `catalog.json.${live.pid}.tmp`, `catalog.json.${reused.pid}.tmp`, `other.json.${dead}.tmp`, 'catalog.json.x.tmp'];
      for (const n of names) writeFileSync(join(d, n), '{"half":');
      // Two hours old although its pid is alive: a reused pid, not a writer.
      const old = new Date(Date.now() - 2 * 3600_000);
      utimesSync(join(d, `catalog.json.${reused.pid}.tmp`), old, old);
      const log = captureLog();
      const s = await MemoryStore.open({ regions, path, log });
      expect(readdirSync(d).sort()).toEqual(['catalog.json', `catalog.json.${live.pid}.tmp`, 'catalog.json.x.tmp', `other.json.${dead}.tmp`].sort());
      expect(log.lines.filter((l) => /stale catalog temp file/.test(l.msg))).toHaveLength(3);
      await s.close();
    } finally {
      live.kill();
      reused.kill();
      rmSync(d, { recursive: true, force: true });
    }
  });
});


import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/catalog/memory.js';
import type { CatalogBackend } from '../../../src/catalog/store.js';
import { SixpnError } from '../../../src/errors.js';
import { storeContract } from './contract.js';

const regions = ['ewr', 'iad', 'lhr', 'ams', 'syd', 'ord'];

// In memory only: one store shared by "both nodes" (the embedded store is single-process).
let mem: CatalogBackend | null = null;
storeContract('embedded (memory)', {
  fresh: async () => {
    mem = await MemoryStore.open({ regions });
  },
  open: async () => mem!,
  cleanup: async () => undefined,
});

// Persisted to a file.
let dir = '';
let fileStore: CatalogBackend | null = null;
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
  const newer = { ...good, id: 'dddddddd0004', address: 'fdaa:0:18:a7b:7d:dddd:dddd:2', added_later: { by: 'a newer version' } };
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


describe('embedded store file: hosts (issue 14) under the issue 11 rules', () => {
  const hostOpts = { reservedHostIds: [], staleAfterMs: 60_000 };
  const run = { cmd: ['sleep', '1000'] };

  it('changes nothing, in memory either, when the write of a host or run-machine op fails', async () => {
    const d = mkdtempSync(join(tmpdir(), 'sixpn-cat-'));
    const path = join(d, 'catalog.json');
    const s = await MemoryStore.open({ regions, path });
    await s.createOrg({ name: 'acme', network_id: 0x18 });
    await s.createApp({ name: 'web', org: 'acme' });
    await s.registerHost({ name: 'h1', region: 'ewr', driver: 'local', session: 'a' }, hostOpts);
    await s.registerHost({ name: 'h2', region: 'ewr', driver: 'local', session: 'b' }, hostOpts);
    const m = await s.registerMachine({ app: 'web', region: 'ewr', host: 'h1', config: run }, { hostId: 0 });
    const seen: unknown[] = [];
    s.subscribe((e) => seen.push(e));
    const before = await s.snapshot();
    const text = readFileSync(path, 'utf8');
    // The temp file's name taken by a folder: every write fails (EISDIR), as on a full or read-only disk.
    const tmp = `${path}.${process.pid}.tmp`;
    mkdirSync(tmp);
    try {
      const ops: [string, () => Promise<unknown>][] = [
        ['register a new host', () => s.registerHost({ name: 'h3', region: 'ewr', driver: 'local', session: 'c' }, hostOpts)],
        ['re-register a host', () => s.registerHost({ name: 'h1', region: 'ewr', driver: 'local', session: 'a' }, hostOpts)],
        ['heartbeat', () => s.updateHost('h1', { heartbeat_at: Date.now() + 1000 }, { ifSession: 'a' })],
        ['mark down', () => s.updateHost('h2', { state: 'down' })],
        ['remove a host', () => s.removeHost('h2')],
        ['run a machine', () => s.registerMachine({ app: 'web', region: 'ewr', host: 'h2', config: run }, { hostId: 0 })],
        ['a compare-and-set', () => s.updateMachine(m.id, { state: 'starting' }, { ifState: ['created'] })],
        ['record an exit', () => s.updateMachine(m.id, { state: 'failed', last_exit: { exit_code: 1, signal: null, requested: false, at: 1 }, restarts: 3, state_reason: 'exited with code 1' })],
      ];
      for (const [what, op] of ops) {
        // Twice: a retry meets the same state (no "already exists", no moved state).
        for (let i = 0; i < 2; i++) await expect(op(), what).rejects.toMatchObject({ code: 'SIXPN_STORE_UNAVAILABLE' });
      }
      expect(await s.snapshot()).toEqual(before);
      expect(seen).toEqual([]);
      expect(readFileSync(path, 'utf8')).toBe(text);
    } finally {
      rmdirSync(tmp);
    }
    // Writable again: the same ops succeed from the same state.
    await s.updateMachine(m.id, { state: 'starting' }, { ifState: ['created'] });
    await s.removeHost('h2');
    expect((await s.snapshot()).hosts.map((h) => h.name)).toEqual(['h1']);
    await s.close();
    rmSync(d, { recursive: true, force: true });
  });

  it('skips an invalid host loudly at load, keeps it in the file, and does not hand out its name or host id', async () => {
    const d = mkdtempSync(join(tmpdir(), 'sixpn-cat-'));
    const path = join(d, 'catalog.json');
    const host = { name: 'h1', region: 'ewr', host_id: 0x1234_5678, state: 'up', driver: 'local', heartbeat_at: 1, session: 's', created_at: 1, updated_at: 1 };
    const badEndpoint = { ...host, name: 'h2', host_id: 0x2222_2222, wireguard: { public_key: 'A'.repeat(42) + 'A=', endpoint: 'h2.example.com:99999' } };
    const badId = { ...host, name: 'h3', host_id: 1 };
    writeFileSync(
      path,
      JSON.stringify({ format: 'sixpn-catalog/1', orgs: [], apps: [], machines: [], flycast: [], peers: [], hosts: [host, badEndpoint, badId], sequences: { flycast: {}, peer: {} } }),
    );
    const log = captureLog();
    const s = await MemoryStore.open({ regions, path, log });
    expect((await s.snapshot()).hosts.map((h) => h.name)).toEqual(['h1']);
    expect(log.lines.map((l) => `${l.obj.kind} ${l.obj.key}: ${l.obj.reason}`)).toEqual([
      expect.stringMatching(/^host h2: wireguard\.endpoint: .*port 99999/),
      expect.stringMatching(/^host h3: host_id: /),
    ]);
    // An agent registering under a skipped name is refused, naming the reason; nothing is written.
    await expect(s.registerHost({ name: 'h2', region: 'ewr', driver: 'local', session: 'x' }, hostOpts)).rejects.toMatchObject({
      code: 'SIXPN_CONFLICT',
      message: expect.stringMatching(/host h2 already exists in the catalog file but is invalid \(wireguard\.endpoint/),
    });
    // Its host id is not given to another host: machine addresses may be made of it.
    await expect(s.registerHost({ name: 'h4', region: 'ewr', host_id: 0x2222_2222, driver: 'local', session: 'x' }, hostOpts)).rejects.toMatchObject({
      code: 'SIXPN_CONFLICT',
      message: expect.stringMatching(/already used by host h2/),
    });
    await s.registerHost({ name: 'h4', region: 'ewr', driver: 'local', session: 'x' }, hostOpts);
    const onDisk = JSON.parse(readFileSync(path, 'utf8'));
    expect(onDisk.hosts.map((h: { name: string }) => h.name)).toEqual(['h1', 'h4', 'h2', 'h3']);
    // Removing a skipped host cleans the file; then its name is free.
    await s.removeHost('h2');
    expect(JSON.parse(readFileSync(path, 'utf8')).hosts.map((h: { name: string }) => h.name)).toEqual(['h1', 'h4', 'h3']);
    await s.registerHost({ name: 'h2', region: 'ewr', driver: 'local', session: 'y' }, hostOpts);
    await s.close();
    rmSync(d, { recursive: true, force: true });
  });
});

/**
 * The embedded store: the catalog in memory, optionally persisted to one JSON file.
 *
 * Every mutation runs synchronously on the one JS thread (so it is atomic) against copy-on-write
 * layers over the committed catalog (./draft.ts); the layers are written to the file with
 * write-to-temp, fsync and rename (a crash leaves the old or the new file, never half of one),
 * and only once that write succeeded are they applied in memory and the changes published. A
 * write that fails (read-only filesystem, full disk) thus changes nothing, in memory either, and
 * readers never see a change the file does not hold. Mutations arriving together share one write.
 * A file that exists but cannot be read as a catalog stops start-up with an error naming it: it
 * is never silently replaced by an empty catalog.
 */
import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ConflictError, NotFoundError, StoreUnavailableError } from '../errors.js';
import { invalidEntries } from './metrics.js';
import { applyLayers, layersOver, type Layers } from './draft.js';
import {
  applyHostPatch,
  applyMachinePatch,
  assertHostUnused,
  assertOrgUnused,
  buildFlycast,
  buildHost,
  buildMachine,
  buildPeer,
  checkStored,
  FIRST_FLYCAST_SEQUENCE,
  randomHostId,
  randomMachineId,
  validateApp,
  validateOrg,
  validatePeerInput,
  validateRelease,
  withServices,
  type AppServicesOptions,
  tokensOfOrg,
  validateToken,
  type RejectedEntry,
  type StoredEntity,
  type StoredKind,
} from './rules.js';
import type { AllocationOptions, CatalogStore, HostOptions, HostUpdateOptions, MachineUpdateOptions, PeerOptions, StoreListener } from './store.js';
import {
  peerKey,
  type App,
  type AppInput,
  type CatalogChange,
  type CatalogSnapshot,
  type EntityKind,
  type FlycastIp,
  type Host,
  type HostInput,
  type HostPatch,
  type Machine,
  type MachineInput,
  type MachinePatch,
  type Org,
  type Peer,
  type PeerInput,
  type Service,
  type Token,
  type TokenKind,
} from './types.js';
import { z } from 'zod';

/** The file's shape; each entity is checked on its own (checkStored), so one bad entry is skipped, not fatal. */
const fileSchema = z
  .object({
    format: z.literal('sixpn-catalog/1'),
    orgs: z.array(z.unknown()),
    apps: z.array(z.unknown()),
    machines: z.array(z.unknown()),
    flycast: z.array(z.unknown()),
    peers: z.array(z.unknown()),
    /** Absent in files written before hosts existed. */
    hosts: z.array(z.unknown()).default([]),
    /** Absent in files written before tokens existed. */
    tokens: z.array(z.unknown()).default([]),
    sequences: z.object({ flycast: z.record(z.number().int()), peer: z.record(z.number().int()) }),
  })
  .strict();

/** The file's array for each entity kind. */
const SECTIONS = { org: 'orgs', app: 'apps', machine: 'machines', flycast: 'flycast', peer: 'peers', host: 'hosts', token: 'tokens' } as const satisfies Record<StoredKind, string>;

/** An entry of the file that failed its check at load: not served, but written back as it was. */
interface Rejected extends RejectedEntry {
  raw: unknown;
}

/** A pid that no process holds (ESRCH); EPERM means it exists under another user. */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A temp file older than this is stale even when its pid is taken (pids are reused; a write takes milliseconds). */
const STALE_TEMP_MS = 60 * 60 * 1000;

/**
 * Removes `<file>.<pid>.tmp` left by a writer that died between writing and renaming (kill -9,
 * power loss): ours by pid (a former process with this pid), those whose pid is not alive, and
 * any older than an hour. A temp file of a live process is left alone: another sixpn on the
 * same file (which the embedded store does not support, but may happen by mistake) keeps its
 * write. Returns the names removed.
 */
export async function removeStaleTempFiles(path: string, now = Date.now()): Promise<string[]> {
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const pidText = name.slice(prefix.length, -4);
    if (!/^\d{1,10}$/.test(pidText)) continue;
    const pid = Number(pidText);
    const file = join(dir, name);
    let stale = pid === process.pid || !pidAlive(pid);
    if (!stale) {
      try {
        stale = now - (await stat(file)).mtimeMs > STALE_TEMP_MS;
      } catch {
        continue;
      }
    }
    if (!stale) continue;
    try {
      await unlink(file);
      removed.push(name);
    } catch {
      // Gone already, or not ours to remove: the next start tries again.
    }
  }
  return removed;
}

export interface MemoryStoreOptions {
  /** Persist to this JSON file; absent: memory only (tests, `sixpn proxy` with inline seed). */
  path?: string;
  /** Region codes machines and peers may name. */
  regions: Iterable<string>;
  now?: () => number;
  /** Skipped entries and removed temp files are reported here at open, if given. */
  log?: { warn(obj: object, msg: string): void };
}

/** The committed catalog, one map per kind (and the address owners and sequence counters). */
type Tables = {
  orgs: Map<string, Org>;
  apps: Map<string, App>;
  machines: Map<string, Machine>;
  flycast: Map<string, FlycastIp>;
  peers: Map<string, Peer>;
  hosts: Map<string, Host>;
  /** address -> who holds it, across machines, peers and Flycast. */
  owners: Map<string, string>;
  flycastSeq: Map<string, number>;
  peerSeq: Map<string, number>;
  tokens: Map<string, Token>;
  /** Entries of the file that failed their check at load, by load order. */
  rejected: Map<number, Rejected>;
};
type Draft = Layers<Tables>;

/** What a mutation hands back: its result and the changes to publish once they are on disk. */
interface Outcome<T> {
  result: T;
  changes: CatalogChange[];
}

interface Pending {
  body: (d: Draft) => Outcome<unknown>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** The entry of a machine skipped at load with this id, if any. */
function rejectedMachine(d: Draft, id: string): [number, Rejected] | undefined {
  for (const e of d.rejected.entries()) if (e[1].kind === 'machine' && e[1].key === id) return e;
  return undefined;
}

/** The entry of a host skipped at load with this name, if any. */
function rejectedHost(d: Draft, name: string): [number, Rejected] | undefined {
  for (const e of d.rejected.entries()) if (e[1].kind === 'host' && e[1].key === name) return e;
  return undefined;
}

/**
 * The name of the host holding this host id, also among hosts skipped at load: their machines'
 * addresses may be made of it, so it is not handed out again while the entry is in the file.
 */
function hostNameById(d: Draft, hostId: number): string | undefined {
  for (const h of d.hosts.values()) if (h.host_id === hostId) return h.name;
  for (const r of d.rejected.values()) {
    if (r.kind === 'host' && typeof r.raw === 'object' && r.raw !== null && (r.raw as { host_id?: unknown }).host_id === hostId) return r.key;
  }
  return undefined;
}

export class MemoryStore implements CatalogStore {
  readonly kind = 'embedded' as const;
  private readonly t: Tables = {
    orgs: new Map(),
    apps: new Map(),
    machines: new Map(),
    flycast: new Map(),
    peers: new Map(),
    hosts: new Map(),
    owners: new Map(),
    flycastSeq: new Map(),
    peerSeq: new Map(),
    tokens: new Map(),
    rejected: new Map(),
  };
  private readonly listeners = new Set<StoreListener>();
  private readonly regions: Set<string>;
  private readonly now: () => number;
  private readonly path: string | undefined;
  private readonly log: MemoryStoreOptions['log'];
  /** Mutations waiting for the next file write. */
  private queue: Pending[] = [];
  /** The write in progress (with everything queued behind it), if any. */
  private flushing: Promise<void> | null = null;
  private closed = false;

  private constructor(opts: MemoryStoreOptions) {
    this.regions = new Set(opts.regions);
    this.now = opts.now ?? Date.now;
    this.path = opts.path;
    this.log = opts.log;
  }

  /** Opens (and loads, when the file exists) an embedded store. */
  static async open(opts: MemoryStoreOptions): Promise<MemoryStore> {
    const store = new MemoryStore(opts);
    if (opts.path) {
      for (const name of await removeStaleTempFiles(opts.path)) {
        opts.log?.warn({ file: join(dirname(opts.path), name) }, 'removed a stale catalog temp file (a writer died before renaming it)');
      }
      await store.load(opts.path);
    }
    return store;
  }

  private async load(path: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new StoreUnavailableError(`cannot read catalog file ${path}: ${(err as Error).message}`, { cause: err });
    }
    let data: z.infer<typeof fileSchema>;
    try {
      data = fileSchema.parse(JSON.parse(text));
    } catch (err) {
      const why = err instanceof z.ZodError ? err.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : (err as Error).message;
      throw new StoreUnavailableError(`catalog file ${path} is corrupt (${why}); fix or move it away, sixpn will not start on an empty catalog in its place`, { cause: err });
    }
    const t = this.t;
    const valid = <K extends StoredKind>(kind: K): StoredEntity<K>[] => {
      const out: StoredEntity<K>[] = [];
      for (const raw of data[SECTIONS[kind]]) {
        const r = checkStored(kind, raw);
        if ('value' in r) out.push(r.value);
        else {
          t.rejected.set(t.rejected.size, { ...r, raw });
          this.log?.warn(
            { kind, key: r.key, reason: r.reason, file: path },
            `catalog entry skipped: ${kind} ${r.key} is invalid (${r.reason}); it stays in the file but is not served until fixed`,
          );
        }
      }
      return out;
    };
    for (const o of valid('org')) t.orgs.set(o.name, o);
    for (const a of valid('app')) t.apps.set(a.name, a);
    for (const m of valid('machine')) {
      t.machines.set(m.id, m);
      t.owners.set(m.address, `machine ${m.id}`);
    }
    for (const f of valid('flycast')) {
      t.flycast.set(f.address, f);
      t.owners.set(f.address, `flycast ip of ${f.app}`);
    }
    for (const p of valid('peer')) {
      t.peers.set(peerKey(p.org, p.name), p);
      t.owners.set(p.address, `peer ${p.org}/${p.name}`);
    }
    for (const h of valid('host')) t.hosts.set(h.name, h);
    for (const tok of valid('token')) t.tokens.set(tok.id, tok);
    invalidEntries.set(t.rejected.size);
    for (const [k, v] of Object.entries(data.sequences.flycast)) t.flycastSeq.set(k, v);
    for (const [k, v] of Object.entries(data.sequences.peer)) t.peerSeq.set(k, v);
  }

  private static serialize(d: Draft): string {
    const rejected = [...d.rejected.values()];
    const kept = (kind: StoredKind): unknown[] => rejected.filter((r) => r.kind === kind).map((r) => r.raw);
    return JSON.stringify({
      format: 'sixpn-catalog/1',
      orgs: [...d.orgs.values(), ...kept('org')],
      apps: [...d.apps.values(), ...kept('app')],
      machines: [...d.machines.values(), ...kept('machine')],
      flycast: [...d.flycast.values(), ...kept('flycast')],
      peers: [...d.peers.values(), ...kept('peer')],
      hosts: [...d.hosts.values(), ...kept('host')],
      tokens: [...d.tokens.values(), ...kept('token')],
      sequences: { flycast: Object.fromEntries(d.flycastSeq.entries()), peer: Object.fromEntries(d.peerSeq.entries()) },
    });
  }

  private async writeFile(path: string, text: string): Promise<void> {
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await mkdir(dirname(path), { recursive: true });
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw new StoreUnavailableError(`cannot write catalog file ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  private emit(changes: CatalogChange[]): void {
    for (const change of changes) {
      for (const l of this.listeners) {
        try {
          l(change);
        } catch {
          // A failing subscriber must not break the mutation or other subscribers.
        }
      }
    }
  }

  /**
   * Runs one mutation. Without a file it is applied at once. With one it joins the next write:
   * all mutations queued while a write runs are run in order against one set of layers (each
   * in its own sub-layer, so one that throws leaves the others), written together, and applied
   * and published only when that write succeeded; when it fails, every one of them fails.
   */
  private mutate<T>(body: (d: Draft) => Outcome<T>): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('catalog store is closed'));
    if (!this.path) {
      try {
        const d = layersOver(this.t);
        const out = body(d);
        applyLayers(d, this.t);
        this.emit(out.changes);
        return Promise.resolve(out.result);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ body, resolve: resolve as (v: unknown) => void, reject });
      // A microtask later, so that mutations started together share the first write too.
      this.flushing ??= Promise.resolve().then(() => this.flush(this.path!));
    });
  }

  private async flush(path: string): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue;
      this.queue = [];
      const d = layersOver(this.t);
      const done: [Pending, Outcome<unknown>][] = [];
      for (const item of batch) {
        const sub = layersOver<Tables>(d);
        try {
          const out = item.body(sub);
          applyLayers(sub, d);
          done.push([item, out]);
        } catch (err) {
          item.reject(err);
        }
      }
      if (!done.length) continue;
      try {
        await this.writeFile(path, MemoryStore.serialize(d));
      } catch (err) {
        for (const [item] of done) item.reject(err);
        continue;
      }
      applyLayers(d, this.t);
      for (const [, out] of done) this.emit(out.changes);
      for (const [item, out] of done) item.resolve(out.result);
    }
    this.flushing = null;
  }

  private readonly regionExists = (c: string): boolean => this.regions.has(c);

  async snapshot(): Promise<CatalogSnapshot> {
    if (this.closed) throw new StoreUnavailableError('catalog store is closed');
    const t = this.t;
    return structuredClone({
      orgs: [...t.orgs.values()],
      apps: [...t.apps.values()],
      machines: [...t.machines.values()],
      flycast: [...t.flycast.values()],
      peers: [...t.peers.values()],
      hosts: [...t.hosts.values()],
    });
  }

  createOrg(input: Org): Promise<Org> {
    return this.mutate((d) => {
      const org = validateOrg(input, (n) => d.orgs.get(n), (id) => [...d.orgs.values()].find((o) => o.network_id === id));
      d.orgs.set(org.name, org);
      return { result: structuredClone(org), changes: [{ kind: 'org', op: 'put', key: org.name, value: org, at: this.now() }] };
    });
  }

  deleteOrg(name: string): Promise<void> {
    return this.mutate((d) => {
      if (!d.orgs.has(name)) throw new NotFoundError(`org ${name} not found`);
      assertOrgUnused(name, d.apps.values(), d.peers.values(), d.flycast.values());
      d.orgs.delete(name);
      d.flycastSeq.delete(name);
      d.peerSeq.delete(name);
      for (const id of tokensOfOrg(name, d.tokens.values())) d.tokens.delete(id);
      return { result: undefined, changes: [{ kind: 'org', op: 'del', key: name, at: this.now() }] };
    });
  }

  createApp(input: AppInput): Promise<App> {
    return this.mutate((d) => {
      const app = validateApp(input, (n) => d.apps.get(n), (n) => d.orgs.get(n), this.regionExists);
      d.apps.set(app.name, app);
      return { result: structuredClone(app), changes: [{ kind: 'app', op: 'put', key: app.name, value: app, at: this.now() }] };
    });
  }

  updateAppServices(name: string, services: Service[], opts: AppServicesOptions = {}): Promise<App> {
    return this.mutate((d) => {
      const app = d.apps.get(name);
      if (!app) throw new NotFoundError(`app ${name} not found`);
      const next: App = withServices(app, services, opts, this.regionExists);
      d.apps.set(name, next);
      return { result: structuredClone(next), changes: [{ kind: 'app', op: 'put', key: name, value: next, at: this.now() }] };
    });
  }

  deleteApp(name: string): Promise<void> {
    return this.mutate((d) => {
      if (!d.apps.has(name)) throw new NotFoundError(`app ${name} not found`);
      const at = this.now();
      const changes: CatalogChange[] = [];
      for (const m of [...d.machines.values()]) {
        if (m.app !== name) continue;
        d.machines.delete(m.id);
        d.owners.delete(m.address);
        changes.push({ kind: 'machine', op: 'del', key: m.id, at });
      }
      for (const f of [...d.flycast.values()]) {
        if (f.app !== name) continue;
        d.flycast.delete(f.address);
        d.owners.delete(f.address);
        changes.push({ kind: 'flycast', op: 'del', key: f.address, at });
      }
      d.apps.delete(name);
      changes.push({ kind: 'app', op: 'del', key: name, at });
      return { result: undefined, changes };
    });
  }

  registerMachine(input: MachineInput, opts: AllocationOptions): Promise<Machine> {
    return this.mutate((d) => {
      const machine = buildMachine(
        input,
        opts.hostId,
        {
          appByName: (n) => d.apps.get(n),
          orgByName: (n) => d.orgs.get(n),
          machineById: (id) => d.machines.get(id),
          addressOwner: (a) => d.owners.get(a),
          regionExists: this.regionExists,
          hostByName: (n) => d.hosts.get(n),
        },
        this.now(),
        () => {
          let id = randomMachineId();
          while (d.machines.has(id) || rejectedMachine(d, id)) id = randomMachineId();
          return id;
        },
      );
      const bad = rejectedMachine(d, machine.id);
      if (bad) throw new ConflictError(`machine ${machine.id} already exists in the catalog file but is invalid (${bad[1].reason}); remove it first`);
      d.machines.set(machine.id, machine);
      d.owners.set(machine.address, `machine ${machine.id}`);
      return { result: structuredClone(machine), changes: [{ kind: 'machine', op: 'put', key: machine.id, value: machine, at: machine.created_at }] };
    });
  }

  updateMachine(id: string, patch: MachinePatch, opts?: MachineUpdateOptions): Promise<Machine> {
    return this.mutate((d) => {
      const machine = d.machines.get(id);
      if (!machine) throw new NotFoundError(`machine ${id} not found`);
      const next = applyMachinePatch(machine, patch, this.now(), this.regionExists, opts);
      d.machines.set(id, next);
      return { result: structuredClone(next), changes: [{ kind: 'machine', op: 'put', key: id, value: next, at: next.updated_at }] };
    });
  }

  removeMachine(id: string): Promise<void> {
    return this.mutate((d) => {
      const machine = d.machines.get(id);
      const bad = machine ? undefined : rejectedMachine(d, id);
      // A machine skipped at load was never published: removing it is a file change only.
      if (bad) {
        d.rejected.delete(bad[0]);
        return { result: undefined, changes: [] };
      }
      if (!machine) throw new NotFoundError(`machine ${id} not found`);
      d.machines.delete(id);
      d.owners.delete(machine.address);
      return { result: undefined, changes: [{ kind: 'machine', op: 'del', key: id, at: this.now() }] };
    });
  }

  allocateFlycast(appName: string, orgName?: string): Promise<FlycastIp> {
    return this.mutate((d) => {
      const app = d.apps.get(appName);
      if (!app) throw new NotFoundError(`app ${appName} not found`);
      const org = d.orgs.get(orgName ?? app.org);
      if (!org) throw new NotFoundError(`org ${orgName} not found`);
      let seq = d.flycastSeq.get(org.name) ?? FIRST_FLYCAST_SEQUENCE - 1;
      let ip: FlycastIp;
      do {
        seq += 1;
        ip = buildFlycast(app, org, seq, this.now());
      } while (d.owners.has(ip.address));
      d.flycastSeq.set(org.name, seq);
      d.flycast.set(ip.address, ip);
      d.owners.set(ip.address, `flycast ip of ${app.name}`);
      return { result: structuredClone(ip), changes: [{ kind: 'flycast', op: 'put', key: ip.address, value: ip, at: ip.created_at }] };
    });
  }

  releaseFlycast(address: string, orgName?: string): Promise<void> {
    return this.mutate((d) => {
      const norm = validateRelease(address, orgName, (a) => d.flycast.get(a));
      d.flycast.delete(norm);
      d.owners.delete(norm);
      return { result: undefined, changes: [{ kind: 'flycast', op: 'del', key: norm, at: this.now() }] };
    });
  }

  createPeer(input: PeerInput, opts: PeerOptions): Promise<Peer> {
    return this.mutate((d) => {
      const { peer: valid, org } = validatePeerInput(input, {
        orgByName: (n) => d.orgs.get(n),
        peerByKey: (o, n) => d.peers.get(peerKey(o, n)),
        addressOwner: (a) => d.owners.get(a),
        regionExists: this.regionExists,
      });
      let seq = d.peerSeq.get(org.name) ?? 0;
      let peer: Peer;
      do {
        seq += 1;
        peer = buildPeer(valid, org, opts.gatewayHostId, seq, this.now());
      } while (d.owners.has(peer.address));
      d.peerSeq.set(org.name, seq);
      const key = peerKey(peer.org, peer.name);
      d.peers.set(key, peer);
      d.owners.set(peer.address, `peer ${key}`);
      return { result: structuredClone(peer), changes: [{ kind: 'peer', op: 'put', key, value: peer, at: peer.created_at }] };
    });
  }

  removePeer(org: string, name: string): Promise<void> {
    return this.mutate((d) => {
      const key = peerKey(org, name);
      const peer = d.peers.get(key);
      if (!peer) throw new NotFoundError(`wireguard peer ${name} not found in org ${org}`);
      d.peers.delete(key);
      d.owners.delete(peer.address);
      return { result: undefined, changes: [{ kind: 'peer', op: 'del', key, at: this.now() }] };
    });
  }

  registerHost(input: HostInput, opts: HostOptions): Promise<Host> {
    return this.mutate((d) => {
      const name = (input as { name?: unknown }).name;
      const bad = typeof name === 'string' ? rejectedHost(d, name) : undefined;
      if (bad) throw new ConflictError(`host ${name} already exists in the catalog file but is invalid (${bad[1].reason}); fix the entry, or remove the host first`);
      const host = buildHost(
        input,
        {
          hostByName: (n) => d.hosts.get(n),
          hostNameById: (id) => hostNameById(d, id),
          regionExists: this.regionExists,
          machinesOnHost: (n) => {
            let count = 0;
            for (const m of d.machines.values()) if (m.host === n) count++;
            return count;
          },
        },
        opts,
        this.now(),
        () => randomHostId(),
      );
      d.hosts.set(host.name, host);
      return { result: structuredClone(host), changes: [{ kind: 'host', op: 'put', key: host.name, value: host, at: host.updated_at }] };
    });
  }

  updateHost(name: string, patch: HostPatch, opts?: HostUpdateOptions): Promise<Host> {
    return this.mutate((d) => {
      const host = d.hosts.get(name);
      if (!host) throw new NotFoundError(`host ${name} not found`);
      const next = applyHostPatch(host, patch, this.now(), opts);
      d.hosts.set(name, next);
      return { result: structuredClone(next), changes: [{ kind: 'host', op: 'put', key: name, value: next, at: next.updated_at }] };
    });
  }

  removeHost(name: string): Promise<void> {
    return this.mutate((d) => {
      const bad = d.hosts.has(name) ? undefined : rejectedHost(d, name);
      if (!bad && !d.hosts.has(name)) throw new NotFoundError(`host ${name} not found`);
      assertHostUnused(name, d.machines.values());
      // A host skipped at load was never published: removing it is a file change only.
      if (bad) {
        d.rejected.delete(bad[0]);
        return { result: undefined, changes: [] };
      }
      d.hosts.delete(name);
      return { result: undefined, changes: [{ kind: 'host', op: 'del', key: name, at: this.now() }] };
    });
  }

  createToken(input: Token): Promise<Token> {
    return this.mutate((d) => {
      const { token, prune } = validateToken(input, { orgByName: (n) => d.orgs.get(n), tokens: () => d.tokens.values() }, this.now());
      for (const id of prune) d.tokens.delete(id);
      d.tokens.set(token.id, token);
      return { result: structuredClone(token), changes: [] };
    });
  }

  async getToken(id: string): Promise<Token | undefined> {
    if (this.closed) throw new StoreUnavailableError('catalog store is closed');
    const t = this.t.tokens.get(id);
    return t && structuredClone(t);
  }

  async listTokens(): Promise<Token[]> {
    if (this.closed) throw new StoreUnavailableError('catalog store is closed');
    const now = this.now();
    return structuredClone([...this.t.tokens.values()].filter((t) => t.expires_at > now).sort((a, b) => a.created_at - b.created_at));
  }

  revokeToken(id: string): Promise<void> {
    return this.mutate((d) => {
      if (!d.tokens.delete(id)) throw new NotFoundError(`token ${id} not found`);
      return { result: undefined, changes: [] };
    });
  }

  revokeTokens(kind: TokenKind): Promise<number> {
    return this.mutate((d) => {
      let n = 0;
      for (const t of [...d.tokens.values()]) if (t.kind === kind && d.tokens.delete(t.id)) n++;
      return { result: n, changes: [] };
    });
  }

  subscribe(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flushing;
    this.closed = true;
    this.listeners.clear();
  }
}

/**
 * The embedded store: the catalog in memory, optionally persisted to one JSON file.
 *
 * Every mutation runs synchronously on the one JS thread (so it is atomic), then waits for the
 * file to be written with write-to-temp, fsync and rename: a crash leaves the old or the new
 * file, never half of one. Mutations arriving together share one write. A file that exists but
 * cannot be read as a catalog stops start-up with an error naming it: it is never silently
 * replaced by an empty catalog.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { NotFoundError, StoreUnavailableError } from '../errors.js';
import {
  applyHostPatch,
  applyMachinePatch,
  assertHostUnused,
  assertOrgUnused,
  buildFlycast,
  buildHost,
  buildMachine,
  buildPeer,
  FIRST_FLYCAST_SEQUENCE,
  randomHostId,
  randomMachineId,
  validateApp,
  validateOrg,
  validatePeerInput,
  validateRelease,
  validateServices,
} from './rules.js';
import type { AllocationOptions, CatalogStore, HostOptions, HostUpdateOptions, MachineUpdateOptions, PeerOptions, StoreListener } from './store.js';
import {
  appSchema,
  flycastIpSchema,
  hostSchema,
  machineSchema,
  orgSchema,
  peerKey,
  peerSchema,
  type App,
  type AppInput,
  type CatalogChange,
  type CatalogSnapshot,
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
} from './types.js';
import { z } from 'zod';

const fileSchema = z
  .object({
    format: z.literal('sixpn-catalog/1'),
    orgs: z.array(orgSchema),
    apps: z.array(appSchema),
    machines: z.array(machineSchema),
    flycast: z.array(flycastIpSchema),
    peers: z.array(peerSchema),
    /** Absent in files written before hosts existed. */
    hosts: z.array(hostSchema).default([]),
    sequences: z.object({ flycast: z.record(z.number().int()), peer: z.record(z.number().int()) }),
  })
  .strict();

export interface MemoryStoreOptions {
  /** Persist to this JSON file; absent: memory only (tests, `sixpn proxy` with inline seed). */
  path?: string;
  /** Region codes machines and peers may name. */
  regions: Iterable<string>;
  now?: () => number;
}

export class MemoryStore implements CatalogStore {
  readonly kind = 'embedded' as const;
  private readonly orgs = new Map<string, Org>();
  private readonly apps = new Map<string, App>();
  private readonly machines = new Map<string, Machine>();
  private readonly flycast = new Map<string, FlycastIp>();
  private readonly peers = new Map<string, Peer>();
  private readonly hosts = new Map<string, Host>();
  /** address -> who holds it, across machines, peers and Flycast. */
  private readonly owners = new Map<string, string>();
  private readonly flycastSeq = new Map<string, number>();
  private readonly peerSeq = new Map<string, number>();
  private readonly listeners = new Set<StoreListener>();
  private readonly regions: Set<string>;
  private readonly now: () => number;
  private readonly path: string | undefined;
  private lastWrite: Promise<void> | null = null;
  private queuedWrite: Promise<void> | null = null;
  private closed = false;

  private constructor(opts: MemoryStoreOptions) {
    this.regions = new Set(opts.regions);
    this.now = opts.now ?? Date.now;
    this.path = opts.path;
  }

  /** Opens (and loads, when the file exists) an embedded store. */
  static async open(opts: MemoryStoreOptions): Promise<MemoryStore> {
    const store = new MemoryStore(opts);
    if (opts.path) await store.load(opts.path);
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
    for (const o of data.orgs) this.orgs.set(o.name, o);
    for (const a of data.apps) this.apps.set(a.name, a);
    for (const m of data.machines) {
      this.machines.set(m.id, m);
      this.owners.set(m.address, `machine ${m.id}`);
    }
    for (const f of data.flycast) {
      this.flycast.set(f.address, f);
      this.owners.set(f.address, `flycast ip of ${f.app}`);
    }
    for (const p of data.peers) {
      this.peers.set(peerKey(p.org, p.name), p);
      this.owners.set(p.address, `peer ${p.org}/${p.name}`);
    }
    for (const h of data.hosts) this.hosts.set(h.name, h);
    for (const [k, v] of Object.entries(data.sequences.flycast)) this.flycastSeq.set(k, v);
    for (const [k, v] of Object.entries(data.sequences.peer)) this.peerSeq.set(k, v);
  }

  private serialize(): string {
    return JSON.stringify({
      format: 'sixpn-catalog/1',
      orgs: [...this.orgs.values()],
      apps: [...this.apps.values()],
      machines: [...this.machines.values()],
      flycast: [...this.flycast.values()],
      peers: [...this.peers.values()],
      hosts: [...this.hosts.values()],
      sequences: { flycast: Object.fromEntries(this.flycastSeq), peer: Object.fromEntries(this.peerSeq) },
    });
  }

  /**
   * At most one write runs and at most one waits behind it; every mutation made before the
   * waiting write starts joins it, so a burst of changes costs two writes, not one each.
   */
  private persist(): Promise<void> {
    if (!this.path) return Promise.resolve();
    if (this.queuedWrite) return this.queuedWrite;
    const run = (this.lastWrite ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => {
        this.queuedWrite = null;
        return this.writeFile(this.path!);
      });
    this.queuedWrite = run;
    this.lastWrite = run;
    return run;
  }

  private async writeFile(path: string): Promise<void> {
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await mkdir(dirname(path), { recursive: true });
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(this.serialize());
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (err) {
      throw new StoreUnavailableError(`cannot write catalog file ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  private emit(change: CatalogChange): void {
    for (const l of this.listeners) {
      try {
        l(change);
      } catch {
        // A failing subscriber must not break the mutation or other subscribers.
      }
    }
  }

  private async commit(changes: CatalogChange[]): Promise<void> {
    for (const c of changes) this.emit(c);
    await this.persist();
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('catalog store is closed');
  }

  private readonly regionExists = (c: string): boolean => this.regions.has(c);

  async snapshot(): Promise<CatalogSnapshot> {
    this.assertOpen();
    return structuredClone({
      orgs: [...this.orgs.values()],
      apps: [...this.apps.values()],
      machines: [...this.machines.values()],
      flycast: [...this.flycast.values()],
      peers: [...this.peers.values()],
      hosts: [...this.hosts.values()],
    });
  }

  async createOrg(input: Org): Promise<Org> {
    this.assertOpen();
    const org = validateOrg(input, (n) => this.orgs.get(n), (id) => [...this.orgs.values()].find((o) => o.network_id === id));
    this.orgs.set(org.name, org);
    await this.commit([{ kind: 'org', op: 'put', key: org.name, value: org, at: this.now() }]);
    return structuredClone(org);
  }

  async deleteOrg(name: string): Promise<void> {
    this.assertOpen();
    if (!this.orgs.has(name)) throw new NotFoundError(`org ${name} not found`);
    assertOrgUnused(name, this.apps.values(), this.peers.values(), this.flycast.values());
    this.orgs.delete(name);
    this.flycastSeq.delete(name);
    this.peerSeq.delete(name);
    await this.commit([{ kind: 'org', op: 'del', key: name, at: this.now() }]);
  }

  async createApp(input: AppInput): Promise<App> {
    this.assertOpen();
    const app = validateApp(input, (n) => this.apps.get(n), (n) => this.orgs.get(n));
    this.apps.set(app.name, app);
    await this.commit([{ kind: 'app', op: 'put', key: app.name, value: app, at: this.now() }]);
    return structuredClone(app);
  }

  async updateAppServices(name: string, services: Service[]): Promise<App> {
    this.assertOpen();
    const app = this.apps.get(name);
    if (!app) throw new NotFoundError(`app ${name} not found`);
    const next: App = { ...app, services: validateServices(services) };
    this.apps.set(name, next);
    await this.commit([{ kind: 'app', op: 'put', key: name, value: next, at: this.now() }]);
    return structuredClone(next);
  }

  async deleteApp(name: string): Promise<void> {
    this.assertOpen();
    if (!this.apps.has(name)) throw new NotFoundError(`app ${name} not found`);
    const at = this.now();
    const changes: CatalogChange[] = [];
    for (const m of [...this.machines.values()]) {
      if (m.app !== name) continue;
      this.machines.delete(m.id);
      this.owners.delete(m.address);
      changes.push({ kind: 'machine', op: 'del', key: m.id, at });
    }
    for (const f of [...this.flycast.values()]) {
      if (f.app !== name) continue;
      this.flycast.delete(f.address);
      this.owners.delete(f.address);
      changes.push({ kind: 'flycast', op: 'del', key: f.address, at });
    }
    this.apps.delete(name);
    changes.push({ kind: 'app', op: 'del', key: name, at });
    await this.commit(changes);
  }

  async registerMachine(input: MachineInput, opts: AllocationOptions): Promise<Machine> {
    this.assertOpen();
    const machine = buildMachine(
      input,
      opts.hostId,
      {
        appByName: (n) => this.apps.get(n),
        orgByName: (n) => this.orgs.get(n),
        machineById: (id) => this.machines.get(id),
        addressOwner: (a) => this.owners.get(a),
        regionExists: this.regionExists,
        hostByName: (n) => this.hosts.get(n),
      },
      this.now(),
      () => {
        let id = randomMachineId();
        while (this.machines.has(id)) id = randomMachineId();
        return id;
      },
    );
    this.machines.set(machine.id, machine);
    this.owners.set(machine.address, `machine ${machine.id}`);
    await this.commit([{ kind: 'machine', op: 'put', key: machine.id, value: machine, at: machine.created_at }]);
    return structuredClone(machine);
  }

  async updateMachine(id: string, patch: MachinePatch, opts?: MachineUpdateOptions): Promise<Machine> {
    this.assertOpen();
    const machine = this.machines.get(id);
    if (!machine) throw new NotFoundError(`machine ${id} not found`);
    const next = applyMachinePatch(machine, patch, this.now(), this.regionExists, opts);
    this.machines.set(id, next);
    await this.commit([{ kind: 'machine', op: 'put', key: id, value: next, at: next.updated_at }]);
    return structuredClone(next);
  }

  async removeMachine(id: string): Promise<void> {
    this.assertOpen();
    const machine = this.machines.get(id);
    if (!machine) throw new NotFoundError(`machine ${id} not found`);
    this.machines.delete(id);
    this.owners.delete(machine.address);
    await this.commit([{ kind: 'machine', op: 'del', key: id, at: this.now() }]);
  }

  async allocateFlycast(appName: string, orgName?: string): Promise<FlycastIp> {
    this.assertOpen();
    const app = this.apps.get(appName);
    if (!app) throw new NotFoundError(`app ${appName} not found`);
    const org = this.orgs.get(orgName ?? app.org);
    if (!org) throw new NotFoundError(`org ${orgName} not found`);
    let seq = this.flycastSeq.get(org.name) ?? FIRST_FLYCAST_SEQUENCE - 1;
    let ip: FlycastIp;
    do {
      seq += 1;
      ip = buildFlycast(app, org, seq, this.now());
    } while (this.owners.has(ip.address));
    this.flycastSeq.set(org.name, seq);
    this.flycast.set(ip.address, ip);
    this.owners.set(ip.address, `flycast ip of ${app.name}`);
    await this.commit([{ kind: 'flycast', op: 'put', key: ip.address, value: ip, at: ip.created_at }]);
    return structuredClone(ip);
  }

  async releaseFlycast(address: string, orgName?: string): Promise<void> {
    this.assertOpen();
    const norm = validateRelease(address, orgName, (a) => this.flycast.get(a));
    this.flycast.delete(norm);
    this.owners.delete(norm);
    await this.commit([{ kind: 'flycast', op: 'del', key: norm, at: this.now() }]);
  }

  async createPeer(input: PeerInput, opts: PeerOptions): Promise<Peer> {
    this.assertOpen();
    const { peer: valid, org } = validatePeerInput(input, {
      orgByName: (n) => this.orgs.get(n),
      peerByKey: (o, n) => this.peers.get(peerKey(o, n)),
      addressOwner: (a) => this.owners.get(a),
      regionExists: this.regionExists,
    });
    let seq = this.peerSeq.get(org.name) ?? 0;
    let peer: Peer;
    do {
      seq += 1;
      peer = buildPeer(valid, org, opts.gatewayHostId, seq, this.now());
    } while (this.owners.has(peer.address));
    this.peerSeq.set(org.name, seq);
    const key = peerKey(peer.org, peer.name);
    this.peers.set(key, peer);
    this.owners.set(peer.address, `peer ${key}`);
    await this.commit([{ kind: 'peer', op: 'put', key, value: peer, at: peer.created_at }]);
    return structuredClone(peer);
  }

  async removePeer(org: string, name: string): Promise<void> {
    this.assertOpen();
    const key = peerKey(org, name);
    const peer = this.peers.get(key);
    if (!peer) throw new NotFoundError(`wireguard peer ${name} not found in org ${org}`);
    this.peers.delete(key);
    this.owners.delete(peer.address);
    await this.commit([{ kind: 'peer', op: 'del', key, at: this.now() }]);
  }

  async registerHost(input: HostInput, opts: HostOptions): Promise<Host> {
    this.assertOpen();
    const host = buildHost(
      input,
      {
        hostByName: (n) => this.hosts.get(n),
        hostNameById: (id) => [...this.hosts.values()].find((h) => h.host_id === id)?.name,
        regionExists: this.regionExists,
        machinesOnHost: (n) => [...this.machines.values()].filter((m) => m.host === n).length,
      },
      opts,
      this.now(),
      () => randomHostId(),
    );
    this.hosts.set(host.name, host);
    await this.commit([{ kind: 'host', op: 'put', key: host.name, value: host, at: host.updated_at }]);
    return structuredClone(host);
  }

  async updateHost(name: string, patch: HostPatch, opts?: HostUpdateOptions): Promise<Host> {
    this.assertOpen();
    const host = this.hosts.get(name);
    if (!host) throw new NotFoundError(`host ${name} not found`);
    const next = applyHostPatch(host, patch, this.now(), opts);
    this.hosts.set(name, next);
    await this.commit([{ kind: 'host', op: 'put', key: name, value: next, at: next.updated_at }]);
    return structuredClone(next);
  }

  async removeHost(name: string): Promise<void> {
    this.assertOpen();
    if (!this.hosts.has(name)) throw new NotFoundError(`host ${name} not found`);
    assertHostUnused(name, this.machines.values());
    this.hosts.delete(name);
    await this.commit([{ kind: 'host', op: 'del', key: name, at: this.now() }]);
  }

  subscribe(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.lastWrite?.catch(() => undefined);
    this.closed = true;
    this.listeners.clear();
  }
}

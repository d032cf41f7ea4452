/**
 * Every catalog operation, written once over the transaction interface of ./tx.ts, and the base
 * class both stores extend: a store supplies `transact` (how one transaction runs and commits),
 * `snapshot`, `subscribe` and `close`; the operations, with their rules (./rules.ts), are here.
 *
 * A fenced store (`setFence(id)`, set by the node's guard, ./guard.ts) checks in every write that
 * the store still holds the catalog of that identity, so a node never writes into a store that
 * came back empty or holds another catalog: it fails with CatalogDivergedError instead.
 */
import { randomUUID } from 'node:crypto';
import { CatalogDivergedError, ConflictError, NotFoundError } from '../errors.js';
import type { CatalogDocument, DocumentEntries } from './document.js';
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
  parseOrThrow,
  tokensOfOrg,
  validateApp,
  validateOrg,
  validatePeerInput,
  validateRelease,
  withServices,
  type AppServicesOptions,
  validateToken,
  type StoredKind,
} from './rules.js';
import type { AllocationOptions, CatalogBackend, HostOptions, HostUpdateOptions, MachineUpdateOptions, PeerOptions, StoreListener } from './store.js';
import { ENTITY_TABLES, type StoreTx, type Table, type TableValues } from './tx.js';
import {
  catalogIdentitySchema,
  nodeEntrySchema,
  peerKey,
  type App,
  type AppInput,
  type CatalogChange,
  type CatalogIdentity,
  type CatalogSnapshot,
  type EntityKind,
  type FlycastIp,
  type Host,
  type HostInput,
  type HostPatch,
  type Machine,
  type MachineInput,
  type MachinePatch,
  type NodeEntry,
  type Org,
  type Peer,
  type PeerInput,
  type Service,
  type Token,
  type TokenKind,
} from './types.js';

export interface TxOptions {
  /** Reads only: nothing is committed (the Redis store commits nothing, the embedded one runs at once). */
  readOnly?: boolean;
  /** Read-only but as one consistent cut (the Redis store checks every read at the end). */
  consistent?: boolean;
  /** Not checked against the fence: identity operations and reads. */
  unfenced?: boolean;
}

/** What the operations need from the store besides the transaction. */
interface OpsContext {
  regionExists(code: string): boolean;
  /** Where invalid entries live, for messages: "the catalog file", "Redis". */
  storedIn: string;
}

/** Node entries silent for this long are dropped when a node heartbeats (a node renamed or retired). */
const NODE_FORGET_MS = 24 * 60 * 60 * 1000;

function putEntity<K extends EntityKind>(tx: StoreTx, kind: K, key: string, value: TableValues[K]): void {
  tx.set(kind, key, value);
  tx.change({ kind, op: 'put', key, value, at: tx.now } as CatalogChange);
}

function delEntity(tx: StoreTx, kind: EntityKind, key: string): void {
  tx.del(kind, key);
  tx.change({ kind, op: 'del', key, at: tx.now });
}

/** The identity the store holds, or null (an empty store, or one written before identities). */
export function readIdentity(tx: StoreTx): CatalogIdentity | null {
  return parseIdentity(tx.get('meta', 'identity'));
}

/** A stored identity's JSON, or null when absent or unusable (which a node treats as "no identity"). */
export function parseIdentity(raw: string | null | undefined): CatalogIdentity | null {
  if (raw === undefined || raw === null) return null;
  try {
    const r = catalogIdentitySchema.safeParse(JSON.parse(raw));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export const newIdentity = (now: number): CatalogIdentity => ({ id: randomUUID(), created_at: now });

/** The indexes an entity takes (address owners, network ids, host ids). */
function index(tx: StoreTx, kind: StoredKind, v: unknown): void {
  const e = v as Record<string, unknown>;
  if (kind === 'org') tx.set('networkIds', String(e.network_id), String(e.name));
  else if (kind === 'machine') tx.set('owners', String(e.address), `machine ${String(e.id)}`);
  else if (kind === 'flycast') tx.set('owners', String(e.address), `flycast ip of ${String(e.app)}`);
  else if (kind === 'peer') tx.set('owners', String(e.address), `peer ${String(e.org)}/${String(e.name)}`);
  else if (kind === 'host') tx.set('hostIds', String(e.host_id), String(e.name));
}

/** The tables a document fills: everything but node liveness and the identity. */
const CONTENT_TABLES: readonly Table[] = ['org', 'app', 'machine', 'flycast', 'peer', 'host', 'token', 'owners', 'networkIds', 'hostIds', 'flycastSeq', 'peerSeq'];

/**
 * Loads a document into the tables: valid entries with their indexes, invalid ones kept as they
 * are (and a skipped host keeps its host id, which its machines' addresses may be made of).
 */
export function loadEntries(tx: StoreTx, doc: DocumentEntries): void {
  for (const kind of ENTITY_TABLES) {
    for (const v of doc.valid[kind] ?? []) {
      tx.set(kind, keyOf(kind, v), v as never);
      index(tx, kind, v);
    }
  }
  for (const bad of doc.invalid) {
    tx.keepInvalid(bad);
    const id = (bad.raw as { host_id?: unknown } | null)?.host_id;
    if (bad.kind === 'host' && typeof id === 'number' && tx.get('hostIds', String(id)) === undefined) tx.set('hostIds', String(id), bad.key);
  }
  for (const [org, n] of Object.entries(doc.sequences.flycast)) tx.set('flycastSeq', org, n);
  for (const [org, n] of Object.entries(doc.sequences.peer)) tx.set('peerSeq', org, n);
}

function keyOf(kind: StoredKind, v: unknown): string {
  const e = v as Record<string, string>;
  if (kind === 'machine' || kind === 'token') return e.id!;
  if (kind === 'flycast') return e.address!;
  if (kind === 'peer') return peerKey(e.org!, e.name!);
  return e.name!;
}

/** Everything a document holds, read through a transaction (entries sorted by key, so two exports of one catalog are equal). */
export function readEntries(tx: StoreTx): DocumentEntries {
  const byKey = <T>(kind: StoredKind) => (a: T, b: T) => (keyOf(kind, a) < keyOf(kind, b) ? -1 : keyOf(kind, a) > keyOf(kind, b) ? 1 : 0);
  const valid: DocumentEntries['valid'] = {};
  const invalid: DocumentEntries['invalid'] = [];
  for (const kind of ENTITY_TABLES) {
    if (kind === 'node') continue;
    valid[kind] = (tx.all(kind) as unknown[]).sort(byKey(kind)) as never;
    invalid.push(...tx.invalidEntries(kind).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)));
  }
  return { valid, invalid, sequences: readSequences(tx) };
}

function readSequences(tx: StoreTx): DocumentEntries['sequences'] {
  const seq = (t: 'flycastSeq' | 'peerSeq') => Object.fromEntries(tx.entries(t).sort(([a], [b]) => (a < b ? -1 : 1)));
  return { flycast: seq('flycastSeq'), peer: seq('peerSeq') };
}

/**
 * The store interface implemented once: each method is one transaction. Subclasses provide the
 * transaction engine and change delivery.
 */
export abstract class TransactionalStore implements CatalogBackend {
  abstract readonly kind: 'embedded' | 'redis';
  protected readonly ops: OpsContext;
  /** The identity every write must still find in the store (null: unfenced). */
  private fence: string | null = null;

  protected constructor(regions: Iterable<string>, storedIn: string) {
    const set = new Set(regions);
    this.ops = { regionExists: (c) => set.has(c), storedIn };
  }

  /** Runs `body` as one transaction: all its writes and changes commit together, or none. */
  protected abstract transact<T>(what: string, body: (tx: StoreTx) => T, opts?: TxOptions): Promise<T>;
  abstract snapshot(): Promise<CatalogSnapshot>;
  abstract subscribe(listener: StoreListener): () => void;
  abstract close(): Promise<void>;

  /** From now on every write requires the store to hold the catalog of identity `id` (null: no check). */
  setFence(id: string | null): void {
    this.fence = id;
  }

  /** A write: fenced, unless told otherwise. */
  private write<T>(what: string, body: (tx: StoreTx) => T, opts: TxOptions = {}): Promise<T> {
    const fence = opts.unfenced ? null : this.fence;
    return this.transact(
      what,
      (tx) => {
        if (fence !== null) {
          const held = readIdentity(tx);
          if (held?.id !== fence) throw new CatalogDivergedError(`the catalog store no longer holds catalog ${fence} (${held ? `it holds catalog ${held.id}` : 'it holds no catalog identity'}): ${what} refused`);
        }
        return body(tx);
      },
      opts,
    );
  }

  private read<T>(what: string, body: (tx: StoreTx) => T, consistent = false): Promise<T> {
    return this.transact(what, body, { readOnly: true, consistent, unfenced: true });
  }

  createOrg(input: Org): Promise<Org> {
    return this.write('create org', (tx) => {
      const org = validateOrg(
        input,
        (n) => tx.get('org', n),
        (id) => {
          const name = tx.get('networkIds', String(id));
          return name === undefined ? undefined : { name, network_id: id };
        },
      );
      putEntity(tx, 'org', org.name, org);
      index(tx, 'org', org);
      return org;
    });
  }

  deleteOrg(name: string): Promise<void> {
    return this.write('delete org', (tx) => {
      const org = tx.get('org', name);
      if (!org) throw new NotFoundError(`org ${name} not found`);
      assertOrgUnused(name, tx.all('app'), tx.all('peer'), tx.all('flycast'));
      delEntity(tx, 'org', name);
      for (const id of tokensOfOrg(name, tx.all('token'))) tx.del('token', id);
      tx.del('networkIds', String(org.network_id));
      tx.del('flycastSeq', name);
      tx.del('peerSeq', name);
    });
  }

  createApp(input: AppInput): Promise<App> {
    return this.write('create app', (tx) => {
      const app = validateApp(input, (n) => tx.get('app', n), (n) => tx.get('org', n), this.ops.regionExists);
      putEntity(tx, 'app', app.name, app);
      return app;
    });
  }

  updateAppServices(name: string, services: Service[], opts: AppServicesOptions = {}): Promise<App> {
    return this.write('update app services', (tx) => {
      const app = tx.get('app', name);
      if (!app) throw new NotFoundError(`app ${name} not found`);
      const next: App = withServices(app, services, opts, this.ops.regionExists);
      putEntity(tx, 'app', name, next);
      return next;
    });
  }

  deleteApp(name: string): Promise<void> {
    return this.write('delete app', (tx) => {
      if (!tx.get('app', name)) throw new NotFoundError(`app ${name} not found`);
      for (const m of tx.all('machine')) {
        if (m.app !== name) continue;
        delEntity(tx, 'machine', m.id);
        tx.del('owners', m.address);
      }
      for (const f of tx.all('flycast')) {
        if (f.app !== name) continue;
        delEntity(tx, 'flycast', f.address);
        tx.del('owners', f.address);
      }
      delEntity(tx, 'app', name);
    });
  }

  registerMachine(input: MachineInput, opts: AllocationOptions): Promise<Machine> {
    return this.write('register machine', (tx) => {
      const machine = buildMachine(
        input,
        opts.hostId,
        {
          appByName: (n) => tx.get('app', n),
          orgByName: (n) => tx.get('org', n),
          machineById: (id) => tx.get('machine', id),
          addressOwner: (a) => tx.get('owners', a),
          regionExists: this.ops.regionExists,
          hostByName: (n) => tx.get('host', n),
        },
        tx.now,
        () => {
          for (let i = 0; ; i++) {
            const id = tx.randomId(i);
            if (tx.get('machine', id) === undefined && !tx.invalid('machine', id)) return id;
          }
        },
      );
      const bad = tx.invalid('machine', machine.id);
      if (bad) throw new ConflictError(`machine ${machine.id} already exists in ${this.ops.storedIn} but is invalid (${bad.reason}); remove it first`);
      putEntity(tx, 'machine', machine.id, machine);
      index(tx, 'machine', machine);
      return machine;
    });
  }

  updateMachine(id: string, patch: MachinePatch, opts?: MachineUpdateOptions): Promise<Machine> {
    return this.write('update machine', (tx) => {
      const machine = tx.get('machine', id);
      if (!machine) throw new NotFoundError(`machine ${id} not found`);
      const next = applyMachinePatch(machine, patch, tx.now, this.ops.regionExists, opts);
      putEntity(tx, 'machine', id, next);
      return next;
    });
  }

  removeMachine(id: string): Promise<void> {
    return this.write('remove machine', (tx) => {
      const machine = tx.get('machine', id);
      if (!machine) {
        // A machine skipped as invalid was never published: removing it changes the stored entry only.
        const bad = tx.invalid('machine', id);
        if (!bad) throw new NotFoundError(`machine ${id} not found`);
        tx.dropInvalid('machine', id);
        const address = (bad.raw as { address?: unknown } | null)?.address;
        if (typeof address === 'string' && tx.get('owners', address) === `machine ${id}`) tx.del('owners', address);
        return;
      }
      delEntity(tx, 'machine', id);
      tx.del('owners', machine.address);
    });
  }

  allocateFlycast(appName: string, orgName?: string): Promise<FlycastIp> {
    return this.write('allocate flycast ip', (tx) => {
      const app = tx.get('app', appName);
      if (!app) throw new NotFoundError(`app ${appName} not found`);
      const org = tx.get('org', orgName ?? app.org);
      if (!org) throw new NotFoundError(`org ${orgName ?? app.org} not found`);
      let ip: FlycastIp;
      do {
        ip = buildFlycast(app, org, tx.sequence('flycastSeq', org.name, FIRST_FLYCAST_SEQUENCE), tx.now);
      } while (tx.get('owners', ip.address) !== undefined);
      putEntity(tx, 'flycast', ip.address, ip);
      index(tx, 'flycast', ip);
      return ip;
    });
  }

  releaseFlycast(address: string, orgName?: string): Promise<void> {
    return this.write('release flycast ip', (tx) => {
      const norm = validateRelease(address, orgName, (a) => tx.get('flycast', a));
      delEntity(tx, 'flycast', norm);
      tx.del('owners', norm);
    });
  }

  createPeer(input: PeerInput, opts: PeerOptions): Promise<Peer> {
    return this.write('create wireguard peer', (tx) => {
      const { peer: valid, org } = validatePeerInput(input, {
        orgByName: (n) => tx.get('org', n),
        peerByKey: (o, n) => tx.get('peer', peerKey(o, n)),
        addressOwner: (a) => tx.get('owners', a),
        regionExists: this.ops.regionExists,
      });
      let peer: Peer;
      do {
        peer = buildPeer(valid, org, opts.gatewayHostId, tx.sequence('peerSeq', org.name, 1), tx.now);
      } while (tx.get('owners', peer.address) !== undefined);
      putEntity(tx, 'peer', peerKey(peer.org, peer.name), peer);
      index(tx, 'peer', peer);
      return peer;
    });
  }

  removePeer(org: string, name: string): Promise<void> {
    return this.write('remove wireguard peer', (tx) => {
      const key = peerKey(org, name);
      const peer = tx.get('peer', key);
      if (!peer) throw new NotFoundError(`wireguard peer ${name} not found in org ${org}`);
      delEntity(tx, 'peer', key);
      tx.del('owners', peer.address);
    });
  }

  createToken(input: Token): Promise<Token> {
    return this.write('create token', (tx) => {
      const { token, prune } = validateToken(input, { orgByName: (n) => tx.get('org', n), tokens: () => tx.all('token') }, tx.now);
      for (const id of prune) tx.del('token', id);
      tx.set('token', token.id, token);
      return token;
    });
  }

  getToken(id: string): Promise<Token | undefined> {
    return this.read('read token', (tx) => tx.get('token', id));
  }

  listTokens(): Promise<Token[]> {
    return this.read('list tokens', (tx) =>
      tx
        .all('token')
        .filter((t) => t.expires_at > tx.now)
        .sort((a, b) => a.created_at - b.created_at),
    );
  }

  revokeToken(id: string): Promise<void> {
    return this.write('revoke token', (tx) => {
      if (!tx.get('token', id)) throw new NotFoundError(`token ${id} not found`);
      tx.del('token', id);
    });
  }

  revokeTokens(kind: TokenKind): Promise<number> {
    return this.write('revoke tokens', (tx) => {
      const ids = tx
        .all('token')
        .filter((t) => t.kind === kind)
        .map((t) => t.id);
      for (const id of ids) tx.del('token', id);
      return ids.length;
    });
  }

  registerHost(input: HostInput, opts: HostOptions): Promise<Host> {
    return this.write('register host', (tx) => {
      const name = (input as { name?: unknown }).name;
      const bad = typeof name === 'string' ? tx.invalid('host', name) : undefined;
      if (bad) throw new ConflictError(`host ${name} already exists in ${this.ops.storedIn} but is invalid (${bad.reason}); fix the entry, or remove the host first`);
      const host = buildHost(
        input,
        {
          hostByName: (n) => tx.get('host', n),
          hostNameById: (id) => tx.get('hostIds', String(id)),
          regionExists: this.ops.regionExists,
          machinesOnHost: (n) => tx.all('machine').filter((m) => m.host === n).length,
        },
        opts,
        tx.now,
        (i) => parseInt(tx.randomId(i).slice(0, 8), 16),
      );
      putEntity(tx, 'host', host.name, host);
      index(tx, 'host', host);
      return host;
    });
  }

  updateHost(name: string, patch: HostPatch, opts?: HostUpdateOptions): Promise<Host> {
    return this.write('update host', (tx) => {
      const host = tx.get('host', name);
      if (!host) throw new NotFoundError(`host ${name} not found`);
      const next = applyHostPatch(host, patch, tx.now, opts);
      putEntity(tx, 'host', name, next);
      return next;
    });
  }

  removeHost(name: string): Promise<void> {
    return this.write('remove host', (tx) => {
      const host = tx.get('host', name);
      const bad = host ? undefined : tx.invalid('host', name);
      if (!host && !bad) throw new NotFoundError(`host ${name} not found`);
      assertHostUnused(name, tx.all('machine'));
      if (bad) {
        // A host skipped as invalid was never published; its host id is free again with it.
        tx.dropInvalid('host', name);
        const id = (bad.raw as { host_id?: unknown } | null)?.host_id;
        if (typeof id === 'number' && tx.get('hostIds', String(id)) === name) tx.del('hostIds', String(id));
        return;
      }
      delEntity(tx, 'host', name);
      tx.del('hostIds', String(host!.host_id));
    });
  }

  /**
   * A node's heartbeat: writes its liveness entry (and forgets nodes silent for a day). Returns
   * the entry it replaced, so a node can tell that another process runs under its name.
   */
  beatNode(entry: NodeEntry): Promise<NodeEntry | undefined> {
    return this.write('node heartbeat', (tx) => {
      const node = parseOrThrow(nodeEntrySchema, entry, 'node');
      const before = tx.get('node', node.name);
      for (const n of tx.all('node')) if (n.name !== node.name && tx.now - n.heartbeat_at > NODE_FORGET_MS) delEntity(tx, 'node', n.name);
      putEntity(tx, 'node', node.name, { ...node, heartbeat_at: tx.now });
      return before;
    });
  }

  /** A clean shutdown: the node's checks are taken over at once. Only while `session` still runs it. */
  nodeDown(name: string, session: string): Promise<void> {
    return this.write('node down', (tx) => {
      const node = tx.get('node', name);
      if (!node || node.session !== session) return;
      putEntity(tx, 'node', name, { ...node, state: 'down', heartbeat_at: tx.now });
    });
  }

  /** The identity the store holds (null when it has none). */
  identity(): Promise<CatalogIdentity | null> {
    return this.read('read catalog identity', readIdentity);
  }

  /** Stores `candidate` as the catalog's identity unless it has one already; returns the one it holds. */
  claimIdentity(candidate: CatalogIdentity): Promise<CatalogIdentity> {
    return this.write(
      'create catalog identity',
      (tx) => {
        const held = readIdentity(tx);
        if (held) return held;
        tx.set('meta', 'identity', JSON.stringify(parseOrThrow(catalogIdentitySchema, candidate, 'catalog identity')));
        return candidate;
      },
      { unfenced: true },
    );
  }

  /**
   * `sixpn catalog adopt`: accepts the store as it is. It keeps the identity it holds (or gets a
   * new one when it has none), which now also replaces `known`, so every node that knew `known`
   * follows; subscribers reload.
   */
  adoptIdentity(known: string | null): Promise<CatalogIdentity> {
    return this.write(
      'adopt catalog',
      (tx) => {
        const held = readIdentity(tx) ?? newIdentity(tx.now);
        const replaces = [...new Set([...(held.replaces ?? []), ...(known !== null && known !== held.id ? [known] : [])])].slice(-64);
        const next: CatalogIdentity = { ...held, ...(replaces.length ? { replaces } : {}) };
        tx.set('meta', 'identity', JSON.stringify(next));
        tx.reset();
        return next;
      },
      { unfenced: true },
    );
  }

  /**
   * Replaces the whole catalog with a document (`restore`, `import`): every entry, token and
   * counter; node liveness stays. `identity` "take": the store takes the document's identity
   * (a restore: nodes that knew it resume); "keep": the store keeps its own (an import fills this
   * catalog). `ifEmpty`: refuse (Conflict) when the store holds any entry. Subscribers reload.
   */
  replaceAll(doc: CatalogDocument, opts: { identity: 'take' | 'keep'; ifEmpty: boolean }): Promise<CatalogIdentity> {
    return this.write(
      opts.identity === 'take' ? 'restore catalog' : 'import catalog',
      (tx) => {
        if (opts.ifEmpty) {
          const held = countEntries(tx);
          if (held > 0) throw new ConflictError(`the catalog is not empty (${held} entries): import fills an empty catalog only; use sixpn catalog restore to replace one`);
        }
        // Counters only grow: a restore over a store that handed out more keeps the higher number,
        // so an address released there is not handed out again.
        const before = readSequences(tx);
        for (const t of CONTENT_TABLES) for (const [k] of tx.entries(t)) tx.del(t, k);
        for (const kind of ENTITY_TABLES) for (const bad of tx.invalidEntries(kind)) if (kind !== 'node') tx.dropInvalid(kind, bad.key);
        loadEntries(tx, doc);
        const orgs = new Set((doc.valid.org ?? []).map((o) => o.name));
        for (const [table, seqs] of [['flycastSeq', before.flycast], ['peerSeq', before.peer]] as const) {
          for (const [org, n] of Object.entries(seqs)) if (orgs.has(org) && n > ((table === 'flycastSeq' ? doc.sequences.flycast : doc.sequences.peer)[org] ?? 0)) tx.set(table, org, n);
        }
        let identity = readIdentity(tx);
        if (opts.identity === 'take' && doc.identity) identity = doc.identity;
        identity ??= newIdentity(tx.now);
        tx.set('meta', 'identity', JSON.stringify(identity));
        tx.reset();
        return identity;
      },
      { unfenced: opts.identity === 'take' },
    );
  }

  /** What a node's snapshot holds besides its view: the identity, tokens (hashes) and counters, in one read. */
  snapshotExtras(): Promise<{ identity: CatalogIdentity | null; tokens: Token[]; sequences: DocumentEntries['sequences'] }> {
    return this.read('read snapshot extras', (tx) => ({ identity: readIdentity(tx), tokens: tx.all('token'), sequences: readSequences(tx) }), true);
  }

  /** Everything the catalog holds, as a document (`export`, restore points): one consistent read. */
  exportDocument(): Promise<CatalogDocument> {
    return this.read('export catalog', (tx) => ({ format: 'sixpn-catalog/1', identity: readIdentity(tx), written_at: tx.now, ...readEntries(tx) }), true);
  }
}

/** Entries of catalog content (orgs, apps, machines, Flycast IPs, peers, hosts, tokens), valid or not. */
function countEntries(tx: StoreTx): number {
  let n = 0;
  for (const kind of ENTITY_TABLES) if (kind !== 'node') n += tx.all(kind).length + tx.invalidEntries(kind).length;
  return n;
}

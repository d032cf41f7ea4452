/**
 * The node's catalog: its store behind a guard that knows which catalog this node serves.
 *
 * A catalog has an identity, created once and stored with it (`<ns>:meta` in Redis, `identity`
 * in the embedded file). The guard remembers the identity of the catalog this node serves (from
 * its snapshot on disk, ./snapshot.ts, or from the store at its first start) and checks it when
 * the node starts, whenever the store reconnects or another node replaces the catalog, every
 * `[catalog] identity_check_interval`, and in every write (the store's fence). Its states:
 *
 *   ok        the store holds this node's catalog: reads and writes go through, and the node
 *             keeps its snapshot current
 *   snapshot  the store was unreachable when the node started: it serves the catalog of its
 *             snapshot, writes fail (StoreUnavailableError) until the store is back
 *   diverged  the store came back empty or holds another catalog: the node keeps serving its last
 *             good view (store events no longer reach it) and refuses writes
 *             (CatalogDivergedError) until an operator restores (`sixpn catalog restore`) or
 *             adopts the store as it is (`sixpn catalog adopt`). Never silently.
 *
 * Every state change is logged (an error while diverged, repeated every minute), counted in
 * `sixpn_catalog_state{state}`, and reported in /v1/status, the dashboard and the CLI's errors.
 */
import { EventEmitter } from 'node:events';
import { CatalogDivergedError, ConflictError, NotFoundError, StoreUnavailableError } from '../errors.js';
import { gauge } from '../observe/metrics.js';
import { documentCounts, type CatalogDocument } from './document.js';
import { newIdentity } from './operations.js';
import { readSnapshot, SnapshotWriter, viewDocument, type SnapshotExtras } from './snapshot.js';
import type { CatalogBackend, CatalogStore, StoreEvent, StoreListener } from './store.js';
import type { CatalogIdentity, CatalogSnapshot, Token, TokenKind } from './types.js';
import type { CatalogView } from './view.js';

export type CatalogStateName = 'ok' | 'snapshot' | 'diverged';

export interface CatalogStatus {
  state: CatalogStateName;
  /** The catalog this node serves. */
  identity: string | null;
  /** What the store holds now, when it differs (null: nothing, or unknown while unreachable). */
  store_identity: string | null;
  /** Since when the node is in this state (null while ok). */
  since: number | null;
  /** What is wrong and what to do (null while ok). */
  message: string | null;
  snapshot: { path: string; written_at: number | null } | null;
}

const stateGauge = gauge({
  name: 'sixpn_catalog_state',
  help: 'This node\'s catalog state, 1 for the current one: ok (the store holds the catalog it serves), snapshot (serving its snapshot, the store unreachable since start), diverged (the store came back empty or holds another catalog: writes refused)',
  labelNames: ['state'] as const,
});

/**
 * Store calls the guard forwards as they are once the node is ok (writes and token lists). Token
 * checks (getToken) and the writes that change what they answer are the guard's own: see
 * `getToken`.
 */
const DELEGATED = [
  'createOrg',
  'deleteOrg',
  'createApp',
  'updateAppServices',
  'deleteApp',
  'registerMachine',
  'updateMachine',
  'removeMachine',
  'allocateFlycast',
  'releaseFlycast',
  'createPeer',
  'removePeer',
  'listTokens',
  'registerHost',
  'updateHost',
  'removeHost',
  'beatNode',
  'nodeDown',
] as const satisfies readonly (keyof CatalogStore)[];
type Delegated = (typeof DELEGATED)[number];

/** Tokens remembered beyond the snapshot's (see `seenTokens`). */
const MAX_SEEN_TOKENS = 10_000;

export interface GuardOptions {
  store: CatalogBackend;
  /** The store for messages: `at redis://host:6379`, `file /var/lib/sixpn/catalog.json`. */
  where: string;
  /** This node's name (written into its snapshots). */
  node: string;
  /** The snapshot file; null: no snapshot (a catalog kept in memory only). */
  snapshotPath: string | null;
  snapshotIntervalMs: number;
  checkIntervalMs: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

const NAG_MS = 60_000;
const iso = (t: number): string => new Date(t).toISOString().replace(/\.\d+Z$/, 'Z');

const isEmpty = (s: CatalogSnapshot): boolean => !s.orgs.length && !s.apps.length && !s.machines.length && !s.flycast.length && !s.peers.length && !s.hosts.length;

/** The entities of a document as a snapshot (what a view is filled from). */
function documentSnapshot(doc: CatalogDocument): CatalogSnapshot {
  const v = doc.valid;
  return { orgs: v.org ?? [], apps: v.app ?? [], machines: v.machine ?? [], flycast: v.flycast ?? [], peers: v.peer ?? [], hosts: v.host ?? [], nodes: [], identity: doc.identity };
}

/** Why a node whose store is unreachable does not start. */
export function noSnapshotToStartFrom(err: StoreUnavailableError, snapshotPath: string | null): StoreUnavailableError {
  const where = snapshotPath ? `at ${snapshotPath}` : '(snapshots are off: [catalog] snapshot = "off")';
  return new StoreUnavailableError(`${err.message}; this node has no snapshot of the catalog ${where} to start from, so it does not start: start it once while the store is reachable`, { cause: err });
}

// Interface merging: the delegated store calls are installed by the constructor.
export interface CatalogGuard extends Pick<CatalogStore, Delegated> {}

export class CatalogGuard extends EventEmitter<{ state: [CatalogStatus] }> implements CatalogStore {
  readonly kind: CatalogStore['kind'];
  private readonly inner: CatalogBackend;
  private st: CatalogStateName = 'ok';
  /** The catalog this node serves. */
  private known: CatalogIdentity | null = null;
  private storeIdentity: string | null = null;
  private since: number | null = null;
  private message: string | null = null;
  /** The snapshot read at start: what the view is filled from when the store cannot give it. */
  private startupDoc: CatalogDocument | null = null;
  private served = false;
  private view: CatalogView | null = null;
  /** Tokens and counters last read from the store (or the start-up snapshot's). */
  private extras: SnapshotExtras | null = null;
  /**
   * Tokens this node created or checked against the store since its last snapshot, by id: with the
   * snapshot's tokens, what `getToken` answers from while the store cannot be asked. Revoking
   * through this node removes them; bounded (the oldest go first).
   */
  private readonly seenTokens = new Map<string, Token>();
  private writer: SnapshotWriter | null = null;
  private readonly subscribers = new Set<StoreListener>();
  private checking: Promise<void> | null = null;
  /** Store events held while a reset is checked; null when not holding. */
  private held: StoreEvent[] | null = null;
  /** A reset to hand the listeners once the check is done (the view reloads). */
  private resetDue = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private unsubscribe: () => void = () => undefined;
  private closed = false;

  private constructor(private readonly o: GuardOptions) {
    super();
    this.inner = o.store;
    this.kind = o.store.kind;
    for (const name of DELEGATED) {
      const call = (this.inner[name] as (...a: unknown[]) => Promise<unknown>).bind(this.inner);
      (this as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => this.guarded(name, () => call(...args));
    }
  }

  /**
   * Opens the guard over an opened store: reads the snapshot (a corrupt one is an error), then
   * decides the state from what the store holds. A store that cannot be reached is fine when
   * there is a snapshot to serve (state `snapshot`); without one the node does not start.
   */
  static async open(o: GuardOptions): Promise<CatalogGuard> {
    const g = new CatalogGuard(o);
    if (o.snapshotPath) {
      g.startupDoc = await readSnapshot(o.snapshotPath);
      g.writer = new SnapshotWriter({ path: o.snapshotPath, intervalMs: o.snapshotIntervalMs, build: () => g.buildSnapshot(), log: o.log });
      await g.writer.open();
    }
    if (g.startupDoc) {
      g.known = g.startupDoc.identity;
      g.extras = { tokens: g.startupDoc.valid.token ?? [], sequences: g.startupDoc.sequences };
      if (g.known) g.inner.setFence(g.known.id);
    }
    g.unsubscribe = g.inner.subscribe((e) => g.onStoreEvent(e));
    let held: CatalogSnapshot;
    try {
      held = await g.inner.snapshot();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      if (!g.startupDoc) {
        g.unsubscribe();
        throw noSnapshotToStartFrom(err, o.snapshotPath);
      }
      const doc = g.startupDoc;
      g.enter('snapshot', null, `the catalog store ${o.where} is unreachable (${err.message}); this node serves catalog ${g.known!.id} from its snapshot ${o.snapshotPath} (written ${iso(doc.written_at ?? 0)}: ${g.countsOf(documentCounts(doc))}) and takes writes again once the store is back`);
      g.startTimers();
      return g;
    }
    await g.decide(held);
    g.startTimers();
    return g;
  }

  /** The view this node serves: its changes keep the snapshot current. */
  attach(view: CatalogView): void {
    this.view = view;
    view.on('change', (c) => {
      if (c.kind !== 'node') this.writer?.touch();
    });
    view.on('reset', () => this.writer?.touch());
    if (this.st === 'ok') this.writer?.touch();
  }

  get state(): CatalogStateName {
    return this.st;
  }

  status(): CatalogStatus {
    return {
      state: this.st,
      identity: this.known?.id ?? null,
      store_identity: this.storeIdentity,
      since: this.since,
      message: this.message,
      snapshot: this.o.snapshotPath ? { path: this.o.snapshotPath, written_at: this.writer?.lastWrittenAt ?? this.startupDoc?.written_at ?? null } : null,
    };
  }

  private startTimers(): void {
    const check = setInterval(() => void this.recheck(false), this.o.checkIntervalMs);
    const nag = setInterval(() => {
      if (this.st === 'diverged') this.o.log.error({ since: iso(this.since!), store_identity: this.storeIdentity, identity: this.known?.id }, `still diverged: ${this.message}`);
    }, NAG_MS);
    check.unref();
    nag.unref();
    this.timers.push(check, nag);
  }

  private countsOf(c: Record<string, number>): string {
    return `${c.orgs ?? 0} orgs, ${c.apps ?? 0} apps, ${c.machines ?? 0} machines`;
  }

  private viewCounts(): string {
    const v = this.view;
    if (!v) return this.startupDoc ? this.countsOf(documentCounts(this.startupDoc)) : 'nothing yet';
    return this.countsOf({ orgs: v.orgs.size, apps: v.apps.size, machines: v.machines.size });
  }

  private setState(st: CatalogStateName): void {
    this.st = st;
    for (const s of ['ok', 'snapshot', 'diverged'] as const) stateGauge.set({ state: s }, s === st ? 1 : 0);
  }

  private enter(st: 'snapshot' | 'diverged', storeIdentity: string | null, message: string): void {
    if (this.st === st && this.storeIdentity === storeIdentity && this.message === message) return;
    this.setState(st);
    this.storeIdentity = storeIdentity;
    this.since = Date.now();
    this.message = message;
    if (st === 'diverged') this.o.log.error({ catalog_state: st, identity: this.known?.id, store_identity: storeIdentity }, message);
    else this.o.log.warn({ catalog_state: st, identity: this.known?.id }, message);
    this.emit('state', this.status());
  }

  /** The store holds `identity`, and this node serves it from now on. */
  private accept(identity: CatalogIdentity, why: string | null): void {
    const was = this.st;
    const reload = was !== 'ok' || (this.known !== null && this.known.id !== identity.id);
    this.known = identity;
    this.inner.setFence(identity.id);
    this.setState('ok');
    this.storeIdentity = identity.id;
    this.since = null;
    this.message = null;
    if (why) this.o.log.warn({ catalog_state: 'ok', identity: identity.id, was }, why);
    if (was !== 'ok') this.emit('state', this.status());
    if (reload) {
      this.resetDue = true;
      if (this.held === null) this.release();
    }
    this.writer?.touch();
  }

  /** Decides the state from what the store holds (a snapshot read, with its identity). */
  private async decide(held: CatalogSnapshot): Promise<void> {
    const known = this.known;
    const found = held.identity;
    const where = this.o.where;
    if (found) {
      if (!known) return this.accept(found, null);
      if (found.id === known.id) return this.accept(found, this.st === 'ok' ? null : `the catalog store ${where} holds catalog ${found.id} again: writes resume`);
      if (found.replaces?.includes(known.id)) return this.accept(found, `catalog ${known.id} was adopted as catalog ${found.id} (sixpn catalog adopt): this node now serves that one`);
      return this.enter('diverged', found.id, this.divergedMessage(`holds another catalog (${found.id}, created ${iso(found.created_at)})`, false));
    }
    if (!known) {
      const claimed = await this.inner.claimIdentity(newIdentity(Date.now()));
      this.o.log.info({ identity: claimed.id }, isEmpty(held) ? `new catalog ${claimed.id} in the store ${where}` : `catalog identity ${claimed.id} created for the catalog already in the store ${where}`);
      return this.accept(claimed, null);
    }
    const empty = isEmpty(held);
    this.enter('diverged', null, this.divergedMessage(empty ? 'came back empty (it holds no catalog)' : 'holds a catalog without an identity', empty));
  }

  private divergedMessage(what: string, empty: boolean): string {
    return (
      `the catalog store ${this.o.where} ${what}, not catalog ${this.known!.id} that this node serves: it keeps serving its last good view (${this.viewCounts()}) and refuses writes. ` +
      `Put the catalog back with \`sixpn catalog restore --from-snapshot\` (this node's snapshot) or \`--from FILE\`, or accept the store as it is with \`sixpn catalog adopt\`${empty ? ' (which empties the network)' : ''}`
    );
  }

  /** Checks the store's identity again; with `hold`, store events wait for the verdict (after a reset). */
  private recheck(hold: boolean): Promise<void> {
    if (hold) this.held ??= [];
    if (this.checking) return this.checking;
    this.checking = (async () => {
      try {
        const found = await this.inner.identity();
        if (found && this.known && found.id === this.known.id && this.st === 'ok') return;
        await this.decide(await this.inner.snapshot());
      } catch (err) {
        // The store is away: nothing to decide now (writes fail on their own meanwhile).
        if (!(err instanceof StoreUnavailableError)) this.o.log.warn({ err: (err as Error).message }, 'catalog identity check failed');
      } finally {
        this.checking = null;
        this.release();
      }
    })();
    return this.checking;
  }

  /** Hands held events (and a due reset) to the listeners when the store holds this node's catalog; drops them otherwise. */
  private release(): void {
    const held = this.held ?? [];
    this.held = null;
    if (this.st !== 'ok') {
      this.resetDue = false;
      return;
    }
    if (this.resetDue || held.some((e) => e.kind === 'reset')) {
      this.resetDue = false;
      this.deliver({ kind: 'reset', at: Date.now() });
    }
    for (const e of held) if (e.kind !== 'reset') this.deliver(e);
  }

  private onStoreEvent(e: StoreEvent): void {
    if (this.closed) return;
    if (this.held) {
      this.held.push(e);
      return;
    }
    // A reconnect, a restore elsewhere, a message written under another identity: check first.
    if (e.kind === 'reset') {
      this.held = [e];
      void this.recheck(true);
      return;
    }
    if (this.st === 'ok') this.deliver(e);
  }

  private deliver(e: StoreEvent): void {
    for (const l of this.subscribers) {
      try {
        l(e);
      } catch {
        // A failing subscriber must not break delivery to the others.
      }
    }
  }

  /** The error every store call gets while the node is not ok. */
  private refusal(): Error {
    if (this.st === 'snapshot') return new StoreUnavailableError(this.message!);
    return new CatalogDivergedError(this.message!);
  }

  private async guarded<T>(_what: string, call: () => Promise<T>): Promise<T> {
    if (this.st !== 'ok') throw this.refusal();
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof CatalogDivergedError)) throw err;
      await this.recheck(false);
      throw this.st === 'ok' ? err : this.refusal();
    }
  }

  /**
   * A token check. While the store holds this node's catalog, the store answers (and the token is
   * remembered). While it cannot (unreachable, or diverged: the node serves its last good view),
   * the last good view answers: the tokens of this node's snapshot and those it created or checked
   * since, so that an operator's dashboard session and org tokens keep reading status exactly when
   * the banner has something to say. Writes stay refused; a revocation made elsewhere while this
   * node cannot reach the store is seen once it can.
   */
  async getToken(id: string): Promise<Token | undefined> {
    if (this.st === 'ok') {
      try {
        const t = await this.inner.getToken(id);
        if (t) this.remember(t);
        else this.seenTokens.delete(id);
        return t;
      } catch (err) {
        if (err instanceof CatalogDivergedError) await this.recheck(false);
        else if (!(err instanceof StoreUnavailableError)) throw err;
      }
    }
    return this.seenTokens.get(id) ?? this.extras?.tokens.find((t) => t.id === id);
  }

  async createToken(token: Token): Promise<Token> {
    const t = await this.guarded('createToken', () => this.inner.createToken(token));
    this.remember(t);
    return t;
  }

  async revokeToken(id: string): Promise<void> {
    await this.guarded('revokeToken', () => this.inner.revokeToken(id));
    this.seenTokens.delete(id);
  }

  async revokeTokens(kind: TokenKind): Promise<number> {
    const n = await this.guarded('revokeTokens', () => this.inner.revokeTokens(kind));
    for (const [id, t] of this.seenTokens) if (t.kind === kind) this.seenTokens.delete(id);
    return n;
  }

  private remember(t: Token): void {
    this.seenTokens.delete(t.id);
    this.seenTokens.set(t.id, t);
    if (this.seenTokens.size > MAX_SEEN_TOKENS) this.seenTokens.delete(this.seenTokens.keys().next().value!);
  }

  async snapshot(): Promise<CatalogSnapshot> {
    if (this.st === 'ok') {
      const s = await this.inner.snapshot();
      if (s.identity?.id === this.known?.id) return s;
      await this.recheck(false);
      throw this.st === 'ok' ? new StoreUnavailableError('the catalog store changed while it was read; try again') : this.refusal();
    }
    // The node's first view comes from its snapshot; later reads fail, and the view keeps what it has.
    if (!this.served && this.startupDoc) {
      this.served = true;
      return documentSnapshot(this.startupDoc);
    }
    throw this.refusal();
  }

  subscribe(listener: StoreListener): () => void {
    this.subscribers.add(listener);
    return () => this.subscribers.delete(listener);
  }

  /** The snapshot to write now: only the view of this node's catalog, while the store holds it. */
  private async buildSnapshot(): Promise<CatalogDocument | null> {
    if (!this.view || !this.known || this.st === 'snapshot') return null;
    if (this.st === 'ok') {
      const remembered = [...this.seenTokens.keys()];
      const x = await this.inner.snapshotExtras();
      if (x.identity?.id !== this.known.id) {
        void this.recheck(false);
        return null;
      }
      this.extras = { tokens: x.tokens, sequences: x.sequences };
      // The store's tokens as of this read hold what was remembered before it (or it was revoked).
      for (const id of remembered) this.seenTokens.delete(id);
    }
    // Diverged: the view has not changed since; its last changes are still written, with the last counters read.
    return viewDocument(this.view, this.known, this.extras ?? { tokens: [], sequences: { flycast: {}, peer: {} } }, this.o.node);
  }

  /** This node's last good view as a document (what `restore --from-snapshot` puts back). */
  lastGoodDocument(): CatalogDocument {
    if (this.view && this.known && (this.st !== 'snapshot' || this.served)) {
      return viewDocument(this.view, this.known, this.extras ?? { tokens: [], sequences: { flycast: {}, peer: {} } }, this.o.node);
    }
    if (this.startupDoc) return this.startupDoc;
    throw new NotFoundError('this node has no snapshot of the catalog');
  }

  /** `sixpn catalog export`: the store's whole catalog; while not ok, this node's last good view. */
  async exportDocument(): Promise<CatalogDocument> {
    if (this.st === 'ok') return this.inner.exportDocument();
    return this.lastGoodDocument();
  }

  /** `sixpn catalog import`: fills this (empty) catalog from a document; it keeps its identity. */
  async importDocument(doc: CatalogDocument): Promise<CatalogIdentity> {
    return this.guarded('import', () => this.inner.replaceAll(doc, { identity: 'keep', ifEmpty: true }));
  }

  /**
   * `sixpn catalog restore`: replaces what the store holds with a document (a file, or this node's
   * snapshot with `fromSnapshot`) and its identity, so every node that served it resumes. A store
   * that holds entries is replaced only with `force` (`--yes`).
   */
  async restore(doc: CatalogDocument | null, opts: { force: boolean; source: string }): Promise<CatalogIdentity> {
    const source = doc ?? this.lastGoodDocument();
    const identity = source.identity ?? this.known ?? newIdentity(Date.now());
    if (!opts.force) {
      const held = await this.inner.snapshot();
      if (!isEmpty(held)) {
        throw new ConflictError(`the catalog store ${this.o.where} holds a catalog (${held.orgs.length} orgs, ${held.apps.length} apps, ${held.machines.length} machines${held.identity ? `, catalog ${held.identity.id}` : ''}): restoring replaces all of it; run again with --yes to do that`);
      }
    }
    const restored = await this.inner.replaceAll({ ...source, identity }, { identity: 'take', ifEmpty: false });
    this.accept(restored, `catalog ${restored.id} restored from ${opts.source} into the store ${this.o.where} (${this.countsOf(documentCounts(source))}): writes resume`);
    return restored;
  }

  /** `sixpn catalog adopt`: accepts the store as it is; every node that served this node's catalog follows. */
  async adopt(): Promise<CatalogIdentity> {
    if (this.st === 'ok') throw new ConflictError(`the catalog store ${this.o.where} holds catalog ${this.known?.id} that this node serves: there is nothing to adopt`);
    const before = this.known?.id ?? null;
    const adopted = await this.inner.adoptIdentity(before);
    this.accept(adopted, before === adopted.id ? null : `catalog adopted: this node now serves catalog ${adopted.id} as the store ${this.o.where} holds it (replacing catalog ${before})`);
    return adopted;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const t of this.timers) clearInterval(t);
    await this.writer?.close();
    this.closed = true;
    this.unsubscribe();
    this.subscribers.clear();
    await this.inner.close();
  }
}

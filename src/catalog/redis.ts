/**
 * The Redis catalog store: one catalog shared by every node through one Redis (ioredis). The
 * operations are ./operations.ts, run by the optimistic transaction engine of ./redis-tx.ts over
 * the connections of ./redis-link.ts; this file ties them together and delivers changes.
 *
 * The subscriber connection hands every change, this process's own included, to `subscribe()`
 * listeners exactly once, in write order; a transaction resolves after its own change has reached
 * them, as with the embedded store. After the subscriber reconnects, or when another node replaced
 * the catalog (restore, import, adopt), listeners get `reset`. While Redis is down every call
 * fails at once with StoreUnavailableError naming the URL, and both connections keep reconnecting.
 */
import { randomUUID } from 'node:crypto';
import { StoreUnavailableError } from '../errors.js';
import { invalidEntries } from './metrics.js';
import { parseIdentity, TransactionalStore, type TxOptions } from './operations.js';
import { checkStored, type RejectedEntry, type StoredEntity, type StoredKind } from './rules.js';
import { RedisLink, type LinkLog, type RedisConnection } from './redis-link.js';
import { COMMIT_LUA, keysOf, RESERVE_LUA, runTransaction, type EngineContext, type Keys, type Message } from './redis-tx.js';
import type { StoreEvent, StoreListener } from './store.js';
import type { StoreTx } from './tx.js';
import type { CatalogChange, CatalogSnapshot, EntityKind } from './types.js';

export interface RedisStoreOptions extends Omit<RedisConnection, 'url'> {
  url: string;
  namespace: string;
  regions: Iterable<string>;
  now?: () => number;
  /** Connection state changes are reported here (once per transition), and skipped entries, if given. */
  log?: LinkLog;
  /**
   * false: return at once even when Redis cannot be reached, and keep connecting in the
   * background (`reset` once through). Default true: fail with StoreUnavailableError.
   */
  waitForConnection?: boolean;
}

/** How long a transaction waits for its own change to come back through pub/sub. */
const ECHO_WAIT_MS = 1_000;
/** Bound on cached values (orgs and apps are few; the bound only guards memory). */
const CACHE_LIMIT = 10_000;

interface Scripts {
  sixpnCommit(numKeys: number, ...args: string[]): Promise<number>;
  sixpnReserve(key: string, org: string, first: string): Promise<number>;
}

const KINDS = new Set<unknown>(['org', 'app', 'machine', 'flycast', 'peer', 'host', 'node']);

/** Enough of a CatalogChange's shape that a listener can apply it (only sixpn writes the channel). */
function isChange(c: unknown): c is CatalogChange {
  if (typeof c !== 'object' || c === null) return false;
  const x = c as Record<string, unknown>;
  if (!KINDS.has(x.kind) || typeof x.key !== 'string' || typeof x.at !== 'number') return false;
  return x.op === 'del' || (x.op === 'put' && typeof x.value === 'object' && x.value !== null);
}

/** Unwraps a MULTI/EXEC reply, failing on the first command error. */
function execResults(res: [Error | null, unknown][] | null): unknown[] {
  if (!res) throw new Error('transaction aborted');
  return res.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}

export class RedisStore extends TransactionalStore {
  readonly kind = 'redis' as const;
  private readonly k: Keys;
  private readonly link: RedisLink;
  private readonly scripts: Scripts;
  private readonly now: () => number;
  private readonly log: RedisStoreOptions['log'];
  private readonly origin = randomUUID();
  private readonly listeners = new Set<StoreListener>();
  /** transaction number -> resolve, for transactions waiting for their own change */
  private readonly echoes = new Map<number, () => void>();
  /**
   * Last known raw orgs, apps and the identity (`key\0field` -> JSON), fed by reads and by
   * changes: nearly every transaction reads them and they rarely change. The commit checks each
   * value used, so a stale one costs one rerun with fresh reads, never a wrong write.
   */
  private readonly cache = new Map<string, string>();
  private readonly cacheable: Set<string>;
  /** Skipped entries already logged. */
  private readonly warned = new Set<string>();
  private readonly engine: EngineContext;
  private txCount = 0;
  private closed = false;

  private constructor(opts: RedisStoreOptions) {
    super(opts.regions, 'Redis');
    this.k = keysOf(opts.namespace);
    this.now = opts.now ?? Date.now;
    this.log = opts.log;
    this.cacheable = new Set([this.k.tables.org, this.k.tables.app, this.k.tables.meta]);
    this.link = new RedisLink(opts, this.k.channel, opts.namespace, opts.log);
    this.link.cmd.defineCommand('sixpnCommit', { lua: COMMIT_LUA });
    this.link.cmd.defineCommand('sixpnReserve', { lua: RESERVE_LUA, numberOfKeys: 1 });
    this.scripts = this.link.cmd as unknown as Scripts;
    this.link.on('message', (text) => this.onMessage(text));
    this.link.on('reset', () => this.onReset());
    const cmd = this.link.cmd;
    this.engine = {
      k: this.k,
      url: this.link.url,
      origin: this.origin,
      call: (fn) => this.call(fn),
      hget: (key, field) => this.call(() => cmd.hget(key, field)),
      hgetall: async (key, versionField) => {
        if (versionField === null) return [await this.call(() => cmd.hgetall(key)), null];
        const res = await this.call(() => cmd.multi().hgetall(key).hget(this.k.versions, versionField).exec());
        return execResults(res) as [Record<string, string>, string | null];
      },
      reserve: async (key, org, first) => Number(await this.call(() => this.scripts.sixpnReserve(key, org, String(first)))),
      commit: (numKeys, args) => this.call(() => this.scripts.sixpnCommit(numKeys, ...args)),
      cached: (id) => this.cache.get(id),
      remember: (key, field, raw) => this.remember(key, field, raw),
      nextTx: () => ++this.txCount,
      awaitEcho: (n) => (this.link.sub.status === 'ready' ? this.awaitEcho(n) : null),
      cancelEcho: (n) => this.echoes.get(n)?.(),
      warnInvalid: (e) => this.warnInvalid(e),
    };
  }

  /** Connects both connections and subscribes; fails with StoreUnavailableError when Redis cannot be reached (unless told not to wait). */
  static async open(opts: RedisStoreOptions): Promise<RedisStore> {
    const store = new RedisStore(opts);
    await store.link.connect(opts.waitForConnection ?? true);
    return store;
  }

  /** Whether commands go through right now. */
  get connected(): boolean {
    return this.link.ready;
  }

  private onReset(): void {
    if (this.closed) return;
    this.cache.clear();
    this.deliver({ kind: 'reset', at: this.now() });
    this.releaseEchoes();
  }

  private onMessage(text: string): void {
    let msg: Message;
    try {
      msg = JSON.parse(text) as Message;
    } catch {
      return; // not ours: someone else published on our channel
    }
    if (!msg || !Array.isArray(msg.c) || !msg.c.every(isChange)) return;
    if (msg.r === true) {
      // The catalog was replaced as a whole: listeners reload instead of applying changes.
      this.cache.clear();
      this.deliver({ kind: 'reset', at: this.now() });
    }
    for (const raw of msg.r === true ? [] : msg.c) {
      // A value that fails its check (published by an older node) is taken out of the views, as
      // a snapshot would leave it out, instead of reaching the proxy.
      let c: CatalogChange = raw;
      if (raw.op === 'put') {
        const r = checkStored(raw.kind, raw.value);
        if (!('value' in r)) {
          this.warnInvalid(r);
          c = { kind: raw.kind, op: 'del', key: raw.key, at: raw.at };
        }
      }
      if (c.kind === 'org' || c.kind === 'app') this.remember(this.k.tables[c.kind], c.key, c.op === 'put' ? JSON.stringify(c.value) : null);
      this.deliver(c);
    }
    if (msg.o === this.origin) {
      const done = this.echoes.get(msg.n);
      this.echoes.delete(msg.n);
      done?.();
    }
  }

  /**
   * An entry read back from Redis, or undefined when it is not JSON or fails its check (an older
   * version, a hand edit): skipped and logged, never fatal, so one bad machine cannot keep every
   * node from starting.
   */
  private checked<K extends StoredKind>(kind: K, field: string, raw: string): StoredEntity<K> | undefined {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      this.warnInvalid({ kind, key: field, reason: 'not JSON' });
      return undefined;
    }
    const r = checkStored(kind, value);
    if ('value' in r) return r.value;
    this.warnInvalid({ ...r, key: field });
    return undefined;
  }

  /** Logs a skipped entry once per entry and reason (snapshots repeat; the log should not). */
  private warnInvalid(e: RejectedEntry): void {
    const id = `${e.kind}\0${e.key}\0${e.reason}`;
    if (this.warned.has(id)) return;
    if (this.warned.size >= CACHE_LIMIT) this.warned.clear();
    this.warned.add(id);
    this.log?.warn({ kind: e.kind, key: e.key, reason: e.reason, url: this.link.url }, `catalog entry skipped: ${e.kind} ${e.key} is invalid (${e.reason}); it stays in Redis but is not served until fixed`);
  }

  private remember(key: string, field: string, raw: string | null): void {
    if (!this.cacheable.has(key)) return;
    const id = `${key}\0${field}`;
    if (raw === null) this.cache.delete(id);
    else {
      if (this.cache.size >= CACHE_LIMIT && !this.cache.has(id)) this.cache.clear();
      this.cache.set(id, raw);
    }
  }

  private deliver(e: StoreEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // A failing subscriber must not break delivery to the others.
      }
    }
  }

  private releaseEchoes(): void {
    for (const done of this.echoes.values()) done();
    this.echoes.clear();
  }

  private call<T>(fn: () => Promise<T>): Promise<T> {
    return this.link.call(fn);
  }

  private awaitEcho(n: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ECHO_WAIT_MS);
      t.unref();
      this.echoes.set(n, done);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
    }).finally(() => this.echoes.delete(n));
  }

  protected transact<T>(what: string, body: (tx: StoreTx) => T, opts: TxOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('catalog store is closed'));
    return runTransaction(this.engine, what, this.now, body, opts);
  }

  async snapshot(): Promise<CatalogSnapshot> {
    const t = this.k.tables;
    const res = await this.call(() =>
      this.link.cmd.multi().hgetall(t.org).hgetall(t.app).hgetall(t.machine).hgetall(t.flycast).hgetall(t.peer).hgetall(t.host).hgetall(t.node).hget(t.meta, 'identity').exec(),
    );
    const results = execResults(res);
    const [orgs, apps, machines, flycast, peers, hosts, nodes] = results as Record<string, string>[];
    let skipped = 0;
    const list = <K extends EntityKind>(kind: K, hash: Record<string, string> | undefined): StoredEntity<K>[] => {
      const out: StoredEntity<K>[] = [];
      for (const [field, raw] of Object.entries(hash ?? {})) {
        const v = this.checked(kind, field, raw);
        if (v === undefined) skipped++;
        else out.push(v);
      }
      return out;
    };
    const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    const byCreated = (a: { created_at: number }, b: { created_at: number }) => a.created_at - b.created_at;
    const snap: CatalogSnapshot = {
      orgs: list('org', orgs).sort((a, b) => a.network_id - b.network_id),
      apps: list('app', apps).sort(byName),
      machines: list('machine', machines).sort(byCreated),
      flycast: list('flycast', flycast).sort(byCreated),
      peers: list('peer', peers).sort(byCreated),
      hosts: list('host', hosts).sort(byName),
      nodes: list('node', nodes).sort(byName),
      identity: parseIdentity(results[7] as string | null),
    };
    invalidEntries.set(skipped);
    return snap;
  }

  subscribe(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.releaseEchoes();
    await this.link.close();
  }
}

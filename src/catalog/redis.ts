/**
 * The Redis catalog store: one catalog shared by every node through one Redis (ioredis).
 *
 * A mutation is an optimistic transaction. It runs the same pure rules as the embedded store
 * (./rules.ts) against fields it reads one at a time; every field read becomes a condition of
 * the commit. One Lua script then checks that each of those fields still holds the value read,
 * applies the writes and publishes the changes on `<ns>:changes`, all atomically, so pub/sub
 * order is write order. A failed check means another process changed something the mutation
 * relied on: it reruns from fresh reads. Sequence numbers (Flycast, peers) come from HINCRBY
 * counters outside the transaction: a number lost to a retry is skipped, never reused.
 *
 * A second connection subscribes to the channel and hands every change, this process's own
 * included, to `subscribe()` listeners exactly once; a mutation resolves after its own change
 * has reached them, as with the embedded store. After the subscriber reconnects it emits
 * `reset`, since changes published meanwhile are lost. While Redis is down every call fails at
 * once with StoreUnavailableError naming the URL, and both connections keep reconnecting.
 */
import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { NotFoundError, SixpnError, StoreUnavailableError } from '../errors.js';
import { counter, gauge } from '../observe/metrics.js';
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
import { invalidEntries } from './metrics.js';
import type { AllocationOptions, CatalogStore, HostOptions, HostUpdateOptions, MachineUpdateOptions, PeerOptions, StoreEvent, StoreListener } from './store.js';
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

export interface RedisStoreOptions {
  url: string;
  namespace: string;
  regions: Iterable<string>;
  now?: () => number;
  /** Connection state changes are reported here (once per transition), if given. */
  log?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

const conflicts = counter({
  name: 'sixpn_catalog_redis_conflicts_total',
  help: 'Catalog transactions rerun because another writer changed a field they had read.',
});
const connected = gauge({
  name: 'sixpn_catalog_redis_connected',
  help: '1 while the catalog store\'s Redis command connection is ready, else 0.',
});

/** Fast failure while Redis is away; the proxy and DNS keep serving from their CatalogView. */
const TIMEOUT_MS = 2_000;
/** Reruns before a mutation gives up under contention (each rerun re-reads what changed). */
const MAX_ATTEMPTS = 50;
/** How long a mutation waits for its own change to come back through pub/sub. */
const ECHO_WAIT_MS = 1_000;
/** Bound on cached org and app values (they are few; the bound only guards memory). */
const CACHE_LIMIT = 10_000;

/** Key names of one namespace. Entities are JSON values in one hash per kind. */
function keysOf(ns: string) {
  return {
    org: `${ns}:orgs`,
    app: `${ns}:apps`,
    machine: `${ns}:machines`,
    flycast: `${ns}:flycast`,
    peer: `${ns}:peers`,
    host: `${ns}:hosts`,
    /** host id (decimal) -> host name (uniqueness of host ids) */
    hostIds: `${ns}:host-ids`,
    /** token id -> token record (hash of the secret only); not published to views */
    token: `${ns}:tokens`,
    /** network id -> org name */
    networkIds: `${ns}:org-network-ids`,
    /** address -> who holds it (machine, Flycast ip, peer), for collision checks */
    owners: `${ns}:address-owners`,
    /** org -> last Flycast / peer sequence number handed out */
    flycastSeq: `${ns}:seq:flycast`,
    peerSeq: `${ns}:seq:peer`,
    /** kind -> count of writes: the condition for decisions taken over a whole hash */
    versions: `${ns}:versions`,
    channel: `${ns}:changes`,
  };
}
type Keys = ReturnType<typeof keysOf>;

// KEYS: the hashes touched. ARGV[1]: {c = {{key#, field, value-or-false}}, w = {{op, key#, field, value}}, m = message};
// ARGV[2]: channel. A missing field reads as false in Lua, so "absent" checks compare equal to false.
const COMMIT_LUA = `
local s = cjson.decode(ARGV[1])
for _, c in ipairs(s.c) do
  if redis.call('HGET', KEYS[c[1]], c[2]) ~= c[3] then return 0 end
end
for _, w in ipairs(s.w) do
  if w[1] == 'set' then redis.call('HSET', KEYS[w[2]], w[3], w[4])
  elseif w[1] == 'del' then redis.call('HDEL', KEYS[w[2]], w[3])
  else redis.call('HINCRBY', KEYS[w[2]], w[3], 1) end
end
redis.call('PUBLISH', ARGV[2], s.m)
return 1
`;

// KEYS[1]: counter hash; ARGV: org, first number. Numbers only grow, so none is handed out twice.
const RESERVE_LUA = `
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local first = tonumber(ARGV[2])
if v < first then
  redis.call('HSET', KEYS[1], ARGV[1], first)
  v = first
end
return v
`;

interface Scripts {
  sixpnCommit(numKeys: number, ...args: string[]): Promise<number>;
  sixpnReserve(key: string, org: string, first: string): Promise<number>;
}

/** Thrown by a transaction body that needs a field (or, with `field` null, a whole hash) it has not read yet. */
class NeedRead {
  constructor(
    readonly key: string,
    readonly field: string | null,
    readonly kind: StoredKind | null = null,
  ) {}
}

/** Thrown by a transaction body that needs one more sequence number. */
class NeedSequence {
  constructor(
    readonly key: string,
    readonly org: string,
    readonly first: number,
  ) {}
}

type Write = ['set', string, string, string] | ['del', string, string] | ['incr', string, string];

/**
 * One attempt of a mutation. The body is a pure function of what it reads here, so it can be
 * rerun after each missing read is fetched; reads, sequence numbers and random ids are kept for
 * the reruns of this attempt, writes and conditions are rebuilt by each run.
 */
class Attempt {
  private readonly known = new Map<string, string | null>();
  private readonly hashes = new Map<string, Record<string, string>>();
  private readonly sequences: number[] = [];
  private readonly ids: string[] = [];
  private seqUsed = 0;
  checks = new Map<string, [string, string, string | null]>();
  writes: Write[] = [];
  changes: CatalogChange[] = [];

  /** Set when a value came from the cache: errors decided on it are rechecked with fresh reads. */
  speculative = false;

  constructor(
    readonly k: Keys,
    readonly now: number,
    private readonly cached: ((id: string) => string | undefined) | null,
  ) {}

  begin(): void {
    this.seqUsed = 0;
    this.checks = new Map();
    this.writes = [];
    this.changes = [];
  }

  learn(key: string, field: string, raw: string | null): void {
    this.known.set(`${key}\0${field}`, raw);
  }

  learnHash(key: string, all: Record<string, string>, versionField: string, version: string | null): void {
    this.hashes.set(key, all);
    this.learn(this.k.versions, versionField, version);
  }

  addSequence(n: number): void {
    this.sequences.push(n);
  }

  /** The raw value of a hash field; the commit requires it to be unchanged. */
  raw(key: string, field: string): string | null {
    const id = `${key}\0${field}`;
    let v = this.known.get(id);
    if (v === undefined) {
      v = this.cached?.(id);
      if (v === undefined) throw new NeedRead(key, field);
      this.known.set(id, v); // pinned: every rerun of this attempt sees the same value
      this.speculative = true;
    }
    this.checks.set(id, [key, field, v]);
    return v;
  }

  get<T>(key: string, field: string): T | undefined {
    const v = this.raw(key, field);
    return v === null ? undefined : parseStored<T>(v, key, field);
  }

  /** Every entity of a kind; the commit requires that no entity of that kind changed. */
  all<T>(kind: StoredKind): T[] {
    const key = this.k[kind];
    const hash = this.hashes.get(key);
    if (!hash) throw new NeedRead(key, null, kind);
    this.raw(this.k.versions, kind);
    return Object.entries(hash).map(([f, v]) => parseStored<T>(v, key, f));
  }

  /** The next unused sequence number of `org` in counter `key`. */
  sequence(key: string, org: string, first: number): number {
    const n = this.sequences[this.seqUsed];
    if (n === undefined) throw new NeedSequence(key, org, first);
    this.seqUsed++;
    return n;
  }

  /** The i-th random machine id of this attempt (stable across reruns). */
  randomId(i: number): string {
    while (this.ids.length <= i) this.ids.push(randomMachineId());
    return this.ids[i]!;
  }

  put(kind: StoredKind, field: string, value: unknown): void {
    this.set(this.k[kind], field, JSON.stringify(value));
    this.writes.push(['incr', this.k.versions, kind]);
  }

  remove(kind: StoredKind, field: string): void {
    this.del(this.k[kind], field);
    this.writes.push(['incr', this.k.versions, kind]);
  }

  set(key: string, field: string, value: string): void {
    this.writes.push(['set', key, field, value]);
  }

  del(key: string, field: string): void {
    this.writes.push(['del', key, field]);
  }

  change(c: CatalogChange): void {
    this.changes.push(c);
  }
}

function parseStored<T>(raw: string, key: string, field: string): T {
  try {
    return JSON.parse(raw) as T;
  } catch (err) {
    throw new StoreUnavailableError(`catalog data in Redis is corrupt: ${key} field ${field} is not JSON`, { cause: err });
  }
}

/** The URL without its password, for messages and logs. */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}

interface Message {
  /** origin store instance and its transaction number, so a store recognizes its own changes */
  o: string;
  n: number;
  c: CatalogChange[];
}

export class RedisStore implements CatalogStore {
  readonly kind = 'redis' as const;
  private readonly k: Keys;
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly scripts: Scripts;
  private readonly regions: Set<string>;
  private readonly now: () => number;
  private readonly url: string;
  private readonly log: RedisStoreOptions['log'];
  private readonly origin = randomUUID();
  private readonly listeners = new Set<StoreListener>();
  /** transaction number -> resolve, for mutations waiting for their own change */
  private readonly echoes = new Map<number, () => void>();
  /**
   * Last known raw orgs and apps (`key\0field` -> JSON), fed by reads and by changes: nearly
   * every mutation reads them and they rarely change. The commit checks each value used, so a
   * stale one costs one rerun with fresh reads, never a wrong write.
   */
  private readonly cache = new Map<string, string>();
  /** Skipped entries already logged. */
  private readonly warned = new Set<string>();
  private txCount = 0;
  private subscribed = false;
  private closed = false;
  private lastError = '';
  private up = false;

  private constructor(opts: RedisStoreOptions) {
    this.k = keysOf(opts.namespace);
    this.regions = new Set(opts.regions);
    this.now = opts.now ?? Date.now;
    this.url = safeUrl(opts.url);
    this.log = opts.log;
    const common: RedisOptions = {
      lazyConnect: true,
      connectTimeout: TIMEOUT_MS,
      commandTimeout: TIMEOUT_MS,
      // Fail what is queued at once when the connection drops, and refuse new commands while
      // it is down: callers get StoreUnavailableError now, not a hang.
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      autoResubscribe: false,
      retryStrategy: (times: number) => Math.min(50 * times, 1_000),
    };
    this.cmd = new Redis(opts.url, { ...common, connectionName: `sixpn-catalog-${opts.namespace}` });
    this.sub = new Redis(opts.url, { ...common, connectionName: `sixpn-catalog-sub-${opts.namespace}` });
    this.cmd.defineCommand('sixpnCommit', { lua: COMMIT_LUA });
    this.cmd.defineCommand('sixpnReserve', { lua: RESERVE_LUA, numberOfKeys: 1 });
    this.scripts = this.cmd as unknown as Scripts;

    // Without 'error' listeners ioredis would report each failed reconnect as unhandled.
    this.cmd.on('error', (err: Error) => (this.lastError = err.message));
    this.sub.on('error', (err: Error) => (this.lastError = err.message));
    this.cmd.on('ready', () => this.setUp(true));
    this.cmd.on('close', () => this.setUp(false));
    this.sub.on('message', (channel: string, text: string) => this.onMessage(channel, text));
    this.sub.on('ready', () => {
      if (this.subscribed) void this.resubscribe();
    });
  }

  /** Connects both connections and subscribes; fails with StoreUnavailableError when Redis cannot be reached. */
  static async open(opts: RedisStoreOptions): Promise<RedisStore> {
    const store = new RedisStore(opts);
    try {
      await Promise.all([store.cmd.connect(), store.sub.connect()]);
      await store.sub.subscribe(store.k.channel);
      store.subscribed = true;
    } catch (err) {
      store.cmd.disconnect();
      store.sub.disconnect();
      throw new StoreUnavailableError(`cannot reach the catalog store at ${store.url}: ${(err as Error).message || store.lastError}`, { cause: err });
    }
    return store;
  }

  private setUp(up: boolean): void {
    connected.set(up ? 1 : 0);
    if (up === this.up) return;
    this.up = up;
    if (this.closed) return;
    if (up) this.log?.info({ url: this.url }, 'catalog store redis connected');
    else this.log?.warn({ url: this.url, err: this.lastError }, 'catalog store redis connection lost; reconnecting');
  }

  /** Changes published while the subscriber was away are lost: listeners must reload. */
  private async resubscribe(): Promise<void> {
    try {
      await this.sub.subscribe(this.k.channel);
    } catch {
      return; // the next 'ready' tries again
    }
    // Listeners reload a snapshot on reset: only useful once commands go through again.
    if (this.cmd.status !== 'ready') await new Promise((r) => this.cmd.once('ready', r));
    if (this.closed) return;
    this.cache.clear();
    this.deliver({ kind: 'reset', at: this.now() });
    this.releaseEchoes();
  }

  private onMessage(channel: string, text: string): void {
    if (channel !== this.k.channel) return;
    let msg: Message;
    try {
      msg = JSON.parse(text) as Message;
    } catch {
      return; // not ours: someone else published on our channel
    }
    if (!msg || !Array.isArray(msg.c) || !msg.c.every(isChange)) return;
    for (const raw of msg.c) {
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
      if (c.kind === 'org' || c.kind === 'app') this.remember(this.k[c.kind], c.key, c.op === 'put' ? JSON.stringify(c.value) : null);
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
    this.warnInvalid(r);
    return undefined;
  }

  /** Logs a skipped entry once per entry and reason (snapshots repeat; the log should not). */
  private warnInvalid(e: RejectedEntry): void {
    const id = `${e.kind}\0${e.key}\0${e.reason}`;
    if (this.warned.has(id)) return;
    if (this.warned.size >= CACHE_LIMIT) this.warned.clear();
    this.warned.add(id);
    this.log?.warn({ kind: e.kind, key: e.key, reason: e.reason, url: this.url }, `catalog entry skipped: ${e.kind} ${e.key} is invalid (${e.reason}); it stays in Redis but is not served until fixed`);
  }

  private remember(key: string, field: string, raw: string | null): void {
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

  private unavailable(err: unknown): StoreUnavailableError {
    const reason = this.cmd.status === 'ready' ? (err as Error).message : this.lastError || (err as Error).message;
    return new StoreUnavailableError(`catalog store at ${this.url} is unavailable: ${reason}`, { cause: err });
  }

  /** Runs one Redis call, turning every client failure into StoreUnavailableError. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreUnavailableError('catalog store is closed');
    if (this.cmd.status !== 'ready') throw this.unavailable(new Error(`connection is ${this.cmd.status}`));
    try {
      return await fn();
    } catch (err) {
      if (err instanceof SixpnError) throw err;
      throw this.unavailable(err);
    }
  }

  private async fetch(tx: Attempt, need: NeedRead): Promise<void> {
    if (need.field !== null) {
      const field = need.field;
      const raw = await this.call(() => this.cmd.hget(need.key, field));
      tx.learn(need.key, field, raw);
      if (need.key === this.k.org || need.key === this.k.app) this.remember(need.key, field, raw);
      return;
    }
    const kind = need.kind!;
    const res = await this.call(() => this.cmd.multi().hgetall(need.key).hget(this.k.versions, kind).exec());
    const [all, version] = execResults(res) as [Record<string, string>, string | null];
    tx.learnHash(need.key, all, kind, version);
  }

  /**
   * Runs `body` until it has everything it reads, commits its writes if nothing it read has
   * changed, and reruns the whole attempt otherwise. Errors the body throws (validation, not
   * found, conflict) reach the caller with nothing written.
   */
  private async mutate<T>(what: string, body: (tx: Attempt) => T): Promise<T> {
    if (this.closed) throw new StoreUnavailableError('catalog store is closed');
    const lookup = (id: string) => this.cache.get(id);
    for (let attempt = 1; ; attempt++) {
      // Only the first attempt trusts the cache; after a lost race everything is read afresh.
      let tx = new Attempt(this.k, this.now(), attempt === 1 ? lookup : null);
      let result: T;
      for (;;) {
        tx.begin();
        try {
          result = body(tx);
          break;
        } catch (e) {
          if (e instanceof NeedRead) await this.fetch(tx, e);
          else if (e instanceof NeedSequence) tx.addSequence(Number(await this.call(() => this.scripts.sixpnReserve(e.key, e.org, String(e.first)))));
          else if (tx.speculative) tx = new Attempt(this.k, tx.now, null);
          else throw e;
        }
      }
      if (await this.commit(tx)) return result;
      conflicts.inc();
      if (attempt >= MAX_ATTEMPTS) throw new StoreUnavailableError(`catalog store at ${this.url} is too busy: ${what} lost ${attempt} races in a row; try again`);
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(attempt, 10)));
    }
  }

  private async commit(tx: Attempt): Promise<boolean> {
    const keys: string[] = [];
    const index = new Map<string, number>();
    const ki = (key: string): number => {
      let i = index.get(key);
      if (i === undefined) {
        keys.push(key);
        i = keys.length;
        index.set(key, i);
      }
      return i;
    };
    const n = ++this.txCount;
    const message: Message = { o: this.origin, n, c: tx.changes };
    const spec = {
      c: [...tx.checks.values()].map(([key, field, v]) => [ki(key), field, v ?? false]),
      w: tx.writes.map(([op, key, ...rest]) => [op, ki(key), ...rest]),
      m: JSON.stringify(message),
    };
    // Registered before the commit: the change may come back before the commit's own reply.
    const echo = this.sub.status === 'ready' ? this.awaitEcho(n) : null;
    let ok: number;
    try {
      ok = Number(await this.call(() => this.scripts.sixpnCommit(keys.length, ...keys, JSON.stringify(spec), this.k.channel)));
    } catch (err) {
      this.echoes.get(n)?.();
      throw err;
    }
    if (ok !== 1) {
      this.echoes.get(n)?.();
      return false;
    }
    await echo;
    return true;
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

  private readonly regionExists = (c: string): boolean => this.regions.has(c);

  async snapshot(): Promise<CatalogSnapshot> {
    const k = this.k;
    const res = await this.call(() => this.cmd.multi().hgetall(k.org).hgetall(k.app).hgetall(k.machine).hgetall(k.flycast).hgetall(k.peer).hgetall(k.host).exec());
    const [orgs, apps, machines, flycast, peers, hosts] = execResults(res) as Record<string, string>[];
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
    const snap = {
      orgs: list('org', orgs).sort((a, b) => a.network_id - b.network_id),
      apps: list('app', apps).sort(byName),
      machines: list('machine', machines).sort(byCreated),
      flycast: list('flycast', flycast).sort(byCreated),
      peers: list('peer', peers).sort(byCreated),
      hosts: list('host', hosts).sort(byName),
    };
    invalidEntries.set(skipped);
    return snap;
  }

  createOrg(input: Org): Promise<Org> {
    return this.mutate('create org', (tx) => {
      const org = validateOrg(
        input,
        (n) => tx.get<Org>(this.k.org, n),
        (id) => {
          const name = tx.raw(this.k.networkIds, String(id));
          return name === null ? undefined : { name, network_id: id };
        },
      );
      tx.put('org', org.name, org);
      tx.set(this.k.networkIds, String(org.network_id), org.name);
      tx.change({ kind: 'org', op: 'put', key: org.name, value: org, at: tx.now });
      return org;
    });
  }

  deleteOrg(name: string): Promise<void> {
    return this.mutate('delete org', (tx) => {
      const org = tx.get<Org>(this.k.org, name);
      if (!org) throw new NotFoundError(`org ${name} not found`);
      assertOrgUnused(name, tx.all<App>('app'), tx.all<Peer>('peer'), tx.all<FlycastIp>('flycast'));
      tx.remove('org', name);
      for (const id of tokensOfOrg(name, tx.all<Token>('token'))) tx.remove('token', id);
      tx.del(this.k.networkIds, String(org.network_id));
      tx.del(this.k.flycastSeq, name);
      tx.del(this.k.peerSeq, name);
      tx.change({ kind: 'org', op: 'del', key: name, at: tx.now });
    });
  }

  createApp(input: AppInput): Promise<App> {
    return this.mutate('create app', (tx) => {
      const app = validateApp(input, (n) => tx.get<App>(this.k.app, n), (n) => tx.get<Org>(this.k.org, n), this.regionExists);
      tx.put('app', app.name, app);
      tx.change({ kind: 'app', op: 'put', key: app.name, value: app, at: tx.now });
      return app;
    });
  }

  updateAppServices(name: string, services: Service[], opts: AppServicesOptions = {}): Promise<App> {
    return this.mutate('update app services', (tx) => {
      const app = tx.get<App>(this.k.app, name);
      if (!app) throw new NotFoundError(`app ${name} not found`);
      const next: App = withServices(app, services, opts, this.regionExists);
      tx.put('app', name, next);
      tx.change({ kind: 'app', op: 'put', key: name, value: next, at: tx.now });
      return next;
    });
  }

  deleteApp(name: string): Promise<void> {
    return this.mutate('delete app', (tx) => {
      if (!tx.get<App>(this.k.app, name)) throw new NotFoundError(`app ${name} not found`);
      const machines = tx.all<Machine>('machine').filter((m) => m.app === name);
      const flycast = tx.all<FlycastIp>('flycast').filter((f) => f.app === name);
      for (const m of machines) {
        tx.remove('machine', m.id);
        tx.del(this.k.owners, m.address);
        tx.change({ kind: 'machine', op: 'del', key: m.id, at: tx.now });
      }
      for (const f of flycast) {
        tx.remove('flycast', f.address);
        tx.del(this.k.owners, f.address);
        tx.change({ kind: 'flycast', op: 'del', key: f.address, at: tx.now });
      }
      tx.remove('app', name);
      tx.change({ kind: 'app', op: 'del', key: name, at: tx.now });
    });
  }

  registerMachine(input: MachineInput, opts: AllocationOptions): Promise<Machine> {
    return this.mutate('register machine', (tx) => {
      const machine = buildMachine(
        input,
        opts.hostId,
        {
          appByName: (n) => tx.get<App>(this.k.app, n),
          orgByName: (n) => tx.get<Org>(this.k.org, n),
          machineById: (id) => tx.get<Machine>(this.k.machine, id),
          addressOwner: (a) => tx.raw(this.k.owners, a) ?? undefined,
          regionExists: this.regionExists,
          hostByName: (n) => tx.get<Host>(this.k.host, n),
        },
        tx.now,
        () => {
          for (let i = 0; ; i++) {
            const id = tx.randomId(i);
            if (tx.raw(this.k.machine, id) === null) return id;
          }
        },
      );
      tx.put('machine', machine.id, machine);
      tx.set(this.k.owners, machine.address, `machine ${machine.id}`);
      tx.change({ kind: 'machine', op: 'put', key: machine.id, value: machine, at: machine.created_at });
      return machine;
    });
  }

  updateMachine(id: string, patch: MachinePatch, opts?: MachineUpdateOptions): Promise<Machine> {
    return this.mutate('update machine', (tx) => {
      const machine = tx.get<Machine>(this.k.machine, id);
      if (!machine) throw new NotFoundError(`machine ${id} not found`);
      const next = applyMachinePatch(machine, patch, tx.now, this.regionExists, opts);
      tx.put('machine', id, next);
      tx.change({ kind: 'machine', op: 'put', key: id, value: next, at: next.updated_at });
      return next;
    });
  }

  removeMachine(id: string): Promise<void> {
    return this.mutate('remove machine', (tx) => {
      const machine = tx.get<Machine>(this.k.machine, id);
      if (!machine) throw new NotFoundError(`machine ${id} not found`);
      tx.remove('machine', id);
      tx.del(this.k.owners, machine.address);
      tx.change({ kind: 'machine', op: 'del', key: id, at: tx.now });
    });
  }

  allocateFlycast(appName: string, orgName?: string): Promise<FlycastIp> {
    return this.mutate('allocate flycast ip', (tx) => {
      const app = tx.get<App>(this.k.app, appName);
      if (!app) throw new NotFoundError(`app ${appName} not found`);
      const org = tx.get<Org>(this.k.org, orgName ?? app.org);
      if (!org) throw new NotFoundError(`org ${orgName ?? app.org} not found`);
      let ip: FlycastIp;
      do {
        ip = buildFlycast(app, org, tx.sequence(this.k.flycastSeq, org.name, FIRST_FLYCAST_SEQUENCE), tx.now);
      } while (tx.raw(this.k.owners, ip.address) !== null);
      tx.put('flycast', ip.address, ip);
      tx.set(this.k.owners, ip.address, `flycast ip of ${app.name}`);
      tx.change({ kind: 'flycast', op: 'put', key: ip.address, value: ip, at: ip.created_at });
      return ip;
    });
  }

  releaseFlycast(address: string, orgName?: string): Promise<void> {
    return this.mutate('release flycast ip', (tx) => {
      const norm = validateRelease(address, orgName, (a) => tx.get<FlycastIp>(this.k.flycast, a));
      tx.remove('flycast', norm);
      tx.del(this.k.owners, norm);
      tx.change({ kind: 'flycast', op: 'del', key: norm, at: tx.now });
    });
  }

  createPeer(input: PeerInput, opts: PeerOptions): Promise<Peer> {
    return this.mutate('create wireguard peer', (tx) => {
      const { peer: valid, org } = validatePeerInput(input, {
        orgByName: (n) => tx.get<Org>(this.k.org, n),
        peerByKey: (o, n) => tx.get<Peer>(this.k.peer, peerKey(o, n)),
        addressOwner: (a) => tx.raw(this.k.owners, a) ?? undefined,
        regionExists: this.regionExists,
      });
      let peer: Peer;
      do {
        peer = buildPeer(valid, org, opts.gatewayHostId, tx.sequence(this.k.peerSeq, org.name, 1), tx.now);
      } while (tx.raw(this.k.owners, peer.address) !== null);
      const key = peerKey(peer.org, peer.name);
      tx.put('peer', key, peer);
      tx.set(this.k.owners, peer.address, `peer ${key}`);
      tx.change({ kind: 'peer', op: 'put', key, value: peer, at: peer.created_at });
      return peer;
    });
  }

  removePeer(org: string, name: string): Promise<void> {
    return this.mutate('remove wireguard peer', (tx) => {
      const key = peerKey(org, name);
      const peer = tx.get<Peer>(this.k.peer, key);
      if (!peer) throw new NotFoundError(`wireguard peer ${name} not found in org ${org}`);
      tx.remove('peer', key);
      tx.del(this.k.owners, peer.address);
      tx.change({ kind: 'peer', op: 'del', key, at: tx.now });
    });
  }

  createToken(input: Token): Promise<Token> {
    return this.mutate('create token', (tx) => {
      const { token, prune } = validateToken(input, { orgByName: (n) => tx.get<Org>(this.k.org, n), tokens: () => tx.all<Token>('token') }, tx.now);
      for (const id of prune) tx.remove('token', id);
      tx.put('token', token.id, token);
      return token;
    });
  }

  async getToken(id: string): Promise<Token | undefined> {
    const raw = await this.call(() => this.cmd.hget(this.k.token, id));
    return raw === null ? undefined : this.checked('token', id, raw);
  }

  async listTokens(): Promise<Token[]> {
    const all = await this.call(() => this.cmd.hgetall(this.k.token));
    const now = this.now();
    return Object.entries(all)
      .map(([field, raw]) => this.checked('token', field, raw))
      .filter((t): t is Token => t !== undefined && t.expires_at > now)
      .sort((a, b) => a.created_at - b.created_at);
  }

  revokeToken(id: string): Promise<void> {
    return this.mutate('revoke token', (tx) => {
      if (!tx.get<Token>(this.k.token, id)) throw new NotFoundError(`token ${id} not found`);
      tx.remove('token', id);
    });
  }

  revokeTokens(kind: TokenKind): Promise<number> {
    return this.mutate('revoke tokens', (tx) => {
      const ids = tx.all<Token>('token').filter((t) => t.kind === kind).map((t) => t.id);
      for (const id of ids) tx.remove('token', id);
      return ids.length;
    });
  }

  registerHost(input: HostInput, opts: HostOptions): Promise<Host> {
    return this.mutate('register host', (tx) => {
      const host = buildHost(
        input,
        {
          hostByName: (n) => tx.get<Host>(this.k.host, n),
          hostNameById: (id) => tx.raw(this.k.hostIds, String(id)) ?? undefined,
          regionExists: this.regionExists,
          machinesOnHost: (n) => tx.all<Machine>('machine').filter((m) => m.host === n).length,
        },
        opts,
        tx.now,
        (i) => parseInt(tx.randomId(i).slice(0, 8), 16),
      );
      tx.put('host', host.name, host);
      tx.set(this.k.hostIds, String(host.host_id), host.name);
      tx.change({ kind: 'host', op: 'put', key: host.name, value: host, at: host.updated_at });
      return host;
    });
  }

  updateHost(name: string, patch: HostPatch, opts?: HostUpdateOptions): Promise<Host> {
    return this.mutate('update host', (tx) => {
      const host = tx.get<Host>(this.k.host, name);
      if (!host) throw new NotFoundError(`host ${name} not found`);
      const next = applyHostPatch(host, patch, tx.now, opts);
      tx.put('host', name, next);
      tx.change({ kind: 'host', op: 'put', key: name, value: next, at: next.updated_at });
      return next;
    });
  }

  removeHost(name: string): Promise<void> {
    return this.mutate('remove host', (tx) => {
      const host = tx.get<Host>(this.k.host, name);
      if (!host) throw new NotFoundError(`host ${name} not found`);
      assertHostUnused(name, tx.all<Machine>('machine'));
      tx.remove('host', name);
      tx.del(this.k.hostIds, String(host.host_id));
      tx.change({ kind: 'host', op: 'del', key: name, at: tx.now });
    });
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
    await Promise.all(
      [this.cmd, this.sub].map(async (c) => {
        if (c.status === 'ready') {
          try {
            await c.quit();
            return;
          } catch {
            // fall through: drop the socket
          }
        }
        c.disconnect();
      }),
    );
  }
}

const KINDS = new Set<unknown>(['org', 'app', 'machine', 'flycast', 'peer', 'host']);

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

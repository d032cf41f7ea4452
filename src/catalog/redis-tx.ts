/**
 * The Redis transaction engine: optimistic transactions over hashes, for the operations of
 * ./operations.ts.
 *
 * A transaction body runs against fields it reads one at a time; each read becomes a condition
 * of the commit. When the body needs a value it has not read yet it stops (NeedRead), the value
 * is fetched, and the body runs again from the start (it is a pure function of its reads). One
 * Lua script then checks that every field read still holds the value read, applies the writes
 * and publishes the changes, atomically, so pub/sub order is write order. A failed check means
 * another writer changed something the body relied on: the whole transaction reruns from fresh
 * reads. Decisions over a whole hash (every machine of an app) use the per-kind counter in
 * `<ns>:versions` as their condition. Sequence numbers come from HINCRBY outside the
 * transaction: a number lost to a rerun is skipped, never reused.
 */
import { StoreUnavailableError } from '../errors.js';
import { counter } from '../observe/metrics.js';
import { checkStored, randomMachineId, type StoredKind } from './rules.js';
import { isEntityTable, type CounterTable, type InvalidEntry, type StoreTx, type Table, type TableValues } from './tx.js';
import type { CatalogChange } from './types.js';

const conflicts = counter({
  name: 'sixpn_catalog_redis_conflicts_total',
  help: 'Catalog transactions rerun because another writer changed a field they had read.',
});

/** Reruns before a transaction gives up under contention (each rerun re-reads what changed). */
const MAX_ATTEMPTS = 50;

/** Key names of one namespace: one hash per table, the write counters, the change channel. */
export function keysOf(ns: string) {
  const tables: Record<Table, string> = {
    org: `${ns}:orgs`,
    app: `${ns}:apps`,
    machine: `${ns}:machines`,
    flycast: `${ns}:flycast`,
    peer: `${ns}:peers`,
    host: `${ns}:hosts`,
    node: `${ns}:nodes`,
    token: `${ns}:tokens`,
    owners: `${ns}:address-owners`,
    networkIds: `${ns}:org-network-ids`,
    hostIds: `${ns}:host-ids`,
    meta: `${ns}:meta`,
    flycastSeq: `${ns}:seq:flycast`,
    peerSeq: `${ns}:seq:peer`,
  };
  return { tables, versions: `${ns}:versions`, channel: `${ns}:changes` };
}
export type Keys = ReturnType<typeof keysOf>;

// KEYS: the hashes touched. ARGV[1]: {c = {{key#, field, value-or-false}}, w = {{op, key#, field, value}}, m = message or false};
// ARGV[2]: channel. A missing field reads as false in Lua, so "absent" checks compare equal to false.
export const COMMIT_LUA = `
local s = cjson.decode(ARGV[1])
for _, c in ipairs(s.c) do
  if redis.call('HGET', KEYS[c[1]], c[2]) ~= c[3] then return 0 end
end
for _, w in ipairs(s.w) do
  if w[1] == 'set' then redis.call('HSET', KEYS[w[2]], w[3], w[4])
  elseif w[1] == 'del' then redis.call('HDEL', KEYS[w[2]], w[3])
  else redis.call('HINCRBY', KEYS[w[2]], w[3], 1) end
end
if s.m then redis.call('PUBLISH', ARGV[2], s.m) end
return 1
`;

// KEYS[1]: counter hash; ARGV: org, first number. Numbers only grow, so none is handed out twice.
export const RESERVE_LUA = `
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local first = tonumber(ARGV[2])
if v < first then
  redis.call('HSET', KEYS[1], ARGV[1], first)
  v = first
end
return v
`;

/** Thrown by a body that needs a field (or, with `field` null, a whole hash) it has not read yet. */
class NeedRead {
  constructor(
    readonly key: string,
    readonly field: string | null,
    /** For a whole entity hash: the kind whose write counter becomes the condition. */
    readonly kind: StoredKind | null = null,
  ) {}
}

/** Thrown by a body that needs one more sequence number. */
class NeedSequence {
  constructor(
    readonly key: string,
    readonly org: string,
    readonly first: number,
  ) {}
}

type Write = ['set', string, string, string] | ['del', string, string] | ['incr', string, string];

/** What one hash holds, parsed once per attempt. */
interface ParsedHash {
  valid: [string, unknown][];
  invalid: InvalidEntry[];
}

/** Checks an entity read back; a value that is not JSON or fails its schema is invalid. */
function checkRaw(kind: StoredKind, key: string, raw: string): { value: unknown } | InvalidEntry {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { kind, key, reason: 'not JSON', raw };
  }
  const r = checkStored(kind, value);
  return 'value' in r ? r : { ...r, key, raw: value };
}

/**
 * One attempt of a transaction. Reads, sequence numbers and random ids are kept for the reruns of
 * this attempt; writes, conditions and changes are rebuilt by each run. Reads see the attempt's
 * own writes, as in the embedded engine.
 */
export class Attempt implements StoreTx {
  private readonly known = new Map<string, string | null>();
  private readonly hashes = new Map<string, Record<string, string>>();
  private readonly parsed = new Map<string, ParsedHash>();
  private readonly sequences: number[] = [];
  private readonly ids: string[] = [];
  private seqUsed = 0;
  /** Values this run wrote (`key\0field` -> value, null for deleted). */
  private overlay = new Map<string, string | null>();
  checks = new Map<string, [string, string, string | null]>();
  writes: Write[] = [];
  changes: CatalogChange[] = [];
  resetAll = false;
  /** Invalid entries this attempt came across (logged by the store, once each). */
  readonly seenInvalid: InvalidEntry[] = [];

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
    this.overlay = new Map();
    this.resetAll = false;
  }

  learn(key: string, field: string, raw: string | null): void {
    this.known.set(`${key}\0${field}`, raw);
  }

  learnHash(key: string, all: Record<string, string>, versionField: string | null, version: string | null): void {
    this.hashes.set(key, all);
    if (versionField !== null) this.learn(this.k.versions, versionField, version);
  }

  addSequence(n: number): void {
    this.sequences.push(n);
  }

  /** The raw value of a hash field; the commit requires it to be unchanged (unless this run wrote it). */
  raw(key: string, field: string): string | null {
    const id = `${key}\0${field}`;
    const own = this.overlay.get(id);
    if (own !== undefined) return own;
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

  get<T extends Table>(table: T, key: string): TableValues[T] | undefined {
    const raw = this.raw(this.k.tables[table], key);
    if (raw === null) return undefined;
    if (table === 'flycastSeq' || table === 'peerSeq') return Number(raw) as TableValues[T];
    if (!isEntityTable(table)) return raw as TableValues[T];
    const r = checkRaw(table, key, raw);
    if ('value' in r) return r.value as TableValues[T];
    this.seenInvalid.push(r);
    return undefined;
  }

  invalid(kind: StoredKind, key: string): InvalidEntry | undefined {
    const raw = this.raw(this.k.tables[kind], key);
    if (raw === null) return undefined;
    const r = checkRaw(kind, key, raw);
    return 'value' in r ? undefined : r;
  }

  /** A whole hash as this run sees it (its own writes applied); an entity hash's write counter becomes a condition. */
  private hash(table: Table): Record<string, string> {
    const key = this.k.tables[table];
    const base = this.hashes.get(key);
    if (!base) throw new NeedRead(key, null, isEntityTable(table) ? table : null);
    if (isEntityTable(table)) this.raw(this.k.versions, table);
    const prefix = `${key}\0`;
    let mine: Record<string, string> | null = null;
    for (const [id, v] of this.overlay) {
      if (!id.startsWith(prefix)) continue;
      mine ??= { ...base };
      if (v === null) delete mine[id.slice(prefix.length)];
      else mine[id.slice(prefix.length)] = v;
    }
    return mine ?? base;
  }

  private parsedHash(kind: StoredKind): ParsedHash {
    const h = this.hash(kind);
    const memo = this.parsed.get(kind);
    if (memo && this.hashes.get(this.k.tables[kind]) === h) return memo;
    const out: ParsedHash = { valid: [], invalid: [] };
    for (const [field, raw] of Object.entries(h)) {
      const r = checkRaw(kind, field, raw);
      if ('value' in r) out.valid.push([field, r.value]);
      else out.invalid.push(r);
    }
    // Only the hash as read is memoized: one this run wrote into is parsed again.
    if (this.hashes.get(this.k.tables[kind]) === h) this.parsed.set(kind, out);
    this.seenInvalid.push(...out.invalid);
    return out;
  }

  all<T extends StoredKind>(table: T): TableValues[T][] {
    return this.parsedHash(table).valid.map(([, v]) => v as TableValues[T]);
  }

  invalidEntries(kind: StoredKind): InvalidEntry[] {
    return this.parsedHash(kind).invalid;
  }

  entries<T extends Table>(table: T): [string, TableValues[T]][] {
    if (isEntityTable(table)) return this.parsedHash(table).valid as [string, TableValues[T]][];
    const counters = table === 'flycastSeq' || table === 'peerSeq';
    return Object.entries(this.hash(table)).map(([f, v]) => [f, (counters ? Number(v) : v) as TableValues[T]]);
  }

  /** The next unused sequence number of `org` in a counter. */
  sequence(counter: CounterTable, org: string, first: number): number {
    const n = this.sequences[this.seqUsed];
    if (n === undefined) throw new NeedSequence(this.k.tables[counter], org, first);
    this.seqUsed++;
    return n;
  }

  randomId(i: number): string {
    while (this.ids.length <= i) this.ids.push(randomMachineId());
    return this.ids[i]!;
  }

  private write(table: Table, field: string, value: string | null): void {
    const key = this.k.tables[table];
    this.overlay.set(`${key}\0${field}`, value);
    this.writes.push(value === null ? ['del', key, field] : ['set', key, field, value]);
    if (isEntityTable(table)) this.writes.push(['incr', this.k.versions, table]);
  }

  set<T extends Table>(table: T, key: string, value: TableValues[T]): void {
    this.write(table, key, isEntityTable(table) ? JSON.stringify(value) : String(value));
  }

  del(table: Table, key: string): void {
    this.write(table, key, null);
  }

  dropInvalid(kind: StoredKind, key: string): void {
    this.write(kind, key, null);
  }

  keepInvalid(entry: InvalidEntry): void {
    this.write(entry.kind, entry.key, typeof entry.raw === 'string' ? entry.raw : JSON.stringify(entry.raw));
  }

  change(c: CatalogChange): void {
    this.changes.push(c);
  }

  reset(): void {
    this.resetAll = true;
  }
}

/** A published transaction: origin store, its transaction number, the changes (or a reset). */
export interface Message {
  o: string;
  n: number;
  c: CatalogChange[];
  /** Everything was replaced (restore, import, adopt): reload instead of applying changes. */
  r?: true;
}

/** What the engine needs from the store that runs it. */
export interface EngineContext {
  k: Keys;
  url: string;
  origin: string;
  /** Runs one Redis call, turning every client failure into StoreUnavailableError. */
  call<T>(fn: () => Promise<T>): Promise<T>;
  hget(key: string, field: string): Promise<string | null>;
  /** A whole hash and, for an entity hash, its write counter, in one round trip. */
  hgetall(key: string, versionField: string | null): Promise<[Record<string, string>, string | null]>;
  reserve(key: string, org: string, first: number): Promise<number>;
  commit(numKeys: number, args: string[]): Promise<number>;
  /** Last known raw values of cached keys (orgs, apps, the identity), or null for none. */
  cached(id: string): string | undefined;
  remember(key: string, field: string, raw: string | null): void;
  /** Next transaction number; a wait for this transaction's own message to come back. */
  nextTx(): number;
  awaitEcho(n: number): Promise<void> | null;
  cancelEcho(n: number): void;
  warnInvalid(e: InvalidEntry): void;
}

async function fetch(ctx: EngineContext, tx: Attempt, need: NeedRead): Promise<void> {
  if (need.field !== null) {
    const raw = await ctx.hget(need.key, need.field);
    tx.learn(need.key, need.field, raw);
    ctx.remember(need.key, need.field, raw);
    return;
  }
  const [all, version] = await ctx.hgetall(need.key, need.kind);
  tx.learnHash(need.key, all, need.kind, version);
}

async function commit(ctx: EngineContext, tx: Attempt, publish: boolean): Promise<boolean> {
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
  const n = ctx.nextTx();
  const message: Message | null = publish ? { o: ctx.origin, n, c: tx.changes, ...(tx.resetAll ? { r: true as const } : {}) } : null;
  const spec = {
    c: [...tx.checks.values()].map(([key, field, v]) => [ki(key), field, v ?? false]),
    w: tx.writes.map(([op, key, ...rest]) => [op, ki(key), ...rest]),
    m: message ? JSON.stringify(message) : false,
  };
  // Registered before the commit: the change may come back before the commit's own reply.
  const echo = message ? ctx.awaitEcho(n) : null;
  let ok: number;
  try {
    ok = Number(await ctx.commit(keys.length, [...keys, JSON.stringify(spec), ctx.k.channel]));
  } catch (err) {
    ctx.cancelEcho(n);
    throw err;
  }
  if (ok !== 1) {
    ctx.cancelEcho(n);
    return false;
  }
  await echo;
  return true;
}

export interface RunOptions {
  /** Commit nothing: return what the body read. */
  readOnly?: boolean;
  /** With readOnly: check every read at the end, so the result is one consistent cut. */
  consistent?: boolean;
}

/**
 * Runs `body` until it has everything it reads, commits its writes if nothing it read has
 * changed, and reruns the whole attempt otherwise. Errors the body throws (validation, not
 * found, conflict) reach the caller with nothing written.
 */
export async function runTransaction<T>(ctx: EngineContext, what: string, now: () => number, body: (tx: StoreTx) => T, opts: RunOptions = {}): Promise<T> {
  const cache = (id: string) => ctx.cached(id);
  for (let attempt = 1; ; attempt++) {
    // Only the first attempt of a write trusts the cache; after a lost race everything is read afresh.
    let tx = new Attempt(ctx.k, now(), attempt === 1 && !opts.readOnly ? cache : null);
    let result: T;
    for (;;) {
      tx.begin();
      try {
        result = body(tx);
        break;
      } catch (e) {
        if (e instanceof NeedRead) await fetch(ctx, tx, e);
        else if (e instanceof NeedSequence) tx.addSequence(await ctx.reserve(e.key, e.org, e.first));
        else if (tx.speculative) tx = new Attempt(ctx.k, tx.now, null);
        else throw e;
      }
    }
    for (const bad of tx.seenInvalid) ctx.warnInvalid(bad);
    if (opts.readOnly && !opts.consistent) return result;
    const publish = !opts.readOnly && (tx.changes.length > 0 || tx.resetAll);
    if (await commit(ctx, tx, publish)) return result;
    conflicts.inc();
    if (attempt >= MAX_ATTEMPTS) throw new StoreUnavailableError(`catalog store at ${ctx.url} is too busy: ${what} lost ${attempt} races in a row; try again`);
    await new Promise((r) => setTimeout(r, Math.random() * Math.min(attempt, 10)));
  }
}


/**
 * The embedded store: the catalog in memory, optionally persisted to one JSON file (the
 * document format of ./document.ts). It is the embedded transaction engine for the operations
 * of ./operations.ts.
 *
 * Every transaction runs synchronously on the one JS thread (so it is atomic) against
 * copy-on-write layers over the committed tables (./draft.ts); the layers are written to the
 * file (./files.ts: temp file, fsync, rename), and only once that write succeeded are they
 * applied in memory and the changes published. A write that fails (read-only filesystem, full
 * disk) thus changes nothing, in memory either, and readers never see a change the file does not
 * hold. Transactions arriving together share one write. A file that exists but cannot be read as
 * a catalog stops start-up with an error naming it: it is never silently replaced by an empty
 * catalog.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { StoreUnavailableError } from '../errors.js';
import { applyLayers, layersOver, type Layers } from './draft.js';
import { documentText, DocumentError, parseDocument, type CatalogDocument } from './document.js';
import { removeStaleTempFiles, writeFileAtomic } from './files.js';
import { invalidEntries } from './metrics.js';
import { loadEntries, readEntries, readIdentity, TransactionalStore, type TxOptions } from './operations.js';
import { randomMachineId, type StoredKind } from './rules.js';
import type { StoreListener, StoreEvent } from './store.js';
import { TABLES, type InvalidEntry, type StoreTx, type Table, type TableValues } from './tx.js';
import type { CatalogChange, CatalogSnapshot } from './types.js';

export { removeStaleTempFiles } from './files.js';

export interface MemoryStoreOptions {
  /** Persist to this JSON file; absent: memory only (tests, `sixpn proxy` with inline seed). */
  path?: string;
  /** Region codes machines and peers may name. */
  regions: Iterable<string>;
  now?: () => number;
  /** Skipped entries and removed temp files are reported here at open, if given. */
  log?: { warn(obj: object, msg: string): void };
}

/** The committed catalog: one map per table, and the entries that failed their check at load. */
type Tables = { [T in Table]: Map<string, TableValues[T]> } & {
  /** Invalid entries, by the order they were read (load order, then imports). */
  rejected: Map<number, InvalidEntry>;
};
type Draft = Layers<Tables>;

function emptyTables(): Tables {
  const t = Object.fromEntries(TABLES.map((name) => [name, new Map()])) as Record<string, Map<unknown, unknown>>;
  t.rejected = new Map();
  return t as unknown as Tables;
}

/** What one transaction hands back: its result and what to publish once it is on disk. */
interface Outcome {
  result: unknown;
  changes: CatalogChange[];
  reset: boolean;
}

interface Pending {
  run: (d: Draft) => Outcome;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** The embedded engine's transaction: reads and writes one set of layers. */
class DraftTx implements StoreTx {
  readonly changes: CatalogChange[] = [];
  resetAll = false;
  private readonly ids: string[] = [];

  constructor(
    private readonly d: Draft,
    readonly now: number,
    private readonly nextRejected: () => number,
  ) {}

  get<T extends Table>(table: T, key: string): TableValues[T] | undefined {
    return (this.d[table] as Layers<Tables>[T]).get(key) as TableValues[T] | undefined;
  }

  all<T extends StoredKind>(table: T): TableValues[T][] {
    return [...(this.d[table] as Layers<Tables>[T]).values()] as TableValues[T][];
  }

  entries<T extends Table>(table: T): [string, TableValues[T]][] {
    return [...(this.d[table] as Layers<Tables>[T]).entries()] as [string, TableValues[T]][];
  }

  set<T extends Table>(table: T, key: string, value: TableValues[T]): void {
    (this.d[table] as unknown as { set(k: string, v: unknown): void }).set(key, value);
  }

  del(table: Table, key: string): void {
    this.d[table].delete(key);
  }

  sequence(counter: 'flycastSeq' | 'peerSeq', org: string, first: number): number {
    const n = Math.max(first, (this.d[counter].get(org) ?? first - 1) + 1);
    this.d[counter].set(org, n);
    return n;
  }

  randomId(i: number): string {
    while (this.ids.length <= i) this.ids.push(randomMachineId());
    return this.ids[i]!;
  }

  private findInvalid(kind: StoredKind, key: string): [number, InvalidEntry] | undefined {
    for (const e of this.d.rejected.entries()) if (e[1].kind === kind && e[1].key === key) return e;
    return undefined;
  }

  invalid(kind: StoredKind, key: string): InvalidEntry | undefined {
    return this.findInvalid(kind, key)?.[1];
  }

  invalidEntries(kind: StoredKind): InvalidEntry[] {
    return [...this.d.rejected.values()].filter((e) => e.kind === kind);
  }

  dropInvalid(kind: StoredKind, key: string): void {
    const e = this.findInvalid(kind, key);
    if (e) this.d.rejected.delete(e[0]);
  }

  keepInvalid(entry: InvalidEntry): void {
    this.d.rejected.set(this.nextRejected(), entry);
  }

  change(c: CatalogChange): void {
    this.changes.push(c);
  }

  reset(): void {
    this.resetAll = true;
  }
}

export class MemoryStore extends TransactionalStore {
  readonly kind = 'embedded' as const;
  private readonly t: Tables = emptyTables();
  private readonly listeners = new Set<StoreListener>();
  private readonly now: () => number;
  private readonly path: string | undefined;
  private rejectedSeq = 0;
  /** Transactions waiting for the next file write. */
  private queue: Pending[] = [];
  /** The write in progress (with everything queued behind it), if any. */
  private flushing: Promise<void> | null = null;
  private closed = false;

  private constructor(opts: MemoryStoreOptions) {
    super(opts.regions, 'the catalog file');
    this.now = opts.now ?? Date.now;
    this.path = opts.path;
  }

  /** Opens (and loads, when the file exists) an embedded store. */
  static async open(opts: MemoryStoreOptions): Promise<MemoryStore> {
    const store = new MemoryStore(opts);
    if (opts.path) {
      for (const name of await removeStaleTempFiles(opts.path)) {
        opts.log?.warn({ file: join(dirname(opts.path), name) }, 'removed a stale catalog temp file (a writer died before renaming it)');
      }
      await store.load(opts.path, opts.log);
    }
    return store;
  }

  private async load(path: string, log: MemoryStoreOptions['log']): Promise<void> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new StoreUnavailableError(`cannot read catalog file ${path}: ${(err as Error).message}`, { cause: err });
    }
    let doc: CatalogDocument;
    try {
      doc = parseDocument(text);
    } catch (err) {
      const why = err instanceof DocumentError ? err.message : String(err);
      throw new StoreUnavailableError(`catalog file ${path} is corrupt (${why}); fix or move it away, sixpn will not start on an empty catalog in its place`, { cause: err });
    }
    for (const r of doc.invalid) {
      log?.warn({ kind: r.kind, key: r.key, reason: r.reason, file: path }, `catalog entry skipped: ${r.kind} ${r.key} is invalid (${r.reason}); it stays in the file but is not served until fixed`);
    }
    const d = layersOver(this.t);
    const tx = new DraftTx(d, this.now(), () => this.rejectedSeq++);
    loadEntries(tx, doc);
    if (doc.identity) tx.set('meta', 'identity', JSON.stringify(doc.identity));
    applyLayers(d, this.t);
    invalidEntries.set(this.t.rejected.size);
  }

  /** The file's text for the tables as a transaction left them: entries in table order, invalid ones after. */
  private serialize(d: Draft): string {
    const tx = new DraftTx(d, this.now(), () => 0);
    const valid: CatalogDocument['valid'] = {};
    for (const kind of ['org', 'app', 'machine', 'flycast', 'peer', 'host', 'token'] as const) valid[kind] = tx.all(kind) as never;
    const seq = readEntries(tx).sequences;
    return documentText({ format: 'sixpn-catalog/1', identity: readIdentity(tx), valid, invalid: [...d.rejected.values()], sequences: seq });
  }

  private emit(events: StoreEvent[]): void {
    for (const e of events) {
      for (const l of this.listeners) {
        try {
          l(e);
        } catch {
          // A failing subscriber must not break the transaction or other subscribers.
        }
      }
    }
  }

  private publish(out: Outcome): void {
    this.emit(out.reset ? [{ kind: 'reset', at: this.now() }] : out.changes);
    if (out.reset) invalidEntries.set(this.t.rejected.size);
  }

  private runOn(d: Draft, body: (tx: StoreTx) => unknown): Outcome {
    const tx = new DraftTx(d, this.now(), () => this.rejectedSeq++);
    const result = body(tx);
    return { result, changes: tx.changes, reset: tx.resetAll };
  }

  /**
   * Runs one transaction. A read runs at once on the committed tables. Without a file a write is
   * applied at once. With one it joins the next write: all transactions queued while a write
   * runs are run in order against one set of layers (each in its own sub-layer, so one that
   * throws leaves the others), written together, and applied and published only when that write
   * succeeded; when it fails, every one of them fails.
   */
  protected transact<T>(_what: string, body: (tx: StoreTx) => T, opts: TxOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('catalog store is closed'));
    if (opts.readOnly || !this.path) {
      try {
        const d = layersOver(this.t);
        const out = this.runOn(d, body);
        if (!opts.readOnly) {
          applyLayers(d, this.t);
          this.publish(out);
        }
        return Promise.resolve(structuredClone(out.result) as T);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run: (d) => this.runOn(d, body), resolve: resolve as (v: unknown) => void, reject });
      // A microtask later, so that transactions started together share the first write too.
      this.flushing ??= Promise.resolve().then(() => this.flush(this.path!));
    });
  }

  private async flush(path: string): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue;
      this.queue = [];
      const d = layersOver(this.t);
      const done: [Pending, Outcome][] = [];
      for (const item of batch) {
        const sub = layersOver<Tables>(d);
        try {
          const out = item.run(sub);
          applyLayers(sub, d);
          done.push([item, out]);
        } catch (err) {
          item.reject(err);
        }
      }
      if (!done.length) continue;
      try {
        await writeFileAtomic(path, this.serialize(d));
      } catch (err) {
        const e = new StoreUnavailableError(`cannot write catalog file ${path}: ${(err as Error).message}`, { cause: err });
        for (const [item] of done) item.reject(e);
        continue;
      }
      applyLayers(d, this.t);
      for (const [, out] of done) this.publish(out);
      for (const [item, out] of done) item.resolve(structuredClone(out.result));
    }
    this.flushing = null;
  }

  async snapshot(): Promise<CatalogSnapshot> {
    if (this.closed) throw new StoreUnavailableError('catalog store is closed');
    const t = this.t;
    const tx = new DraftTx(layersOver(t), this.now(), () => 0);
    return structuredClone({
      orgs: [...t.org.values()],
      apps: [...t.app.values()],
      machines: [...t.machine.values()],
      flycast: [...t.flycast.values()],
      peers: [...t.peer.values()],
      hosts: [...t.host.values()],
      nodes: [...t.node.values()],
      identity: readIdentity(tx),
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

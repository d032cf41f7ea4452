/**
 * A node's snapshot of its last good view, on disk: what it serves from when it starts while the
 * store is down, and what `sixpn catalog restore --from-snapshot` puts back into a store that
 * came back empty.
 *
 * The snapshot is a catalog document (./document.ts): the entities of the node's view, plus the
 * tokens (hashes only) and the sequence counters read from the store with each write, so a
 * restore is exact (a released Flycast address is still not handed out again). It is written
 * atomically (./files.ts), at most once per `[catalog] snapshot_interval` after a change, and
 * only while the store holds this node's catalog: it never holds another catalog's data.
 * Node liveness is not in it; entries the store skipped as invalid are not in it either (the
 * view never had them).
 */
import { readFile } from 'node:fs/promises';
import { StoreUnavailableError } from '../errors.js';
import { gauge } from '../observe/metrics.js';
import { documentText, DocumentError, parseDocument, type CatalogDocument } from './document.js';
import { removeStaleTempFiles, writeFileAtomic } from './files.js';
import type { CatalogView } from './view.js';
import type { CatalogIdentity, Token } from './types.js';

const writtenAt = gauge({
  name: 'sixpn_catalog_snapshot_written_timestamp_seconds',
  help: "When this node last wrote its catalog snapshot (its last good view) to disk, in seconds since the epoch; 0 before the first.",
});

/** What a snapshot holds besides the view: read from the store with each write, kept for when the store is gone. */
export interface SnapshotExtras {
  tokens: Token[];
  sequences: CatalogDocument['sequences'];
}

/** Reads a snapshot; null when there is none. A corrupt one is an error that says what to do. */
export async function readSnapshot(path: string): Promise<CatalogDocument | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new StoreUnavailableError(`cannot read the catalog snapshot ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const doc = parseDocument(text);
    if (!doc.identity) throw new DocumentError('it names no catalog identity');
    return doc;
  } catch (err) {
    const why = err instanceof DocumentError ? err.message : String(err);
    throw new StoreUnavailableError(`the catalog snapshot ${path} is corrupt (${why}); move it away to start without it (the node then needs the catalog store to be reachable)`, { cause: err });
  }
}

/** The document of a view: its entities, with tokens and counters from `extras`. */
export function viewDocument(view: CatalogView, identity: CatalogIdentity, extras: SnapshotExtras, node: string, now = Date.now()): CatalogDocument {
  return {
    format: 'sixpn-catalog/1',
    identity,
    written_at: now,
    node,
    valid: {
      org: [...view.orgs.values()],
      app: [...view.apps.values()],
      machine: [...view.machines.values()],
      flycast: [...view.flycast.values()],
      peer: [...view.peers.values()],
      host: [...view.hosts.values()],
      token: extras.tokens,
    },
    invalid: [],
    sequences: extras.sequences,
  };
}

export interface SnapshotWriterOptions {
  path: string;
  intervalMs: number;
  /** The document to write now, or null when nothing good can be written (the store is not this node's catalog). */
  build(): Promise<CatalogDocument | null>;
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

/** Writes the snapshot after changes, at most once per interval; a failed write is logged once and retried with the next change. */
export class SnapshotWriter {
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private dirty = false;
  private failing = false;
  private closed = false;
  lastWrittenAt: number | null = null;

  constructor(private readonly o: SnapshotWriterOptions) {}

  /** Removes temp files a killed writer left. */
  async open(): Promise<void> {
    for (const name of await removeStaleTempFiles(this.o.path)) this.o.log.warn({ file: name }, 'removed a stale catalog snapshot temp file');
  }

  /** Something changed: write within the interval. */
  touch(): void {
    this.dirty = true;
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.o.intervalMs);
    this.timer.unref();
  }

  /** Writes now if something changed (or `force`). */
  async flush(force = false): Promise<void> {
    if (this.writing) await this.writing;
    if (!this.dirty && !force) return;
    this.dirty = false;
    this.writing = this.write().finally(() => (this.writing = null));
    await this.writing;
  }

  private async write(): Promise<void> {
    let doc: CatalogDocument | null;
    try {
      doc = await this.o.build();
    } catch {
      this.dirty = true; // the store is away: try again with the next change
      return;
    }
    if (!doc) return;
    try {
      await writeFileAtomic(this.o.path, documentText(doc));
      this.lastWrittenAt = doc.written_at ?? Date.now();
      writtenAt.set(this.lastWrittenAt / 1000);
      if (this.failing) this.o.log.info({ file: this.o.path }, 'catalog snapshot written again');
      this.failing = false;
    } catch (err) {
      this.dirty = true;
      if (!this.failing) this.o.log.warn({ file: this.o.path, err: (err as Error).message }, 'cannot write the catalog snapshot; the node keeps serving, but a start while the store is down would use an older snapshot');
      this.failing = true;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.flush();
  }
}

/**
 * The transaction interface every catalog store provides, and the tables it works on.
 *
 * The operations (./operations.ts) are written once against `StoreTx`; a store only says how
 * one transaction reads and writes its tables and how it commits:
 *
 *   embedded (./memory.ts)  copy-on-write layers over in-memory maps (./draft.ts), written to
 *                           the file before they are applied, so a failed write changes nothing
 *   redis (./redis-tx.ts)   an optimistic transaction: every value read becomes a condition of
 *                           one Lua script that checks them, writes and publishes atomically
 *
 * A body must be a pure function of what it reads through the transaction (the Redis store
 * reruns it after each read it did not have yet, and after a lost race).
 *
 * @example
 *   const org = tx.get('org', 'acme');              // undefined when absent
 *   tx.set('org', 'acme', { name: 'acme', network_id: 24 });
 *   tx.change({ kind: 'org', op: 'put', key: 'acme', value, at: tx.now });
 */
import type { RejectedEntry, StoredKind } from './rules.js';
import type { App, CatalogChange, FlycastIp, Host, Machine, NodeEntry, Org, Peer, Token } from './types.js';

/** The values each table holds: entities (JSON in Redis), and the indexes the rules need. */
export interface TableValues {
  org: Org;
  app: App;
  machine: Machine;
  flycast: FlycastIp;
  peer: Peer;
  host: Host;
  node: NodeEntry;
  token: Token;
  /** address -> who holds it (`machine <id>`, `flycast ip of <app>`, `peer <org>/<name>`) */
  owners: string;
  /** network id (decimal) -> org name */
  networkIds: string;
  /** host id (decimal) -> host name */
  hostIds: string;
  /** `identity` -> the catalog identity (JSON) */
  meta: string;
  /** org -> last Flycast sequence number handed out */
  flycastSeq: number;
  /** org -> last peer sequence number handed out */
  peerSeq: number;
}

export type Table = keyof TableValues;
export type EntityTable = StoredKind;
export type CounterTable = 'flycastSeq' | 'peerSeq';

/** Every table, in the order a document or a Redis namespace lists them. */
export const TABLES = ['org', 'app', 'machine', 'flycast', 'peer', 'host', 'node', 'token', 'owners', 'networkIds', 'hostIds', 'meta', 'flycastSeq', 'peerSeq'] as const satisfies readonly Table[];
export const ENTITY_TABLES = ['org', 'app', 'machine', 'flycast', 'peer', 'host', 'node', 'token'] as const satisfies readonly EntityTable[];

export const isEntityTable = (t: Table): t is EntityTable => (ENTITY_TABLES as readonly string[]).includes(t);

/** A stored entry that fails its check: not served, kept as it was until someone removes it. */
export interface InvalidEntry extends RejectedEntry {
  raw: unknown;
}

export interface StoreTx {
  /** The time of this transaction (epoch ms); every timestamp it writes is this one. */
  readonly now: number;
  get<T extends Table>(table: T, key: string): TableValues[T] | undefined;
  /** Every valid entry of an entity table. */
  all<T extends EntityTable>(table: T): TableValues[T][];
  /** Every key and value of a table (entities: the valid ones). */
  entries<T extends Table>(table: T): [string, TableValues[T]][];
  set<T extends Table>(table: T, key: string, value: TableValues[T]): void;
  del(table: Table, key: string): void;
  /** The next unused number of `org` in a counter, at least `first`; never handed out twice. */
  sequence(counter: CounterTable, org: string, first: number): number;
  /** The i-th random machine id of this transaction (stable when the body is rerun). */
  randomId(i: number): string;
  /** The entry stored under this key when it fails its check (an older version, a hand edit). */
  invalid(kind: StoredKind, key: string): InvalidEntry | undefined;
  /** Every entry of a kind that fails its check. */
  invalidEntries(kind: StoredKind): InvalidEntry[];
  /** Removes an invalid entry (it was never published: no change). */
  dropInvalid(kind: StoredKind, key: string): void;
  /** Stores an entry that fails its check as it is (an import keeps what it cannot serve). */
  keepInvalid(entry: InvalidEntry): void;
  /** A change to publish once the transaction commits. */
  change(c: CatalogChange): void;
  /** Everything was replaced: subscribers reload instead of applying changes. */
  reset(): void;
}

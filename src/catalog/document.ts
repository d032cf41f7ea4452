/**
 * The catalog as one JSON document (`sixpn-catalog/1`): the embedded store's file, a node's
 * snapshot of its last good view, and `sixpn catalog export` / `import` are all this format, so
 * any of them can restore a catalog (`sixpn catalog restore --from FILE`).
 *
 * Each entry is checked on its own (rules.ts checkStored): one that fails is kept as it was,
 * apart from the valid ones, and written back unchanged, so nothing vanishes behind the
 * operator's back. Tokens are in it as their SHA-256 hashes only (never a secret).
 */
import { z } from 'zod';
import { checkStored, type StoredEntity, type StoredKind } from './rules.js';
import type { InvalidEntry } from './tx.js';
import { catalogIdentitySchema, type CatalogIdentity } from './types.js';

export const DOCUMENT_FORMAT = 'sixpn-catalog/1';

/** The document's array for each kind it holds (node liveness is not catalog content). */
export const SECTIONS = { org: 'orgs', app: 'apps', machine: 'machines', flycast: 'flycast', peer: 'peers', host: 'hosts', token: 'tokens' } as const satisfies Partial<Record<StoredKind, string>>;
type DocKind = keyof typeof SECTIONS;
const DOC_KINDS = Object.keys(SECTIONS) as DocKind[];

export interface DocumentEntries {
  valid: { [K in StoredKind]?: StoredEntity<K>[] };
  invalid: InvalidEntry[];
  sequences: { flycast: Record<string, number>; peer: Record<string, number> };
}

export interface CatalogDocument extends DocumentEntries {
  format: typeof DOCUMENT_FORMAT;
  /** null in files written before catalogs had one. */
  identity: CatalogIdentity | null;
  /** Epoch ms it was written (exports and snapshots). */
  written_at?: number;
  /** The node that wrote it (snapshots). */
  node?: string;
}

const documentSchema = z
  .object({
    format: z.literal(DOCUMENT_FORMAT),
    identity: catalogIdentitySchema.nullable().default(null),
    written_at: z.number().int().nonnegative().optional(),
    node: z.string().max(200).optional(),
    orgs: z.array(z.unknown()),
    apps: z.array(z.unknown()),
    machines: z.array(z.unknown()),
    flycast: z.array(z.unknown()),
    peers: z.array(z.unknown()),
    /** Absent in files written before hosts existed. */
    hosts: z.array(z.unknown()).default([]),
    /** Absent in files written before tokens existed. */
    tokens: z.array(z.unknown()).default([]),
    sequences: z.object({ flycast: z.record(z.number().int().nonnegative()), peer: z.record(z.number().int().nonnegative()) }),
  })
  .strict();

/** Why a text is not a catalog document (the caller names the file or the request). */
export class DocumentError extends Error {}

/** Parses a document; throws DocumentError naming the first problems. */
export function parseDocument(text: string): CatalogDocument {
  let data: z.infer<typeof documentSchema>;
  try {
    data = documentSchema.parse(JSON.parse(text));
  } catch (err) {
    const why = err instanceof z.ZodError ? err.issues.slice(0, 3).map((i) => `${i.path.join('.') || 'document'}: ${i.message}`).join('; ') : (err as Error).message;
    throw new DocumentError(why, { cause: err });
  }
  const valid: DocumentEntries['valid'] = {};
  const invalid: InvalidEntry[] = [];
  for (const kind of DOC_KINDS) {
    const out: unknown[] = [];
    for (const raw of data[SECTIONS[kind]]) {
      const r = checkStored(kind, raw);
      if ('value' in r) out.push(r.value);
      else invalid.push({ ...r, raw });
    }
    valid[kind] = out as never;
  }
  return {
    format: DOCUMENT_FORMAT,
    identity: data.identity,
    ...(data.written_at !== undefined ? { written_at: data.written_at } : {}),
    ...(data.node !== undefined ? { node: data.node } : {}),
    valid,
    invalid,
    sequences: data.sequences,
  };
}

/** The document's JSON text: each kind's valid entries, then its invalid ones as they were read. */
export function documentText(doc: CatalogDocument): string {
  const out: Record<string, unknown> = { format: DOCUMENT_FORMAT, identity: doc.identity };
  if (doc.written_at !== undefined) out.written_at = doc.written_at;
  if (doc.node !== undefined) out.node = doc.node;
  for (const kind of DOC_KINDS) out[SECTIONS[kind]] = [...(doc.valid[kind] ?? []), ...doc.invalid.filter((e) => e.kind === kind).map((e) => e.raw)];
  out.sequences = doc.sequences;
  return JSON.stringify(out);
}

/** How many entries a document holds, by section (for messages). */
export function documentCounts(doc: CatalogDocument): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kind of DOC_KINDS) out[SECTIONS[kind]] = (doc.valid[kind]?.length ?? 0) + doc.invalid.filter((e) => e.kind === kind).length;
  return out;
}

/**
 * The /v1/catalog routes: the node's catalog state, and what an operator does when the store
 * came back empty or holds another catalog (src/catalog/guard.ts): restore (from a document or
 * this node's snapshot), adopt the store as it is, and export / import for backups. Admin only.
 *
 *   GET  /v1/catalog            the guard's status (state, identity, message, snapshot)
 *   GET  /v1/catalog/export     the whole catalog as a sixpn-catalog/1 document
 *   POST /v1/catalog/import     {document}: fills an empty catalog, keeping its identity
 *   POST /v1/catalog/restore    {document} or {from_snapshot: true}, with {force} to replace a non-empty store
 *   POST /v1/catalog/adopt      accepts the store as it is
 */
import { z } from 'zod';
import { DocumentError, parseDocument, type CatalogDocument } from '../catalog/document.js';
import type { CatalogGuard } from '../catalog/guard.js';
import { parseOrThrow } from '../catalog/rules.js';
import { ValidationError } from '../errors.js';
import type { Router } from './http.js';
import { adminOnly } from './tokens.js';

const restoreSchema = z
  .object({
    document: z.unknown().optional(),
    from_snapshot: z.boolean().default(false),
    force: z.boolean().default(false),
  })
  .strict()
  .refine((b) => (b.document === undefined) !== !b.from_snapshot, { message: 'give either document or from_snapshot: true' });
const importSchema = z.object({ document: z.unknown() }).strict();

function documentOf(raw: unknown): CatalogDocument {
  try {
    return parseDocument(JSON.stringify(raw));
  } catch (err) {
    throw new ValidationError(`invalid catalog document: ${err instanceof DocumentError ? err.message : String(err)}`);
  }
}

/** Catalog routes need a body larger than the API's usual 1 MiB. */
export const CATALOG_BODY_BYTES = 256 * 1024 * 1024;

export function addCatalogRoutes(r: Router, guard: () => CatalogGuard | undefined): void {
  const need = (): CatalogGuard => {
    const g = guard();
    if (!g) throw new ValidationError('this node has no catalog guard');
    return g;
  };
  r.add('GET', '/v1/catalog', async (req) => {
    adminOnly(req.principal, 'the catalog status');
    return { status: 200, body: need().status() };
  });
  r.add('GET', '/v1/catalog/export', async (req) => {
    adminOnly(req.principal, 'exporting the catalog');
    const { documentText } = await import('../catalog/document.js');
    return { status: 200, body: JSON.parse(documentText(await need().exportDocument())) as unknown };
  });
  r.add('POST', '/v1/catalog/import', async (req) => {
    adminOnly(req.principal, 'importing a catalog');
    const b = parseOrThrow(importSchema, req.body ?? {}, 'import');
    const identity = await need().importDocument(documentOf(b.document));
    return { status: 200, body: { identity } };
  });
  r.add('POST', '/v1/catalog/restore', async (req) => {
    adminOnly(req.principal, 'restoring the catalog');
    const b = parseOrThrow(restoreSchema, req.body ?? {}, 'restore');
    const doc = b.document === undefined ? null : documentOf(b.document);
    const identity = await need().restore(doc, { force: b.force, source: doc ? 'a document' : 'the snapshot of this node' });
    return { status: 200, body: { identity, status: need().status() } };
  });
  r.add('POST', '/v1/catalog/adopt', async (req) => {
    adminOnly(req.principal, 'adopting the catalog store');
    const identity = await need().adopt();
    return { status: 200, body: { identity, status: need().status() } };
  });
}

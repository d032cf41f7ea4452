/**
 * `sixpn catalog status|export|import|restore|adopt`: the catalog as a whole. A node whose store
 * came back empty or holds another catalog refuses writes (SIXPN_CATALOG_DIVERGED, exit 69)
 * until an operator puts the catalog back (`restore`) or accepts the store as it is (`adopt`);
 * `export` and `import` are backups (sixpn-catalog/1 documents, tokens as hashes only).
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { CatalogStatus } from '../../catalog/guard.js';
import type { CatalogIdentity } from '../../catalog/types.js';
import { ValidationError } from '../../errors.js';
import { API_OPTIONS, type Command } from '../args.js';
import { json } from '../output.js';

const iso = (t: number | null): string => (t === null ? '-' : new Date(t).toISOString().replace(/\.\d+Z$/, 'Z'));

async function readDocument(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ValidationError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ValidationError(`${file} is not a catalog document (not JSON: ${(err as Error).message})`);
  }
}

function statusText(s: CatalogStatus): string {
  const lines = [`State:     ${s.state}`, `Catalog:   ${s.identity ?? '-'}`];
  if (s.store_identity !== s.identity) lines.push(`Store has: ${s.store_identity ?? 'no catalog'}`);
  if (s.since !== null) lines.push(`Since:     ${iso(s.since)}`);
  if (s.snapshot) lines.push(`Snapshot:  ${s.snapshot.path} (written ${iso(s.snapshot.written_at)})`);
  if (s.message) lines.push('', s.message);
  return lines.join('\n') + '\n';
}

export const catalogStateCommands: Command[] = [
  {
    words: ['catalog', 'status'],
    usage: 'sixpn catalog status [--json]',
    summary: "The node's catalog state: ok, snapshot (store unreachable) or diverged (store wiped or replaced)",
    options: [...API_OPTIONS, 'json'],
    maxArgs: 0,
    async run(ctx) {
      const s = await (await ctx.client()).call<CatalogStatus>('GET', '/v1/catalog');
      ctx.io.out(ctx.values.json ? json(s) : statusText(s));
      return s.state === 'ok' ? 0 : 69;
    },
  },
  {
    words: ['catalog', 'export'],
    usage: 'sixpn catalog export [--output FILE]',
    summary: 'Write the whole catalog as a document (a backup: tokens as hashes, counters, host ids) to FILE or stdout',
    options: [...API_OPTIONS, 'output'],
    maxArgs: 0,
    async run(ctx) {
      const doc = await (await ctx.client()).call<unknown>('GET', '/v1/catalog/export');
      const text = JSON.stringify(doc) + '\n';
      if (ctx.values.output === undefined || ctx.values.output === '-') return void ctx.io.out(text);
      await writeFile(ctx.values.output, text, { mode: 0o600 });
      ctx.io.err(`Exported the catalog to ${ctx.values.output}\n`);
    },
  },
  {
    words: ['catalog', 'import'],
    usage: 'sixpn catalog import FILE',
    summary: 'Fill an empty catalog from an exported document (it keeps its identity)',
    options: [...API_OPTIONS],
    maxArgs: 1,
    async run(ctx) {
      const file = ctx.args[0];
      if (!file) throw new ValidationError(`missing FILE (usage: ${this.usage})`);
      const r = await (await ctx.client()).call<{ identity: CatalogIdentity }>('POST', '/v1/catalog/import', { document: await readDocument(file) });
      ctx.io.out(`Imported ${file} into catalog ${r.identity.id}\n`);
    },
  },
  {
    words: ['catalog', 'restore'],
    usage: 'sixpn catalog restore --from FILE | --from-snapshot [--yes]',
    summary: "Put a catalog back into the store (an export, or this node's snapshot of its last good view); --yes replaces a store that holds one",
    options: [...API_OPTIONS, 'from', 'from-snapshot', 'yes'],
    maxArgs: 0,
    async run(ctx) {
      const from = ctx.values.from;
      const fromSnapshot = ctx.values['from-snapshot'] === true;
      if ((from === undefined) === !fromSnapshot) throw new ValidationError(`give --from FILE or --from-snapshot (usage: ${this.usage})`);
      const body = { ...(from !== undefined ? { document: await readDocument(from) } : { from_snapshot: true }), force: ctx.values.yes === true };
      const r = await (await ctx.client()).call<{ identity: CatalogIdentity; status: CatalogStatus }>('POST', '/v1/catalog/restore', body);
      ctx.io.out(`Restored catalog ${r.identity.id} from ${from ?? "the node's snapshot"}: state ${r.status.state}, writes resume\n`);
    },
  },
  {
    words: ['catalog', 'adopt'],
    usage: 'sixpn catalog adopt --yes',
    summary: 'Accept the store as it is now (e.g. empty): every node that served the old catalog follows',
    options: [...API_OPTIONS, 'yes'],
    maxArgs: 0,
    async run(ctx) {
      if (ctx.values.yes !== true) throw new ValidationError('adopting serves the store as it is now, dropping the catalog this node serves (an empty store empties the network): run again with --yes to do that');
      const r = await (await ctx.client()).call<{ identity: CatalogIdentity; status: CatalogStatus }>('POST', '/v1/catalog/adopt');
      ctx.io.out(`Adopted the store as catalog ${r.identity.id}: state ${r.status.state}\n`);
    },
  },
];

/**
 * The `[catalog]` config section: which store holds the catalog and where. Documented in
 * src/catalog/README.md.
 */
import { z } from 'zod';

const redisUrlSchema = z.string().refine((s) => {
  try {
    return ['redis:', 'rediss:'].includes(new URL(s).protocol);
  } catch {
    return false;
  }
}, 'must be a URL like redis://host:6379 or rediss://user:password@host:6380/0');

export const catalogConfigSchema = z
  .object({
    store: z.enum(['embedded', 'redis']).default('embedded'),
    /** Embedded store file; empty keeps the catalog in memory only. */
    path: z.string().default('data/catalog.json'),
    redis_url: redisUrlSchema.default('redis://127.0.0.1:6379'),
    namespace: z.string().regex(/^[a-zA-Z0-9_.-]+$/).default('sixpn'),
  })
  .strict();

export type CatalogConfig = z.output<typeof catalogConfigSchema>;

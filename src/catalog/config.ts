/**
 * The `[catalog]` config section: which store holds the catalog and where. Documented in
 * src/catalog/README.md.
 */
import { z } from 'zod';
import { durationSchema } from './types.js';

// The scheme here; host lists, database and TLS files are checked when the store opens
// (redis-link.ts redisClientOptions), with the same key named. new URL() cannot parse a
// Sentinel host list.
const redisUrlSchema = z
  .string()
  .regex(/^(redis|rediss|redis\+sentinel):\/\/[^\s]+$/i, 'must be a URL like redis://host:6379, rediss://user:password@host:6380/0 or redis+sentinel://h1:26379,h2:26379/mymaster');

export const catalogConfigSchema = z
  .object({
    store: z.enum(['embedded', 'redis']).default('embedded'),
    /** Embedded store file; empty keeps the catalog in memory only. */
    path: z.string().default('data/catalog.json'),
    redis_url: redisUrlSchema.default('redis://127.0.0.1:6379'),
    namespace: z.string().regex(/^[a-zA-Z0-9_.-]+$/).default('sixpn'),
    /** PEM files for rediss://: the CA that signed the server's certificate; a client certificate and key. */
    redis_tls_ca: z.string().default(''),
    redis_tls_cert: z.string().default(''),
    redis_tls_key: z.string().default(''),
    /** The Sentinels' own password (redis+sentinel://), when they require one. */
    redis_sentinel_password: z.string().default(''),
    /**
     * This node's snapshot of its last good view: a path, "off", or "" (the default): a
     * snapshot beside the config (data/catalog-snapshot.json) for the Redis store, off for the
     * embedded one (its file already is this node's copy).
     */
    snapshot: z.string().default(''),
    /** At most one snapshot write per interval after changes. */
    snapshot_interval: durationSchema.default(1_000),
    /** How often the node checks that the store still holds the catalog it serves (also checked on every reconnect and write). */
    identity_check_interval: durationSchema.default(5_000),
  })
  .strict();

export type CatalogConfig = z.output<typeof catalogConfigSchema>;

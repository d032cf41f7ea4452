/**
 * The `[proxy]` config section: how the Flycast proxy listens and its timeouts.
 */
import { z } from 'zod';
import { nameSchema } from '../catalog/types.js';
import { isFlycastAddress } from '../addressing/index.js';
import { cidrSchema, durationSchema, ipAddressSchema } from '../config/common.js';

export const proxyConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    /**
     * routed: one socket per service port on `::`, app found from the destination address
     *         (needs `ip -6 route add local fdaa::/16 dev lo` or equivalent).
     * per-address: one socket per Flycast address and port.
     * dev: loopback ports mapped to Flycast addresses (see dev_mappings); for laptops.
     */
    mode: z.enum(['routed', 'per-address', 'dev']).default('per-address'),
    dev_mappings: z
      .array(
        z
          .object({
            listen_port: z.number().int().min(1).max(65535),
            listen_host: ipAddressSchema.default('127.0.0.1'),
            flycast: z.string().refine(isFlycastAddress, 'must be a Flycast address (fdaa:0:<network id>:0:1::<n>)'),
            port: z.number().int().min(1).max(65535),
            /** The caller address the ACL sees for this mapping (a loopback caller has none). */
            as_caller: ipAddressSchema.optional(),
          })
          .strict(),
      )
      .default([]),
    /**
     * Processes the data path runs in (node:cluster, sharing the listeners; ./workers.ts): 1 is a
     * single process; 0 = one per core.
     */
    workers: z.number().int().min(0).max(64).default(1),
    connect_timeout: durationSchema.default(2_000),
    idle_timeout: durationSchema.default(600_000),
    queue_timeout: durationSchema.default(1_000),
    max_queue: z.number().int().nonnegative().default(1024),
    connect_tries: z.number().int().min(1).max(10).default(3),
    /** HTTP: time for a machine to send response headers before 504. */
    upstream_timeout: durationSchema.default(60_000),
    header_timeout: durationSchema.default(10_000),
    /** HTTP: largest request head accepted from a caller (bytes); larger heads get 400. */
    max_header_size: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
    /** HTTP: most header fields in a request head; more get 400 (the proxy adds its own six). */
    max_headers: z.number().int().min(16).max(1000).default(100),
    /**
     * HTTP: caller connections with no request in flight that one source address, and one org
     * (all its addresses; callers outside every org share one count), may hold open; a new
     * connection over either is closed at once (src/proxy/admission.ts).
     */
    max_idle_per_source: z.number().int().min(1).max(1_000_000).default(256),
    max_idle_per_org: z.number().int().min(1).max(1_000_000).default(2048),
    request_timeout: durationSchema.default(300_000),
    drain_timeout: durationSchema.default(10_000),
    /** IPv4 (or other non-6PN) callers admitted as members of an org: `{ cidr, org }`. */
    allow: z.array(z.object({ cidr: cidrSchema, org: nameSchema }).strict()).default([]),
    access_log: z.boolean().default(false),
    /**
     * Ask for a garbage collection once this many bytes of socket buffers were allocated since
     * the last one (bounds memory while streaming large bodies); 0 leaves it to V8 (~64 MiB).
     */
    gc_after_bytes: z.number().int().nonnegative().default(8 * 1024 * 1024),
  })
  .strict()
  .refine((c) => c.max_idle_per_source <= c.max_idle_per_org, {
    message: 'must not exceed max_idle_per_org (one source is part of one org)',
    path: ['max_idle_per_source'],
  });

export type ProxyConfig = z.output<typeof proxyConfigSchema>;

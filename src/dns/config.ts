/**
 * The `[dns]` config section: where the .internal resolver listens and where it forwards.
 */
import { z } from 'zod';
import { durationSchema } from '../config/common.js';

export const dnsConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    port: z.number().int().min(0).max(65535).default(53),
    /** Extra addresses to listen on besides fdaa::3 and each org's <prefix>::3. */
    listen: z.array(z.string()).default([]),
    /** Listen on fdaa::3 and every org's <prefix>::3 (needs the addresses routed locally). */
    listen_6pn: z.boolean().default(true),
    upstreams: z.array(z.string()).default([]),
    upstream_timeout: durationSchema.default(2_000),
    ttl: z.number().int().min(0).max(86_400).default(5),
  })
  .strict();

export type DnsConfig = z.output<typeof dnsConfigSchema>;

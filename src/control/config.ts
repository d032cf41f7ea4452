/**
 * The `[control]` config section: the admin listener and its token. Documented in
 * src/control/README.md.
 */
import { z } from 'zod';
import { durationSchema, listenSchema } from '../config/common.js';

export const controlConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    listen: listenSchema.default('127.0.0.1:4280'),
    /** Bearer token for /v1; SIXPN_TOKEN overrides. Empty: the API refuses to start. */
    token: z.string().default(''),
    /**
     * The token is a published demo token (config/demo.toml): accepted although shorter than
     * 16 characters, and only while the admin listener is a loopback address.
     */
    demo_token: z.boolean().default(false),
    /** How long a dashboard session (the cookie /dashboard?token= gives) lasts. */
    dashboard_session: durationSchema.default(12 * 3_600_000),
    /**
     * Host names a loopback listener answers besides loopback ones (a reverse proxy in front
     * that keeps its own Host header); any other Host is refused (DNS-rebinding guard).
     */
    allowed_hosts: z.array(z.string().min(1).transform((s) => s.toLowerCase())).default([]),
  })
  .strict();

export type ControlConfig = z.output<typeof controlConfigSchema>;

/**
 * The `[control]` config section: the admin listener and its token. Documented in
 * src/control/README.md.
 */
import { z } from 'zod';
import { listenSchema } from '../config/common.js';

export const controlConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    listen: listenSchema.default('127.0.0.1:4280'),
    /** Bearer token for /v1; SIXPN_TOKEN overrides. Empty: the API refuses to start. */
    token: z.string().default(''),
  })
  .strict();

export type ControlConfig = z.output<typeof controlConfigSchema>;

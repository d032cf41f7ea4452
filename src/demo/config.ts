/**
 * The `[demo]` config section: demo machines that `sixpn up` starts for a newcomer.
 */
import { z } from 'zod';

export const demoConfigSchema = z
  .object({
    enabled: z.boolean().default(false),
  })
  .strict();

export type DemoConfig = z.output<typeof demoConfigSchema>;

/**
 * The `[health]` config section: active check policy and passive ejection.
 */
import { z } from 'zod';
import { durationSchema } from '../config/common.js';

export const healthConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    fall: z.number().int().min(1).default(3),
    rise: z.number().int().min(1).default(2),
    max_concurrent_checks: z.number().int().min(1).default(64),
    slow_start: durationSchema.default(10_000),
    passive: z
      .object({
        consecutive_failures: z.number().int().min(1).default(3),
        base_ejection: durationSchema.default(10_000),
        max_ejection: durationSchema.default(300_000),
        max_ejection_percent: z.number().min(0).max(100).default(50),
      })
      .strict()
      .default({}),
  })
  .strict();

export type HealthConfig = z.output<typeof healthConfigSchema>;

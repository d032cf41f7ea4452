/**
 * The `[health]` config section: active check policy, which machines this node checks, and
 * passive ejection (used by the proxy's balancer). Every key is documented in src/health/README.md.
 */
import { z } from 'zod';
import { regionCodeSchema } from '../catalog/types.js';
import { durationSchema } from '../config/common.js';

export const healthConfigSchema = z
  .object({
    /** Run the active checker when the `health` role is started. */
    enabled: z.boolean().default(true),
    /** Consecutive failed checks that turn a machine unhealthy. */
    fall: z.number().int().min(1).default(3),
    /** Consecutive passed checks that turn a machine healthy (also from `unknown`). */
    rise: z.number().int().min(1).default(2),
    /** Checks in flight at once on this node; the rest wait their turn (a slot is held up to a check's timeout). */
    max_concurrent_checks: z.number().int().min(1).default(256),
    /**
     * Regions whose machines this node checks. Empty: the node's own region when the catalog
     * is shared (Redis), every region with the embedded store (a single node). `"*"`: all.
     */
    regions: z.array(z.union([regionCodeSchema, z.literal('*')])).default([]),
    /**
     * How often a checker node on a shared catalog (Redis) heartbeats its liveness entry; a node
     * silent for 3 of these has its regions' checks taken over by the nearest live checker.
     */
    node_heartbeat: durationSchema.default(2_000),
    /** Window over which a re-admitted machine's share of new connections ramps up (balancer). */
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

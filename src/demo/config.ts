/**
 * The `[demo]` config section: demo machines that `sixpn up` starts for a newcomer.
 */
import { z } from 'zod';
import { nameSchema } from '../catalog/types.js';
import { hostSchema } from '../config/common.js';

export const demoConfigSchema = z
  .object({
    /** Start the demo role (first, before the proxy, so its machines are dialable). */
    enabled: z.boolean().default(false),
    /**
     * Apps whose machines this node serves itself: each machine of these apps gets a small
     * in-process server (HTTP for apps with an http service, TCP echo otherwise) on `host`,
     * and its catalog `upstream` is pointed at it. Machines added later get one too.
     */
    apps: z.array(nameSchema).default([]),
    /** Address the demo machines listen on (a free port each). */
    host: hostSchema.default('127.0.0.1'),
    /**
     * Apps that show scale to zero: when one has no machine, the demo gives it one run by this
     * node's host (the program dist/demo/machine-main.js); the app's own auto_stop_machines and
     * `[autostart]` do the rest (src/autostart).
     */
    scale_to_zero: z.array(nameSchema).default([]),
  })
  .strict();

export type DemoConfig = z.output<typeof demoConfigSchema>;

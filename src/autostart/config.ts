/**
 * The `[autostart]` config section: how long a caller waits for a machine to start, when an
 * idle machine is stopped or suspended, and the start/stop hooks of apps whose machines are
 * registered by hand (Docker, systemd). Which apps scale is the apps' own fly.toml business
 * (`auto_stop_machines`, `auto_start_machines`, `min_machines_running` per service).
 *
 * Hooks live here, in the operator's config, and never in the catalog: a command or URL that an
 * org token could write would let any org run programs on, or send requests from, a proxy node.
 */
import { z } from 'zod';
import { nameSchema } from '../catalog/types.js';
import { durationSchema } from '../config/common.js';

const atLeast = (min: number) => durationSchema.pipe(z.number().min(min, `must be at least ${min}ms`));

const argvSchema = z.array(z.string().min(1).max(4096)).min(1, 'must name the program to run').max(256);
const urlSchema = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//i.test(u), 'must be an http:// or https:// URL');

/**
 * How to start and stop the machines of one app that sixpn does not run: a command (argv; `{app}`,
 * `{machine}`, `{region}`, `{address}` are replaced) or a webhook (POSTed `{"action", "app",
 * "machine", "region", "address"}`; any 2xx is success). Without a stop, autostop leaves them.
 */
export const hookSchema = z
  .object({
    app: nameSchema,
    start: argvSchema.optional(),
    stop: argvSchema.optional(),
    start_url: urlSchema.optional(),
    stop_url: urlSchema.optional(),
  })
  .strict()
  .superRefine((h, ctx) => {
    if ((h.start === undefined) === (h.start_url === undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['start'], message: 'give exactly one of start (a command) and start_url (a webhook)' });
    if (h.stop !== undefined && h.stop_url !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['stop'], message: 'give at most one of stop (a command) and stop_url (a webhook)' });
  });

export const autostartConfigSchema = z
  .object({
    /** Start and stop machines from Flycast traffic, for the apps whose services ask for it. */
    enabled: z.boolean().default(true),
    /** Longest a caller waits for a machine to start and accept a connection before 503 (TCP: close). */
    start_timeout: atLeast(100).default(15_000),
    /** Autostop: a machine with no connection or request for this long is stopped or suspended. */
    idle_period: atLeast(100).default(300_000),
    /** Autostop: how often machines are looked at; at most half the idle period. */
    check_interval: atLeast(50).default(30_000),
    hooks: z.array(hookSchema).default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.check_interval * 2 > c.idle_period) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['check_interval'], message: `must be at most half of idle_period (${c.idle_period} ms): nodes publish a machine's activity every half idle period` });
    }
    const seen = new Set<string>();
    c.hooks.forEach((h, i) => {
      if (seen.has(h.app)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['hooks', i, 'app'], message: `app ${h.app} has two hooks` });
      seen.add(h.app);
    });
  });

export type AutostartConfig = z.output<typeof autostartConfigSchema>;
export type Hook = z.output<typeof hookSchema>;

/**
 * The `[host]` config section: the host agent that runs machines on this server. Every value is
 * checked at load (durations a timer can hold and that cannot spin, a real endpoint, a host id
 * that is not reserved), so a bad key fails start-up with its name.
 */
import { z } from 'zod';
import { nameSchema, regionCodeSchema } from '../catalog/types.js';
import { dialTargetSchema, durationSchema, hostIdSchema } from '../config/common.js';

/** A period the agent acts on: not so short that it spins (0 would be a busy loop of catalog writes). */
const periodSchema = (min: number, what: string) => durationSchema.pipe(z.number().min(min, `must be at least ${min}ms (${what})`));

export const hostConfigSchema = z
  .object({
    /** Run the host agent in `sixpn up`: register this server as a host and run its machines. */
    enabled: z.boolean().default(false),
    /** The host's name in the catalog; empty: `[node] name` (which must then be a DNS label). */
    name: z.union([z.literal(''), nameSchema]).default(''),
    /** Empty: `[node] region`. */
    region: z.union([z.literal(''), regionCodeSchema]).default(''),
    /** Two hex hextets; empty: the one the catalog (or the state folder) has for this name, else a free one. */
    host_id: z.union([z.literal(''), hostIdSchema]).default(''),
    /**
     * netns: each machine in its own network namespace on its 6PN address (root, Linux).
     * local: plain processes on loopback ports, no isolation (laptops, the `npm start` demo).
     */
    driver: z.enum(['netns', 'local']).default('netns'),
    /** Machine folders (output, exit codes), the host's key pair and id; relative to the config file. */
    state_dir: z.string().default('data/host'),
    /** Machine namespaces are `<netns_prefix><machine id>` (names are shared by every namespace of the server). */
    netns_prefix: z
      .string()
      .regex(/^[a-zA-Z0-9_.-]{1,40}$/, 'must be 1-40 letters, digits or _.-')
      .default('sixpn-'),
    /** Routing table for each machine's /128 route: `local`, because a 6PN host routes fdaa::/16 as local there. */
    route_table: z.string().regex(/^[a-z0-9_]+$/, 'must be a routing table name or number').default('local'),
    /**
     * nftables: a machine sends only from its own address and reaches only its own org (dropped
     * and counted per org otherwise). none: no filter (explicit opt-out).
     */
    isolation: z.enum(['nftables', 'none']).default('nftables'),
    /** netns driver: the user machine processes run as; empty: the agent's own user (root). */
    machine_user: z.string().regex(/^[a-z_][a-z0-9_-]*$|^$/, 'must be a user name').default('nobody'),
    /** Working folder of machine processes; empty: the agent's own. */
    workdir: z.string().default(''),
    heartbeat_interval: periodSchema(100, 'each heartbeat is a catalog write').default(2_000),
    /** A host whose heartbeat is older than this is shown unreachable, and its name may be taken over. */
    heartbeat_timeout: durationSchema.default(6_000),
    /** First restart delay of the restart policy; doubles per restart in a row, up to restart_backoff_max. */
    restart_backoff: periodSchema(10, 'the delay doubles from it: 0 would restart a crashing machine without pause').default(500),
    restart_backoff_max: durationSchema.default(30_000),
    /** A machine that stayed up this long starts its back-off from the beginning again. */
    restart_reset_after: durationSchema.default(60_000),
    /**
     * false: machines keep running when the agent stops (a restarted agent adopts them).
     * true: the agent stops them (kill_signal, kill_timeout) on shutdown and marks them stopped.
     */
    stop_on_exit: z.boolean().default(false),
    /** Full reconcile of this host's machines with the catalog, besides change events. */
    resync_interval: periodSchema(100, 'each is a full reconcile').default(10_000),
    /** `host:port` other hosts reach this one's WireGuard at (the mesh); empty: not announced. */
    wireguard_endpoint: z.union([z.literal(''), dialTargetSchema]).default(''),
    /** Output kept per machine before the oldest half is dropped (bytes). */
    log_max_bytes: z.number().int().min(4096).max(1024 ** 3).default(1024 * 1024),
    ip: z.string().default('ip'),
    nft: z.string().default('nft'),
  })
  .strict()
  .superRefine((h, ctx) => {
    if (h.heartbeat_timeout <= h.heartbeat_interval) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['heartbeat_timeout'], message: `must be longer than host.heartbeat_interval (${h.heartbeat_interval} ms)` });
    }
    if (h.restart_backoff_max < h.restart_backoff) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['restart_backoff_max'], message: `must be at least host.restart_backoff (${h.restart_backoff} ms)` });
    }
  });

export type HostConfig = z.output<typeof hostConfigSchema>;

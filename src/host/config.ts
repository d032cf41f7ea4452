/**
 * The `[host]` config section: the host agent that runs machines on this server.
 */
import { z } from 'zod';
import { parseHostId } from '../addressing/index.js';
import { nameSchema, regionCodeSchema } from '../catalog/types.js';
import { durationSchema } from '../config/common.js';

const hostIdTextSchema = z.string().refine((s) => {
  const id = parseHostId(s);
  return id !== null && id > 1;
}, 'must be two hex hextets like "a7b:7e", not 0:0 or 0:1 (infrastructure and Flycast)');

export const hostConfigSchema = z
  .object({
    /** Run the host agent in `sixpn up`: register this server as a host and run its machines. */
    enabled: z.boolean().default(false),
    /** The host's name in the catalog; empty: `[node] name` (which must then be a DNS label). */
    name: z.union([z.literal(''), nameSchema]).default(''),
    /** Empty: `[node] region`. */
    region: z.union([z.literal(''), regionCodeSchema]).default(''),
    /** Two hex hextets; empty: the one the catalog (or the state folder) has for this name, else a free one. */
    host_id: z.union([z.literal(''), hostIdTextSchema]).default(''),
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
    heartbeat_interval: durationSchema.default(2_000),
    /** A host whose heartbeat is older than this is shown unreachable, and its name may be taken over. */
    heartbeat_timeout: durationSchema.default(6_000),
    /** First restart delay of the restart policy; doubles per restart in a row, up to restart_backoff_max. */
    restart_backoff: durationSchema.default(500),
    restart_backoff_max: durationSchema.default(30_000),
    /** A machine that stayed up this long starts its back-off from the beginning again. */
    restart_reset_after: durationSchema.default(60_000),
    /**
     * false: machines keep running when the agent stops (a restarted agent adopts them).
     * true: the agent stops them (kill_signal, kill_timeout) on shutdown and marks them stopped.
     */
    stop_on_exit: z.boolean().default(false),
    /** Full reconcile of this host's machines with the catalog, besides change events. */
    resync_interval: durationSchema.default(10_000),
    /** `host:port` other hosts reach this one's WireGuard at (the mesh); empty: not announced. */
    wireguard_endpoint: z.string().default(''),
    /** Output kept per machine before the oldest half is dropped (bytes). */
    log_max_bytes: z.number().int().min(4096).default(1024 * 1024),
    ip: z.string().default('ip'),
    nft: z.string().default('nft'),
  })
  .strict();

export type HostConfig = z.output<typeof hostConfigSchema>;

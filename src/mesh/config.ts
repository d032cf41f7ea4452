/**
 * The `[mesh]` config section: the WireGuard mesh between hosts. It runs wherever the host role
 * runs machines in namespaces (`[host] enabled`, driver `netns`); the host's key pair is the
 * host role's (`<host.state_dir>/wireguard.json`) and its endpoint `[host] wireguard_endpoint`.
 */
import { z } from 'zod';
import { durationSchema } from '../config/common.js';

export const meshConfigSchema = z
  .object({
    /** Join the mesh when the host role runs with the netns driver; false: this host's machines reach only this host. */
    enabled: z.boolean().default(true),
    /**
     * Tunnel interface. With wireguard-go its control socket is `/var/run/wireguard/<name>.sock`,
     * shared by every network namespace of the server: two hosts on one server need two names.
     */
    interface: z.string().regex(/^[a-zA-Z0-9_=+.-]{1,15}$/, 'must be a Linux interface name (1-15 characters)').default('sixpn-mesh'),
    /** UDP port of the tunnel; `[host] wireguard_endpoint` should name it (or what forwards to it). */
    listen_port: z.number().int().min(1).max(65535).default(51821),
    /**
     * auto: the kernel's WireGuard when `ip link add ... type wireguard` works, else wireguard-go.
     * kernel / userspace: only that one (start-up fails when it cannot be had).
     */
    implementation: z.enum(['auto', 'kernel', 'userspace']).default('auto'),
    /** Tunnel MTU (1420 leaves room for WireGuard over an IPv6 underlay of 1500). */
    mtu: z.number().int().min(1280).max(9000).default(1420),
    /** Keepalive to every peer: hosts behind NAT stay reachable, and a new peer is handshaken at once. */
    keepalive: durationSchema.pipe(z.number().min(1_000, 'must be at least 1s').max(65_535_000, 'must be at most 65535s')).default(25_000),
    /**
     * nftables: the table `inet sixpn_mesh` forwards and delivers through the tunnel only when
     * source and destination are in the same org /48 (drops counted per org). none: explicit opt-out.
     */
    isolation: z.enum(['nftables', 'none']).default('nftables'),
    /** Table of the routes to other hosts' slices: `local`, where a 6PN host routes fdaa::/16 (more specific wins). */
    route_table: z.string().regex(/^[a-z0-9_]+$/, 'must be a routing table name or number').default('local'),
    /** Full reconcile of peers, routes and filter with the catalog, besides change events. */
    resync_interval: durationSchema.pipe(z.number().min(100, 'must be at least 100ms')).default(30_000),
    /** How often `wg show dump` (handshakes, bytes) and the drop counters are read. */
    status_interval: durationSchema.pipe(z.number().min(100, 'must be at least 100ms')).default(2_000),
    wireguard_go: z.string().default('wireguard-go'),
    wg: z.string().default('wg'),
    ip: z.string().default('ip'),
    nft: z.string().default('nft'),
  })
  .strict();

export type MeshConfig = z.output<typeof meshConfigSchema>;

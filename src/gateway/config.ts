/**
 * The `[wireguard]` config section: the userspace WireGuard gateway for laptop peers.
 */
import { z } from 'zod';
import { dialTargetSchema, durationSchema, hostIdSchema } from '../config/common.js';

export const wireguardConfigSchema = z
  .object({
    enabled: z.boolean().default(false),
    interface: z.string().regex(/^[a-zA-Z0-9_=+.-]{1,15}$/, 'must be a Linux interface name (1-15 characters)').default('sixpn0'),
    listen_port: z.number().int().min(1).max(65535).default(51820),
    /** host:port that peers dial; written into every peer config. */
    endpoint: dialTargetSchema.default('127.0.0.1:51820'),
    /** Host id under which peer addresses are allocated (`a7b:d6b`). */
    host_id: hostIdSchema.default('a7b:d6b'),
    /** Holds the gateway's key pair (mode 0600); relative to the config file. */
    state_file: z.string().default('data/gateway.json'),
    /** The gateway's public key, for control nodes that do not run the gateway. */
    public_key: z.string().optional(),
    /** MTU of the tunnel interface (1420 leaves room for WireGuard's overhead over IPv6). */
    mtu: z.number().int().min(1280).max(9000).default(1420),
    /**
     * nftables: a table `sixpn_<interface>` that drops (and counts, per peer) every packet from a
     *           peer to an address outside its own org, and to a peer from outside its org.
     * none:     no filter; only the DNS and proxy ACLs stand between orgs. Explicit opt-out.
     */
    isolation: z.enum(['nftables', 'none']).default('nftables'),
    /**
     * Routing table for the per-peer /128 routes. `local` because a node that serves 6PN
     * addresses itself routes fdaa::/16 as local in that table, which would shadow routes in main.
     */
    route_table: z.string().regex(/^[a-z0-9_]+$/, 'must be a routing table name or number').default('local'),
    /** Full reconcile of peers, routes and filter against the catalog, besides change events. */
    resync_interval: durationSchema.default(30_000),
    /** How often `wg show dump` is read for peer status (handshakes, bytes) and drop counters. */
    status_interval: durationSchema.default(3_000),
    /** The userspace WireGuard implementation and the tools, for hosts that keep them elsewhere. */
    wireguard_go: z.string().default('wireguard-go'),
    wg: z.string().default('wg'),
    nft: z.string().default('nft'),
  })
  .strict();

export type WireguardConfig = z.output<typeof wireguardConfigSchema>;

/**
 * The `[wireguard]` config section: the userspace WireGuard gateway for laptop peers.
 */
import { z } from 'zod';

export const wireguardConfigSchema = z
  .object({
    enabled: z.boolean().default(false),
    interface: z.string().regex(/^[a-zA-Z0-9_=+.-]{1,15}$/, 'must be a Linux interface name (1-15 characters)').default('sixpn0'),
    listen_port: z.number().int().min(1).max(65535).default(51820),
    /** host:port that peers dial; written into every peer config. */
    endpoint: z.string().default('127.0.0.1:51820'),
    /** Host id under which peer addresses are allocated (`a7b:d6b`). */
    host_id: z.string().default('a7b:d6b'),
    /** Holds the gateway's key pair (mode 0600); relative to the config file. */
    state_file: z.string().default('data/gateway.json'),
    /** The gateway's public key, for control nodes that do not run the gateway. */
    public_key: z.string().optional(),
  })
  .strict();

export type WireguardConfig = z.output<typeof wireguardConfigSchema>;

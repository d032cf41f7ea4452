/**
 * The `[dns]` config section: where the .internal resolver listens and where it forwards.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { nameSchema } from '../catalog/types.js';
import { durationSchema } from '../config/common.js';

/** An upstream resolver: `1.1.1.1`, `1.1.1.1:53`, `[2606:4700::1111]:53` or a bare IPv6 address. */
export const upstreamResolverSchema = z
  .string()
  .transform((s, ctx) => {
    let host = s;
    let port = 53;
    const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
    const v4port = /^([0-9.]+):(\d{1,5})$/.exec(s);
    if (bracket) {
      host = bracket[1]!;
      if (bracket[2]) port = Number(bracket[2]);
    } else if (v4port) {
      host = v4port[1]!;
      port = Number(v4port[2]);
    }
    if (isIP(host) === 0 || port < 1 || port > 65535) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be an IP address with an optional port (1.1.1.1:53, [::1]:5353), got ${JSON.stringify(s)}` });
      return z.NEVER;
    }
    return { host, port };
  });
export type UpstreamResolver = z.output<typeof upstreamResolverSchema>;

export const dnsConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** UDP and TCP port of every listener. 0 picks a free port (tests; only sensible with one listener). */
    port: z.number().int().min(0).max(65535).default(53),
    /** Extra IP addresses to listen on besides fdaa::3 and each org's <prefix>::3 (e.g. "127.0.0.1"). */
    listen: z.array(z.string().refine((s) => isIP(s) !== 0, 'must be an IP address')).default([]),
    /** Listen on fdaa::3 and every org's <prefix>::3 (needs the addresses routed locally). */
    listen_6pn: z.boolean().default(true),
    /** Resolvers that answer names outside .internal and .flycast, tried in order. Empty: REFUSED. */
    upstreams: z.array(upstreamResolverSchema).default([]),
    /** How long to wait for one upstream before trying the next. */
    upstream_timeout: durationSchema.default(2_000),
    /** TTL of every .internal/.flycast record, in seconds. */
    ttl: z.number().int().min(0).max(86_400).default(5),
    /**
     * Development only: treat queries from loopback (127.0.0.1, ::1) as coming from a member of
     * this org, for machines without the fdaa::/16 route. Logged as a warning at start.
     */
    loopback_org: z.union([z.literal(''), nameSchema]).default(''),
    /** A TCP connection with no complete query for this long is closed (half-open floods). */
    tcp_idle_timeout: durationSchema.default(10_000),
    /** Concurrent TCP connections; at the cap the least recently active one is closed. */
    max_tcp_connections: z.number().int().min(1).max(65_536).default(512),
  })
  .strict();

export type DnsConfig = z.output<typeof dnsConfigSchema>;

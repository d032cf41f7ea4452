/**
 * Small zod pieces every config section uses: durations, listen addresses, host ids, dial
 * targets, IP addresses and CIDR ranges. Each checks the value itself (a real address, a port
 * in range, a duration a timer can hold), so a bad key fails at load with its name.
 */
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { isHost, isIpAddress, isReservedHostId, parseHostId, parseHostPort } from '../addressing/index.js';
import { durationSchema } from '../catalog/types.js';

export { durationSchema };

/** `127.0.0.1:4280`, `[::1]:4280`, `[::]:53` or `:4280` (all interfaces); port 0 picks a free one. */
export const listenSchema = z.string().transform((s, ctx) => {
  const all = /^:(\d{1,5})$/.exec(s);
  const hp = all ? { host: '::', port: Number(all[1]) } : parseHostPort(s, 0);
  if ('error' in hp || hp.port > 65535) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be host:port, [ipv6]:port or :port (${'error' in hp ? hp.error : 'port out of range'})` });
    return z.NEVER;
  }
  return hp;
});

export type Listen = z.output<typeof listenSchema>;

/** A host id (`a7b:7d`) a node may put machines or peers under: not 0:0 (infrastructure) nor 0:1 (Flycast). */
export const hostIdSchema = z.string().superRefine((s, ctx) => {
  const id = parseHostId(s);
  if (id === null) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'must be two hex hextets like "a7b:7d"' });
  else if (isReservedHostId(id)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${s} is reserved (0:0 is infrastructure, 0:1 the Flycast range)` });
});

/** `host:port` a client dials (an endpoint): a real IP address or hostname and a port 1-65535. */
export const dialTargetSchema = z.string().superRefine((s, ctx) => {
  const hp = parseHostPort(s);
  if ('error' in hp) ctx.addIssue({ code: z.ZodIssueCode.custom, message: hp.error });
});

export const ipAddressSchema = z.string().refine(isIpAddress, (s) => ({ message: `${JSON.stringify(s)} is not an IP address` }));
export const hostSchema = z.string().refine(isHost, (s) => ({ message: `${JSON.stringify(s)} is not an IP address or a hostname` }));

export const cidrSchema = z.string().refine(
  (s) => {
    try {
      ipaddr.parseCIDR(s);
      return true;
    } catch {
      return false;
    }
  },
  (s) => ({ message: `${JSON.stringify(s)} is not a CIDR range like "10.0.0.0/8" or "fd00::/8"` }),
);

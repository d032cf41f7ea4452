/**
 * Small zod pieces every config section uses: durations, host:port listen addresses.
 */
import { z } from 'zod';
import { durationSchema } from '../catalog/types.js';

export { durationSchema };

/** `127.0.0.1:4280`, `[::1]:4280`, `[::]:53` or `:4280` (all interfaces). */
export const listenSchema = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[0-9a-zA-Z.-]*):\d{1,5}$/, 'must be host:port, [ipv6]:port or :port')
  .transform((s) => {
    const i = s.lastIndexOf(':');
    let host = s.slice(0, i);
    if (host.startsWith('[')) host = host.slice(1, -1);
    const port = Number(s.slice(i + 1));
    return { host: host === '' ? '::' : host, port };
  })
  .refine((l) => l.port <= 65535, 'port must be at most 65535');

export type Listen = z.output<typeof listenSchema>;

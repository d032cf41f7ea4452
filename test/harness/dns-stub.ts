/**
 * A tiny upstream DNS server for forwarding tests: answers `A` questions from a fixed map over
 * UDP and TCP, and for names in `truncate` answers UDP with TC set and no records (the client
 * must come back over TCP). Anything else: NXDOMAIN.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import * as packet from 'dns-packet';

export interface DnsStub {
  port: number;
  /** Queries seen, as `udp name` / `tcp name`. */
  seen: string[];
  close(): Promise<void>;
}

export async function startDnsStub(host: string, records: Record<string, string[]>, truncate: string[] = []): Promise<DnsStub> {
  const seen: string[] = [];
  const answer = (msg: Buffer, transport: 'udp' | 'tcp'): Buffer => {
    const q = packet.decode(msg);
    const question = q.questions![0]!;
    seen.push(`${transport} ${question.name}`);
    const ips = records[question.name.toLowerCase()];
    const tc = transport === 'udp' && truncate.includes(question.name.toLowerCase());
    return packet.encode({
      id: q.id,
      type: 'response',
      flags: (tc ? packet.TRUNCATED_RESPONSE : 0) | packet.RECURSION_AVAILABLE | (ips ? 0 : 3),
      questions: q.questions,
      answers: tc || !ips ? [] : ips.map((data) => ({ name: question.name, type: 'A' as const, class: 'IN' as const, ttl: 60, data })),
    });
  };
  // UDP takes a free port and TCP must get the same one: another test may hold it on TCP, so
  // try again with a new port instead of failing (EADDRINUSE seen under parallel unit files).
  const serve = (s: import('node:net').Socket): void => {
    let buf = Buffer.alloc(0);
    s.on('error', () => s.destroy());
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        const out = answer(buf.subarray(2, buf.readUInt16BE(0) + 2), 'tcp');
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        s.end(Buffer.concat([len, out]));
      }
    });
  };
  for (let attempt = 1; ; attempt++) {
    const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    udp.on('message', (msg, r) => udp.send(answer(msg, 'udp'), r.port, r.address));
    await new Promise<void>((resolve) => udp.bind(0, host, resolve));
    const port = udp.address().port;
    const tcp = createServer(serve);
    const listened = await new Promise<Error | null>((resolve) => {
      tcp.once('error', resolve);
      tcp.listen(port, host, () => resolve(null));
    });
    if (listened) {
      await new Promise<void>((r) => udp.close(() => r()));
      if (attempt < 20 && (listened as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
      throw listened;
    }
    return {
      port,
      seen,
      close: async () => {
        await new Promise<void>((r) => udp.close(() => r()));
        await new Promise<void>((r) => tcp.close(() => r()));
      },
    };
  }
}

/**
 * Random and mutated DNS messages for fuzzing the resolver: valid queries with bytes flipped,
 * truncated, random bytes, valid headers with random bodies, and crafted bad input (pointer
 * loops, reserved label types, names over 255 bytes, bad qdcount, opcodes, classes, types).
 */
import * as packet from 'dns-packet';

/** Deterministic PRNG (mulberry32) so that a failing run can be replayed. */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function bases(): Buffer[] {
  const names = ['web.internal', 'vms.web.internal', '_instances.internal', 'top2.nearest.of.web.internal', 'web.flycast', 'example.test', 'aaaaaaaa0001.vm.web.internal'];
  const types = ['AAAA', 'TXT', 'A', 'ANY', 'SOA'] as const;
  const out: Buffer[] = [];
  for (const name of names)
    for (const type of types) {
      out.push(packet.encode({ id: 1, type: 'query', flags: packet.RECURSION_DESIRED, questions: [{ name, type: type as 'A', class: 'IN' }] }));
      out.push(packet.encode({ id: 2, type: 'query', questions: [{ name, type: type as 'A', class: 'IN' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as packet.Answer] }));
    }
  return out;
}

function crafted(r: () => number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(Math.floor(r() * 65536), 0);
  header.writeUInt16BE(1, 4);
  switch (Math.floor(r() * 6)) {
    case 0: // compression pointer to itself / forward
      return Buffer.concat([header, Buffer.from([0xc0, 12 + Math.floor(r() * 4), 0, 1, 0, 1])]);
    case 1: // label length 64..191 (reserved label types)
      return Buffer.concat([header, Buffer.from([64 + Math.floor(r() * 128), 0x61, 0x61, 0, 0, 1, 0, 1])]);
    case 2: {
      // a name over 255 bytes
      const labels = Array.from({ length: 6 }, () => Buffer.concat([Buffer.from([60]), Buffer.alloc(60, 0x61)]));
      return Buffer.concat([header, ...labels, Buffer.from([0, 0, 28, 0, 1])]);
    }
    case 3: // qdcount 0, 2 or 65535
      header.writeUInt16BE([0, 2, 65535][Math.floor(r() * 3)]!, 4);
      return Buffer.concat([header, Buffer.from([3, 0x77, 0x65, 0x62, 0, 0, 28, 0, 1])]);
    case 4: // random opcode, maybe QR
      header.writeUInt16BE(Math.floor(r() * 65536), 2);
      return Buffer.concat([header, Buffer.from([3, 0x77, 0x65, 0x62, 0, 0, 28, 0, 1])]);
    default: // random class and type
      return Buffer.concat([header, Buffer.from([3, 0x77, 0x65, 0x62, 8, 0x69, 0x6e, 0x74, 0x65, 0x72, 0x6e, 0x61, 0x6c, 0]), Buffer.from([r() * 256, r() * 256, r() * 256, r() * 256].map(Math.floor))]);
  }
}

const PIECES = ['web', 'WEB', 'vms', 'regions', 'global', 'ewr', 'ams', 'top1', 'top9999', 'top0', 'nearest', 'of', 'vm', 'aaaaaaaa0001', '_peer', '_apps', '_instances', 'laptop', 'internal', 'flycast', 'x', '-', 'a'.repeat(63)];
const TYPES = ['A', 'AAAA', 'TXT', 'ANY', 'SOA', 'SRV', 'PTR', 'MX', 'NS', 'CNAME', 'UNKNOWN_65000'] as const;

/** A well-formed query for a name made of pieces of real names: exercises the resolver itself. */
export function plausibleQuery(r: () => number): Buffer {
  const n = 1 + Math.floor(r() * 5);
  const labels = Array.from({ length: n }, () => PIECES[Math.floor(r() * PIECES.length)]!);
  if (r() < 0.8) labels.push(r() < 0.8 ? 'internal' : 'flycast');
  const type = TYPES[Math.floor(r() * TYPES.length)]!;
  return packet.encode({ id: Math.floor(r() * 65536), type: 'query', questions: [{ name: labels.join('.'), type: type as 'A', class: 'IN' }] });
}

export function fuzzPacket(r: () => number, base: Buffer[]): Buffer {
  const pick = r();
  if (pick > 0.85) return plausibleQuery(r);
  const b = Buffer.from(base[Math.floor(r() * base.length)]!);
  if (pick < 0.4) {
    for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
    return b;
  }
  if (pick < 0.55) return b.subarray(0, Math.floor(r() * b.length));
  if (pick < 0.65) return Buffer.from(Array.from({ length: Math.floor(r() * 600) }, () => Math.floor(r() * 256)));
  if (pick < 0.75) {
    const body = Buffer.from(Array.from({ length: Math.floor(r() * 100) }, () => Math.floor(r() * 256)));
    return Buffer.concat([b.subarray(0, 12), body]);
  }
  return crafted(r);
}


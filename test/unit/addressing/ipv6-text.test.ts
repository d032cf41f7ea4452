/**
 * The IPv6 text reader behind orgOf and parseParts, checked against two independent readers on
 * the same inputs: node's `net.isIPv6` (libuv's inet_pton) says whether a text is an address,
 * ipaddr.js says which hextets it holds. Inputs are generated addresses in every written form
 * (compressed, uppercase, leading zeros, dotted-quad tails) and mutations of them (a character
 * dropped, doubled, replaced with one of the grammar's own, a group too many), so most of them
 * sit next to the boundary of the grammar.
 */
import { isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { orgOf, parseParts } from '../../../src/addressing/index.js';

/** A small deterministic generator (xorshift32): the same cases every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

function writeAddress(r: () => number): string {
  const parts = Array.from({ length: 8 }, () => (r() < 0.4 ? 0 : Math.floor(r() * (r() < 0.5 ? 0x10 : 0x10000))));
  if (r() < 0.3) parts.splice(0, 3, 0xfdaa, 0, Math.floor(r() * 0x10000));
  const quad = r() < 0.15;
  let groups = parts.map((p) => {
    let h = p.toString(16);
    if (r() < 0.1) h = h.padStart(4, '0');
    return r() < 0.1 ? h.toUpperCase() : h;
  });
  if (quad) groups = [...groups.slice(0, 6), [parts[6]! >> 8, parts[6]! & 255, parts[7]! >> 8, parts[7]! & 255].join('.')];
  // Compress one run of zero groups (sometimes a run of one, which RFC 5952 would not write).
  const zeros: number[] = [];
  groups.forEach((g, i) => {
    if (/^0+$/.test(g)) zeros.push(i);
  });
  if (zeros.length && r() < 0.8) {
    const start = zeros[Math.floor(r() * zeros.length)]!;
    let end = start;
    while (end + 1 < groups.length && /^0+$/.test(groups[end + 1]!) && r() < 0.9) end++;
    return `${groups.slice(0, start).join(':')}::${groups.slice(end + 1).join(':')}`;
  }
  return groups.join(':');
}

const ALPHABET = ':.0123456789abcdefABCDEFgx';
function mutate(s: string, r: () => number): string {
  const at = Math.floor(r() * (s.length + 1));
  const c = ALPHABET[Math.floor(r() * ALPHABET.length)]!;
  switch (Math.floor(r() * 5)) {
    case 0:
      return s.slice(0, at) + s.slice(at + 1);
    case 1:
      return s.slice(0, at) + s.slice(at, at + 1) + s.slice(at);
    case 2:
      return s.slice(0, at) + c + s.slice(at + 1);
    case 3:
      return s.slice(0, at) + c + s.slice(at);
    default:
      return r() < 0.5 ? `${s}:${Math.floor(r() * 0x10000).toString(16)}` : `${Math.floor(r() * 0x10000).toString(16)}:${s}`;
  }
}

/**
 * ipaddr.js's hextets, with its one argued difference: it reads `::a.b.c.d` (RFC 4291's
 * deprecated IPv4-compatible form, `::0.0.0.0/96`) as IPv4-mapped (`::ffff:a.b.c.d`). inet_pton
 * and RFC 4291 2.2 put the quad in the last 32 bits with zeros before it, and so do we; Python's
 * `ipaddress.IPv6Address('::1.2.3.4')` is `::102:304` too.
 */
function ipaddrParts(s: string): number[] | null {
  try {
    const parts = ipaddr.IPv6.parse(s).parts;
    if (/^::\d+\.\d+\.\d+\.\d+$/.test(s) && parts[5] === 0xffff) parts[5] = 0;
    return parts;
  } catch {
    return null;
  }
}

describe('IPv6 text', () => {
  it.each([
    ['::', [0, 0, 0, 0, 0, 0, 0, 0]],
    ['::1', [0, 0, 0, 0, 0, 0, 0, 1]],
    ['1::', [1, 0, 0, 0, 0, 0, 0, 0]],
    ['fdaa:0:18:a7b:7d:f066:b83b:2', [0xfdaa, 0, 0x18, 0xa7b, 0x7d, 0xf066, 0xb83b, 2]],
    ['FDAA:0000:0018::0003', [0xfdaa, 0, 0x18, 0, 0, 0, 0, 3]],
    ['1:2:3:4:5:6:7::', [1, 2, 3, 4, 5, 6, 7, 0]],
    ['::2:3:4:5:6:7:8', [0, 2, 3, 4, 5, 6, 7, 8]],
    ['::ffff:10.0.0.1', [0, 0, 0, 0, 0, 0xffff, 0x0a00, 1]],
    ['1:2:3:4:5:6:1.2.3.4', [1, 2, 3, 4, 5, 6, 0x0102, 0x0304]],
    ['[fdaa:0:18::3]', [0xfdaa, 0, 0x18, 0, 0, 0, 0, 3]],
    ['fe80::1%eth0', [0xfe80, 0, 0, 0, 0, 0, 0, 1]],
  ])('%s reads as its hextets', (text, parts) => {
    expect(parseParts(text)).toEqual(parts);
  });

  it.each([
    '', ':', ':::', '1:::2', '1::2::3', ':1::', '1::2:', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1::2:3:4:5:6:7:8',
    '12345::', 'g::', '::1.2.3', '::1.2.3.4.5', '::256.1.1.1', '::01.2.3.4', '1.2.3.4', '::1.2.3.4:1', '1:2:3:4:5:6:7:1.2.3.4', '10.0.0.1',
  ])('%j is not an address', (text) => {
    expect(parseParts(text)).toBeNull();
    expect(orgOf(text)).toBeNull();
  });

  it('agrees with inet_pton on 200,000 generated and mutated texts, and with ipaddr.js on their hextets', () => {
    const r = rng(0x6b9);
    let valid = 0;
    const disagreements: string[] = [];
    for (let n = 0; n < 200_000; n++) {
      let s = writeAddress(r);
      const mutations = Math.floor(r() * 3);
      for (let m = 0; m < mutations; m++) s = mutate(s, r);
      const ours = parseParts(s);
      if ((ours !== null) !== isIPv6(s)) disagreements.push(`${s}: ours ${ours !== null}, inet_pton ${isIPv6(s)}`);
      if (ours !== null) {
        valid++;
        const theirs = ipaddrParts(s);
        if (theirs === null || theirs.some((p, i) => p !== ours[i])) disagreements.push(`${s}: ours ${ours.join(',')}, ipaddr.js ${theirs?.join(',')}`);
        const org = ours[0] === 0xfdaa && ours[1] === 0 && ours[2] !== 0 ? ours[2] : null;
        if (orgOf(s) !== org) disagreements.push(`${s}: orgOf ${orgOf(s)}, hextets say ${org}`);
      }
    }
    expect(disagreements.slice(0, 20)).toEqual([]);
    // Both sides of the boundary are exercised.
    expect(valid).toBeGreaterThan(40_000);
    expect(valid).toBeLessThan(160_000);
  });
});

import { describe, expect, it } from 'vitest';
import {
  flycastAddress,
  formatHostId,
  hostOrgAddress,
  hostSlice,
  inOrg,
  isFlycastAddress,
  isIPv4Like,
  machineAddress,
  networkIdOfPrefix,
  normalizeAddress,
  orgDnsAddress,
  orgOf,
  orgPrefix,
  orgPrefixCidr,
  parseHostId,
  parseMachineAddress,
  peerAddress,
} from '../../../src/addressing/index.js';

describe('org prefixes', () => {
  it.each([
    [0x18, 'fdaa:0:18::/48'],
    [0x22b7, 'fdaa:0:22b7::/48'],
    [1, 'fdaa:0:1::/48'],
    [0xffff, 'fdaa:0:ffff::/48'],
  ])('network id %i <-> %s', (id, cidr) => {
    expect(orgPrefixCidr(id)).toBe(cidr);
    expect(networkIdOfPrefix(cidr)).toBe(id);
  });

  it.each([0, -1, 0x10000, 1.5, NaN])('rejects network id %s', (id) => {
    expect(() => orgPrefix(id)).toThrow(RangeError);
  });

  it.each(['fdaa:0:18::/64', 'fdaa:0:18::1/48', 'fdab:0:18::/48', 'fdaa::/48', 'garbage', 'fdaa:0:18::'])('%s is not an org prefix', (s) => {
    expect(networkIdOfPrefix(s)).toBeNull();
  });

  it('puts the org resolver at <prefix>::3', () => {
    expect(orgDnsAddress(0x18)).toBe('fdaa:0:18::3');
  });
});

describe('machine, flycast and peer addresses', () => {
  it('builds a machine address from host id and machine id', () => {
    expect(machineAddress(0x18, parseHostId('a7b:7d')!, 'f066b83b2c4e71')).toBe('fdaa:0:18:a7b:7d:f066:b83b:2');
    expect(parseMachineAddress('fdaa:0:18:a7b:7d:f066:b83b:2')).toEqual({ networkId: 0x18, hostId: 0x0a7b007d, machineIdPrefix: 'f066b83b' });
  });

  it('keeps leading zeros of the machine id', () => {
    expect(machineAddress(0x18, 0x0a7b007d, '000a0001ff')).toBe('fdaa:0:18:a7b:7d:a:1:2');
    expect(parseMachineAddress('fdaa:0:18:a7b:7d:a:1:2')?.machineIdPrefix).toBe('000a0001');
  });

  it.each(['xyz', 'f066b8', ''])('rejects machine id %j', (id) => {
    expect(() => machineAddress(0x18, 0x0a7b007d, id)).toThrow(RangeError);
  });

  it('refuses reserved host ids for machines', () => {
    expect(() => machineAddress(0x18, 0, 'f066b83b')).toThrow(/reserved/);
    expect(() => machineAddress(0x18, 1, 'f066b83b')).toThrow(/reserved/);
  });

  it('allocates Flycast addresses in the org Flycast range', () => {
    expect(flycastAddress(0x22b7, 3)).toBe('fdaa:0:22b7:0:1::3');
    expect(flycastAddress(0x22b7, 0x10002)).toBe('fdaa:0:22b7:0:1:0:1:2');
    expect(isFlycastAddress('fdaa:0:22b7:0:1::3')).toBe(true);
    expect(isFlycastAddress('fdaa:0:22b7::3')).toBe(false);
    expect(isFlycastAddress('fdaa:0:18:a7b:7d:f066:b83b:2')).toBe(false);
  });

  it('never lets a Flycast, DNS or peer address parse as a machine', () => {
    expect(parseMachineAddress(flycastAddress(0x18, 2))).toBeNull();
    expect(parseMachineAddress(orgDnsAddress(0x18))).toBeNull();
    expect(parseMachineAddress('fdaa::3')).toBeNull();
  });

  it('builds peer addresses under the gateway host id', () => {
    expect(peerAddress(0x18, parseHostId('a7b:d6b')!, 0xa)).toBe('fdaa:0:18:a7b:d6b:0:a:2');
    expect(peerAddress(0x18, parseHostId('a7b:d6b')!, 0x10001)).toBe('fdaa:0:18:a7b:d6b:1:1:2');
    expect(() => peerAddress(0x18, 0x0a7b0d6b, 0)).toThrow(RangeError);
  });

  it('a host slice holds its machines; the host address in it is no machine', () => {
    const hostId = parseHostId('a7b:7d')!;
    expect(hostSlice(0x18, hostId)).toBe('fdaa:0:18:a7b:7d::/80');
    expect(hostSlice(0x18, 0x10000)).toBe('fdaa:0:18:1::/80');
    expect(hostOrgAddress(0x18, hostId)).toBe('fdaa:0:18:a7b:7d::3');
    expect(parseMachineAddress(hostOrgAddress(0x18, hostId))).toBeNull();
    // the lowest machine address of the host is in the slice and differs from the host's own
    expect(machineAddress(0x18, hostId, '00000000ab')).toBe('fdaa:0:18:a7b:7d::2');
    expect(orgOf(hostOrgAddress(0x30, hostId))).toBe(0x30);
    expect(() => hostOrgAddress(0x18, 1)).toThrow(RangeError);
    expect(() => hostSlice(0, hostId)).toThrow(RangeError);
  });

  it.each([
    ['a7b:7d', 0x0a7b007d],
    ['0:2', 2],
    ['FFFF:ffff', 0xffffffff],
  ])('host id %s', (text, n) => {
    expect(parseHostId(text)).toBe(n);
    expect(parseHostId(formatHostId(n))).toBe(n);
  });

  it.each(['a7b', 'a7b:7d:1', 'g:1', '', '12345:1'])('rejects host id %j', (t) => {
    expect(parseHostId(t)).toBeNull();
  });
});

describe('orgOf', () => {
  it.each<[string, number | null]>([
    ['fdaa:0:18::', 0x18], // first address of the /48
    ['fdaa:0:18:ffff:ffff:ffff:ffff:ffff', 0x18], // last address of the /48
    ['fdaa:0:17:ffff:ffff:ffff:ffff:ffff', 0x17], // just below
    ['fdaa:0:19::', 0x19], // just above
    ['fdaa:0:18:a7b:7d:f066:b83b:2', 0x18],
    ['FDAA:0:18:A7B:7D:F066:B83B:2', 0x18], // uppercase
    ['fdaa:0000:0018:0a7b:007d:f066:b83b:0002', 0x18], // uncompressed
    ['fdaa:0:18:a7b:7d:f066:b83b:2%eth0', 0x18], // zone id
    ['[fdaa:0:18::2]', 0x18], // bracketed
    ['fdaa::3', null], // network id 0 is the global resolver, no org
    ['fdaa:0:0:1::2', null],
    ['fdaa:1:18::2', null], // second hextet must be 0
    ['fdab:0:18::2', null],
    ['fd00::1', null],
    ['::1', null],
    ['127.0.0.1', null], // IPv4
    ['10.0.0.1', null],
    ['::ffff:10.0.0.1', null], // IPv4-mapped
    ['::ffff:fdaa:18', null],
    ['', null],
    ['garbage', null],
    ['fdaa:0:18::2::1', null],
    ['fdaa:0:18:zz::2', null],
    ['fdaa:0:18::2/48', null],
    ['x'.repeat(1000), null],
  ])('orgOf(%j) = %s', (addr, want) => {
    expect(orgOf(addr)).toBe(want);
  });

  it('inOrg compares against one network id', () => {
    expect(inOrg('fdaa:0:18::2', 0x18)).toBe(true);
    expect(inOrg('fdaa:0:19::2', 0x18)).toBe(false);
  });

  it.each([
    ['127.0.0.1', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:7f00:1', true],
    ['fdaa:0:18::2', false],
    ['::1', false],
  ])('isIPv4Like(%j) = %s', (a, want) => {
    expect(isIPv4Like(a)).toBe(want);
  });

  it.each([
    ['FDAA:0:18::2', 'fdaa:0:18::2'],
    ['fdaa:0000:0018:0000:0000:0000:0000:0002', 'fdaa:0:18::2'],
    ['fdaa:0:18:0:1:0:0:3', 'fdaa:0:18:0:1::3'],
    ['nope', null],
  ])('normalizeAddress(%j) = %s', (a, want) => {
    expect(normalizeAddress(a)).toBe(want);
  });
});

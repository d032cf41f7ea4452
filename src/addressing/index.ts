/**
 * 6PN addressing: pure functions from org network ids, host ids and machine ids to IPv6
 * addresses, and back from an address to the org that owns it.
 *
 * Layout of an org's /48, `fdaa:0:<network id>::/48` (hextets 3..7 below the prefix):
 *   fdaa:0:18::3                 the org's DNS (host id 0 is infrastructure, never a machine)
 *   fdaa:0:18:0:1::<n>           Flycast addresses (host id 1 is the Flycast range)
 *   fdaa:0:18:a7b:7d:f066:b83b:2 a machine: 32-bit host id, first 8 hex digits of its id, 2
 *   fdaa:0:18:a7b:d6b:0:a:2/120  a WireGuard peer: gateway host id, 32-bit peer number, 2
 *   fdaa:0:18:a7b:7d::/80        a host's slice of the org: everything of the org under one host id
 *   fdaa:0:18:a7b:7d::3          the host's own address in the org (what it dials machines from)
 * Network id 0 is reserved: `fdaa::3` is the resolver every machine uses.
 *
 * @example orgOf('fdaa:0:18:a7b:7d:f066:b83b:2') // 0x18
 */
import ipaddr from 'ipaddr.js';

export const MAX_NETWORK_ID = 0xffff;
/** Host id 0: DNS and other infrastructure addresses. */
export const INFRA_HOST_ID = 0;
/** Host id 1: the org's Flycast range. */
export const FLYCAST_HOST_ID = 1;
/** The resolver address every machine is told to use. */
export const GLOBAL_DNS_ADDRESS = 'fdaa::3';
/** Largest Flycast / peer sequence number (32 bits). */
export const MAX_SEQUENCE = 0xffffffff;

const hex = (n: number): string => n.toString(16);

function assertNetworkId(id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > MAX_NETWORK_ID) {
    throw new RangeError(`network id must be an integer from 1 to 65535, got ${id}`);
  }
}

function assertHostId(hostId: number): void {
  if (!Number.isInteger(hostId) || hostId < 0 || hostId > 0xffffffff) {
    throw new RangeError(`host id must be a 32-bit unsigned integer, got ${hostId}`);
  }
}

function assertSequence(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_SEQUENCE) {
    throw new RangeError(`sequence number must be from 1 to ${MAX_SEQUENCE}, got ${n}`);
  }
}

/** Canonical (RFC 5952) text of eight hextets. */
function fromParts(parts: number[]): string {
  return new ipaddr.IPv6(parts).toRFC5952String();
}

/** `fdaa:0:18::` for network id 0x18. */
export function orgPrefix(networkId: number): string {
  assertNetworkId(networkId);
  return `fdaa:0:${hex(networkId)}::`;
}

/** `fdaa:0:18::/48` for network id 0x18. */
export function orgPrefixCidr(networkId: number): string {
  return `${orgPrefix(networkId)}/48`;
}

/** The network id of an org's /48 prefix (`fdaa:0:18::/48` -> 0x18); null when it is not one. */
export function networkIdOfPrefix(cidr: string): number | null {
  const slash = cidr.indexOf('/');
  if (slash < 0 || cidr.slice(slash + 1) !== '48') return null;
  const parts = parseParts(cidr.slice(0, slash));
  if (!parts || parts[0] !== 0xfdaa || parts[1] !== 0) return null;
  if (parts.slice(3).some((p) => p !== 0)) return null;
  const id = parts[2]!;
  return id >= 1 ? id : null;
}

/** The org's resolver, `<prefix>::3`. */
export function orgDnsAddress(networkId: number): string {
  assertNetworkId(networkId);
  return fromParts([0xfdaa, 0, networkId, 0, 0, 0, 0, 3]);
}

/** Host ids are written like the address hextets they fill: `a7b:7d` is 0x0a7b007d. */
export function parseHostId(text: string): number | null {
  const m = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(text.trim());
  if (!m) return null;
  return parseInt(m[1]!, 16) * 0x10000 + parseInt(m[2]!, 16);
}

export function formatHostId(hostId: number): string {
  assertHostId(hostId);
  return `${hex(Math.floor(hostId / 0x10000))}:${hex(hostId & 0xffff)}`;
}

/** True for host ids a machine may not use (infrastructure and Flycast). */
export function isReservedHostId(hostId: number): boolean {
  return hostId === INFRA_HOST_ID || hostId === FLYCAST_HOST_ID;
}

/**
 * A machine's 6PN address: prefix, host id, the first 8 hex digits of the machine id, then 2.
 * The machine id must start with 8 hex digits.
 */
export function machineAddress(networkId: number, hostId: number, machineId: string): string {
  assertNetworkId(networkId);
  assertHostId(hostId);
  if (isReservedHostId(hostId)) throw new RangeError(`host id ${hostId} is reserved`);
  const head = machineId.slice(0, 8).toLowerCase();
  if (!/^[0-9a-f]{8}$/.test(head)) {
    throw new RangeError(`machine id must start with 8 hex digits, got ${JSON.stringify(machineId)}`);
  }
  return fromParts([
    0xfdaa,
    0,
    networkId,
    Math.floor(hostId / 0x10000),
    hostId & 0xffff,
    parseInt(head.slice(0, 4), 16),
    parseInt(head.slice(4), 16),
    2,
  ]);
}

/** The n-th Flycast address of an org (n from 1): `fdaa:0:<id>:0:1::<n>`. */
export function flycastAddress(networkId: number, n: number): string {
  assertNetworkId(networkId);
  assertSequence(n);
  return fromParts([0xfdaa, 0, networkId, 0, FLYCAST_HOST_ID, 0, Math.floor(n / 0x10000), n & 0xffff]);
}

/** The n-th WireGuard peer address (n from 1) behind a gateway host id. Peers own a /120. */
export function peerAddress(networkId: number, gatewayHostId: number, n: number): string {
  assertNetworkId(networkId);
  assertHostId(gatewayHostId);
  if (isReservedHostId(gatewayHostId)) throw new RangeError(`host id ${gatewayHostId} is reserved`);
  assertSequence(n);
  return fromParts([
    0xfdaa,
    0,
    networkId,
    Math.floor(gatewayHostId / 0x10000),
    gatewayHostId & 0xffff,
    Math.floor(n / 0x10000),
    n & 0xffff,
    2,
  ]);
}

export const PEER_PREFIX_LENGTH = 120;

/** Prefix length of a host's slice of an org: the /48 and the 32-bit host id. */
export const HOST_SLICE_LENGTH = 80;

/**
 * A host's slice of an org, `fdaa:0:<network id>:<host id>::/80`: every address of the org that
 * lives on that host (its machines, or a gateway's laptops under the gateway host id). The mesh
 * routes and admits each remote host's slices, and nothing else, through that host's tunnel.
 */
export function hostSlice(networkId: number, hostId: number): string {
  assertNetworkId(networkId);
  assertHostId(hostId);
  return `${fromParts([0xfdaa, 0, networkId, Math.floor(hostId / 0x10000), hostId & 0xffff, 0, 0, 0])}/${HOST_SLICE_LENGTH}`;
}

/**
 * The host's own address in an org, `<slice>::3`: a host speaks to a machine of the org (the
 * Flycast proxy on a caller's behalf, health checks) from it, so the org rule of every hop
 * applies to the host as to anyone. No machine has it: machine addresses end in 2.
 */
export function hostOrgAddress(networkId: number, hostId: number): string {
  assertNetworkId(networkId);
  assertHostId(hostId);
  if (isReservedHostId(hostId)) throw new RangeError(`host id ${hostId} is reserved`);
  return fromParts([0xfdaa, 0, networkId, Math.floor(hostId / 0x10000), hostId & 0xffff, 0, 0, 3]);
}

/** Strips a zone id (`%eth0`) and brackets; does not validate. */
function stripDecorations(text: string): string {
  let s = text.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const pct = s.indexOf('%');
  return pct >= 0 ? s.slice(0, pct) : s;
}

/** 0-15 for a hex digit's char code, else -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/**
 * A dotted quad from `s[i]` to the end as one 32-bit number, or -1. Strict as inet_pton: four
 * decimal parts of 1-3 digits, each <= 255, no leading zeros (`010` could be read as octal).
 */
function readDottedQuad(s: string, i: number): number {
  let value = 0;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (s.charCodeAt(i) !== 46) return -1;
      i++;
    }
    const start = i;
    let v = 0;
    while (i < s.length && i - start < 4) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      i++;
    }
    const digits = i - start;
    if (digits === 0 || digits > 3 || v > 255 || (digits > 1 && s.charCodeAt(start) === 48)) return -1;
    value = value * 256 + v;
  }
  return i === s.length ? value : -1;
}

/**
 * Reads IPv6 text (no brackets, no zone) into `out`'s eight hextets; false when it is not one.
 * The grammar of RFC 4291 2.2 as inet_pton reads it: groups of 1-4 hex digits, at most one `::`
 * standing for one or more zero groups, an optional dotted quad as the last 32 bits. Written
 * out by hand because every caller connection and DNS query starts with it (orgOf): no regular
 * expression, no allocation.
 */
function readHextets(s: string, out: Uint16Array): boolean {
  const n = s.length;
  if (n < 2 || n > 45) return false;
  let gap = -1;
  let k = 0;
  let i = 0;
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
    if (i === n) {
      out.fill(0);
      return true;
    }
  }
  for (;;) {
    if (k === 8) return false;
    let v = 0;
    let j = i;
    while (j < n && j - i < 5) {
      const h = hexDigit(s.charCodeAt(j));
      if (h < 0) break;
      v = v * 16 + h;
      j++;
    }
    if (j < n && s.charCodeAt(j) === 46) {
      // The dotted-quad tail: the last 32 bits, and the end of the text.
      if (k > 6) return false;
      const quad = readDottedQuad(s, i);
      if (quad < 0) return false;
      out[k++] = Math.floor(quad / 0x10000);
      out[k++] = quad & 0xffff;
      break;
    }
    const digits = j - i;
    if (digits === 0 || digits > 4) return false;
    out[k++] = v;
    if (j === n) break;
    if (s.charCodeAt(j) !== 58) return false;
    j++;
    if (j < n && s.charCodeAt(j) === 58) {
      if (gap >= 0) return false;
      gap = k;
      j++;
      if (j === n) break;
    } else if (j === n) return false;
    i = j;
  }
  if (gap < 0) return k === 8;
  if (k > 7) return false;
  const tail = k - gap;
  for (let t = tail - 1; t >= 0; t--) out[8 - tail + t] = out[gap + t]!;
  out.fill(0, gap, 8 - tail);
  return true;
}

/** Hextets of the address being judged by orgOf: one buffer, reused. */
const SCRATCH = new Uint16Array(8);

/** The eight hextets of an IPv6 address, or null for anything else (IPv4 included). */
export function parseParts(text: string): number[] | null {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) return null;
  return readHextets(stripDecorations(text), SCRATCH) ? Array.from(SCRATCH) : null;
}

/** Canonical lowercase compressed form of an IPv6 address, or null when it is not one. */
export function normalizeAddress(text: string): string | null {
  const parts = parseParts(text);
  return parts ? fromParts(parts) : null;
}

/** True for IPv4 text or an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`). */
export function isIPv4Like(text: string): boolean {
  const s = stripDecorations(text);
  if (ipaddr.IPv4.isValidFourPartDecimal(s)) return true;
  const parts = parseParts(s);
  return parts !== null && parts.slice(0, 5).every((p) => p === 0) && parts[5] === 0xffff;
}

/**
 * The network id of the org whose /48 holds `address`, or null when the address is not inside
 * any org prefix (IPv4, IPv4-mapped, other IPv6, network id 0, garbage). Every access decision
 * starts here.
 */
export function orgOf(address: string): number | null {
  if (typeof address !== 'string' || address.length === 0 || address.length > 64) return null;
  if (!readHextets(stripDecorations(address), SCRATCH) || SCRATCH[0] !== 0xfdaa || SCRATCH[1] !== 0) return null;
  const id = SCRATCH[2]!;
  return id === 0 ? null : id;
}

/** True when `address` lies inside the /48 of `networkId`. */
export function inOrg(address: string, networkId: number): boolean {
  return orgOf(address) === networkId;
}

export interface MachineAddressParts {
  networkId: number;
  hostId: number;
  /** The 8 hex digits that start the machine's id. */
  machineIdPrefix: string;
}

/** Reads a machine address back into its parts; null when the address is not machine-shaped. */
export function parseMachineAddress(address: string): MachineAddressParts | null {
  const parts = parseParts(address);
  if (!parts || parts[0] !== 0xfdaa || parts[1] !== 0 || parts[2] === 0 || parts[7] !== 2) return null;
  const hostId = parts[3]! * 0x10000 + parts[4]!;
  if (isReservedHostId(hostId)) return null;
  const machineIdPrefix = parts[5]!.toString(16).padStart(4, '0') + parts[6]!.toString(16).padStart(4, '0');
  return { networkId: parts[2]!, hostId, machineIdPrefix };
}

/** True when the address is in an org's Flycast range. */
export function isFlycastAddress(address: string): boolean {
  const parts = parseParts(address);
  return !!parts && parts[0] === 0xfdaa && parts[1] === 0 && parts[2] !== 0 && parts[3] === 0 && parts[4] === FLYCAST_HOST_ID;
}

/** True for an IPv4 dotted quad or an IPv6 address (no brackets; a zone id is allowed). */
export function isIpAddress(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text) || (text.trim() === text && !text.startsWith('[') && parseParts(text) !== null);
}

const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/**
 * True for an IP address or a DNS hostname. A name made only of digits and dots must be a valid
 * dotted quad: the resolver would read `300.1.1.1` or `1234` as some other IPv4 address.
 */
export function isHost(text: string): boolean {
  if (isIpAddress(text)) return true;
  if (/^[0-9.]+$/.test(text) || text.length > 253) return false;
  return text.split('.').every((l) => LABEL_RE.test(l));
}

export interface HostPort {
  host: string;
  port: number;
}

/**
 * Reads `host:port` or `[ipv6]:port` (what a machine's `upstream` or an endpoint holds), checking
 * both halves: the host an IP address or a hostname, the port from `minPort` to 65535. Returns
 * the reason when the text is not one, so that a message can say what to fix.
 */
export function parseHostPort(text: string, minPort = 1): HostPort | { error: string } {
  const m = /^(?:\[([^\]]*)\]|([^[\]:]*)):(\d{1,5})$/.exec(text);
  if (!m) return { error: 'must be host:port or [ipv6]:port' };
  const port = Number(m[3]);
  if (port < minPort || port > 65535) return { error: `port ${m[3]} is out of range (${minPort}-65535)` };
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined ? parseParts(host) === null : !isHost(host)) {
    return { error: `host ${JSON.stringify(host)} is not ${m[1] !== undefined ? 'an IPv6 address' : 'an IPv4 address or a hostname'}` };
  }
  return { host, port };
}

/** True for a loopback name or address: `localhost`, 127.0.0.0/8, `::1`, `::ffff:127.x.x.x`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

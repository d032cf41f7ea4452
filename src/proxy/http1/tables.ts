/**
 * Byte classes and name tables of the HTTP/1.1 engine, built once at load.
 *
 * The classes are llhttp's (strict mode) where the grammar is the RFC's: token, field-value
 * bytes, request-target bytes. Header names the engine acts on are matched on the raw bytes
 * (no string per header): a name is looked up by length, then compared with `| 0x20`, which
 * lower-cases letters and leaves the other token bytes of the names below unchanged.
 */

/** The bytes the parsers test by name. */
export const CR = 13;
export const LF = 10;
export const SP = 32;
export const HTAB = 9;
export const COLON = 58;
export const COMMA = 44;

function table(...parts: (string | [number, number])[]): Uint8Array {
  const t = new Uint8Array(256);
  for (const p of parts) {
    if (typeof p === 'string') for (let i = 0; i < p.length; i++) t[p.charCodeAt(i)] = 1;
    else for (let c = p[0]; c <= p[1]; c++) t[c] = 1;
  }
  return t;
}

const ALPHA: [number, number][] = [
  [0x41, 0x5a],
  [0x61, 0x7a],
];
const DIGIT: [number, number] = [0x30, 0x39];

/** RFC 9110 token: the bytes of methods, header names, chunk extension names. */
export const TOKEN = table(...ALPHA, DIGIT, "!#$%&'*+-.^_`|~");
/** field-value bytes: HTAB, SP, VCHAR, obs-text (no CTLs, no DEL). */
export const VALUE = table('\t ', [0x21, 0x7e], [0x80, 0xff]);
/** Request-target bytes in the path (llhttp's URL_CHAR: printable ASCII but SP, '#', '?'). */
export const URL_CHAR = table(...ALPHA, DIGIT, '!"$%&\'()*+,-./:;<=>@[\\]^_`{|}~');
/** Bytes of the authority in absolute-form (userinfo, host, port, IPv6 brackets). */
export const AUTHORITY = table(...ALPHA, DIGIT, "-_.!~*'()%;:&=+$,[]");
export const ALPHA_T = table(...ALPHA);
/** qdtext of a quoted chunk-extension value. */
export const QDTEXT = table('\t !', [0x23, 0x5b], [0x5d, 0x7e], [0x80, 0xff]);
/** A quoted-pair's second byte. */
export const QPAIR = table('\t ', [0x21, 0x7e], [0x80, 0xff]);

/** Hex digit value, or -1. */
export const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

/** Header names the engine acts on; everything else is OTHER and passes through. */
export const H = {
  OTHER: 0,
  CONTENT_LENGTH: 1,
  TRANSFER_ENCODING: 2,
  CONNECTION: 3,
  PROXY_CONNECTION: 4,
  KEEP_ALIVE: 5,
  UPGRADE: 6,
  HOST: 7,
  EXPECT: 8,
  TE: 9,
  PROXY_AUTHENTICATE: 10,
  PROXY_AUTHORIZATION: 11,
  HTTP2_SETTINGS: 12,
  X_FORWARDED_FOR: 13,
  VIA: 14,
  FORWARDED: 15,
  X_REAL_IP: 16,
  FLY_CLIENT_IP: 17,
  FLY_FORWARDED_PORT: 18,
  FLY_REGION: 19,
  FLY_REQUEST_ID: 20,
  FLY_FORWARDED_PROTO: 21,
  FLY_FORWARDED_SSL: 22,
  // Request steering (a caller's routing headers, the proxy's replay fields) and the machine's replay ask.
  FLY_PREFER_REGION: 23,
  FLY_FORCE_REGION: 24,
  FLY_PREFER_INSTANCE_ID: 25,
  FLY_FORCE_INSTANCE_ID: 26,
  FLY_REPLAY_SRC: 27,
  FLY_REPLAY_FAILED: 28,
  FLY_REPLAY: 29,
} as const;

const NAMES: [string, number][] = [
  ['content-length', H.CONTENT_LENGTH],
  ['transfer-encoding', H.TRANSFER_ENCODING],
  ['connection', H.CONNECTION],
  ['proxy-connection', H.PROXY_CONNECTION],
  ['keep-alive', H.KEEP_ALIVE],
  ['upgrade', H.UPGRADE],
  ['host', H.HOST],
  ['expect', H.EXPECT],
  ['te', H.TE],
  ['proxy-authenticate', H.PROXY_AUTHENTICATE],
  ['proxy-authorization', H.PROXY_AUTHORIZATION],
  ['http2-settings', H.HTTP2_SETTINGS],
  ['x-forwarded-for', H.X_FORWARDED_FOR],
  ['via', H.VIA],
  ['forwarded', H.FORWARDED],
  ['x-real-ip', H.X_REAL_IP],
  ['fly-client-ip', H.FLY_CLIENT_IP],
  ['fly-forwarded-port', H.FLY_FORWARDED_PORT],
  ['fly-region', H.FLY_REGION],
  ['fly-request-id', H.FLY_REQUEST_ID],
  ['fly-forwarded-proto', H.FLY_FORWARDED_PROTO],
  ['fly-forwarded-ssl', H.FLY_FORWARDED_SSL],
  ['fly-prefer-region', H.FLY_PREFER_REGION],
  ['fly-force-region', H.FLY_FORCE_REGION],
  ['fly-prefer-instance-id', H.FLY_PREFER_INSTANCE_ID],
  ['fly-force-instance-id', H.FLY_FORCE_INSTANCE_ID],
  ['fly-replay-src', H.FLY_REPLAY_SRC],
  ['fly-replay-failed', H.FLY_REPLAY_FAILED],
  ['fly-replay', H.FLY_REPLAY],
];

const BY_LENGTH: { bytes: Uint8Array; code: number }[][] = [];
for (const [name, code] of NAMES) {
  (BY_LENGTH[name.length] ??= []).push({ bytes: Buffer.from(name, 'latin1'), code });
}

/** The H code of the header name buf[start, end). */
export function classifyName(buf: Uint8Array, start: number, end: number): number {
  const list = BY_LENGTH[end - start];
  if (list === undefined) return H.OTHER;
  const first = buf[start]! | 0x20;
  outer: for (let k = 0; k < list.length; k++) {
    const c = list[k]!;
    const b = c.bytes;
    if (b[0] !== first) continue;
    for (let i = 1; i < b.length; i++) if ((buf[start + i]! | 0x20) !== b[i]) continue outer;
    return c.code;
  }
  return H.OTHER;
}

/** True when buf[start, end) equals `lower` (already lower-case) ignoring ASCII case. */
export function equalsLower(buf: Uint8Array, start: number, end: number, lower: Uint8Array): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    const b = buf[start + i]!;
    const l = b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
    if (l !== lower[i]) return false;
  }
  return true;
}

/** True when the two ranges are equal ignoring ASCII case. */
export function rangesEqualLower(a: Uint8Array, as: number, ae: number, b: Uint8Array, bs: number, be: number): boolean {
  if (ae - as !== be - bs) return false;
  for (let i = 0; i < ae - as; i++) {
    let x = a[as + i]!;
    let y = b[bs + i]!;
    if (x >= 0x41 && x <= 0x5a) x |= 0x20;
    if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    if (x !== y) return false;
  }
  return true;
}

export const LOWER = {
  chunked: Buffer.from('chunked'),
  close: Buffer.from('close'),
  keepAlive: Buffer.from('keep-alive'),
  upgrade: Buffer.from('upgrade'),
  continue100: Buffer.from('100-continue'),
  h2c: Buffer.from('h2c'),
};

/**
 * Request methods: llhttp's HTTP/1 list (RFC 9110, WebDAV, CalDAV, Subversion, UPnP, PURGE,
 * QUERY, SOURCE). CONNECT and PRI are refused by the parser (see head.ts), not listed here.
 */
export const METHODS = [
  'DELETE', 'GET', 'HEAD', 'POST', 'PUT', 'OPTIONS', 'TRACE', 'PATCH', 'LINK', 'UNLINK',
  'COPY', 'LOCK', 'MKCOL', 'MOVE', 'PROPFIND', 'PROPPATCH', 'SEARCH', 'UNLOCK', 'BIND', 'REBIND', 'UNBIND', 'ACL',
  'REPORT', 'MKACTIVITY', 'CHECKOUT', 'MERGE', 'M-SEARCH', 'NOTIFY', 'SUBSCRIBE', 'UNSUBSCRIBE',
  'MKCALENDAR', 'PURGE', 'QUERY', 'SOURCE',
] as const;

export type Method = (typeof METHODS)[number];

/** Method lookup by a small hash of its bytes (no string per request). */
const METHOD_SLOTS = 256;
const methodTable: { bytes: Uint8Array; name: Method }[][] = Array.from({ length: METHOD_SLOTS }, () => []);
function methodHash(buf: Uint8Array, start: number, end: number): number {
  let h = end - start;
  for (let i = start; i < end; i++) h = (h * 31 + buf[i]!) & 0xffff;
  return h & (METHOD_SLOTS - 1);
}
for (const m of METHODS) {
  const bytes = Buffer.from(m, 'latin1');
  methodTable[methodHash(bytes, 0, bytes.length)]!.push({ bytes, name: m });
}

/** The method named by buf[start, end) (case-sensitive, as RFC 9110 says), or null. */
export function lookupMethod(buf: Uint8Array, start: number, end: number): Method | null {
  const slot = methodTable[methodHash(buf, start, end)]!;
  outer: for (let k = 0; k < slot.length; k++) {
    const e = slot[k]!;
    if (e.bytes.length !== end - start) continue;
    for (let i = 0; i < e.bytes.length; i++) if (buf[start + i] !== e.bytes[i]) continue outer;
    return e.name;
  }
  return null;
}

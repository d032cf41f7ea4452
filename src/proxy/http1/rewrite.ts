/**
 * The head rewrite, done once per head, from the parsed offsets straight into one Buffer.
 *
 * Request (caller -> machine): the request line as received (HTTP/1.0 requests also get
 * `Connection: keep-alive`, so that the machine connection can be reused), then the identity fields
 * FIRST (Fly-Client-IP, Fly-Forwarded-Port, Fly-Region, Fly-Request-Id, X-Forwarded-For, Via),
 * so that no number of caller fields can push them past a machine's field limit; then the
 * caller's fields as received, minus hop-by-hop ones (Connection and the names it lists,
 * Keep-Alive, Proxy-Connection, TE, Upgrade unless upgrading, Proxy-Authorization,
 * HTTP2-Settings) and minus what only the proxy may say (Fly-* identity, Forwarded, X-Real-IP,
 * Fly-Forwarded-Proto/Ssl; X-Forwarded-For and Via are merged into ours). Content-Length,
 * Transfer-Encoding and Host always stay, whatever Connection names: the body is forwarded
 * byte for byte, so its framing must reach the machine as the caller sent it.
 *
 * Response (machine -> caller): `HTTP/1.1` and the status as received, Fly-Request-Id and Via,
 * the proxy's own Connection, then the machine's fields minus hop-by-hop ones.
 */
import type { HeadParser } from './head.js';
import { H } from './tables.js';

const CRLF = Buffer.from('\r\n');
const VIA_SELF = Buffer.from('1.1 sixpn');
const COMMA_SP = Buffer.from(', ');
const REQUEST_ID = Buffer.from('Fly-Request-Id: ');
const XFF = Buffer.from('X-Forwarded-For: ');
const VIA = Buffer.from('Via: ');
const CONN_UPGRADE = Buffer.from('Connection: upgrade\r\n');
const CONN_CLOSE = Buffer.from('Connection: close\r\n');
const CONN_KEEP_ALIVE = Buffer.from('Connection: keep-alive\r\n');
const HTTP11 = Buffer.from('HTTP/1.1 ');

/** Request fields dropped (1) or merged into the proxy's own (2), by H code. */
const REQUEST_ACTION = new Uint8Array(32);
for (const c of [H.CONNECTION, H.PROXY_CONNECTION, H.KEEP_ALIVE, H.TE, H.UPGRADE, H.PROXY_AUTHORIZATION, H.PROXY_AUTHENTICATE, H.HTTP2_SETTINGS, H.FORWARDED, H.X_REAL_IP, H.FLY_CLIENT_IP, H.FLY_FORWARDED_PORT, H.FLY_REGION, H.FLY_REQUEST_ID, H.FLY_FORWARDED_PROTO, H.FLY_FORWARDED_SSL]) {
  REQUEST_ACTION[c] = 1;
}
// The caller's routing headers are for the proxy, and only the proxy may say where a replay came from.
for (const c of [H.FLY_PREFER_REGION, H.FLY_FORCE_REGION, H.FLY_PREFER_INSTANCE_ID, H.FLY_FORCE_INSTANCE_ID, H.FLY_REPLAY_SRC, H.FLY_REPLAY_FAILED]) {
  REQUEST_ACTION[c] = 1;
}
REQUEST_ACTION[H.X_FORWARDED_FOR] = 2;
REQUEST_ACTION[H.VIA] = 2;

const RESPONSE_ACTION = new Uint8Array(32);
for (const c of [H.CONNECTION, H.PROXY_CONNECTION, H.KEEP_ALIVE, H.TE, H.UPGRADE, H.PROXY_AUTHENTICATE, H.PROXY_AUTHORIZATION, H.HTTP2_SETTINGS, H.FLY_REQUEST_ID]) {
  RESPONSE_ACTION[c] = 1;
}
RESPONSE_ACTION[H.VIA] = 2;

/** Never dropped, even when Connection names them. */
function framing(code: number): boolean {
  return code === H.CONTENT_LENGTH || code === H.TRANSFER_ENCODING || code === H.HOST;
}

/** What the proxy says about a caller connection, encoded once per connection. */
export class CallerIdentity {
  /** `Fly-Client-IP: ..\r\nFly-Forwarded-Port: ..\r\nFly-Region: ..\r\nFly-Request-Id: ` (the id follows). */
  readonly head: Buffer;
  /** `\r\nX-Forwarded-For: <caller>\r\nVia: 1.1 sixpn\r\n`: the rest when the caller sent neither. */
  readonly plainTail: Buffer;
  readonly caller: Buffer;

  constructor(caller: string, port: number, region: string) {
    this.head = Buffer.from(`Fly-Client-IP: ${caller}\r\nFly-Forwarded-Port: ${port}\r\nFly-Region: ${region}\r\nFly-Request-Id: `, 'latin1');
    this.plainTail = Buffer.from(`\r\nX-Forwarded-For: ${caller}\r\nVia: 1.1 sixpn\r\n`, 'latin1');
    this.caller = Buffer.from(caller, 'latin1');
  }
}

/** Copies src[s, e) to dst at o; short runs by hand (cheaper than a native call). */
function copy(src: Uint8Array, s: number, e: number, dst: Uint8Array, o: number): number {
  const n = e - s;
  if (n > 64) dst.set(src.subarray(s, e), o);
  else for (let i = 0; i < n; i++) dst[o + i] = src[s + i]!;
  return o + n;
}

function put(b: Uint8Array, dst: Uint8Array, o: number): number {
  if (b.length > 16) {
    dst.set(b, o); // a whole buffer needs no view: a flat cost that beats a loop past ~16 bytes
    return o + b.length;
  }
  return copy(b, 0, b.length, dst, o);
}

/** An ASCII string (request ids) into dst at o. */
function putAscii(str: string, dst: Uint8Array, o: number): number {
  for (let i = 0; i < str.length; i++) dst[o + i] = str.charCodeAt(i);
  return o + str.length;
}

/** Kept fields as runs of whole lines: [start, end) pairs relative to the head (reused; `nRuns` pairs valid). */
const runs: number[] = [];
let nRuns = 0;

/** Fills `runs` with the kept lines of `h` and returns their total length. */
function keptRuns(h: HeadParser, action: Uint8Array, keepUpgrade: boolean): number {
  nRuns = 0;
  let total = 0;
  let runStart = -1;
  const n = h.count;
  for (let i = 0; i <= n; i++) {
    let keep = false;
    if (i < n) {
      const code = h.codes[i]!;
      const a = action[code]!;
      keep = a === 0 || (keepUpgrade && code === H.UPGRADE);
      if (keep && !framing(code) && h.connectionNames.length > 0 && h.namedByConnection(i)) keep = false;
    }
    const lineStart = i < n ? h.lineStart(i) : h.blankLine;
    if (keep) {
      if (runStart < 0) runStart = lineStart;
    } else if (runStart >= 0) {
      runs[2 * nRuns] = runStart;
      runs[2 * nRuns + 1] = lineStart;
      nRuns++;
      total += lineStart - runStart;
      runStart = -1;
    }
  }
  return total;
}

/** Total length of the values of fields with `code`, joined by ", " (and how many). */
function joinedLength(h: HeadParser, code: number): number {
  let len = 0;
  let k = 0;
  for (let i = 0; i < h.count; i++) {
    if (h.codes[i] !== code) continue;
    const v = h.valueEnd(i) - h.valueStart(i);
    if (v === 0) continue;
    len += (k > 0 ? 2 : 0) + v;
    k++;
  }
  return len;
}

function writeJoined(h: HeadParser, code: number, dst: Buffer, o: number): number {
  let first = true;
  for (let i = 0; i < h.count; i++) {
    if (h.codes[i] !== code) continue;
    const s = h.base + h.valueStart(i);
    const e = h.base + h.valueEnd(i);
    if (e === s) continue;
    if (!first) o = put(COMMA_SP, dst, o);
    first = false;
    o = copy(h.buf, s, e, dst, o);
  }
  return o;
}

/** Length of `Name: <values of code>, <tail>\r\n` (the values joined by ", "). */
function mergedLength(h: HeadParser, code: number, name: Buffer, tail: Buffer): number {
  const v = joinedLength(h, code);
  return name.length + (v > 0 ? v + 2 : 0) + tail.length + 2;
}

/** Writes `Name: <values of code>, <tail>\r\n`: the proxy's entry appended to what came before. */
function writeMerged(h: HeadParser, code: number, name: Buffer, tail: Buffer, out: Buffer, o: number): number {
  o = put(name, out, o);
  if (joinedLength(h, code) > 0) {
    o = writeJoined(h, code, out, o);
    o = put(COMMA_SP, out, o);
  }
  o = put(tail, out, o);
  return put(CRLF, out, o);
}

/** The end of every rewritten head: the proxy's Connection (if any), the kept fields, CRLF. */
function writeRest(h: HeadParser, conn: Buffer | null, out: Buffer, o: number): void {
  if (conn) o = put(conn, out, o);
  const b = h.base;
  for (let k = 0; k < 2 * nRuns; k += 2) o = copy(h.buf, b + runs[k]!, b + runs[k + 1]!, out, o);
  put(CRLF, out, o);
}

/**
 * The head to send to the machine for the request in `h`. `extra`: whole header lines the proxy
 * adds after its identity fields (a replay's `fly-replay-src`), CRLF-terminated.
 */
export function rewriteRequest(h: HeadParser, who: CallerIdentity, requestId: string, upgrade: boolean, extra: Buffer | null = null): Buffer {
  const kept = keptRuns(h, REQUEST_ACTION, upgrade);
  const plain = joinedLength(h, H.X_FORWARDED_FOR) === 0 && joinedLength(h, H.VIA) === 0;
  const tail = plain ? who.plainTail.length : 2 + mergedLength(h, H.X_FORWARDED_FOR, XFF, who.caller) + mergedLength(h, H.VIA, VIA, VIA_SELF);
  // HTTP/1.0 is not persistent by default: ask the machine to keep our connection open.
  const conn = upgrade ? CONN_UPGRADE : h.minor === 0 ? CONN_KEEP_ALIVE : null;
  const size = h.lineEnd + 2 + who.head.length + requestId.length + tail + (conn ? conn.length : 0) + (extra ? extra.length : 0) + kept + 2;
  const out = Buffer.allocUnsafe(size);
  let o = copy(h.buf, h.base, h.base + h.lineEnd + 2, out, 0);
  o = put(who.head, out, o);
  o = putAscii(requestId, out, o);
  if (plain) o = put(who.plainTail, out, o);
  else {
    o = put(CRLF, out, o);
    o = writeMerged(h, H.X_FORWARDED_FOR, XFF, who.caller, out, o);
    o = writeMerged(h, H.VIA, VIA, VIA_SELF, out, o);
  }
  if (extra) o = put(extra, out, o);
  writeRest(h, conn, out, o);
  return out;
}

/** What the proxy says about the caller connection in a response head. */
export const CONNECTION = { NONE: 0, CLOSE: 1, KEEP_ALIVE: 2, UPGRADE: 3 } as const;
export type ConnectionField = (typeof CONNECTION)[keyof typeof CONNECTION];

/**
 * The head to send to the caller for the response in `h`, followed by `tail[ts, te)` when given
 * (the start of the body that came in the same read: one write, one system call, for both).
 */
export function rewriteResponse(h: HeadParser, requestId: string, connection: ConnectionField, tail: Buffer | null = null, ts = 0, te = 0): Buffer {
  const upgrade = connection === CONNECTION.UPGRADE;
  const kept = keptRuns(h, RESPONSE_ACTION, upgrade);
  const conn = connection === CONNECTION.CLOSE ? CONN_CLOSE : connection === CONNECTION.KEEP_ALIVE ? CONN_KEEP_ALIVE : upgrade ? CONN_UPGRADE : null;
  const status = h.lineEnd - h.statusStart;
  const size = HTTP11.length + status + 2 + REQUEST_ID.length + requestId.length + 2 + mergedLength(h, H.VIA, VIA, VIA_SELF) + (conn ? conn.length : 0) + kept + 2;
  const out = Buffer.allocUnsafe(tail === null ? size : size + te - ts);
  let o = put(HTTP11, out, 0);
  o = copy(h.buf, h.base + h.statusStart, h.base + h.lineEnd + 2, out, o);
  o = put(REQUEST_ID, out, o);
  o = putAscii(requestId, out, o);
  o = put(CRLF, out, o);
  o = writeMerged(h, H.VIA, VIA, VIA_SELF, out, o);
  writeRest(h, conn, out, o);
  if (tail !== null) copy(tail, ts, te, out, size);
  return out;
}

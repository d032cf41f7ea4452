/**
 * One strict HTTP/1.1 head parser for requests and responses, working on the socket's Buffers.
 *
 * A head is validated line by line as its lines arrive (so garbage is refused early) and as
 * strictly as llhttp in strict mode, stricter where a proxy must be (see the differential fuzz
 * table in test/unit/proxy/http1-fuzz.test.ts): bare LF, obs-fold, whitespace before a colon,
 * CL+TE, any second Content-Length, a request Transfer-Encoding other than `chunked`, missing or
 * duplicate Host, HTTP/0.9, HTTP/2.0 and other versions, CONNECT and PRI, over-long heads and too
 * many fields are each refused with a reason. Nothing is copied or decoded: the parser records
 * offsets (relative to the head's first byte in `buf`) and the facts framing and rewriting need,
 * in fields reused from one message to the next.
 *
 * @example
 *   const p = new HeadParser('request', { maxHeadSize: 16384, maxHeaders: 100 });
 *   const end = p.feed(chunk, 0, chunk.length); // >= 0: head complete, body starts at chunk[end]
 *   if (end === NEED_MORE) ...; if (end === INVALID) reply400(p.reason);
 */
import { ALPHA_T, AUTHORITY, classifyName, COLON, COMMA, CR, equalsLower, H, HTAB, LF, LOWER, lookupMethod, SP, TOKEN, URL_CHAR, VALUE, type Method } from './tables.js';

/** feed(): the head is not complete yet; every byte given was kept. */
export const NEED_MORE = -1;
/** feed(): the head is invalid; `reason` says why. */
export const INVALID = -2;

export interface HeadLimits {
  /** Largest head in bytes, start line and CRLFs included. */
  maxHeadSize: number;
  /** Most header fields in one head. */
  maxHeaders: number;
}

/** What a protocol version looks like (HTTP/2.0, RTSP/1.0, ICE/1.0): to name the refusal. */
const PROTOCOL_VERSION = /^[A-Z]+\/\d\.\d$/;

/** buf[i, i+8) is `HTTP/1.0` or `HTTP/1.1`. */
function isHttp1(buf: Buffer, i: number): boolean {
  return (
    buf[i] === 0x48 && buf[i + 1] === 0x54 && buf[i + 2] === 0x54 && buf[i + 3] === 0x50 && buf[i + 4] === 0x2f && buf[i + 5] === 0x31 && buf[i + 6] === 0x2e && (buf[i + 7] === 0x30 || buf[i + 7] === 0x31)
  );
}

export class HeadParser {
  /** The buffer that holds the complete head (the chunk it ended in, or a joined copy). */
  buf: Buffer = Buffer.alloc(0);
  /** Where the head starts in `buf` (after leading empty lines); all offsets below are relative to it. */
  base = 0;
  /** Head length in bytes, blank line included. */
  size = 0;
  reason = '';

  // Start line.
  method: Method | null = null;
  targetStart = 0;
  targetEnd = 0;
  /** HTTP/1.x minor version (0 or 1). */
  minor = 1;
  status = 0;
  /** Offset of the status code (the status line is copied from here). */
  statusStart = 0;
  /** Offset of the CR ending the start line. */
  lineEnd = 0;

  // Header fields: per field (line start, name end, value start, value end) and its H code.
  // Grown on demand up to maxHeaders, so an idle connection's parser stays small.
  count = 0;
  /** Offset of the blank line that ends the head. */
  blankLine = 0;
  private f: Int32Array = new Int32Array(4 * 16);
  codes: Uint8Array = new Uint8Array(16);

  // What framing and rewriting need.
  contentLength = -1;
  chunked = false;
  /** A Transfer-Encoding was present (responses: without chunked last, the body runs to close). */
  transferEncoding = false;
  connectionClose = false;
  connectionKeepAlive = false;
  connectionUpgrade = false;
  /** Index of the (last) non-empty Upgrade field, or -1. */
  upgradeField = -1;
  expectContinue = false;
  hostCount = 0;
  /** A request carries one of Fly's routing headers (fly-prefer-region, ...): worth a look. */
  steering = false;
  /** Index of the (last) fly-replay field of a response, or -1; how many there were. */
  replayField = -1;
  replayFields = 0;
  /** Ranges (relative start, end pairs) of the names a Connection field lists, to drop them. */
  readonly connectionNames: number[] = [];

  private pending: Buffer | null = null;
  /** Where the next line starts, relative to the head start (resumes a split head). */
  private scan = 0;
  private started = false;

  constructor(
    readonly kind: 'request' | 'response',
    readonly limits: HeadLimits,
  ) {}

  lineStart(i: number): number {
    return this.f[4 * i]!;
  }
  nameEnd(i: number): number {
    return this.f[4 * i + 1]!;
  }
  valueStart(i: number): number {
    return this.f[4 * i + 2]!;
  }
  valueEnd(i: number): number {
    return this.f[4 * i + 3]!;
  }

  /** Copies the parsed head out of the buffer it was read into, which its reader is about to reuse. */
  detach(): void {
    if (this.size === 0) return;
    this.buf = Buffer.from(this.buf.subarray(this.base, this.base + this.size));
    this.base = 0;
  }

  /** Forgets the last head (and any partial one): ready for the next message. */
  reset(): void {
    this.pending = null;
    this.scan = 0;
    this.started = false;
    this.count = 0;
    this.size = 0;
    this.reason = '';
    this.method = null;
    this.status = 0;
    this.contentLength = -1;
    this.chunked = false;
    this.transferEncoding = false;
    this.connectionClose = false;
    this.connectionKeepAlive = false;
    this.connectionUpgrade = false;
    this.upgradeField = -1;
    this.expectContinue = false;
    this.hostCount = 0;
    this.steering = false;
    this.replayField = -1;
    this.replayFields = 0;
    this.connectionNames.length = 0;
  }

  /**
   * True while part of a head has been read (a caller that stops now left a request
   * unfinished). Stray CR bytes before a start line do not count.
   */
  get partial(): boolean {
    const p = this.pending;
    if (p === null) return false;
    for (let i = 0; i < p.length; i++) if (p[i] !== CR) return true;
    return false;
  }

  /**
   * Reads head bytes from chunk[start, end). Returns the offset in `chunk` just past the head
   * (the body or the next message starts there), NEED_MORE, or INVALID.
   */
  feed(chunk: Buffer, start: number, end: number): number {
    let buf: Buffer;
    let head: number;
    let shift: number;
    if (this.pending === null) {
      buf = chunk;
      head = start;
      shift = 0;
      this.scan = 0;
    } else {
      shift = this.pending.length - start;
      buf = Buffer.concat([this.pending, chunk.subarray(start, end)]);
      head = 0;
      end = buf.length;
    }
    const max = this.limits.maxHeadSize;
    let p = head + this.scan;
    for (;;) {
      let lf = buf.indexOf(LF, p);
      if (lf >= end) lf = -1;
      if (lf < 0) {
        if (end - head > max) return this.fail('head too large');
        // A request line that can never be valid is refused before its end arrives (a TLS
        // hello, binary junk): its first bytes must be a method and a space.
        if (!this.started && this.kind === 'request') {
          let i = head;
          while (i < end && TOKEN[buf[i]!] === 1) i++;
          if (i < end && (buf[i] !== SP || i === head) && buf[i] !== CR) return this.fail('invalid request line');
        }
        // Only empty lines so far: nothing to keep.
        this.pending = end > head ? Buffer.from(buf.subarray(head, end)) : null;
        this.scan = p - head;
        return NEED_MORE;
      }
      if (lf === p || buf[lf - 1] !== CR) return this.fail('bare LF (line ending without CR)');
      const cr = lf - 1;
      if (cr === p) {
        if (!this.started) {
          // Empty lines before a start line are ignored (RFC 9112 section 2.2).
          p = head = lf + 1;
          continue;
        }
        if (lf + 1 - head > max) return this.fail('head too large');
        this.pending = null;
        this.buf = buf;
        this.base = head;
        this.size = lf + 1 - head;
        this.blankLine = p - head;
        if (!this.finish()) return INVALID;
        return lf + 1 - shift;
      }
      if (lf + 1 - head > max) return this.fail('head too large');
      if (!this.started) {
        this.started = true;
        if (!(this.kind === 'request' ? this.requestLine(buf, head, cr) : this.statusLine(buf, head, cr))) return INVALID;
      } else if (!this.field(buf, head, p, cr)) return INVALID;
      p = lf + 1;
    }
  }

  private fail(reason: string): number {
    this.reason = reason;
    this.pending = null;
    return INVALID;
  }

  private bad(reason: string): false {
    this.reason = reason;
    this.pending = null;
    return false;
  }

  private requestLine(buf: Buffer, head: number, e: number): boolean {
    let i = head;
    while (i < e && TOKEN[buf[i]!] === 1) i++;
    if (i === head || i === e || buf[i] !== SP) return this.bad('invalid request line');
    const m = lookupMethod(buf, head, i);
    if (m === null) {
      const name = buf.toString('latin1', head, i);
      if (name === 'CONNECT') return this.bad('CONNECT is not supported');
      if (name === 'PRI') return this.bad('HTTP/2 connection preface');
      return this.bad('unknown method');
    }
    this.method = m;
    i++;
    if (buf[i] === SP) return this.bad('more than one space in the request line');
    const ts = i;
    i = scanTarget(buf, i, e);
    if (i < 0) return this.bad('invalid request target');
    if (i === e) return this.bad('HTTP/0.9 request (no version)');
    this.targetStart = ts - head;
    this.targetEnd = i - head;
    i++;
    if (e - i !== 8 || !isHttp1(buf, i)) {
      if (buf[i] === SP) return this.bad('more than one space in the request line');
      return this.bad(PROTOCOL_VERSION.test(buf.toString('latin1', i, e)) ? 'unsupported HTTP version' : 'invalid request line');
    }
    this.minor = buf[i + 7]! - 0x30;
    this.lineEnd = e - head;
    return true;
  }

  private statusLine(buf: Buffer, head: number, e: number): boolean {
    if (e - head < 9 || !isHttp1(buf, head) || buf[head + 8] !== SP) {
      const sp = buf.indexOf(SP, head);
      return this.bad(PROTOCOL_VERSION.test(buf.toString('latin1', head, sp > head && sp < e ? sp : e)) ? 'unsupported HTTP version' : 'invalid status line');
    }
    if (e - head < 12) return this.bad('invalid status code');
    this.minor = buf[head + 7]! - 0x30;
    let status = 0;
    for (let i = head + 9; i < head + 12; i++) {
      const d = buf[i]! - 0x30;
      if (d < 0 || d > 9) return this.bad('invalid status code');
      status = status * 10 + d;
    }
    if (status < 100 || status > 599) return this.bad('invalid status code');
    if (e > head + 12) {
      if (buf[head + 12] !== SP) return this.bad('invalid status code');
      for (let i = head + 13; i < e; i++) if (VALUE[buf[i]!] !== 1) return this.bad('invalid byte in reason phrase');
    }
    this.status = status;
    this.statusStart = 9;
    this.lineEnd = e - head;
    return true;
  }

  private field(buf: Buffer, head: number, s: number, e: number): boolean {
    const first = buf[s]!;
    if (first === SP || first === HTAB) return this.bad('obs-fold (header line starting with whitespace)');
    let i = s;
    while (i < e && TOKEN[buf[i]!] === 1) i++;
    if (i === e || buf[i] !== COLON) {
      return this.bad(i < e && (buf[i] === SP || buf[i] === HTAB) ? 'whitespace before colon' : 'invalid header name');
    }
    if (i === s) return this.bad('empty header name');
    const ne = i;
    i++;
    while (i < e && (buf[i] === SP || buf[i] === HTAB)) i++;
    const vs = i;
    for (; i < e; i++) if (VALUE[buf[i]!] !== 1) return this.bad('invalid byte in header value');
    let ve = e;
    while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
    const n = this.count;
    if (n >= this.limits.maxHeaders) return this.bad('too many header fields');
    const code = classifyName(buf, s, ne);
    if (n === this.codes.length) this.grow();
    const f = this.f;
    f[4 * n] = s - head;
    f[4 * n + 1] = ne - head;
    f[4 * n + 2] = vs - head;
    f[4 * n + 3] = ve - head;
    this.codes[n] = code;
    this.count = n + 1;
    switch (code) {
      case H.CONTENT_LENGTH:
        return this.contentLengthField(buf, vs, e);
      case H.TRANSFER_ENCODING:
        return this.transferEncodingField(buf, vs, e);
      case H.CONNECTION:
      case H.PROXY_CONNECTION:
        this.connectionField(buf, head, vs, e, code === H.CONNECTION);
        return true;
      case H.UPGRADE:
        if (ve > vs) this.upgradeField = n;
        return true;
      case H.HOST:
        this.hostCount++;
        return true;
      case H.EXPECT:
        if (equalsLower(buf, vs, ve, LOWER.continue100)) this.expectContinue = true;
        return true;
      case H.FLY_PREFER_REGION:
      case H.FLY_FORCE_REGION:
      case H.FLY_PREFER_INSTANCE_ID:
      case H.FLY_FORCE_INSTANCE_ID:
        this.steering = true;
        return true;
      case H.FLY_REPLAY:
        this.replayField = n;
        this.replayFields++;
        return true;
    }
    return true;
  }

  private grow(): void {
    const n = Math.min(this.codes.length * 2, this.limits.maxHeaders);
    const f = new Int32Array(4 * n);
    f.set(this.f);
    this.f = f;
    const codes = new Uint8Array(n);
    codes.set(this.codes);
    this.codes = codes;
  }

  private contentLengthField(buf: Buffer, vs: number, e: number): boolean {
    if (this.contentLength >= 0) return this.bad('duplicate Content-Length');
    if (this.transferEncoding) return this.bad('both Content-Length and Transfer-Encoding');
    let i = vs;
    let n = 0;
    while (i < e) {
      const d = buf[i]! - 0x30;
      if (d < 0 || d > 9) break;
      n = n * 10 + d;
      if (n > Number.MAX_SAFE_INTEGER) return this.bad('Content-Length too large');
      i++;
    }
    if (i === vs) return this.bad(i === e ? 'empty Content-Length' : 'invalid Content-Length');
    // llhttp allows trailing spaces (not tabs) after the digits, and nothing else.
    while (i < e && buf[i] === SP) i++;
    if (i !== e) return this.bad('invalid Content-Length');
    this.contentLength = n;
    return true;
  }

  private transferEncodingField(buf: Buffer, vs: number, e: number): boolean {
    if (this.contentLength >= 0) return this.bad('both Content-Length and Transfer-Encoding');
    if (this.kind === 'request') {
      // Requests: exactly `chunked`, once. Other codings would leave the length unknowable.
      if (this.transferEncoding) return this.bad('more than one Transfer-Encoding');
      let te = e;
      while (te > vs && buf[te - 1] === SP) te--;
      if (!equalsLower(buf, vs, te, LOWER.chunked)) return this.bad('unsupported Transfer-Encoding (only chunked)');
      this.transferEncoding = true;
      this.chunked = true;
      return true;
    }
    // Responses: the last coding of the last field decides; not chunked means "read to close".
    // An empty field says nothing (as in llhttp).
    if (vs === e) return true;
    this.transferEncoding = true;
    let last = vs;
    for (let i = vs; i < e; i++) if (buf[i] === COMMA) last = i + 1;
    while (last < e && (buf[last] === SP || buf[last] === HTAB)) last++;
    let te = e;
    while (te > last && buf[te - 1] === SP) te--;
    this.chunked = equalsLower(buf, last, te, LOWER.chunked);
    return true;
  }

  private connectionField(buf: Buffer, head: number, vs: number, e: number, names: boolean): void {
    let s = vs;
    for (let i = vs; i <= e; i++) {
      if (i < e && buf[i] !== COMMA) continue;
      let ts = s;
      while (ts < i && (buf[ts] === SP || buf[ts] === HTAB)) ts++;
      let te = i;
      while (te > ts && buf[te - 1] === SP) te--;
      s = i + 1;
      if (te === ts) continue;
      if (equalsLower(buf, ts, te, LOWER.close)) this.connectionClose = true;
      else if (equalsLower(buf, ts, te, LOWER.keepAlive)) this.connectionKeepAlive = true;
      else if (equalsLower(buf, ts, te, LOWER.upgrade)) this.connectionUpgrade = true;
      else if (names) this.connectionNames.push(ts - head, te - head);
    }
  }

  private finish(): boolean {
    if (this.kind === 'request') {
      if (this.hostCount > 1) return this.bad('duplicate Host');
      if (this.hostCount === 0 && this.minor === 1) return this.bad('missing Host');
    }
    return true;
  }

  /** A request that asks to switch protocols (Upgrade + Connection: upgrade), h2c excepted. */
  get upgrade(): boolean {
    if (this.upgradeField < 0 || !this.connectionUpgrade) return false;
    const i = this.upgradeField;
    return !equalsLower(this.buf, this.base + this.valueStart(i), this.base + this.valueEnd(i), LOWER.h2c);
  }

  /** HTTP keep-alive as the message asks it (1.1: unless close; 1.0: only with keep-alive). */
  get keepAlive(): boolean {
    return this.minor === 1 ? !this.connectionClose : this.connectionKeepAlive && !this.connectionClose;
  }

  /** The request target as a string (for logs; allocates). */
  target(): string {
    return this.buf.toString('latin1', this.base + this.targetStart, this.base + this.targetEnd);
  }

  /** Field i's value as a string (allocates). */
  value(i: number): string {
    return this.buf.toString('latin1', this.base + this.valueStart(i), this.base + this.valueEnd(i));
  }

  /** Field i's name as sent (allocates). */
  name(i: number): string {
    return this.buf.toString('latin1', this.base + this.lineStart(i), this.base + this.nameEnd(i));
  }

  /** True when field i is named by the message's Connection field (hop-by-hop by name). */
  namedByConnection(i: number): boolean {
    const list = this.connectionNames;
    if (list.length === 0) return false;
    const buf = this.buf;
    const ns = this.base + this.lineStart(i);
    const ne = this.base + this.nameEnd(i);
    for (let k = 0; k < list.length; k += 2) {
      const ts = this.base + list[k]!;
      const te = this.base + list[k + 1]!;
      if (te - ts !== ne - ns) continue;
      let same = true;
      for (let j = 0; j < te - ts; j++) {
        let a = buf[ns + j]!;
        let b = buf[ts + j]!;
        if (a >= 0x41 && a <= 0x5a) a |= 0x20;
        if (b >= 0x41 && b <= 0x5a) b |= 0x20;
        if (a !== b) {
          same = false;
          break;
        }
      }
      if (same) return true;
    }
    return false;
  }
}

/**
 * Validates a request-target from buf[i] up to the SP that ends it (or `e`), as llhttp's URL
 * grammar does: origin-form or `*` (path bytes, `?` query, `#` fragment) or absolute-form
 * (scheme `://` authority, then path or query). Returns the offset of the ending SP or `e`, or -1.
 */
function scanTarget(buf: Buffer, i: number, e: number): number {
  const c0 = buf[i]!;
  let state: number; // 0 path, 1 query, 2 fragment, 3 authority
  if (c0 === 0x2f || c0 === 0x2a) state = 0;
  else if (ALPHA_T[c0] === 1) {
    while (i < e && ALPHA_T[buf[i]!] === 1) i++;
    if (e - i < 3 || buf[i] !== COLON || buf[i + 1] !== 0x2f || buf[i + 2] !== 0x2f) return -1;
    i += 3;
    state = 3;
  } else return -1;
  let at = false;
  for (; i < e; i++) {
    const c = buf[i]!;
    if (c === SP) return i;
    switch (state) {
      case 0:
        if (URL_CHAR[c] === 1) continue;
        if (c === 0x3f) state = 1;
        else if (c === 0x23) state = 2;
        else return -1;
        continue;
      case 1:
        if (URL_CHAR[c] === 1 || c === 0x3f) continue;
        if (c === 0x23) state = 2;
        else return -1;
        continue;
      case 2:
        if (URL_CHAR[c] === 1 || c === 0x3f || c === 0x23) continue;
        return -1;
      default:
        if (c === 0x40) {
          if (at) return -1; // "@@"
          at = true;
          continue;
        }
        at = false;
        if (AUTHORITY[c] === 1) continue;
        if (c === 0x2f) state = 0;
        else if (c === 0x3f) state = 1;
        else return -1;
    }
  }
  return e;
}

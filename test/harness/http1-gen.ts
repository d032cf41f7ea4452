// Generated and mutated HTTP/1 requests and responses for the differential fuzz: mostly valid
// messages with every framing and connection feature the engine acts on, then byte-level
// mutations (special bytes put in, taken out, lines doubled, CRLF turned into LF, ...) and the
// known smuggling shapes. Seeded, so a failure can be replayed.

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  /** Uniform in [0, 1). */
  next(): number {
    // xorshift32
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

const METHODS = ['GET', 'GET', 'GET', 'POST', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH', 'TRACE', 'PURGE', 'QUERY', 'M-SEARCH', 'PROPFIND', 'SOURCE', 'LINK', 'CONNECT', 'PRI', 'FOO', 'get', 'DESCRIBE', 'GETT', 'G ET'];
const TARGETS = ['/', '/', '/a/b', '/search?q=1&r=2', '/p#frag', '/q?x?y#z#w', '*', '/%7Euser/', "/a;b,c=d!$&'()*+", 'http://example.com/x', 'http://u:p@example.com:8080/p?q', 'https://[::1]:443/', 'http://a@@b/', 'http:/x', '/\u00e9', '/a b', '/a\tb', '/{x}|^`', 'ftp://h?x', '//double', 'x'];
const VERSIONS = ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.2', 'RTSP/1.0', 'http/1.1', 'HTTP/1.1 ', 'HTTP/11', ''];
const NAMES = ['Accept', 'User-Agent', 'Cookie', 'X-A', 'x-b', 'Accept-Encoding', 'Cache-Control', 'Authorization', 'X-Forwarded-For', 'Via', 'Forwarded', 'X-Real-IP', 'Fly-Client-IP', 'Fly-Request-Id', 'TE', 'Trailer', 'Keep-Alive', 'Proxy-Authorization', 'Date', 'Content-Type', 'Content-Lengthy', 'Transfer-Encodings', 'X!#$%&*+.^_`|~'];
const VALUES = ['*/*', 'curl/8.0', 'a=1; b=2', '203.0.113.7', '1.0 edge', 'gzip, deflate', 'no-cache', 'Bearer xyz', '', ' padded ', 'tab\there', 'caf\u00e9', '"quoted"', 'trailers', 'a,b,,c'];
const CONNECTION = ['close', 'keep-alive', 'Keep-Alive', 'upgrade', 'Upgrade, close', 'x-drop, keep-alive', 'CLOSE', 'close ', 'close\t', 'te, close', ' keep-alive', 'closed', 'keep-alive, upgrade'];
const TE = ['chunked', 'chunked', 'Chunked', 'CHUNKED', 'chunked ', ' chunked', 'gzip, chunked', 'chunked, gzip', 'identity', 'xchunked', 'chunked\t', 'chunked,', ',chunked', 'gzip', ''];
const CL_BAD = ['', ' ', '-1', '+5', '0x5', '5 5', '5,5', '5\t', ' 5', '05', '99999999999999999999', '1e3', '５'];
const SPECIAL_BYTES = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x3a, 0x2c, 0x3b, 0x22, 0x7f, 0x80, 0xff, 0x7e, 0x40];
const STATUS = [200, 200, 200, 201, 204, 206, 301, 304, 400, 404, 500, 503, 100, 103, 101, 199, 150, 99, 600, 999];
const REASONS = ['OK', 'Not Found', '', 'Weird \u00e9 reason', 'tab\tin', 'x'];

function chunkedBody(rng: Rng, data: string): string {
  let out = '';
  let i = 0;
  while (i < data.length) {
    const n = 1 + rng.int(Math.min(20, data.length - i));
    let size = n.toString(16);
    if (rng.chance(0.1)) size = size.toUpperCase().padStart(4, '0');
    let ext = '';
    if (rng.chance(0.1)) ext = rng.pick([';a', ';a=b', ';a="q \\" x"', ';a=b;c', ';=x', '; a', ';', ';a=', ';a="unterminated', ';a=b"c"', ' ', '\t;a']);
    out += `${size}${ext}\r\n${data.slice(i, i + n)}\r\n`;
    i += n;
  }
  out += '0\r\n';
  if (rng.chance(0.2)) out += rng.pick(['X-T: 1\r\n', 'X-T: a\r\nY: b\r\n', 'Content-Length: 5\r\n', 'Transfer-Encoding: chunked\r\n', 'X-T:\r\n', ' X-T: 1\r\n', 'X-T : 1\r\n', 'Connection: close\r\n', 'x-t: \u00e9\r\n']);
  return `${out}\r\n`;
}

function field(rng: Rng): string {
  const name = rng.pick(NAMES);
  let value = rng.pick(VALUES);
  if (rng.chance(0.1)) value = `${value}${rng.pick(['', ' ', '\t', '  '])}`;
  const sep = rng.pick([': ', ': ', ': ', ':', ':  ', ':\t']);
  return `${name}${sep}${value}\r\n`;
}

/** One request (head and body), mostly well-formed. */
export function genRequest(rng: Rng): string {
  const method = rng.chance(0.85) ? rng.pick(METHODS.slice(0, 10)) : rng.pick(METHODS);
  const target = rng.chance(0.8) ? rng.pick(TARGETS.slice(0, 4)) : rng.pick(TARGETS);
  const version = rng.chance(0.85) ? 'HTTP/1.1' : rng.pick(VERSIONS);
  let head = version === '' ? `${method} ${target}\r\n` : `${method} ${target} ${version}\r\n`;
  const fields: string[] = [];
  const hosts = rng.chance(0.9) ? 1 : rng.pick([0, 2]);
  for (let i = 0; i < hosts; i++) fields.push(`${rng.pick(['Host', 'host', 'HOST'])}: ${rng.pick(['a', 'example.com', '[::1]:80', ''])}\r\n`);
  const n = rng.int(5);
  for (let i = 0; i < n; i++) fields.push(field(rng));
  if (rng.chance(0.2)) fields.push(`${rng.pick(['Connection', 'connection', 'Proxy-Connection'])}: ${rng.pick(CONNECTION)}\r\n`);
  if (rng.chance(0.05)) fields.push(`Upgrade: ${rng.pick(['websocket', 'h2c', 'foo/2', ''])}\r\n`);
  if (rng.chance(0.05)) fields.push(`Expect: ${rng.pick(['100-continue', '100-Continue', 'other'])}\r\n`);
  let body = '';
  const data = 'x'.repeat(rng.int(40)) + (rng.chance(0.2) ? '\r\n0\r\n\r\n' : '');
  const framing = rng.int(10);
  if (framing < 3) {
    const cl = rng.chance(0.9) ? String(data.length) : rng.pick(CL_BAD);
    fields.push(`Content-Length: ${cl}\r\n`);
    body = data;
    if (rng.chance(0.05)) fields.push(`Content-Length: ${rng.chance(0.5) ? cl : String(data.length + 1)}\r\n`);
  } else if (framing < 5) {
    fields.push(`${rng.pick(['Transfer-Encoding', 'transfer-encoding'])}: ${rng.chance(0.8) ? 'chunked' : rng.pick(TE)}\r\n`);
    if (rng.chance(0.05)) fields.push(`Transfer-Encoding: ${rng.pick(TE)}\r\n`);
    if (rng.chance(0.05)) fields.push(`Content-Length: ${data.length}\r\n`);
    body = chunkedBody(rng, data || 'abc');
  }
  for (let i = fields.length - 1; i > 0; i--) {
    if (rng.chance(0.3)) {
      const j = rng.int(i + 1);
      [fields[i], fields[j]] = [fields[j]!, fields[i]!];
    }
  }
  head += fields.join('');
  return `${head}\r\n${body}`;
}

/** One response to `method`, mostly well-formed. */
export function genResponse(rng: Rng, method: string): string {
  const status = rng.chance(0.8) ? rng.pick(STATUS.slice(0, 10)) : rng.pick(STATUS);
  const version = rng.chance(0.9) ? 'HTTP/1.1' : rng.pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'RTSP/1.0', 'ICE/1.0', 'HTTP/1.1 ', 'http/1.1']);
  const reason = rng.pick(REASONS);
  let head = rng.chance(0.05) ? `${version} ${status}\r\n` : `${version} ${status} ${reason}\r\n`;
  const fields: string[] = [];
  const n = rng.int(5);
  for (let i = 0; i < n; i++) fields.push(field(rng));
  if (rng.chance(0.2)) fields.push(`Connection: ${rng.pick(CONNECTION)}\r\n`);
  if (status === 101 || rng.chance(0.03)) fields.push('Upgrade: websocket\r\nConnection: upgrade\r\n');
  const data = 'y'.repeat(rng.int(40));
  let body = '';
  const framing = rng.int(10);
  const bodiless = method === 'HEAD' || status < 200 || status === 204 || status === 304;
  if (framing < 5) {
    const cl = rng.chance(0.92) ? String(data.length) : rng.pick(CL_BAD);
    fields.push(`Content-Length: ${cl}\r\n`);
    if (!bodiless) body = data;
    if (rng.chance(0.04)) fields.push(`Content-Length: ${cl}\r\n`);
  } else if (framing < 8) {
    const te = rng.chance(0.8) ? 'chunked' : rng.pick(TE);
    fields.push(`Transfer-Encoding: ${te}\r\n`);
    if (rng.chance(0.04)) fields.push(`Content-Length: ${data.length}\r\n`);
    if (!bodiless) body = chunkedBody(rng, data || 'abc');
  } else if (!bodiless) body = data;
  head += fields.join('');
  let out = `${head}\r\n${body}`;
  if (rng.chance(0.1) && status >= 200) out = `HTTP/1.1 100 Continue\r\n\r\n${out}`;
  return out;
}

/** Applies one to three byte-level mutations. */
export function mutate(rng: Rng, s: string): string {
  const b = [...Buffer.from(s, 'latin1')];
  const times = 1 + rng.int(3);
  for (let t = 0; t < times && b.length > 0; t++) {
    const at = rng.int(b.length);
    switch (rng.int(9)) {
      case 0:
        b[at] = rng.pick(SPECIAL_BYTES);
        break;
      case 1:
        b.splice(at, 0, rng.pick(SPECIAL_BYTES));
        break;
      case 2:
        b.splice(at, 1);
        break;
      case 3: {
        // double a line
        const text = Buffer.from(b).toString('latin1');
        const lines = text.split('\r\n');
        const i = rng.int(lines.length);
        lines.splice(i, 0, lines[i]!);
        b.splice(0, b.length, ...Buffer.from(lines.join('\r\n'), 'latin1'));
        break;
      }
      case 4: {
        // one CRLF becomes LF (or CR)
        const text = Buffer.from(b).toString('latin1');
        const idx = text.indexOf('\r\n', at);
        if (idx >= 0) b.splice(idx, 2, rng.chance(0.7) ? 0x0a : 0x0d);
        break;
      }
      case 5:
        b.splice(at, 0, 0x0d, 0x0a);
        break;
      case 6:
        b.splice(at, 0, 0x20);
        break;
      case 7:
        b.length = at; // cut short
        break;
      default: {
        const c = b[at]!;
        if (c >= 0x61 && c <= 0x7a) b[at] = c - 0x20;
        else if (c >= 0x41 && c <= 0x5a) b[at] = c + 0x20;
        else if (c >= 0x30 && c <= 0x39) b[at] = 0x30 + rng.int(10);
      }
    }
  }
  return Buffer.from(b).toString('latin1');
}

/** The request smuggling and desync shapes every proxy must refuse, and their neighbours. */
export const SMUGGLING: string[] = [
  'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd',
  'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd',
  'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n',
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n',
  'GET / HTTP/1.1\r\n Host: a\r\n\r\n',
  'GET / HTTP/1.1\nHost: a\n\n',
  'GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
  'GET / HTTP/1.1\r\n\r\n',
  'GET /\r\n\r\n',
  'GET / HTTP/2.0\r\nHost: a\r\n\r\n',
  'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
  'CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nX: \u0000\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n',
];

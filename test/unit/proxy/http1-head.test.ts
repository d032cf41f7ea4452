// The HTTP/1 engine's head parser and rewrite as tables: what a head says (method, target,
// framing, connection), why a head is refused, and the exact bytes a rewrite produces.
import { describe, expect, it } from 'vitest';
import { BODY, requestBody, responseBody } from '../../../src/proxy/http1/framing.js';
import { HeadParser, INVALID, NEED_MORE } from '../../../src/proxy/http1/head.js';
import { CallerIdentity, CONNECTION, rewriteRequest, rewriteResponse } from '../../../src/proxy/http1/rewrite.js';
import { ChunkScanner } from '../../../src/proxy/http1/chunked.js';

const LIMITS = { maxHeadSize: 1024, maxHeaders: 8 };

function parse(kind: 'request' | 'response', text: string): HeadParser {
  const p = new HeadParser(kind, LIMITS);
  const b = Buffer.from(text, 'latin1');
  const r = p.feed(b, 0, b.length);
  if (r === INVALID) throw new Error(p.reason);
  if (r === NEED_MORE) throw new Error('incomplete');
  return p;
}

function refusal(kind: 'request' | 'response', text: string): string {
  const p = new HeadParser(kind, LIMITS);
  const b = Buffer.from(text, 'latin1');
  return p.feed(b, 0, b.length) === INVALID ? p.reason : 'accepted';
}

describe('HTTP/1 head parser', () => {
  it.each([
    ['GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'GET', '/', 1, BODY.NONE, true, false],
    ['\r\n\r\nPOST /x?y#z HTTP/1.1\r\nHost: a\r\nContent-Length: 005 \r\n\r\n', 'POST', '/x?y#z', 1, BODY.LENGTH, true, false],
    ['PUT http://u@h:1/p HTTP/1.1\r\nhost: a\r\ntransfer-encoding: Chunked\r\n\r\n', 'PUT', 'http://u@h:1/p', 1, BODY.CHUNKED, true, false],
    ['OPTIONS * HTTP/1.0\r\n\r\n', 'OPTIONS', '*', 0, BODY.NONE, false, false],
    ['GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n', 'GET', '/', 0, BODY.NONE, true, false],
    ['GET / HTTP/1.1\r\nHost: a\r\nConnection: x, close\r\n\r\n', 'GET', '/', 1, BODY.NONE, false, false],
    ['GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n', 'GET', '/ws', 1, BODY.NONE, true, true],
    ['GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n', 'GET', '/', 1, BODY.NONE, true, false],
    ['M-SEARCH * HTTP/1.1\r\nHost: a\r\nX:\r\nY:\t v \t\r\n\r\n', 'M-SEARCH', '*', 1, BODY.NONE, true, false],
  ])('reads %j', (text, method, target, minor, body, keepAlive, upgrade) => {
    const p = parse('request', text);
    expect([p.method, p.target(), p.minor, requestBody(p), p.keepAlive, p.upgrade]).toEqual([method, target, minor, body, keepAlive, upgrade]);
  });

  it.each([
    ['GET / HTTP/1.1\nHost: a\n\n', 'bare LF (line ending without CR)'],
    ['GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n', 'invalid byte in header value'],
    ['GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\r\n', 'obs-fold (header line starting with whitespace)'],
    ['GET / HTTP/1.1\r\nHost : a\r\n\r\n', 'whitespace before colon'],
    ['GET / HTTP/1.1\r\n: a\r\n\r\n', 'empty header name'],
    ['GET / HTTP/1.1\r\nX(: a\r\n\r\n', 'invalid header name'],
    ['GET  / HTTP/1.1\r\nHost: a\r\n\r\n', 'more than one space in the request line'],
    ['GET /a\u00ff HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid request target'],
    ['GET / HTTP/1.2\r\nHost: a\r\n\r\n', 'unsupported HTTP version'],
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n', 'duplicate Content-Length'],
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\t\r\n\r\n', 'invalid Content-Length'],
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n', 'empty Content-Length'],
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 9007199254740992\r\n\r\n', 'Content-Length too large'],
    ['GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n', 'both Content-Length and Transfer-Encoding'],
    ['GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n', 'more than one Transfer-Encoding'],
    [`GET / HTTP/1.1\r\nHost: a\r\n${'X: y\r\n'.repeat(8)}\r\n`, 'too many header fields'],
    [`GET / HTTP/1.1\r\nHost: a\r\nX: ${'y'.repeat(1000)}\r\n\r\n`, 'head too large'],
  ])('refuses %j: %s', (text, reason) => {
    expect(refusal('request', text)).toBe(reason);
  });

  it('reads a head split at every byte the same as in one piece', () => {
    const text = 'POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc';
    const b = Buffer.from(text);
    for (let cut = 1; cut < b.length; cut++) {
      const p = new HeadParser('request', LIMITS);
      expect(p.feed(b, 0, cut)).toBe(cut < text.indexOf('\r\n\r\n') + 4 ? NEED_MORE : text.indexOf('\r\n\r\n') + 4);
      if (cut < text.indexOf('\r\n\r\n') + 4) expect(p.feed(b, cut, b.length)).toBe(text.indexOf('\r\n\r\n') + 4);
      expect([p.method, p.contentLength, p.count, p.value(2)]).toEqual(['POST', 3, 3, 'b']);
    }
  });

  it.each([
    ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n', 'GET', BODY.LENGTH, true],
    ['HTTP/1.1 200\r\n\r\n', 'GET', BODY.CLOSE, true],
    ['HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n', 'GET', BODY.LENGTH, false],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 'GET', BODY.CHUNKED, true],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 'GET', BODY.CLOSE, true],
    ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n', 'HEAD', BODY.NONE, true],
    ['HTTP/1.1 204 No Content\r\n\r\n', 'GET', BODY.NONE, true],
    ['HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n', 'GET', BODY.NONE, true],
    ['HTTP/1.1 100 Continue\r\n\r\n', 'POST', BODY.INTERIM, true],
    ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 'GET', BODY.SWITCH, true],
  ])('frames the response %j to %s', (text, method, body, keepAlive) => {
    const p = parse('response', text);
    expect([responseBody(p, method), p.keepAlive]).toEqual([body, keepAlive]);
  });

  it.each([
    ['HTTP/1.1 99 Low\r\n\r\n', 'invalid status code'],
    ['HTTP/1.1 600 High\r\n\r\n', 'invalid status code'],
    ['HTTP/2.0 200 OK\r\n\r\n', 'unsupported HTTP version'],
    ['HTTP/1.1 200 O\u0001K\r\n\r\n', 'invalid byte in reason phrase'],
  ])('refuses the response %j: %s', (text, reason) => {
    expect(refusal('response', text)).toBe(reason);
  });
});

describe('HTTP/1 chunk scanner', () => {
  it.each([
    ['0\r\n\r\nNEXT', 5],
    ['a\r\n0123456789\r\n0\r\n\r\n', 20],
    ['1;a=b;c="q\\"x"\r\nz\r\n0\r\nT: v\r\nU:\r\n\r\nrest', 34],
  ])('finds the end of %j at %i, whatever the cuts', (text, end) => {
    const b = Buffer.from(text, 'latin1');
    for (let cut = 0; cut <= b.length; cut++) {
      const s = new ChunkScanner({ maxLineBytes: 1024 });
      const first = s.scan(b, 0, cut);
      const at = first >= 0 ? first : s.scan(b, cut, b.length);
      expect(at).toBe(end);
    }
  });

  it.each([
    ['x\r\n', 'invalid chunk size'],
    ['5 \r\n', 'invalid chunk size'],
    ['5\n', 'invalid chunk size'],
    ['1\r\nab\r\n', 'chunk data longer than its size'],
    ['1; a\r\n', 'invalid chunk extension'],
    ['0\r\n X: y\r\n\r\n', 'obs-fold in trailers'],
    ['0\r\nContent-Length: 5\r\n\r\n', 'framing or connection field in trailers'],
    ['20000000000000\r\n', 'chunk size too large'],
  ])('refuses %j: %s', (text, reason) => {
    const s = new ChunkScanner({ maxLineBytes: 1024 });
    expect(s.scan(Buffer.from(text, 'latin1'), 0, text.length)).toBe(-2);
    expect(s.reason).toBe(reason);
  });
});

describe('HTTP/1 head rewrite', () => {
  it('writes the request with the identity fields right after the request line', () => {
    const h = parse('request', 'POST /p HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nContent-Length: 2\r\nVia: 1.0 x\r\nX-A: b\r\n\r\n');
    const out = rewriteRequest(h, new CallerIdentity('fdaa:0:18::99', 80, 'ewr'), 'id1-ewr', false).toString('latin1');
    expect(out).toBe(
      'POST /p HTTP/1.1\r\nFly-Client-IP: fdaa:0:18::99\r\nFly-Forwarded-Port: 80\r\nFly-Region: ewr\r\nFly-Request-Id: id1-ewr\r\n' +
        'X-Forwarded-For: 1.2.3.4, fdaa:0:18::99\r\nVia: 1.0 x, 1.1 sixpn\r\nHost: a\r\nContent-Length: 2\r\nX-A: b\r\n\r\n',
    );
  });

  it('keeps framing fields and Host even when Connection names them', () => {
    const h = parse('request', 'POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n');
    const out = rewriteRequest(h, new CallerIdentity('c', 1, 'r'), 'i', false).toString('latin1');
    expect(out).toContain('\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n');
  });

  it('writes the response with HTTP/1.1, the request id, Via and the proxy\'s Connection', () => {
    const h = parse('response', 'HTTP/1.0 201 Created\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nContent-Length: 0\r\nFly-Request-Id: forged\r\nX-A: b\r\n\r\n');
    expect(rewriteResponse(h, 'id2-ewr', CONNECTION.CLOSE).toString('latin1')).toBe(
      'HTTP/1.1 201 Created\r\nFly-Request-Id: id2-ewr\r\nVia: 1.1 sixpn\r\nConnection: close\r\nContent-Length: 0\r\nX-A: b\r\n\r\n',
    );
  });
});

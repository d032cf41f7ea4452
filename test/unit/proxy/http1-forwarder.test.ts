// The HTTP/1 engine's forwarder on real loopback sockets: a listener with the forwarder, real
// node:http machines and raw TCP machines that misbehave on purpose, raw callers. Framing,
// keep-alive reuse, pipelining, half-close, upgrades, 100-continue, back-pressure, errors, and
// the books (every pick released once, in-flight back to zero).
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { deadPort, listen, RawCaller, startRig, type Rig } from '../../harness/http1-rig.js';
import { waitFor, sleep } from '../../harness/net.js';

interface Seen {
  method: string;
  url: string;
  raw: string[];
  body: Buffer;
  conn: number;
}

interface Machine {
  name: string;
  port: number;
  seen: Seen[];
  connections: number;
  open: Set<net.Socket>;
  close(): Promise<void>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A node:http machine; by default it answers JSON saying what it received. */
async function httpMachine(name: string, handle?: (req: http.IncomingMessage, res: http.ServerResponse, seen: Seen) => void): Promise<Machine> {
  const m: Machine = { name, port: 0, seen: [], connections: 0, open: new Set(), close: async () => undefined };
  const server = http.createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen = { method: req.method ?? '', url: req.url ?? '', raw: req.rawHeaders, body: Buffer.concat(chunks), conn: (req.socket as net.Socket & { n?: number }).n ?? 0 };
      m.seen.push(seen);
      if (handle) return handle(req, res, seen);
      res.setHeader('content-type', 'application/json');
      res.setHeader('x-machine', name);
      res.end(JSON.stringify({ machine: name, method: seen.method, url: seen.url, raw: seen.raw, bytes: seen.body.length }));
    });
  });
  server.on('connection', (s: net.Socket & { n?: number }) => {
    s.n = ++m.connections;
    m.open.add(s);
    s.on('close', () => m.open.delete(s));
  });
  m.port = await listen(server);
  m.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  cleanups.push(() => m.close());
  return m;
}

/** A raw TCP machine: `onConnection` does whatever the test needs with the socket. */
async function rawMachine(name: string, onConnection: (s: net.Socket, n: number) => void): Promise<Machine> {
  const m: Machine = { name, port: 0, seen: [], connections: 0, open: new Set(), close: async () => undefined };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    m.open.add(s);
    s.on('close', () => m.open.delete(s));
    s.on('error', () => undefined);
    onConnection(s, ++m.connections);
    s.on('end', () => {
      if (!s.writableEnded) s.end();
    });
  });
  m.port = await listen(server);
  m.close = async () => {
    for (const s of m.open) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  cleanups.push(() => m.close());
  return m;
}

/** Calls `onHead(head, socket)` for every request head on a raw machine connection (bodiless requests). */
function onHeads(onHead: (head: string, s: net.Socket) => void): (s: net.Socket) => void {
  return (s) => {
    let buf = '';
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, i + 4);
        buf = buf.slice(i + 4);
        onHead(head, s);
      }
    });
  };
}

async function rig(machines: Machine[], opts: Parameters<typeof startRig>[1] = {}): Promise<Rig> {
  const r = await startRig(machines.map((m) => ({ name: m.name, port: m.port })), opts);
  cleanups.push(() => r.close());
  return r;
}

async function caller(r: Rig): Promise<RawCaller> {
  const c = await RawCaller.connect(r.port);
  cleanups.push(() => c.destroy());
  return c;
}

/** Every pick was released, nothing is in flight. */
async function booksBalanced(r: Rig): Promise<void> {
  await waitFor(() => r.forwarder.inFlight === 0 && r.machines.every((m) => m.held === 0), { what: 'every machine released and nothing in flight', timeoutMs: 3_000 });
}

const json = (b: Buffer): { machine: string; raw: string[]; url: string; bytes: number; method: string } => JSON.parse(b.toString()) as never;

describe('HTTP/1 forwarder on real sockets', () => {
  it('puts the identity fields first, merges X-Forwarded-For and Via, drops hop-by-hop and caller-forged fields, both ways', async () => {
    const m = await httpMachine('m1', (_req, res, seen) => {
      res.setHeader('x-machine', 'm1');
      res.setHeader('x-hop', 'secret');
      res.setHeader('connection', 'x-hop');
      res.setHeader('via', '1.1 app');
      res.setHeader('fly-request-id', 'forged-by-machine');
      res.end(JSON.stringify({ raw: seen.raw }));
    });
    const r = await rig([m]);
    const c = await caller(r);
    c.write(
      'GET /path?q=1 HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 203.0.113.7\r\nVia: 1.0 edge\r\nFly-Client-IP: forged\r\nFly-Region: forged\r\nFly-Request-Id: forged\r\n' +
        'Forwarded: for=evil\r\nX-Real-IP: 6.6.6.6\r\nFly-Forwarded-Proto: https\r\nFly-Forwarded-Ssl: on\r\nConnection: keep-alive, X-Drop\r\nX-Drop: secret\r\nKeep-Alive: timeout=9\r\n' +
        'TE: trailers\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\nUpgrade: websocket\r\nX-Keep: yes\r\n\r\n',
    );
    const res = await c.response();
    expect(res.status).toBe(200);
    const raw = (JSON.parse(res.body.toString()) as { raw: string[] }).raw;
    const id = res.headers['fly-request-id']!;
    expect(id).toMatch(/^req[0-9a-f]{6}-ewr$/);
    expect(raw).toEqual([
      'Fly-Client-IP', '127.0.0.1',
      'Fly-Forwarded-Port', String(r.port),
      'Fly-Region', 'ewr',
      'Fly-Request-Id', id,
      'X-Forwarded-For', '203.0.113.7, 127.0.0.1',
      'Via', '1.0 edge, 1.1 sixpn',
      'Host', 'app',
      'X-Keep', 'yes',
    ]);
    expect(res.head.startsWith('HTTP/1.1 200 OK\r\nFly-Request-Id: ')).toBe(true);
    expect(res.headers.via).toBe('1.1 app, 1.1 sixpn');
    expect(res.headers['x-machine']).toBe('m1');
    expect(res.headers['x-hop']).toBeUndefined();
    expect(res.headers['keep-alive']).toBeUndefined();
    expect(res.headers.connection).toBeUndefined();
    expect(r.done).toEqual([{ status: 200, machine: 'm1', id, method: 'GET' }]);
    await booksBalanced(r);
  });

  it('keeps the identity fields first under a flood of caller fields, and refuses more fields than the cap', async () => {
    const m = await httpMachine('m1');
    const r = await rig([m], { maxHeaders: 100 });
    const c = await caller(r);
    const fields = (n: number): string => Array.from({ length: n }, (_, i) => `X-F${i}: v\r\n`).join('');
    c.write(`GET / HTTP/1.1\r\nHost: a\r\n${fields(98)}Fly-Client-IP: 10.9.9.9\r\n\r\n`);
    const raw = json((await c.response()).body).raw;
    expect(raw.slice(0, 2)).toEqual(['Fly-Client-IP', '127.0.0.1']);
    expect(raw.filter((x) => x === '10.9.9.9')).toEqual([]);
    c.write(`GET / HTTP/1.1\r\nHost: a\r\n${fields(100)}\r\n`);
    const refused = await c.response();
    expect(refused.status).toBe(400);
    expect(refused.body.toString()).toMatch(/^400 malformed request: too many header fields \(request id req[0-9a-f]+-ewr\)\n$/);
    expect(await c.closedWithin(1_000)).toBe(true);
    expect(m.seen).toHaveLength(1);
  });

  it('passes a chunked request body through byte for byte and frames the request pipelined after it', async () => {
    const got: Buffer[] = [];
    const body = '4;ext=1\r\nWiki\r\n5;q="a \\" b"\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n';
    const m = await rawMachine('raw', (s) => {
      let all = Buffer.alloc(0);
      let answered = 0;
      s.on('data', (c: Buffer) => {
        all = Buffer.concat([all, c]);
        got[0] = all;
        const text = all.toString('latin1');
        const wanted = text.includes('X-Trailer: t\r\n\r\n') ? 1 + (text.match(/GET \/second/g)?.length ?? 0) : 0;
        while (answered < wanted && text.endsWith('\r\n\r\n')) {
          answered++;
          s.write(`HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n${answered}`);
        }
      });
    });
    const r = await rig([m]);
    const c = await caller(r);
    c.write(`POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${body}GET /second HTTP/1.1\r\nHost: a\r\n\r\n`);
    expect((await c.response()).body.toString()).toBe('1');
    expect((await c.response()).body.toString()).toBe('2');
    const text = got[0]!.toString('latin1');
    const head = text.indexOf('\r\n\r\n') + 4;
    expect(text.slice(head, head + body.length)).toBe(body);
    expect(text).toContain('Transfer-Encoding: chunked\r\n');
    expect(m.connections).toBe(1);
    await booksBalanced(r);
  });

  it('passes a chunked response through byte for byte and reuses the machine connection after it', async () => {
    const chunked = '3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n';
    const m = await rawMachine('raw', onHeads((_h, s) => s.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n${chunked}`)));
    const r = await rig([m]);
    const c = await caller(r);
    c.write('GET /a HTTP/1.1\r\nHost: a\r\n\r\n');
    const res = await c.response();
    expect(res.body.toString('latin1')).toBe(chunked);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(res.headers.trailer).toBe('X-Sum');
    c.write('GET /b HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.response()).body.toString('latin1')).toBe(chunked);
    expect(m.connections).toBe(1);
    await booksBalanced(r);
  });

  it('frames a response without a length by the machine closing, and closes the caller after it', async () => {
    const m = await rawMachine('raw', onHeads((_h, s) => s.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello until close')));
    const r = await rig([m]);
    const c = await caller(r);
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const res = await c.response();
    expect(res.headers.connection).toBe('close');
    expect(res.body.toString()).toBe('hello until close');
    expect(c.closed).toBe(true);
    const c2 = await caller(r);
    c2.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c2.response()).body.toString()).toBe('hello until close');
    expect(m.connections).toBe(2);
    await booksBalanced(r);
  });

  it('reads no body after HEAD, 204 and 304, and the connections go on', async () => {
    const m = await rawMachine(
      'raw',
      onHeads((h, s) => {
        if (h.startsWith('HEAD')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n');
        else if (h.includes('/204')) s.write('HTTP/1.1 204 No Content\r\n\r\n');
        else if (h.includes('/304')) s.write('HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n');
        else s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }),
    );
    const r = await rig([m]);
    const c = await caller(r);
    c.write('HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const head = await c.response('HEAD');
    expect([head.status, head.headers['content-length'], head.body.length]).toEqual([200, '5', 0]);
    expect((await c.response()).status).toBe(204);
    expect((await c.response()).status).toBe(304);
    const last = await c.response();
    expect(last.body.toString()).toBe('ok');
    expect(m.connections).toBe(1);
    await booksBalanced(r);
  });

  it('reuses one machine connection across callers, keeps at most poolMaxIdle idle, and closes them after poolIdleTimeout', async () => {
    const m = await httpMachine('m1', (_req, res) => setTimeout(() => res.end('ok'), 80));
    const r = await rig([m], { poolMaxIdle: 2, poolIdleTimeout: 400 });
    for (let i = 0; i < 4; i++) {
      const c = await caller(r);
      c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
      expect((await c.response()).body.toString()).toBe('ok');
      c.destroy();
    }
    expect(m.connections).toBe(1);
    const callers = await Promise.all(Array.from({ length: 5 }, () => caller(r)));
    for (const c of callers) c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    for (const c of callers) expect((await c.response()).status).toBe(200);
    expect(m.connections).toBe(5);
    await waitFor(() => m.open.size === 2, { what: 'the pool to keep 2 idle connections', timeoutMs: 2_000 });
    await sleep(100);
    expect(m.open.size).toBe(2);
    await waitFor(() => m.open.size === 0, { what: 'idle pooled connections to close', timeoutMs: 2_000 });
    await booksBalanced(r);
  });

  it('never reuses a machine connection with unread bytes, after a response or while idle', async () => {
    const m = await rawMachine(
      'raw',
      onHeads((h, s) => {
        if (h.includes('/extra')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforged');
        else if (h.includes('/later')) {
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
          setTimeout(() => s.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged'), 50);
        } else s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean');
      }),
    );
    const r = await rig([m]);
    const c = await caller(r);
    c.write('GET /extra HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.response()).body.toString()).toBe('ok');
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.response()).body.toString()).toBe('clean');
    expect(m.connections).toBe(2);
    c.write('GET /later HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.response()).body.toString()).toBe('ok');
    await sleep(150);
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.response()).body.toString()).toBe('clean');
    expect(m.connections).toBe(3);
    await booksBalanced(r);
  });

  it('answers pipelined requests in order, one at a time', async () => {
    let concurrent = 0;
    let peak = 0;
    const m = await httpMachine('m1', (req, res) => {
      peak = Math.max(peak, ++concurrent);
      setTimeout(() => {
        concurrent--;
        res.end(req.url);
      }, 20);
    });
    const r = await rig([m]);
    const c = await caller(r);
    c.write('GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.response()).body.toString()).toBe('/1');
    expect((await c.response()).body.toString()).toBe('/2');
    expect((await c.response()).body.toString()).toBe('/3');
    expect(peak).toBe(1);
    expect(m.seen.map((s) => s.body.toString())).toEqual(['', 'abc', '']);
    await booksBalanced(r);
  });

  it('reads request and response heads and bodies that arrive a few bytes at a time', async () => {
    const response = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Slow: yes\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
    const m = await rawMachine(
      'dribble',
      onHeads((_h, s) => {
        let i = 0;
        const t = setInterval(() => {
          s.write(response.slice(i, i + 3));
          i += 3;
          if (i >= response.length) clearInterval(t);
        }, 2);
      }),
    );
    const r = await rig([m]);
    const c = await caller(r);
    const request = 'GET /slow HTTP/1.1\r\nHost: a\r\nX-Long: ' + 'v'.repeat(40) + '\r\n\r\n';
    for (let i = 0; i < request.length; i += 4) {
      c.write(request.slice(i, i + 4));
      await sleep(1);
    }
    const res = await c.response();
    expect([res.status, res.headers['x-slow'], res.body.toString()]).toEqual([200, 'yes', '5\r\nhello\r\n0\r\n\r\n']);
    c.write('GET /again HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.response()).body.toString()).toBe('5\r\nhello\r\n0\r\n\r\n');
    expect(m.connections).toBe(1);
    await booksBalanced(r);
  });

  it('keeps an HTTP/1.0 caller only when it asks for keep-alive, and says so', async () => {
    // (node:http frames a 1.0 response by close unless it is given a length)
    const m = await httpMachine('m1', (_req, res, seen) => {
      const body = JSON.stringify({ url: seen.url, raw: seen.raw });
      res.setHeader('content-length', Buffer.byteLength(body));
      res.end(body);
    });
    const r = await rig([m]);
    const ka = await caller(r);
    ka.write('GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const first = await ka.response();
    expect([first.status, first.headers.connection]).toEqual([200, 'keep-alive']);
    ka.write('GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    expect(json((await ka.response()).body).url).toBe('/b');
    const once = await caller(r);
    once.write('GET /c HTTP/1.0\r\n\r\n');
    const res = await once.response();
    expect([res.status, res.headers.connection]).toEqual([200, 'close']);
    expect(await once.closedWithin(1_000)).toBe(true);
    expect(m.seen.map((x) => x.url)).toEqual(['/a', '/b', '/c']);
    expect(m.seen[0]!.raw).toContain('keep-alive'); // the proxy asked the machine to keep its connection
    expect(m.connections).toBe(1);
    await booksBalanced(r);
  });

  it('answers thousands of pipelined requests the proxy refuses itself, in order, without growing the stack', async () => {
    const m = await httpMachine('m1');
    const r = await rig([m], { maxHeld: 1 << 20 });
    const c = await caller(r);
    const n = 3_000;
    for (let i = 0; i < n; i++) r.script.push('full');
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n'.repeat(n));
    for (let i = 0; i < n; i++) expect((await c.response()).status).toBe(503);
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.response()).status).toBe(200);
    await booksBalanced(r);
  });

  it('still answers a caller that half-closed after its request, then closes', async () => {
    const m = await httpMachine('m1', (_req, res) => setTimeout(() => res.end('late'), 100));
    const r = await rig([m]);
    const c = await caller(r);
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    c.end();
    expect((await c.response()).body.toString()).toBe('late');
    expect(await c.closedWithin(1_000)).toBe(true);
    await booksBalanced(r);
  });

  it('tunnels raw bytes both ways after a 101, half-close included, and keeps HTTP after any other answer', async () => {
    const m = await rawMachine('raw', (s) => {
      let buf = '';
      let tunnel = false;
      s.on('data', (c: Buffer) => {
        if (tunnel) return void s.write(c.toString('latin1').toUpperCase());
        buf += c.toString('latin1');
        let i: number;
        while (!tunnel && (i = buf.indexOf('\r\n\r\n')) >= 0) {
          const head = buf.slice(0, i);
          buf = buf.slice(i + 4);
          if (head.startsWith('GET /ws ')) {
            expect(head).toMatch(/\r\nConnection: upgrade\r\n/);
            expect(head).toMatch(/\r\nUpgrade: websocket(\r\n|$)/);
            tunnel = true;
            s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
            if (buf) s.write(buf.toUpperCase());
          } else s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n${head.includes('Upgrade') ? 'no' : 'ok'}`);
        }
      });
      s.on('end', () => s.end('BYE'));
    });
    const r = await rig([m]);
    const plain = await caller(r);
    plain.write('GET /other HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    const refusedUpgrade = await plain.response();
    expect([refusedUpgrade.status, refusedUpgrade.body.toString()]).toEqual([200, 'no']);
    plain.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await plain.response()).body.toString()).toBe('ok');

    const ws = await caller(r);
    ws.write('GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly ');
    const sw = await ws.response();
    expect(sw.status).toBe(101);
    expect(sw.headers.upgrade).toBe('websocket');
    expect(sw.headers.connection).toBe('upgrade');
    expect((await ws.bytes(6)).toString()).toBe('EARLY ');
    ws.write('hello');
    expect((await ws.bytes(5)).toString()).toBe('HELLO');
    ws.end();
    expect((await ws.rest()).toString()).toBe('BYE');
    expect(ws.closed).toBe(true);
    await booksBalanced(r);
    expect(r.done.map((d) => d.status)).toEqual([200, 200, 101]);
  });

  it('relays the machine\'s 100 Continue, then forwards the body', async () => {
    const m = await httpMachine('m1');
    const r = await rig([m]);
    const c = await caller(r);
    c.write('POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n');
    const cont = await c.response();
    expect(cont.status).toBe(100);
    c.write('hello');
    const res = await c.response('POST');
    expect(res.status).toBe(200);
    expect(json(res.body).bytes).toBe(5);
    expect(json(res.body).raw).toContain('100-continue');
    await booksBalanced(r);
  });

  it('applies back-pressure both ways with large bodies', async () => {
    const MiB = 1 << 20;
    const chunk = Buffer.alloc(MiB, 0x61);
    let written = 0;
    let received = 0;
    let release: (() => void) | null = null;
    const m = await httpMachine('m1', (req, res) => {
      if (req.url === '/down') {
        res.setHeader('content-length', String(64 * MiB));
        const pump = (): void => {
          while (written < 64 * MiB) {
            written += MiB;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      } else res.end(String(received));
    });
    // The upload machine reads only when told to.
    const up = await rawMachine('up', (s) => {
      s.pause();
      release = () => s.resume();
      let head = true;
      s.on('data', (c: Buffer) => {
        if (head) {
          const i = c.indexOf('\r\n\r\n');
          head = false;
          received += c.length - i - 4;
        } else received += c.length;
        if (received >= 128 * MiB) s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      });
    });
    const r = await rig([m]);
    const s = net.connect({ host: '127.0.0.1', port: r.port });
    cleanups.push(() => void s.destroy());
    await new Promise((res) => s.once('connect', res));
    s.write('GET /down HTTP/1.1\r\nHost: a\r\n\r\n');
    s.pause();
    await sleep(600);
    // Without back-pressure the machine would have written all 64 MiB into the proxy by now.
    expect(written).toBeLessThan(40 * MiB);
    let got = 0;
    await new Promise<void>((resolve) => {
      s.on('data', (c: Buffer) => {
        got += c.length;
        if (got >= 64 * MiB) resolve();
      });
      s.resume();
    });
    expect(written).toBe(64 * MiB);
    s.destroy();

    const r2 = await rig([up]);
    const u = net.connect({ host: '127.0.0.1', port: r2.port });
    cleanups.push(() => void u.destroy());
    await new Promise((res) => u.once('connect', res));
    u.write(`POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${128 * MiB}\r\n\r\n`);
    let sent = 0;
    let blocked = false;
    const push = (): void => {
      while (sent < 128 * MiB) {
        sent += MiB;
        if (!u.write(chunk)) return void u.once('drain', push);
      }
    };
    push();
    await sleep(600);
    blocked = sent < 128 * MiB;
    // The machine has not read a byte yet: what the caller could send is what the sockets buffer.
    expect(blocked).toBe(true);
    expect(sent).toBeLessThan(80 * MiB);
    release!();
    const answer = await new Promise<string>((resolve) => {
      let t = '';
      u.on('data', (c: Buffer) => {
        t += c.toString();
        if (t.endsWith('ok')) resolve(t);
      });
    });
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(received).toBe(128 * MiB);
    await booksBalanced(r2);
  }, 30_000);
});

describe('HTTP/1 forwarder errors', () => {
  it('answers 502 without a machine, 503 at the hard limit, with the request id, and keeps the connection', async () => {
    const m = await httpMachine('m1');
    const r = await rig([m]);
    const c = await caller(r);
    r.script.push('none');
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const none = await c.response();
    expect(none.status).toBe(502);
    expect(none.body.toString()).toBe(`502 no machine available (request id ${none.headers['fly-request-id']})\n`);
    r.script.push('full');
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const full = await c.response();
    expect(full.status).toBe(503);
    expect(full.body.toString()).toMatch(/^503 all machines are at their hard limit \(request id req[0-9a-f]+-ewr\)\n$/);
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.response()).status).toBe(200);
    expect(r.done.map((d) => [d.status, d.machine])).toEqual([
      [502, null],
      [503, null],
      [200, 'm1'],
    ]);
    await booksBalanced(r);
  });

  it('moves to the next machine when a connect is refused, and answers 502 when every try fails', async () => {
    const live = await httpMachine('live');
    const dead = { name: 'dead', port: await deadPort() } as Machine;
    const r = await rig([dead, live]);
    r.script.push('dead');
    const c = await caller(r);
    c.write('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi');
    const res = await c.response('POST');
    expect(json(res.body).machine).toBe('live');
    expect(json(res.body).bytes).toBe(2);
    expect(r.machines[0]!.failures).toEqual(['ECONNREFUSED']);

    const dead2 = { name: 'dead2', port: await deadPort() } as Machine;
    const dead3 = { name: 'dead3', port: await deadPort() } as Machine;
    const r2 = await rig([dead, dead2, dead3], { connectTries: 3 });
    const c2 = await caller(r2);
    c2.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const failed = await c2.response();
    expect(failed.status).toBe(502);
    expect(failed.body.toString()).toMatch(/^502 no machine reachable/);
    expect(r2.machines.map((m) => m.failures.length)).toEqual([1, 1, 1]);
    await booksBalanced(r);
    await booksBalanced(r2);
  });

  it('closing a pool with an error cuts its busy connections at once: the request waiting on one gets 502', async () => {
    const m = await rawMachine('slow', (s) => void s.resume());
    const r = await rig([m], { upstreamTimeout: 30_000 });
    const c = await caller(r);
    c.write('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi');
    await waitFor(() => m.open.size === 1 && r.pools.size === 1, { what: 'the request to reach the machine' });
    const t0 = Date.now();
    r.forwarder.closePool(r.pools.get(r.machines[0]!)!, new Error('host left the mesh'));
    const res = await c.response('POST');
    expect(res.status).toBe(502);
    expect(Date.now() - t0).toBeLessThan(1_000);
    await waitFor(() => m.open.size === 0, { what: 'the machine connection to be closed' });
    await booksBalanced(r);
  });

  it('answers 504 when a machine does not answer in time, and drops that connection', async () => {
    const m = await rawMachine('silent', (s) => void s.resume());
    const r = await rig([m], { upstreamTimeout: 300 });
    const c = await caller(r);
    const t0 = Date.now();
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const res = await c.response();
    expect(res.status).toBe(504);
    expect(res.body.toString()).toMatch(/^504 machine did not answer in time \(request id /);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    await waitFor(() => m.open.size === 0, { what: 'the silent connection to be closed' });
    await booksBalanced(r);
  });

  it('retries a bodiless GET on another machine when its connection resets before any byte; never a POST with a body', async () => {
    const resetting = await rawMachine('resetting', (s) => s.once('data', () => s.resetAndDestroy()));
    const good = await httpMachine('good');
    const r = await rig([resetting, good]);
    r.script.push('resetting');
    const c = await caller(r);
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const res = await c.response();
    expect(json(res.body).machine).toBe('good');
    expect(r.machines[0]!.failures).toEqual(['ECONNRESET']);

    r.script.push('resetting');
    c.write('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi');
    const post = await c.response('POST');
    expect(post.status).toBe(502);
    expect(post.body.toString()).toMatch(/^502 machine connection failed/);
    expect(good.seen).toHaveLength(1);
    await booksBalanced(r);
  });

  it('answers 502 for a malformed response head, and cuts a caller off when the body breaks after the head', async () => {
    const m = await rawMachine(
      'broken',
      onHeads((h, s) => {
        if (h.includes('/bad')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok');
        else s.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
      }),
    );
    const r = await rig([m]);
    const c = await caller(r);
    c.write('GET /bad HTTP/1.1\r\nHost: a\r\n\r\n');
    const bad = await c.response();
    expect(bad.status).toBe(502);
    expect(bad.body.toString()).toMatch(/^502 invalid response from machine: duplicate Content-Length/);
    c.write('GET /short HTTP/1.1\r\nHost: a\r\n\r\n');
    await expect(c.response()).rejects.toThrow(/connection closed/);
    expect(c.closed).toBe(true);
    expect(r.logs.some((l) => l.msg === 'machine response failed midway')).toBe(true);
    await booksBalanced(r);
  });

  it.each([
    ['both Content-Length and Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 'both Content-Length and Transfer-Encoding'],
    ['duplicate Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd', 'duplicate Content-Length'],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n', 'obs-fold'],
    ['bare LF', 'GET / HTTP/1.1\nHost: a\n\n', 'bare LF'],
    ['space before colon', 'GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n', 'whitespace before colon'],
    ['a coding other than chunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 'unsupported Transfer-Encoding'],
    ['duplicate Host', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 'duplicate Host'],
    ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\n\r\n', 'missing Host'],
    ['HTTP/0.9', 'GET /\r\n\r\n', 'HTTP/0.9'],
    ['the HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'HTTP/2 connection preface'],
    ['an unknown method', 'BREW / HTTP/1.1\r\nHost: a\r\n\r\n', 'unknown method'],
    ['CONNECT', 'CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n', 'CONNECT is not supported'],
    ['an oversize head', `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(20_000)}\r\n\r\n`, 'head too large'],
    ['a NUL in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX: \u0000\r\n\r\n', 'invalid byte in header value'],
    ['a TLS hello', '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003', 'invalid request line'],
  ])('refuses %s with 400 and the reason, and no machine hears of it', async (_name, bytes, reason) => {
    const m = await httpMachine('m1');
    const r = await rig([m]);
    const c = await caller(r);
    c.write(bytes);
    const res = await c.response();
    expect(res.status).toBe(400);
    expect(res.headers.connection).toBe('close');
    expect(res.body.toString()).toContain(reason);
    expect(await c.closedWithin(3_000)).toBe(true);
    expect(m.connections).toBe(0);
    expect(r.machines[0]!.picks).toBe(0);
  });

  it('refuses a chunked body whose framing breaks after its head went out, and never reuses that connection', async () => {
    const m = await httpMachine('m1');
    const r = await rig([m]);
    const c = await caller(r);
    c.write('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
    await waitFor(() => m.connections === 1, { what: 'the request head at the machine' });
    c.write('zz\r\n');
    const res = await c.response('POST');
    expect(res.status).toBe(400);
    expect(res.body.toString()).toMatch(/malformed request body: invalid chunk size/);
    await waitFor(() => m.open.size === 0, { what: 'the machine connection to be dropped' });
    await booksBalanced(r);
  });

  it('answers 408 to a caller that is too slow with its head, and closes quiet idle connections', async () => {
    const m = await httpMachine('m1');
    const r = await rig([m], { headerTimeout: 300, keepAliveTimeout: 300 });
    const slow = await caller(r);
    slow.write('GET / HTTP/1.1\r\nHost: a\r\n');
    const res = await slow.response();
    expect(res.status).toBe(408);
    expect(await slow.closedWithin(1_000)).toBe(true);
    const idle = await caller(r);
    idle.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await idle.response()).status).toBe(200);
    expect(await idle.closedWithin(1_500)).toBe(true);
    expect((await idle.rest()).length).toBe(0);
  });

  it('answers a request line of another HTTP version 505 (as node:http did), and no machine hears of it', async () => {
    const m = await httpMachine('m1');
    const r = await rig([m]);
    const c = await caller(r);
    c.write('GET / HTTP/2.0\r\nHost: a\r\n\r\n');
    const res = await c.response();
    expect(res.status).toBe(505);
    expect(res.headers.connection).toBe('close');
    expect(await c.closedWithin(3_000)).toBe(true);
    expect(m.connections).toBe(0);
  });

  it('answers a denied caller 403 with the reason and never picks a machine', async () => {
    const m = await httpMachine('m1');
    const r = await rig([m], { denied: 'caller 127.0.0.1 is not a member of org acme' });
    const c = await caller(r);
    c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const res = await c.response();
    expect(res.status).toBe(403);
    expect(res.body.toString()).toMatch(/^403 forbidden: caller 127\.0\.0\.1 is not a member of org acme \(request id req[0-9a-f]+-ewr\)\n$/);
    expect(r.denied).toEqual([res.headers['fly-request-id']]);
    expect(await c.closedWithin(1_000)).toBe(true);
    expect(r.machines[0]!.picks).toBe(0);
  });

  it('drain closes idle callers at once and tells busy ones Connection: close', async () => {
    const m = await httpMachine('m1', (_req, res) => setTimeout(() => res.end('ok'), 150));
    const r = await rig([m]);
    const idle = await caller(r);
    const busy = await caller(r);
    busy.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitFor(() => r.forwarder.inFlight === 1, { what: 'one request in flight' });
    r.forwarder.drain();
    expect(await idle.closedWithin(1_000)).toBe(true);
    const res = await busy.response();
    expect(res.body.toString()).toBe('ok');
    expect(res.headers.connection).toBe('close');
    expect(await busy.closedWithin(1_000)).toBe(true);
    await booksBalanced(r);
  });
});

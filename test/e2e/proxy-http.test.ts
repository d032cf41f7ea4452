// HTTP through the Flycast proxy: headers both ways, smuggling shapes refused raw, streamed
// 100 MiB bodies without memory growth, WebSocket-style upgrade, and the errors a caller sees.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { IN_NETNS } from '../harness/env.js';
import { appToml, callerAgent, closeCallerAgents, exchange, httpFrom, orgsToml, proxyNodeToml, rawHttp, readAll, readLines, rssOf, startProxyNode, tcpFrom, type ProxyNode } from '../harness/flycast.js';
import { hasCommand } from '../harness/env.js';
import { startHttpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { waitFor } from '../harness/net.js';
import { run } from '../harness/procs.js';

const HOST = parseHostId('a7b:7d')!;
const ACME = 0x1a;
const INSIDER = 'fdaa:0:1a:a7b:7d:0:ca11:1';
const WEB_ID = 'd0000001';
const SLOW_ID = 'd0000002';
const DEAD_ID = 'd0000003';
const WEB_IP = 'fdaa:0:1a:0:1::3';
const SLOW_IP = 'fdaa:0:1a:0:1::4';
const DEAD_IP = 'fdaa:0:1a:0:1::5';
const addr = (id: string): string => machineAddress(ACME, HOST, id);

const httpApp = (name: string, id: string): string => appToml({ name, org: 'acme', protocol: 'http', internalPort: 8080, ports: [80], machines: [{ id }] });

const TOML = `${proxyNodeToml({ proxy: 'upstream_timeout = "1s"\nconnect_timeout = "500ms"\nmax_header_size = 8192\nheader_timeout = "1s"' })}
${orgsToml({ acme: ACME })}
${httpApp('web', WEB_ID)}
${httpApp('slow', SLOW_ID)}
${httpApp('dead', DEAD_ID)}
`;

const MiB = 1024 * 1024;

describe.skipIf(!IN_NETNS)('flycast proxy: HTTP (e2e)', () => {
  let proxy: ProxyNode;
  let web: TestMachine;
  let slow: TestMachine;

  beforeAll(async () => {
    [web, slow] = await Promise.all([startHttpMachine({ id: WEB_ID, host: addr(WEB_ID), port: 8080 }), startHttpMachine({ id: SLOW_ID, host: addr(SLOW_ID), port: 8080 })]);
    proxy = await startProxyNode(TOML);
  });

  afterAll(async () => {
    await closeCallerAgents();
    await proxy?.stop();
    await stopMachines([web, slow].filter(Boolean));
  });

  it('adds Fly-* / X-Forwarded-For / Via, drops hop-by-hop headers both ways, returns the request id', async () => {
    const r = await httpFrom(INSIDER, `http://[${WEB_IP}]/headers`, {
      headers: { 'x-forwarded-for': '203.0.113.7', via: '1.0 edge', 'fly-client-ip': 'forged', 'x-keep': 'yes' },
    });
    expect(r.status).toBe(200);
    const h = (JSON.parse(r.text) as { headers: Record<string, string> }).headers;
    expect(h['fly-client-ip']).toBe(INSIDER);
    expect(h['fly-forwarded-port']).toBe('80');
    expect(h['fly-region']).toBe('ewr');
    expect(h['x-forwarded-for']).toBe(`203.0.113.7, ${INSIDER}`);
    expect(h.via).toBe('1.0 edge, 1.1 sixpn');
    expect(h['x-keep']).toBe('yes');
    expect(h['fly-request-id']).toMatch(/^[0-9a-f]{16}-ewr$/);
    expect(r.headers['fly-request-id']).toBe(h['fly-request-id']);
    expect(r.headers.via).toBe('1.1 sixpn');
    expect(r.headers['x-machine-id']).toBe(WEB_ID);
    expect(String(r.headers['keep-alive'] ?? '')).not.toContain('timeout=30'); // the machine's own keep-alive is not passed on
  });

  it('removes hop-by-hop request headers, including those the Connection header names', async () => {
    const out = await rawHttp(INSIDER, WEB_IP, 80, 'GET /headers HTTP/1.1\r\nHost: a\r\nConnection: close, x-drop-me\r\nX-Drop-Me: secret\r\nTE: trailers\r\nKeep-Alive: timeout=9\r\nProxy-Authorization: Basic eA==\r\nX-Keep: yes\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    const h = (JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)) as { headers: Record<string, string> }).headers;
    expect(h['x-keep']).toBe('yes');
    for (const name of ['x-drop-me', 'te', 'keep-alive', 'proxy-authorization']) expect(h[name]).toBeUndefined();
  });

  it.each([
    ['both Content-Length and Transfer-Encoding', 'POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['duplicate Content-Length', 'POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd'],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n'],
    ['bare LF', 'GET / HTTP/1.1\nHost: a\n\n'],
    ['space before colon', 'GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n'],
    ['unknown transfer-encoding', 'POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'],
    ['oversize headers', `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(10_000)}\r\n\r\n`],
  ])('refuses %s with 400 and never forwards it', async (_name, bytes) => {
    await web.resetStats();
    const out = await rawHttp(INSIDER, WEB_IP, 80, bytes);
    expect(out).toMatch(/^HTTP\/1\.1 400 /);
    expect((await web.stats()).requests).toBe(0);
  });

  it('cuts off a caller that sends its headers too slowly (408 after header_timeout)', async () => {
    await web.resetStats();
    const s = await tcpFrom(INSIDER, WEB_IP, 80);
    const t0 = Date.now();
    const got = readAll(s, 5_000);
    s.write('GET / HTTP/1.1\r\nHost: a\r\n');
    const { data, closed } = await got;
    expect(closed).toBe(true);
    expect(data).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect((await web.stats()).requests).toBe(0);
  });

  it('keeps a caller connection alive across requests', async () => {
    const s = await tcpFrom(INSIDER, WEB_IP, 80);
    s.write('GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n');
    let data = '';
    await new Promise<void>((resolve) => {
      s.on('data', (b: Buffer) => {
        data += b.toString();
        if (data.split(`${WEB_ID}\n`).length === 3) resolve();
      });
    });
    expect(data.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    s.destroy();
  });

  it('streams 100 MiB up and 100 MiB down with proxy RSS growing far less than one body', async () => {
    const pid = proxy.proc.child.pid!;
    // Warm up pools and code paths first so the baseline is fair.
    await httpFrom(INSIDER, `http://[${WEB_IP}]/bytes?n=${MiB}`);
    const before = await rssOf(pid);
    let peak = before;
    const sample = setInterval(() => void rssOf(pid).then((r) => (peak = Math.max(peak, r))), 20);
    try {
      const down = await request(`http://[${WEB_IP}]/bytes?n=${100 * MiB}`, { dispatcher: callerAgent(INSIDER) });
      let got = 0;
      for await (const c of down.body) got += (c as Buffer).length;
      expect(got).toBe(100 * MiB);
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      let left = 100 * MiB;
      const body = new Readable({
        read() {
          if (left <= 0) return void this.push(null);
          left -= chunk.length;
          this.push(chunk);
        },
      });
      const up = await request(`http://[${WEB_IP}]/sink`, { dispatcher: callerAgent(INSIDER), method: 'POST', body, headers: { 'content-length': String(100 * MiB) } });
      expect(await up.body.json()).toEqual({ bytes: 100 * MiB });
    } finally {
      clearInterval(sample);
    }
    const growth = (peak - before) / MiB;
    console.log(`proxy RSS before ${(before / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB, growth ${growth.toFixed(1)} MiB`);
    // Bodies are never held whole: growth stays far below one body (100 MiB). What remains is
    // dead socket chunks awaiting collection and allocator slack (see src/proxy/README.md).
    expect(growth).toBeLessThan(48);
  });

  // Caller bytes are read into reused buffers (one shared by every connection, then one per large
  // body): bodies of every size, framed by length or chunked, many connections at once, must reach
  // the machine byte for byte however the reads and the machine's back-pressure fall.
  it('delivers request bodies byte for byte from many callers at once, by length and chunked', async () => {
    const sizes = [0, 1, 100, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 64 * 1024 + 7, 1 * MiB + 3, 8 * MiB + 11];
    const send = async (size: number, chunked: boolean, stall: number): Promise<void> => {
      const data = randomBytes(size);
      const parts: Buffer[] = [];
      // Uneven pieces, so that reads split heads, chunk sizes and bodies everywhere.
      for (let at = 0, k = 1; at < size; k++) {
        const n = Math.min(size - at, (k * 7919) % 70_000 + 1);
        parts.push(data.subarray(at, at + n));
        at += n;
      }
      const body = Readable.from(parts);
      const res = await request(`http://[${WEB_IP}]/echo?stall=${stall}`, {
        dispatcher: callerAgent(INSIDER),
        method: 'POST',
        body: chunked ? body : size === 0 ? '' : body,
        headers: chunked ? {} : { 'content-length': String(size) },
      });
      expect(res.statusCode).toBe(200);
      const echo = (await res.body.json()) as { bytes: number; sha256: string };
      expect(echo.bytes).toBe(size);
      expect(echo.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    };
    const all: Promise<void>[] = [];
    for (const size of sizes) for (const chunked of [false, true]) for (const stall of [0, 0, 1]) all.push(send(size, chunked, stall));
    await Promise.all(all);
  });

  // Machine bytes are read into reused buffers too: responses of every size, by length and
  // chunked, many at once, some read slowly by their caller, must arrive byte for byte.
  it('delivers response bodies byte for byte to many callers at once, fast and slow readers', async () => {
    const expected = (n: number): string => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = ((i * 7919) >>> 3) & 255;
      return createHash('sha256').update(b).digest('hex');
    };
    const sizes = [0, 1, 3000, 8192, 8193, 16 * 1024, 16 * 1024 + 1, 64 * 1024 + 7, 1 * MiB + 3, 6 * MiB + 11];
    const get = async (size: number, chunked: boolean, slow: boolean): Promise<void> => {
      const res = await request(`http://[${WEB_IP}]/bytes?n=${size}&pattern=1${chunked ? '&chunked=1' : ''}`, { dispatcher: callerAgent(INSIDER) });
      expect(res.statusCode).toBe(200);
      const hash = createHash('sha256');
      let got = 0;
      for await (const c of res.body) {
        hash.update(c as Buffer);
        got += (c as Buffer).length;
        if (slow) await new Promise((r) => setTimeout(r, 1));
      }
      expect(got).toBe(size);
      expect(hash.digest('hex')).toBe(expected(size));
    };
    // A caller that stops reading for a while: the proxy's writes to it queue, the socket buffers fill.
    const stalled = async (size: number): Promise<void> => {
      const sock = await tcpFrom(INSIDER, WEB_IP, 80);
      const parts: Buffer[] = [];
      const done = new Promise<void>((resolve) => sock.on('end', resolve));
      sock.on('data', (b: Buffer) => {
        parts.push(b);
        sock.pause();
        setTimeout(() => sock.resume(), 20);
      });
      sock.end(`GET /bytes?n=${size}&pattern=1 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n`);
      await done;
      const all = Buffer.concat(parts);
      const at = all.indexOf('\r\n\r\n');
      const body = all.subarray(at + 4);
      expect(body.length).toBe(size);
      expect(createHash('sha256').update(body).digest('hex')).toBe(expected(size));
    };
    const all: Promise<void>[] = [];
    for (const size of sizes) for (const chunked of [false, true]) for (const slow of [false, false, true]) all.push(get(size, chunked, slow));
    for (const size of [64 * 1024 + 7, 1 * MiB + 3, 6 * MiB + 11]) all.push(stalled(size), stalled(size));
    await Promise.all(all);
  });

  it('tunnels an Upgrade request as raw bytes after the 101', async () => {
    const s = await tcpFrom(INSIDER, WEB_IP, 80);
    s.write('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    const head = await readLines(s, 5);
    expect(head[0]).toMatch(/^HTTP\/1\.1 101/);
    let echoed = '';
    const got = new Promise<void>((resolve) =>
      s.on('data', (b: Buffer) => {
        echoed += b.toString();
        if (echoed.includes('ping-pong')) resolve();
      }),
    );
    s.write('ping-pong');
    await got;
    s.destroy();
  });

  const UPGRADE = 'Connection: Upgrade\r\nUpgrade: websocket\r\n';
  const FORGED = 'Fly-Client-IP: 203.0.113.66\r\nX-Forwarded-For: 203.0.113.66\r\nFly-Request-Id: forged\r\n';
  const expectProxied = (h: Record<string, string>): void => {
    expect(h['fly-client-ip']).toBe(INSIDER);
    expect(h['x-forwarded-for']).toBe(`203.0.113.66, ${INSIDER}`);
    expect(h['fly-request-id']).toMatch(/^[0-9a-f]{16}-ewr$/);
    expect(h['fly-region']).toBe('ewr');
    expect(h.via).toBe('1.1 sixpn');
  };

  it('answers an Upgrade the machine turns down (200, not 101) as an ordinary response, then parses the next request as HTTP', async () => {
    await web.resetStats();
    const s = await tcpFrom(INSIDER, WEB_IP, 80);
    const first = await exchange(s, `GET /no-upgrade HTTP/1.1\r\nHost: a\r\n${UPGRADE}\r\n`);
    expect(first.status).toBe(200);
    expect(first.body).toBe(`${WEB_ID}\n`);
    expect(first.headers.via).toBe('1.1 sixpn');
    expect(first.headers['fly-request-id']).toMatch(/^[0-9a-f]{16}-ewr$/);
    const second = await exchange(s, `GET /headers HTTP/1.1\r\nHost: a\r\n${FORGED}\r\n`);
    expect(second.status).toBe(200);
    expect(second.headers.via).toBe('1.1 sixpn');
    expectProxied((JSON.parse(second.body) as { headers: Record<string, string> }).headers);
    expect((await web.stats()).requests).toBe(2);
    s.destroy();
  });

  it('parses a request pipelined right behind a turned-down Upgrade as HTTP too', async () => {
    const s = await tcpFrom(INSIDER, WEB_IP, 80);
    const first = exchange(s, `GET /no-upgrade HTTP/1.1\r\nHost: a\r\n${UPGRADE}\r\nGET /headers HTTP/1.1\r\nHost: a\r\n${FORGED}\r\n`);
    expect((await first).status).toBe(200);
    const second = await exchange(s, '');
    expect(second.status).toBe(200);
    expectProxied((JSON.parse(second.body) as { headers: Record<string, string> }).headers);
    s.destroy();
  });

  it('answers a request in flight and then closes when an Upgrade is pipelined behind it (never a raw pipe)', async () => {
    await web.resetStats();
    const s = await tcpFrom(INSIDER, WEB_IP, 80);
    const got = readAll(s, 5_000);
    s.write(`GET /sleep?ms=200 HTTP/1.1\r\nHost: a\r\n\r\nGET /ws HTTP/1.1\r\nHost: a\r\n${UPGRADE}\r\nGET /headers HTTP/1.1\r\nHost: a\r\n\r\n`);
    const { data, closed } = await got;
    expect(closed).toBe(true);
    expect(data).toMatch(/^HTTP\/1\.1 200 /);
    expect(data.endsWith(`\r\n\r\n${WEB_ID}\n`)).toBe(true);
    expect(data.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect((await web.stats()).requests).toBe(1);
  });

  it('refuses a request with more header fields than max_headers (400) and never forwards it', async () => {
    await web.resetStats();
    const many = 'a: b\r\n'.repeat(1_100); // 6.6 KB: under max_header_size, far over max_headers
    const out = await rawHttp(INSIDER, WEB_IP, 80, `GET /headers HTTP/1.1\r\nHost: a\r\n${many}\r\n`);
    expect(out).toMatch(/^HTTP\/1\.1 400 /);
    expect(out).toContain('too many header fields');
    expect((await web.stats()).requests).toBe(0);
  });

  it('puts its identity headers before all of the caller\'s, and drops Forwarded, X-Real-IP and Fly-Forwarded-Proto/-Ssl', async () => {
    const filler = Array.from({ length: 90 }, (_, i) => `X-F${i}: v\r\n`).join('');
    const forged = 'Forwarded: for=203.0.113.66;proto=https\r\nX-Real-IP: 203.0.113.66\r\nFly-Forwarded-Proto: https\r\nFly-Forwarded-Ssl: on\r\n';
    const out = await rawHttp(INSIDER, WEB_IP, 80, `GET /headers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n${filler}${forged}${FORGED}\r\n`);
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    const got = JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)) as { headers: Record<string, string>; rawHeaders: string[] };
    expectProxied(got.headers);
    for (const name of ['forwarded', 'x-real-ip', 'fly-forwarded-proto', 'fly-forwarded-ssl']) expect(got.headers[name]).toBeUndefined();
    const names = got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    const own = ['fly-client-ip', 'fly-forwarded-port', 'fly-region', 'fly-request-id', 'x-forwarded-for', 'via'];
    const firstCallerHeader = names.indexOf('x-f0');
    for (const name of own) expect(names.indexOf(name), name).toBeLessThan(firstCallerHeader);
  });

  it('answers a caller that half-closes right after its request (nc -N)', async () => {
    const s = await tcpFrom(INSIDER, WEB_IP, 80);
    const got = readAll(s);
    s.end('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const { data, closed } = await got;
    expect(closed).toBe(true);
    expect(data).toMatch(/^HTTP\/1\.1 200 /);
    expect(data.endsWith(`${WEB_ID}\n`)).toBe(true);
    if (hasCommand('nc')) {
      const r = await run('nc', ['-N', '-s', INSIDER, WEB_IP, '80'], { input: 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', timeoutMs: 10_000 });
      expect(r.stdout).toMatch(/^HTTP\/1\.1 200 /);
      expect(r.stdout.endsWith(`${WEB_ID}\n`)).toBe(true);
    }
  });

  it('sends a whole POST body that a caller half-closes behind, and aborts one it ends in the middle of', async () => {
    const whole = await tcpFrom(INSIDER, WEB_IP, 80);
    const got = readAll(whole);
    whole.end('POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello');
    expect((await got).data).toMatch(/^HTTP\/1\.1 200 [\s\S]*\{"bytes":5\}$/);
    await web.resetStats();
    const cut = await tcpFrom(INSIDER, WEB_IP, 80);
    const gone = readAll(cut, 5_000);
    cut.write('POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789');
    await waitFor(async () => (await web.stats()).activeRequests === 1, { what: 'request at the machine' });
    cut.end();
    expect((await gone).closed).toBe(true);
    await waitFor(async () => (await web.stats()).activeRequests === 0, { timeoutMs: 2_000, what: 'request aborted at the machine' });
  });

  it.each([
    ['a second Host header', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['an HTTP/0.9 request line', 'GET /\r\n\r\n', 400],
    ['an HTTP/2.0 request line', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
  ])('refuses %s itself (%s) and never forwards it', async (_name, bytes, status) => {
    await web.resetStats();
    const out = await rawHttp(INSIDER, WEB_IP, 80, bytes);
    expect(out).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect((await web.stats()).requests).toBe(0);
  });

  it.each([
    ['a second request', 'GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n'],
    ['stray bytes', 'GET / HTTP/1.0\r\n\r\nxyz'],
  ])('keeps the response to an HTTP/1.0 request followed by %s', async (_name, bytes) => {
    const out = await rawHttp(INSIDER, WEB_IP, 80, bytes);
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(out.endsWith(`${WEB_ID}\n`)).toBe(true);
    expect(out.match(/HTTP\/1\.1 /g)).toHaveLength(1);
  });

  it('answers 504 with the request id when the machine is too slow', async () => {
    const r = await httpFrom(INSIDER, `http://[${SLOW_IP}]/sleep?ms=3000`);
    expect(r.status).toBe(504);
    expect(r.text).toMatch(/^504 machine did not answer in time \(request id [0-9a-f]{16}-ewr\)\n$/);
    expect(r.headers['fly-request-id']).toBe(/request id (\S+)\)/.exec(r.text)![1]);
    await failureLogged(r.headers['fly-request-id'] as string, 'SIXPN_UPSTREAM_TIMEOUT');
  });

  it('answers 502 when no machine can be reached, and logs the request id', async () => {
    const r = await httpFrom(INSIDER, `http://[${DEAD_IP}]/`);
    expect(r.status).toBe(502);
    expect(r.text).toMatch(/^502 no machine reachable \(request id \S+\)\n$/);
    const id = r.headers['fly-request-id'] as string;
    await waitFor(() => proxy.proc.output().includes(`"request_id":"${id}"`), { what: 'log line with the request id' });
    await failureLogged(id, 'SIXPN_UPSTREAM_UNREACHABLE');
  });

  /** The edge logs a failed request once, with its error code (src/errors.ts). */
  async function failureLogged(id: string, code: string): Promise<void> {
    const lines = (): string[] => proxy.proc.output().split('\n').filter((l) => l.includes(`"request_id":"${id}"`) && l.includes('"code":'));
    await waitFor(() => lines().length > 0, { what: `failure line for ${id}` });
    expect(lines()).toHaveLength(1);
    expect(lines()[0]).toContain(`"code":"${code}"`);
    expect(lines()[0]).toContain('"msg":"request failed: ');
  }
});

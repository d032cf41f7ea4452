/**
 * HTTP services: one node:http server (strict llhttp parsing, header/request timeouts) takes
 * caller connections from every Flycast listener; each request picks a machine and goes out
 * through an undici Pool per machine (keep-alive, no pipelining). Bodies stream both ways.
 * Hop-by-hop headers are removed both ways, Fly-* / X-Forwarded-For / Via are added, and each
 * request carries a Fly-Request-Id that is also in every log line about it. Upgrades
 * (WebSocket) are tunnelled as raw bytes after the request head. A request is retried on
 * another machine only when the connect failed, never once anything was sent.
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type net from 'node:net';
import { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { Slot } from '../balancer/index.js';
import type { Machine, Service } from '../catalog/types.js';
import { dialTarget, isConnectError, type ConnInfo, type ProxyCore } from './core.js';
import { holdGuard, releaseGuard } from './memory.js';
import { appMetrics, deniedTotal } from './metrics.js';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection', 'http2-settings']);
/** Request headers the proxy sets itself (any value from the caller is replaced). */
const OWN_REQUEST_HEADERS = new Set(['fly-client-ip', 'fly-forwarded-port', 'fly-region', 'fly-request-id', 'x-forwarded-for', 'via', 'expect']);

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);
const RESET_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);
/** The machine's connection closed or reset before any byte of the response. */
function isResetBeforeResponse(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code !== undefined && RESET_CODES.has(code);
}

const ID_PREFIX = randomBytes(4).toString('hex');
let idCounter = 0;

/** Connection-scoped names listed in a Connection header are hop-by-hop too. */
function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (!value) return null;
  const set = new Set<string>();
  for (const v of Array.isArray(value) ? value : [value]) for (const t of v.split(',')) set.add(t.trim().toLowerCase());
  return set;
}

/** Wraps the caller's body so that it is only read once a machine is connected and asks for it. */
class LazyBody extends Readable {
  started = false;
  constructor(private readonly src: IncomingMessage) {
    super({ highWaterMark: 64 * 1024 });
  }
  override _read(): void {
    if (!this.started) {
      this.started = true;
      this.src.on('data', (c: Buffer) => {
        if (!this.push(c)) this.src.pause();
      });
      this.src.once('end', () => this.push(null));
      this.src.once('error', (err) => this.destroy(err));
      this.src.once('aborted', () => this.destroy(new Error('caller aborted the request body')));
    }
    this.src.resume();
  }
}

export class HttpProxy {
  readonly server: http.Server;
  private readonly pools = new Map<string, Pool>();
  private readonly poolByMachine = new WeakMap<Machine, Pool>();
  private readonly info = new WeakMap<net.Socket, ConnInfo>();
  private readonly region: string;

  constructor(private readonly core: ProxyCore) {
    const c = core.config;
    this.region = core.balancer.region;
    this.server = http.createServer({
      requestTimeout: c.request_timeout,
      headersTimeout: c.header_timeout,
      // How often slow callers are checked against the two timeouts above (node's default is 30 s).
      connectionsCheckingInterval: Math.max(250, Math.min(1_000, Math.floor(c.header_timeout / 2))),
      keepAliveTimeout: 5_000,
      maxHeaderSize: c.max_header_size,
      insecureHTTPParser: false,
      noDelay: true,
    });
    this.server.on('request', (req, res) => void this.onRequest(req, res));
    this.server.on('upgrade', (req: IncomingMessage, socket: net.Socket, head: Buffer) => void this.onUpgrade(req, socket, head));
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => this.onClientError(err, socket));
    // The server never listens itself (listeners hand it sockets); this starts its timeout checks.
    this.server.emit('listening');
  }

  /** A caller connection from a Flycast listener. */
  accept(socket: net.Socket, info: ConnInfo): void {
    this.info.set(socket, info);
    if (!info.denied) appMetrics(info.target.app.name).acceptedHttp.inc();
    this.server.emit('connection', socket);
  }

  private requestId(): string {
    idCounter = (idCounter + 1) % 0x7fffffff;
    return `${ID_PREFIX}${idCounter.toString(16).padStart(8, '0')}-${this.region}`;
  }

  private onClientError(err: NodeJS.ErrnoException, socket: net.Socket): void {
    const info = this.info.get(socket);
    this.core.log.info({ caller: info?.caller, flycast: info?.flycast, code: err.code }, 'malformed or slow HTTP request refused');
    if (!socket.writable || (socket as net.Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    const reason = err.code === 'HPE_HEADER_OVERFLOW' ? 'request header fields too large' : timeout ? 'request timeout' : `malformed request (${err.code ?? 'parse error'})`;
    const body = `${reason}\n`;
    socket.end(`HTTP/1.1 ${timeout ? '408 Request Timeout' : '400 Bad Request'}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }

  private reply(res: ServerResponse, app: string, status: number, text: string, id: string): void {
    appMetrics(app).requests(status).inc();
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `${status} ${text} (request id ${id})\n`;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'fly-request-id': id });
    res.end(body);
  }

  private pool(slot: Slot, service: Service): Pool {
    // The catalog replaces a machine object whenever it changes, so this per-request lookup
    // needs no key building; the string-keyed map below shares pools across those versions.
    const known = this.poolByMachine.get(slot.machine);
    if (known && !known.closed && !known.destroyed) return known;
    const p = this.poolFor(slot, service);
    this.poolByMachine.set(slot.machine, p);
    return p;
  }

  private poolFor(slot: Slot, service: Service): Pool {
    const { host, port } = dialTarget(slot.machine, service);
    const origin = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    const key = `${slot.machine.id}|${origin}`;
    let p = this.pools.get(key);
    if (!p) {
      const c = this.core.config;
      p = new Pool(origin, {
        pipelining: 1,
        keepAliveTimeout: 4_000,
        connect: { timeout: c.connect_timeout },
        headersTimeout: c.upstream_timeout,
        bodyTimeout: c.idle_timeout,
      });
      this.pools.set(key, p);
    }
    return p;
  }

  /** Closes pools of machines that left the catalog or changed where they are dialed. */
  forgetMachine(id: string): void {
    for (const [key, p] of this.pools) {
      if (key.startsWith(`${id}|`)) {
        this.pools.delete(key);
        void p.close().catch(() => undefined);
      }
    }
  }

  private upstreamHeaders(req: IncomingMessage, info: ConnInfo, id: string, keepUpgrade: boolean): string[] {
    const raw = req.rawHeaders;
    const conn = connectionTokens(req.headers.connection);
    const out: string[] = [];
    let xff = '';
    let via = '';
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const lower = name.toLowerCase();
      const value = raw[i + 1]!;
      if (lower === 'x-forwarded-for') {
        xff = xff ? `${xff}, ${value}` : value;
        continue;
      }
      if (lower === 'via') {
        via = via ? `${via}, ${value}` : value;
        continue;
      }
      if (keepUpgrade && (lower === 'connection' || lower === 'upgrade')) {
        out.push(name, value);
        continue;
      }
      if (HOP_BY_HOP.has(lower) || OWN_REQUEST_HEADERS.has(lower) || (conn !== null && conn.has(lower))) continue;
      out.push(name, value);
    }
    out.push(
      'Fly-Client-IP', info.caller,
      'Fly-Forwarded-Port', String(info.port),
      'Fly-Region', this.region,
      'Fly-Request-Id', id,
      'X-Forwarded-For', xff ? `${xff}, ${info.caller}` : info.caller,
      'Via', via ? `${via}, 1.1 sixpn` : '1.1 sixpn',
    );
    return out;
  }

  private deny(res: ServerResponse, info: ConnInfo, id: string): void {
    deniedTotal.inc({ proto: 'http' });
    this.core.countDenied(info);
    this.core.log.warn({ caller: info.caller, flycast: info.flycast, port: info.port, app: info.target.app.name, request_id: id, reason: info.denied }, 'caller denied');
    res.shouldKeepAlive = false;
    this.reply(res, info.target.app.name, 403, `forbidden: ${info.denied}`, id);
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const info = this.info.get(req.socket);
    const id = this.requestId();
    if (!info) {
      res.destroy();
      return;
    }
    const app = info.target.app.name;
    if (info.denied) return this.deny(res, info, id);
    const te = req.headers['transfer-encoding'];
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
      res.shouldKeepAlive = false;
      this.core.log.info({ caller: info.caller, flycast: info.flycast, request_id: id }, 'unsupported transfer-encoding refused');
      return this.reply(res, app, 400, `unsupported transfer-encoding`, id);
    }
    if (this.core.draining) res.shouldKeepAlive = false;
    const started = performance.now();
    this.core.inFlight++;
    holdGuard();
    let counted = false;
    const settle = (): void => {
      if (counted) return;
      counted = true;
      this.core.inFlight--;
      releaseGuard();
    };
    res.once('close', settle);
    try {
      await this.forward(req, res, info, id, started);
    } catch (err) {
      this.core.log.error({ err, request_id: id, app }, 'proxy error');
      this.reply(res, app, 502, 'proxy error', id);
    }
  }

  private async forward(req: IncomingMessage, res: ServerResponse, info: ConnInfo, id: string, started: number): Promise<void> {
    const { target } = info;
    const app = target.app.name;
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    const idempotent = !hasBody && IDEMPOTENT.has(req.method ?? '');
    const headers = this.upstreamHeaders(req, info, id, false);
    const tried = new Set<Slot>();
    const gone = (): boolean => res.destroyed || req.socket.destroyed;
    let lastErr: unknown = null;
    for (let attempt = 0; attempt < this.core.config.connect_tries; attempt++) {
      const slot = await this.core.acquire(app, target.service.concurrency, tried, gone);
      if (slot === 'full') return this.fail(res, info, id, 503, 'all machines are at their hard limit', null);
      if (slot === 'none') {
        if (tried.size === 0) return this.fail(res, info, id, 502, 'no machine available', null);
        break;
      }
      if (gone()) {
        this.core.release(slot);
        return;
      }
      const body = hasBody ? new LazyBody(req) : null;
      const a = new Attempt(this.core, req, res, slot, info, id, started);
      this.pool(slot, target.service).dispatch({ method: req.method as 'GET', path: req.url ?? '/', headers, body }, a);
      const err = await a.started;
      if (err === null) return; // the response is streaming; the attempt releases the machine when it ends
      if (gone()) {
        this.core.release(slot);
        return;
      }
      // Another machine may take it when nothing was sent (connect failure) or when an idempotent,
      // bodiless request died on a reused connection before any response byte (machine killed).
      if ((isConnectError(err) && !(body?.started ?? false)) || (idempotent && isResetBeforeResponse(err))) {
        this.core.connectFailed(slot, err, id);
        tried.add(slot);
        lastErr = err;
        continue;
      }
      this.core.release(slot);
      if ((err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT') return this.fail(res, info, id, 504, 'machine did not answer in time', err, slot);
      return this.fail(res, info, id, 502, 'machine connection failed', err, slot);
    }
    return this.fail(res, info, id, 502, 'no machine reachable', lastErr);
  }

  private fail(res: ServerResponse, info: ConnInfo, id: string, status: number, text: string, err: unknown, slot?: Slot): void {
    this.core.log.warn(
      { request_id: id, app: info.target.app.name, caller: info.caller, flycast: info.flycast, status, ...(slot ? { machine: slot.machine.id } : {}), ...(err ? { err: (err as Error).message } : {}) },
      `request failed: ${text}`,
    );
    this.reply(res, info.target.app.name, status, text, id);
  }

  /** Upgrade (WebSocket): dial a machine, send the request head, then splice raw bytes. */
  private async onUpgrade(req: IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    const info = this.info.get(socket);
    const id = this.requestId();
    const refuse = (status: string, text: string): void => {
      const body = `${text} (request id ${id})\n`;
      socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nFly-Request-Id: ${id}\r\nConnection: close\r\n\r\n${body}`);
    };
    if (!info) return void socket.destroy();
    const app = info.target.app.name;
    if (info.denied) {
      deniedTotal.inc({ proto: 'http' });
      this.core.countDenied(info);
      this.core.log.warn({ caller: info.caller, flycast: info.flycast, app, request_id: id, reason: info.denied }, 'caller denied');
      return refuse('403 Forbidden', `forbidden: ${info.denied}`);
    }
    socket.on('error', () => socket.destroy());
    const tried = new Set<Slot>();
    this.core.inFlight++;
    socket.once('close', () => this.core.inFlight--);
    for (let attempt = 0; attempt < this.core.config.connect_tries; attempt++) {
      const slot = await this.core.acquire(app, info.target.service.concurrency, tried, () => socket.destroyed);
      if (slot === 'full') return refuse('503 Service Unavailable', 'all machines are at their hard limit');
      if (slot === 'none') break;
      const up = await this.core.dial(slot, info.target.service);
      if (up instanceof Error) {
        this.core.connectFailed(slot, up, id);
        tried.add(slot);
        continue;
      }
      this.core.balancer.reportSuccess(slot);
      const headers = this.upstreamHeaders(req, info, id, true);
      let text = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
      up.write(`${text}\r\n`);
      if (head.length > 0) up.write(head);
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        this.core.release(slot);
      };
      const kill = (): void => {
        socket.destroy();
        up.destroy();
      };
      up.on('error', kill);
      socket.on('error', kill);
      up.once('close', () => {
        release();
        socket.end();
      });
      socket.once('close', () => up.destroy());
      const idle = this.core.config.idle_timeout;
      if (idle > 0) {
        socket.setTimeout(idle, kill);
        up.setTimeout(idle, kill);
      }
      up.pipe(socket);
      socket.pipe(up);
      return;
    }
    refuse('502 Bad Gateway', 'no machine reachable');
  }

  async close(): Promise<void> {
    this.server.close();
    this.server.closeAllConnections();
    await Promise.all([...this.pools.values()].map((p) => p.destroy().catch(() => undefined)));
    this.pools.clear();
  }
}

/**
 * One try of a request on one machine, as an undici dispatch handler: response bytes go straight
 * to the caller (the machine's socket is paused while the caller's is full). `started` settles
 * with null once response headers arrived, or with the error when it failed before that.
 */
class Attempt implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private headersSent = false;
  private status = 0;
  private finished = false;
  private settle!: (err: Error | null) => void;
  readonly started = new Promise<Error | null>((resolve) => (this.settle = resolve));

  constructor(
    private readonly core: ProxyCore,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly slot: Slot,
    private readonly info: ConnInfo,
    private readonly id: string,
    private readonly t0: number,
  ) {
    res.once('close', this.onCallerClose);
  }

  private readonly onCallerClose = (): void => {
    if (!this.finished) this.controller?.abort(new Error('caller went away'));
  };

  private readonly onDrain = (): void => {
    this.controller?.resume();
  };

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.res.destroyed) controller.abort(new Error('caller went away'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return;
    this.status = statusCode;
    const conn = connectionTokens(headers.connection);
    const out: Record<string, string | string[]> = {};
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined || HOP_BY_HOP.has(name) || (conn !== null && conn.has(name))) continue;
      out[name] = v;
    }
    out['fly-request-id'] = this.id;
    const via = headers.via;
    out.via = via ? `${Array.isArray(via) ? via.join(', ') : via}, 1.1 sixpn` : '1.1 sixpn';
    if (this.core.draining) this.res.shouldKeepAlive = false;
    this.core.balancer.reportSuccess(this.slot);
    this.res.writeHead(statusCode, out);
    this.headersSent = true;
    this.settle(null);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', this.onDrain);
    }
  }

  onResponseEnd(): void {
    this.res.end();
    this.finish();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (!this.headersSent) {
      this.finished = true;
      this.res.off('close', this.onCallerClose);
      this.settle(err);
      return;
    }
    this.core.log.warn({ request_id: this.id, app: this.slot.machine.app, machine: this.slot.machine.id, err: err.message }, 'machine response failed midway');
    this.res.destroy();
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.res.off('close', this.onCallerClose);
    this.core.release(this.slot);
    const app = this.slot.machine.app;
    const m = appMetrics(app);
    m.requests(this.status, this.slot.machine.id).inc();
    m.requestSeconds.observe((performance.now() - this.t0) / 1000);
    if (this.core.config.access_log) {
      this.core.log.info(
        { request_id: this.id, app, machine: this.slot.machine.id, method: this.req.method, status: this.status, caller: this.info.caller, ms: Math.round(performance.now() - this.t0) },
        'request',
      );
    }
  }
}

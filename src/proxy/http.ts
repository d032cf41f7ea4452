/**
 * HTTP services: one node:http server (strict llhttp parsing, header/request timeouts) takes
 * caller connections from every Flycast listener; each request picks a machine and goes out
 * through an undici Pool per machine (keep-alive, no pipelining). Bodies stream both ways.
 * Hop-by-hop headers are removed both ways, the proxy's identity headers (Fly-*,
 * X-Forwarded-For, Via) go first, and each request carries a Fly-Request-Id that is also in
 * every log line about it. An Upgrade (WebSocket) becomes a raw tunnel only when the machine
 * answers 101; any other answer is an ordinary response and the connection goes back to HTTP.
 * A request is retried on another machine only when the connect failed, never once anything
 * was sent.
 *
 * Each caller connection carries a small state (./admission.ts counts the idle ones per source
 * and org): requests in flight, and whether it must close once they end (access removed,
 * unparsable bytes after a request). Every close of a caller connection lingers (./linger.ts).
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type net from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { Slot } from '../balancer/index.js';
import type { Machine, Service } from '../catalog/types.js';
import { NoCapacityError, UpstreamTimeoutError, UpstreamUnreachableError, type SixpnError } from '../errors.js';
import { IdleCaps, NO_ORG, type Refusal } from './admission.js';
import { badUpstream, dialTarget, isConnectError, type ConnInfo, type ProxyCore } from './core.js';
import { isLingering, lingerClose, lingerDestroySoon } from './linger.js';
import { holdGuard, releaseGuard } from './memory.js';
import { appMetrics, deniedTotal, refusedConnections } from './metrics.js';
import { closeTcp, pipeTunnel } from './tcp.js';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection', 'http2-settings']);
/**
 * Request headers a caller may not set: the proxy sets the first six itself; Forwarded,
 * X-Real-IP and the Fly-Forwarded-Proto/-Ssl pair would claim facts about the caller's hop that
 * the proxy does not vouch for, so they are dropped; Expect is answered by the proxy.
 */
const OWN_REQUEST_HEADERS = new Set([
  'fly-client-ip',
  'fly-forwarded-port',
  'fly-region',
  'fly-request-id',
  'x-forwarded-for',
  'via',
  'forwarded',
  'x-real-ip',
  'fly-forwarded-proto',
  'fly-forwarded-ssl',
  'expect',
]);

/** Longest an outsider's connection stays open, request or not: its only answer is a 403. */
export const DENIED_HOLD_MS = 2_000;

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

/** What `requestProblem` reads of a request (an IncomingMessage has it all). */
export interface RequestHead {
  httpVersionMajor: number;
  url?: string | undefined;
  rawHeaders: string[];
}

/**
 * Why a parsed request must not reach a machine, as the status and text the caller gets, or
 * null. Things llhttp lets through: HTTP/0.9 and 2.x request lines, more header fields than
 * `maxHeaders`, a second Host, and a target that is neither a path nor an absolute URL
 * (`OPTIONS *`, which has no meaning for the app behind a Flycast address).
 */
export function requestProblem(req: RequestHead, maxHeaders: number): { status: number; text: string } | null {
  if (req.httpVersionMajor === 0) return { status: 400, text: 'malformed request (HTTP/0.9 is not supported)' };
  if (req.httpVersionMajor !== 1) return { status: 505, text: 'HTTP version not supported (HTTP/1.0 and HTTP/1.1 only)' };
  if (req.rawHeaders.length > maxHeaders * 2) return { status: 400, text: `too many header fields (at most ${maxHeaders})` };
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.length === 4 && req.rawHeaders[i]!.toLowerCase() === 'host') hosts++;
  if (hosts > 1) return { status: 400, text: 'malformed request (more than one Host header)' };
  const url = req.url ?? '';
  if (url[0] !== '/' && !/^https?:\/\//i.test(url)) return { status: 400, text: 'malformed request (the target must be a path or an absolute URL)' };
  return null;
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

const CALLER = Symbol('sixpn.http-caller');

/** One caller connection on the HTTP path. */
interface Caller {
  info: ConnInfo;
  caps: IdleCaps;
  /** The idle-cap keys: the socket's peer address and the caller's org (network id). */
  source: string;
  org: string;
  /** Counted in the idle caps (no request in flight). */
  idle: boolean;
  /** Requests in flight, pipelined ones included. */
  busy: number;
  /** Close once `busy` is back to 0: access was removed, or unparsable bytes followed a request. */
  closeAfter: boolean;
  /** Access to the Flycast address was removed while the connection was open. */
  revoked: boolean;
  /** After a 101: the connection is a raw tunnel to a machine. */
  tunnel: boolean;
  /** The last request node parsed on it (the one whose body may still be arriving). */
  current: IncomingMessage | null;
  denyTimer: NodeJS.Timeout | null;
}
type CallerSocket = net.Socket & { [CALLER]?: Caller };

/** Shared 'close' handler of caller sockets (no closure per connection). */
function onCallerClosed(this: CallerSocket): void {
  const c = this[CALLER]!;
  if (c.idle) {
    c.idle = false;
    c.caps.leave(c.source, c.org);
  }
  if (c.denyTimer) clearTimeout(c.denyTimer);
}
function destroySelf(this: net.Socket): void {
  this.destroy();
}

/** A failure on a known machine: the edge names it in the log line. */
const failedOn = new WeakMap<object, string>();
function onMachine<E extends SixpnError>(err: E, slot: Slot): E {
  failedOn.set(err, slot.machine.id);
  return err;
}

/** What an upgrade request needs besides the request: where its caller's bytes go once it is a tunnel. */
interface UpgradeCtx {
  socket: net.Socket;
  head: Buffer;
}

export class HttpProxy {
  readonly server: http.Server;
  private readonly pools = new Map<string, Pool>();
  private readonly poolByMachine = new WeakMap<Machine, Pool>();
  private readonly region: string;
  private readonly caps: IdleCaps;
  /** Per cap: refusals since the last log line about it, and when that was. */
  private readonly refusals = { source: { n: 0, at: 0 }, org: { n: 0, at: 0 } };

  constructor(private readonly core: ProxyCore) {
    const c = core.config;
    this.region = core.balancer.region;
    this.caps = new IdleCaps(c.max_idle_per_source, c.max_idle_per_org);
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
    // A caller that sends its request and then ends its side (`nc -N`, shutdown(SHUT_WR)) still
    // gets the response; node would otherwise abort the request at the caller's FIN.
    (this.server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      // No exception on the data path may end the process: whatever escapes ends this request only.
      this.onRequest(req, res, null).catch((err: unknown) => {
        this.core.log.error({ err }, 'request failed unexpectedly');
        res.destroy();
      });
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: net.Socket, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => this.onClientError(err, socket));
    // The server never listens itself (listeners hand it sockets); this starts its timeout checks.
    this.server.emit('listening');
  }

  /** A caller connection from a Flycast listener. */
  accept(socket: net.Socket, info: ConnInfo): void {
    const network = this.core.acl.callerNetwork(info.caller, this.core.view);
    const org = network === null ? NO_ORG : String(network);
    const source = socket.remoteAddress ?? info.caller;
    const refusal = this.caps.enter(source, org, true);
    if (refusal) return this.refuseIdle(socket, info, refusal);
    const c: Caller = { info, caps: this.caps, source, org, idle: true, busy: 0, closeAfter: false, revoked: false, tunnel: false, current: null, denyTimer: null };
    const s = socket as CallerSocket;
    s[CALLER] = c;
    s.once('close', onCallerClosed);
    s.destroySoon = lingerDestroySoon;
    if (info.denied) c.denyTimer = setTimeout(destroySelf.bind(socket), DENIED_HOLD_MS);
    else appMetrics(info.target.app.name).acceptedHttp.inc();
    this.server.emit('connection', socket);
  }

  /** Over an idle cap: closed before a byte is read; logged at most once a second per cap (it may be a flood). */
  private refuseIdle(socket: net.Socket, info: ConnInfo, cap: Refusal): void {
    refusedConnections.inc({ cap });
    socket.destroy();
    const r = this.refusals[cap];
    r.n++;
    const now = Date.now();
    if (now - r.at < 1_000) return;
    this.core.log.warn(
      { caller: info.caller, flycast: info.flycast, cap, limit: cap === 'source' ? this.caps.perSource : this.caps.perOrg, refused: r.n },
      `connection refused: its ${cap === 'source' ? 'source address' : 'org'} already holds max_idle_per_${cap} idle connections`,
    );
    r.n = 0;
    r.at = now;
  }

  /**
   * Access to what the connection reached was removed: close it now when it is idle, after the
   * requests in flight when it is busy, at once when it is a tunnel.
   */
  revoke(socket: net.Socket): void {
    const c = (socket as CallerSocket)[CALLER];
    if (!c || c.tunnel) return closeTcp(socket);
    c.revoked = true;
    if (c.busy > 0) c.closeAfter = true;
    else lingerClose(socket);
  }

  private requestId(): string {
    idCounter = (idCounter + 1) % 0x7fffffff;
    return `${ID_PREFIX}${idCounter.toString(16).padStart(8, '0')}-${this.region}`;
  }

  private onClientError(err: NodeJS.ErrnoException, socket: net.Socket): void {
    // Bytes after the last response of a closing connection are dropped, not answered.
    if (isLingering(socket)) return;
    const c = (socket as CallerSocket)[CALLER];
    this.core.log.info({ caller: c?.info.caller, flycast: c?.info.flycast, code: err.code }, 'malformed or slow HTTP request refused');
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if (c && c.busy > 0) {
      // A request is being answered. Unparsable bytes after a complete request (a pipelined
      // request after HTTP/1.0, garbage) only end the connection once it is answered; an error
      // inside its body (bad chunks, the caller's FIN before the last byte, too slow) aborts it.
      if (!timeout && socket.writable && c.current?.complete === true) c.closeAfter = true;
      else socket.destroy();
      return;
    }
    if (!socket.writable) return void socket.destroy();
    const reason = err.code === 'HPE_HEADER_OVERFLOW' ? 'request header fields too large' : timeout ? 'request timeout' : `malformed request (${err.code ?? 'parse error'})`;
    const body = `${reason}\n`;
    lingerClose(socket, `HTTP/1.1 ${timeout ? '408 Request Timeout' : '400 Bad Request'}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
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
      const localAddress = this.core.sourceFor(slot.machine);
      p = new Pool(origin, {
        ...(localAddress !== undefined ? { localAddress } : {}),
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

  /**
   * Closes pools of machines that left the catalog or changed where they are dialed. With
   * `abort` (their host went silent) at once: what waits on them fails with it, and a bodiless
   * GET that got no response byte is retried on another machine instead of hanging.
   */
  forgetMachine(id: string, abort?: Error): void {
    for (const [key, p] of this.pools) {
      if (key.startsWith(`${id}|`)) {
        this.pools.delete(key);
        void (abort ? p.destroy(abort) : p.close()).catch(() => undefined);
      }
    }
  }

  private upstreamHeaders(req: IncomingMessage, info: ConnInfo, id: string): string[] {
    const raw = req.rawHeaders;
    const conn = connectionTokens(req.headers.connection);
    // The proxy's own headers go first: however many a caller sends, a machine that keeps only
    // the first N header fields still sees these. X-Forwarded-For and Via are filled in below.
    const out: string[] = ['Fly-Client-IP', info.caller, 'Fly-Forwarded-Port', String(info.port), 'Fly-Region', this.region, 'Fly-Request-Id', id, 'X-Forwarded-For', '', 'Via', ''];
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
      if (HOP_BY_HOP.has(lower) || OWN_REQUEST_HEADERS.has(lower) || (conn !== null && conn.has(lower))) continue;
      out.push(name, value);
    }
    out[9] = xff ? `${xff}, ${info.caller}` : info.caller;
    out[11] = via ? `${via}, 1.1 sixpn` : '1.1 sixpn';
    return out;
  }

  private deny(res: ServerResponse, info: ConnInfo, id: string): void {
    deniedTotal.inc({ proto: 'http' });
    this.core.countDenied(info);
    this.core.log.warn({ caller: info.caller, flycast: info.flycast, port: info.port, app: info.target.app.name, request_id: id, reason: info.denied }, 'caller denied');
    res.shouldKeepAlive = false;
    this.reply(res, info.target.app.name, 403, `forbidden: ${info.denied}`, id);
  }

  /**
   * One request, from node's 'request' event or (with `upgrade`) from an Upgrade request; the
   * caller's answer always goes through `res`, so a refused upgrade is an ordinary response.
   */
  private async onRequest(req: IncomingMessage, res: ServerResponse, upgrade: UpgradeCtx | null): Promise<void> {
    const socket = req.socket as CallerSocket;
    const c = socket[CALLER];
    const id = this.requestId();
    if (!c) {
      res.destroy();
      return;
    }
    const { info } = c;
    const app = info.target.app.name;
    if (c.idle) {
      c.idle = false;
      c.caps.leave(c.source, c.org);
    }
    c.busy++;
    c.current = req;
    // One close handler per request: the connection's bookkeeping, and drain's once it is counted.
    let counted = false;
    let settled = false;
    res.once('close', () => {
      if (settled) return;
      settled = true;
      if (c.current === req) c.current = null;
      if (counted) {
        this.core.inFlight--;
        releaseGuard();
      }
      if (--c.busy > 0 || c.tunnel) return;
      if (c.closeAfter) lingerClose(socket);
      else if (!socket.destroyed) {
        c.idle = true;
        c.caps.enter(c.source, c.org, false);
      }
    });
    if (info.denied) return this.deny(res, info, id);
    if (c.revoked) {
      res.shouldKeepAlive = false;
      return this.reply(res, app, 403, 'forbidden: access to this Flycast address was removed', id);
    }
    const problem = requestProblem(req, this.core.config.max_headers) ?? this.transferProblem(req, upgrade !== null);
    if (problem) {
      res.shouldKeepAlive = false;
      this.core.log.info({ caller: info.caller, flycast: info.flycast, request_id: id, status: problem.status, reason: problem.text }, 'malformed request refused');
      return this.reply(res, app, problem.status, problem.text, id);
    }
    if (this.core.draining) res.shouldKeepAlive = false;
    const started = performance.now();
    this.core.inFlight++;
    holdGuard();
    counted = true;
    try {
      await this.forward(req, res, c, id, started, upgrade);
    } catch (err) {
      // The edge of an HTTP request: a typed failure gets its status, is logged and counted once.
      const e = this.core.callerFailed('http', err, info, { request_id: id, ...(failedOn.has(err as object) ? { machine: failedOn.get(err as object) } : {}) });
      if (upgrade && c.tunnel) return;
      this.reply(res, app, e.status, e.message, id);
    }
  }

  /** Transfer-Encoding other than chunked; an Upgrade that carries a body (it would be lost on a 101). */
  private transferProblem(req: IncomingMessage, upgrade: boolean): { status: number; text: string } | null {
    const te = req.headers['transfer-encoding'];
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') return { status: 400, text: 'unsupported transfer-encoding' };
    if (upgrade && hasBody(req)) return { status: 400, text: 'malformed request (an upgrade request may not carry a body)' };
    return null;
  }

  /**
   * Sends the request to a machine, trying up to connect_tries of them. Resolves once the
   * response is streaming (or is a tunnel); throws NoCapacityError, UpstreamUnreachableError or
   * UpstreamTimeoutError for the edge to answer.
   */
  private async forward(req: IncomingMessage, res: ServerResponse, c: Caller, id: string, started: number, upgrade: UpgradeCtx | null): Promise<void> {
    const { info } = c;
    const { target } = info;
    const app = target.app.name;
    const withBody = hasBody(req);
    const idempotent = !withBody && IDEMPOTENT.has(req.method ?? '');
    const headers = this.upstreamHeaders(req, info, id);
    const tried = new Set<Slot>();
    const gone = (): boolean => res.destroyed || req.socket.destroyed;
    let lastErr: unknown = null;
    for (let attempt = 0; attempt < this.core.config.connect_tries; attempt++) {
      const slot = await this.core.acquire(app, target.service.concurrency, tried, gone);
      if (slot === 'full') throw new NoCapacityError('all machines are at their hard limit');
      if (slot === 'none') {
        if (tried.size === 0) throw new UpstreamUnreachableError('no machine available');
        break;
      }
      if (gone()) {
        this.core.release(slot);
        return;
      }
      const body = withBody ? new LazyBody(req) : null;
      const a = new Attempt(this.core, c, req, res, slot, id, started, upgrade ? (up, status, h) => this.tunnel(c, res, upgrade, up, slot, status, h, id) : null);
      let pool: Pool;
      try {
        pool = this.pool(slot, target.service);
      } catch (err) {
        a.abandon();
        this.core.connectFailed(slot, badUpstream(slot.machine, err), id);
        tried.add(slot);
        lastErr = err;
        continue;
      }
      pool.dispatch({ method: req.method as 'GET', path: req.url ?? '/', headers, body, ...(upgrade ? { upgrade: req.headers.upgrade ?? 'websocket' } : {}) }, a);
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
      if ((err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT') throw onMachine(new UpstreamTimeoutError('machine did not answer in time', { cause: err }), slot);
      throw onMachine(new UpstreamUnreachableError('machine connection failed', { cause: err }), slot);
    }
    throw new UpstreamUnreachableError('no machine reachable', { cause: lastErr ?? undefined });
  }

  /**
   * Node hands an Upgrade request over with the bare socket. It is answered like any request,
   * through a ServerResponse of its own; only a 101 from the machine turns the connection into
   * a tunnel (`tunnel`). After any other answer the connection goes back to node's HTTP parser,
   * with the bytes the caller sent after the request head put back in front.
   */
  private onUpgrade(req: IncomingMessage, socket: net.Socket, head: Buffer): void {
    const c = (socket as CallerSocket)[CALLER];
    if (c && c.busy > 0) {
      // Pipelined behind a request still being answered: an answer now would interleave with
      // that one, so it is dropped and the connection closes once that answer is out.
      this.core.log.info({ caller: c.info.caller, flycast: c.info.flycast }, 'upgrade request pipelined behind another request dropped; closing after the answer in flight');
      c.closeAfter = true;
      return;
    }
    const res = new http.ServerResponse(req);
    res.assignSocket(socket);
    if (connectionTokens(req.headers.connection)?.has('close')) res.shouldKeepAlive = false;
    res.once('finish', () => {
      res.detachSocket(socket);
      const keep = res.shouldKeepAlive && c !== undefined && !c.closeAfter && !this.core.draining && !socket.destroyed;
      res.emit('close');
      if (!keep) return lingerClose(socket);
      if (head.length > 0) socket.unshift(head);
      this.server.emit('connection', socket);
    });
    this.onRequest(req, res, { socket, head }).catch((err: unknown) => {
      this.core.log.error({ err }, 'upgrade failed');
      socket.destroy();
    });
  }

  /**
   * The machine answered 101: pass its head on, then bytes flow raw both ways until either side
   * closes. The unused ServerResponse is let go; its 'close' (the end of this exchange for the
   * request's bookkeeping) comes with the caller socket's.
   */
  private tunnel(c: Caller, res: ServerResponse, upgrade: UpgradeCtx, up: net.Socket, slot: Slot, status: number, headers: Record<string, string | string[] | undefined>, id: string): void {
    const { socket, head } = upgrade;
    c.tunnel = true;
    res.detachSocket(socket);
    socket.once('close', () => res.emit('close'));
    socket.removeAllListeners('timeout');
    let text = `HTTP/1.1 ${status} Switching Protocols\r\n`;
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined || name === 'fly-request-id' || name === 'via' || (HOP_BY_HOP.has(name) && name !== 'connection' && name !== 'upgrade')) continue;
      for (const one of Array.isArray(v) ? v : [v]) text += `${name}: ${one}\r\n`;
    }
    const via = headers.via;
    text += `fly-request-id: ${id}\r\nvia: ${via ? `${Array.isArray(via) ? via.join(', ') : via}, 1.1 sixpn` : '1.1 sixpn'}\r\n\r\n`;
    socket.write(text);
    if (head.length > 0) up.write(head);
    pipeTunnel(this.core, socket, up, slot);
  }

  async close(): Promise<void> {
    this.server.close();
    this.server.closeAllConnections();
    await Promise.all([...this.pools.values()].map((p) => p.destroy().catch(() => undefined)));
    this.pools.clear();
  }
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
}

type OnTunnel = (up: net.Socket, status: number, headers: Record<string, string | string[] | undefined>) => void;

/**
 * One try of a request on one machine, as an undici dispatch handler: response bytes go straight
 * to the caller (the machine's socket is paused while the caller's is full). `started` settles
 * with null once response headers arrived (or a 101 made it a tunnel), or with the error when it
 * failed before that.
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
    private readonly caller: Caller,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly slot: Slot,
    private readonly id: string,
    private readonly t0: number,
    private readonly onTunnel: OnTunnel | null,
  ) {
    res.once('close', this.onCallerClose);
  }

  private readonly onCallerClose = (): void => {
    if (!this.finished) this.controller?.abort(new Error('caller went away'));
  };

  private readonly onDrain = (): void => {
    this.controller?.resume();
  };

  /** Never dispatched (the machine could not even be dialed). */
  abandon(): void {
    this.finished = true;
    this.res.off('close', this.onCallerClose);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.res.destroyed) controller.abort(new Error('caller went away'));
  }

  onRequestUpgrade(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, socket: Duplex): void {
    this.finished = true;
    this.res.off('close', this.onCallerClose);
    if (!this.onTunnel) {
      (socket as net.Socket).destroy();
      this.core.release(this.slot);
      this.settle(Object.assign(new Error('machine switched protocols unasked'), { code: 'UND_ERR_SOCKET' }));
      return;
    }
    this.core.balancer.reportSuccess(this.slot);
    appMetrics(this.slot.machine.app).requests(statusCode, this.slot.machine.id).inc();
    // The slot now belongs to the tunnel, which gives it back when the machine side closes.
    this.onTunnel(socket as net.Socket, statusCode, headers);
    this.settle(null);
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
    if (this.core.draining || this.caller.closeAfter) this.res.shouldKeepAlive = false;
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
        { request_id: this.id, app, machine: this.slot.machine.id, method: this.req.method, status: this.status, caller: this.caller.info.caller, ms: Math.round(performance.now() - this.t0) },
        'request',
      );
    }
  }
}

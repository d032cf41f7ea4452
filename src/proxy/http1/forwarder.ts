/**
 * The socket-level HTTP/1.1 forwarder: caller connections in, machine connections out, heads
 * parsed and rewritten once, bodies passed through as they are.
 *
 * Per caller connection one request is in flight at a time (pipelined requests wait, buffered up
 * to `maxHeld` bytes, then the caller is paused). A request goes: head parsed (400 with the
 * reason when malformed, 403 when the caller is denied) -> rewritten -> `pick` a machine ->
 * an idle pooled connection or `dial` -> head and body forwarded with back-pressure -> response
 * head parsed (502 when malformed), 1xx relayed, rewritten -> body forwarded -> the machine
 * `release`d, its connection pooled when clean, and the caller's next request read. A 101
 * answer to an Upgrade request turns both connections into a raw tunnel; any other answer is a
 * normal response and HTTP goes on.
 *
 * Retries as sixpn always did: a failed connect moves to another machine (nothing was sent); a
 * bodiless GET/HEAD/OPTIONS whose connection closes or resets before any response byte is sent
 * again to another machine; nothing else is retried. The proxy's own answers (502/503/504,
 * 400/403/408) carry the request id. Timeouts are deadlines on one sweep timer (deadlines.ts).
 *
 * Caller sockets must be accepted with `allowHalfOpen: true` (a caller may half-close after its
 * request and still read the response), and dialed machine sockets opened with it too.
 */
import type net from 'node:net';
import { SixpnError, UpstreamTimeoutError, UpstreamUnreachableError } from '../../errors.js';
import { Deadlines, Timed } from './deadlines.js';
import { BODY, BODY_CONTINUES, BODY_INVALID, BodyReader, requestBody, responseBody, type BodyKind } from './framing.js';
import { HeadParser, INVALID, NEED_MORE, type HeadLimits } from './head.js';
import { SHARED_UP_READ, UpstreamPool, type PoolOptions, type UpstreamConn, type UpstreamOwner } from './pool.js';
import { CallerIdentity, CONNECTION, rewriteRequest, rewriteResponse } from './rewrite.js';
import { setNextReadBuffer, useReadBuffer } from '../read-buffer.js';

/** What the forwarder needs to know of a caller connection; the integrator may carry more. */
export interface CallerContext {
  /** Caller address as Fly-Client-IP and X-Forwarded-For give it. */
  caller: string;
  /** The port the caller dialed (Fly-Forwarded-Port). */
  port: number;
  /** Non-null: every request on this connection is answered 403 with this reason. */
  denied: string | null;
}

/** A connection to a machine for one try of a request (from `hooks.connect`). */
export interface Connected<M> {
  m: M;
  /** From the machine's pool: idle (`pool.take()`) or freshly dialed (`pool.adopt(socket)`). */
  conn: UpstreamConn;
}

/**
 * What `hooks.route` may say about a request before a machine is picked: preferences for the
 * pick (passed on to `connect`), or an answer of the proxy's own instead (an error with a status).
 */
export type Route<P> = P | SixpnError | null;

/** A replay to make (from `replay` or `replayFailed`): where to, and what the target is told. */
export interface ReplayTo<P> {
  /** The route every `connect` of the replay gets. */
  route: P;
  /** Whole header lines added to the replayed request (`fly-replay-src: ...\r\n`). */
  header: string;
  /** The machine that asked is no candidate for this replay (fly-replay elsewhere=true). */
  excludeSource: boolean;
}

/** Where a request stands when a machine asks for a replay. */
export interface ReplayState {
  /** Replays already made for this request. */
  replays: number;
  /** It already went back to its source after a failed replay. */
  fallback: boolean;
  /** Its body was over `maxReplayBody` and was not kept. */
  bodyTooLarge: boolean;
}

/**
 * How the forwarder reaches machines: plug these onto the upstream layer (pick with its queue,
 * pooled connection or dial, connect retries, passive ejection). Every machine `connect` returns
 * is `release`d exactly once; `reportSuccess` / `reportFailure` are verdicts for passive
 * ejection and metrics, and never release.
 */
export interface ForwarderHooks<C extends CallerContext, M, P = unknown> {
  /**
   * A connection to a machine for the next try of a request, none of `tried`, or the typed
   * error the caller is answered with (no capacity 503, none reachable 502). May wait (queue,
   * dial) and should stop waiting when `gone()`. Connect failures are the hook's to retry; it
   * adds the machines that failed to `tried` (the request's own set).
   */
  connect(ctx: C, tried: Set<M>, gone: () => boolean, requestId: string, route: P | null): Connected<M> | SixpnError | Promise<Connected<M> | SixpnError>;
  release(m: M): void;
  /** The machine answered (a response head arrived). */
  reportSuccess(m: M): void;
  /** A connection died before any response byte and the request goes elsewhere. */
  reportFailure(m: M, err: Error, requestId: string): void;
  /**
   * Request steering (fly-prefer-region and friends): called only for a request head that
   * carries a routing field (`head.steering`), before the first `connect`; what it returns is
   * passed to every `connect` of the request (an error is the answer instead).
   */
  route?(ctx: C, head: HeadParser, requestId: string): Route<P>;
  /**
   * Replay: called only for a final response head that carries `fly-replay`. That response is not
   * sent to the caller: the request (head and body) goes where the result says, or the error is
   * the answer. Without this hook `fly-replay` passes through and bodies are not kept.
   */
  replay?(ctx: C, m: M, response: HeadParser, route: P | null, state: ReplayState, requestId: string): ReplayTo<P> | SixpnError;
  /** A replay found no machine (refused or unreachable): a fallback to make, or null for the error. */
  replayFailed?(ctx: C, route: P, err: SixpnError, requestId: string): ReplayTo<P> | null;
  /** A request from a denied caller is being answered 403. */
  denied?(ctx: C, requestId: string): void;
  /**
   * The proxy answers a request itself with a typed error (502/503/504/500): the edge logs it
   * once, with its code (without this hook the forwarder logs it).
   */
  failed?(ctx: C, m: M | null, err: SixpnError, requestId: string): void;
  /**
   * The connection holds no request now (`true`: a response ended and it stays open) or again
   * holds one or went away (`false`). A connection starts idle (its admission counted it).
   */
  idle?(ctx: C, idle: boolean): void;
  /**
   * A request ended: `status` is what the caller got (0: the caller went away first), `m` the
   * machine that answered (null when the proxy answered itself). For metrics and access logs.
   */
  done?(ctx: C, m: M | null, status: number, requestId: string, method: string, startedAt: number): void;
  /** A machine's name in log lines. */
  describe?(m: M): string;
}

export interface ForwarderLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ForwarderOptions {
  /** Fly-Region. */
  region: string;
  /** A new request id (Fly-Request-Id). */
  requestId: () => string;
  log: ForwarderLog;
  /** The timer wheel to use (shared with the rest of the proxy); the forwarder makes one otherwise. */
  deadlines?: Deadlines;
  /** Largest head (request or response), bytes; also bounds a chunk-size line and trailers. */
  maxHeadSize?: number;
  /** Most fields in a head. */
  maxHeaders?: number;
  /** Machines tried per request (connect failures, resets before a response). */
  connectTries?: number;
  /** ms for a caller to send a request head (408). */
  headerTimeout?: number;
  /** ms for a caller to send a whole request (408, or the connection closed once a response started). */
  requestTimeout?: number;
  /** ms an idle caller connection is kept between requests. */
  keepAliveTimeout?: number;
  /** ms for a machine to start its response once the request is sent (504). */
  upstreamTimeout?: number;
  /** ms without a byte either way inside a body or a tunnel (both connections closed). */
  idleTimeout?: number;
  /** ms a denied caller's connection is kept at most, request or not (its only answer is a 403). */
  deniedHoldMs?: number;
  /** ms a connection the proxy ended is still read (and the bytes dropped) before it is freed. */
  lingerMs?: number;
  /** Pipelined request bytes buffered per caller while a request is in flight. */
  maxHeld?: number;
  /** Idle connections kept per machine, and for how long (ms). */
  poolMaxIdle?: number;
  poolIdleTimeout?: number;
  /** Resolution of every timeout (ms), when the forwarder makes its own wheel. */
  tickMs?: number;
  /** Request body bytes kept while they pass so the request can be replayed (with a `replay` hook). */
  maxReplayBody?: number;
}

type Settings = Required<Omit<ForwarderOptions, 'region' | 'requestId' | 'log' | 'deadlines'>>;

const DEFAULTS: Settings = {
  maxHeadSize: 16_384,
  maxHeaders: 100,
  connectTries: 3,
  headerTimeout: 10_000,
  requestTimeout: 300_000,
  keepAliveTimeout: 5_000,
  upstreamTimeout: 60_000,
  idleTimeout: 600_000,
  deniedHoldMs: 2_000,
  lingerMs: 1_000,
  maxHeld: 65_536,
  poolMaxIdle: 64,
  poolIdleTimeout: 4_000,
  tickMs: 0,
  maxReplayBody: 1024 * 1024,
};

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  413: 'Content Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
  508: 'Loop Detected',
};

/** The parser's reason for a request line of another HTTP version (answered 505, not 400). */
const OTHER_VERSION = 'unsupported HTTP version';

function isPromise<T>(x: unknown): x is Promise<T> {
  return typeof (x as { then?: unknown } | null)?.then === 'function';
}

/** An open caller connection, as the integrator sees it (for access revocation and shutdown). */
export interface CallerHandle<C> {
  readonly ctx: C;
  readonly socket: net.Socket;
  /**
   * Access to what the connection reached was taken away: an idle connection closes now, a
   * tunnel at once, a busy one once its response is out (`Connection: close`); any further
   * request on it is answered 403 `forbidden: <reason>`.
   */
  revoke(reason: string): void;
  destroy(): void;
}

export class Http1Forwarder<C extends CallerContext, M, P = unknown> {
  readonly settings: Settings;
  readonly limits: HeadLimits;
  readonly deadlines: Deadlines;
  /** Requests (and tunnels) in progress. */
  inFlight = 0;
  draining = false;
  private readonly callers = new Set<CallerConn<C, M, P>>();
  private readonly pools = new Set<UpstreamPool>();
  private readonly ownWheel: boolean;

  constructor(
    readonly hooks: ForwarderHooks<C, M, P>,
    readonly options: ForwarderOptions,
  ) {
    const s: Settings = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS) as (keyof Settings)[]) {
      const v = options[k];
      if (v !== undefined) s[k] = v;
    }
    if (s.tickMs <= 0) {
      const shortest = Math.min(s.headerTimeout, s.keepAliveTimeout, s.upstreamTimeout, s.poolIdleTimeout, s.deniedHoldMs, s.lingerMs);
      s.tickMs = Math.max(10, Math.min(250, Math.floor(shortest / 8)));
    }
    this.settings = Object.freeze(s);
    this.limits = { maxHeadSize: s.maxHeadSize, maxHeaders: s.maxHeaders };
    this.ownWheel = options.deadlines === undefined;
    this.deadlines = options.deadlines ?? new Deadlines(s.tickMs);
  }

  /** Caller connections alive. */
  get connections(): number {
    return this.callers.size;
  }

  /** Serves HTTP on a caller connection (ACL already judged: `ctx.denied`). */
  accept(socket: net.Socket, ctx: C): CallerHandle<C> {
    const c = new CallerConn(this, socket, ctx);
    this.callers.add(c);
    this.deadlines.add(c);
    return c;
  }

  /** A keep-alive pool for one machine, on this forwarder's timer. */
  newPool(options: Partial<Omit<PoolOptions, 'limits'>> = {}): UpstreamPool {
    const p = new UpstreamPool(this.deadlines, {
      maxIdle: options.maxIdle ?? this.settings.poolMaxIdle,
      idleTimeout: options.idleTimeout ?? this.settings.poolIdleTimeout,
      limits: this.limits,
    });
    this.pools.add(p);
    return p;
  }

  /** Closes a pool made here (its machine left), now for idle connections, on return for the rest. */
  closePool(p: UpstreamPool, abort?: Error): void {
    p.close(abort);
    this.pools.delete(p);
  }

  /** Stops keep-alive: idle callers are closed now, busy ones after their response. */
  drain(): void {
    this.draining = true;
    for (const c of this.callers) c.closeIfIdle();
  }

  /** Closes everything at once. */
  close(): void {
    this.draining = true;
    for (const c of this.callers) c.destroy();
    for (const p of this.pools) p.close();
    this.pools.clear();
    if (this.ownWheel) this.deadlines.close();
  }

  /** @internal */
  forget(c: CallerConn<C, M, P>): void {
    this.callers.delete(c);
    this.deadlines.delete(c);
  }
}

const PH = { HEAD: 0, PICK: 1, FORWARD: 2, TUNNEL: 3, CLOSED: 4 } as const;
const DL = { NONE: 0, HEADER: 1, KEEPALIVE: 2, UPSTREAM: 3, IDLE: 4, LINGER: 5 } as const;
/** Why the caller socket is paused (reading resumes when none is left). */
const PAUSE = { PICK: 1, UP_FULL: 2, HELD: 4 } as const;
/** Bodies up to this size that came in the head's read are copied behind the head (one write); larger ones go corked. */
const MERGE_BODY = 8192;
/**
 * Caller bytes are read into reused buffers (../read-buffer.ts), not a new 64 KiB one per read: a
 * connection starts on SHARED_READ, one buffer for all of them, so whatever outlives the read (a
 * head in flight, held or kept bytes, body bytes written to the machine) is copied out of it.
 * The first read that fills it gives the connection a BODY_READ buffer of its own for the rest
 * of that exchange: body bytes are written to the machine straight from it, and reading stops
 * until the machine drains when the kernel did not take a write whole (the write still points
 * into it); at the end of the exchange the connection goes back to the shared one.
 */
const SHARED_READ = Buffer.allocUnsafeSlow(16 * 1024);
const SCRATCH = { NONE: 0, SHARED: 1, OWN: 2 } as const;
const BODY_READ = 64 * 1024;

/**
 * After a read into a reused buffer (caller or machine side, see SHARED_READ): the buffer the
 * next read goes into, or null to keep this one. `body`: a body (or tunnel) is still coming;
 * `heldByWrite`: a write still points into this buffer and no 'drain' will resume reading.
 */
function nextRead(own: boolean, filled: boolean, body: boolean, heldByWrite: boolean, shared: Buffer): Buffer | null {
  if (!own) return filled && body ? Buffer.allocUnsafeSlow(BODY_READ) : null;
  if (!body) return shared;
  return heldByWrite ? Buffer.allocUnsafeSlow(BODY_READ) : null;
}
/** Response progress. */
const RS = { HEAD: 0, BODY: 1, DONE: 2 } as const;

class CallerConn<C extends CallerContext, M, P> extends Timed implements UpstreamOwner, CallerHandle<C> {
  private dl: number = DL.NONE;
  private dlAt = Infinity;
  private requestDeadline = Infinity;
  private phase: number = PH.HEAD;
  private readonly head: HeadParser;
  private readonly body: BodyReader;
  private readonly who: CallerIdentity;
  private readonly s: Settings;
  /** Caller bytes read but not yet used (body start, pipelined requests, early tunnel bytes). */
  private held: Buffer | null = null;
  /** `held` holds bytes that arrived while an earlier request was in flight (pipelined). */
  private pipelined = false;
  private paused = 0;
  /** The caller sent FIN. */
  private ended = false;
  private upPaused = false;
  /** No request in flight (as `hooks.idle` was last told). */
  private idle = true;
  /** Non-null once access was revoked: why (requests after that get 403). */
  private revoked: string | null = null;

  // The exchange in flight.
  private active = false;
  /** hooks.done was called for it (a tunnel reports at the switch, ends at close). */
  private reported = false;
  private id = '';
  private method = '';
  private minor = 1;
  private wantsKeepAlive = true;
  private upgrade = false;
  private retryable = false;
  private reqDone = true;
  private upHead: Buffer | null = null;
  private route: P | null = null;
  /** Machines tried for the request in flight (one set per connection, cleared per request). */
  private readonly tried = new Set<M>();
  private m: M | null = null;
  private up: UpstreamConn | null = null;
  private resBytes = false;
  private rs: number = RS.HEAD;
  private resKind: BodyKind = BODY.NONE;
  private keepCaller = true;
  private upReusable = false;
  private status = 0;
  private startedAt = 0;
  // Replays (see hooks.replay).
  private replays = 0;
  private fellBack = false;
  /** Body bytes as they went to the machine, kept for a replay (null: not kept). */
  private kept: Buffer[] | null = null;
  private keptBytes = 0;
  private bodyTooLarge = false;
  /** The chunk being handled lives in a reused read buffer: SCRATCH.NONE, SHARED or OWN (see SHARED_READ). */
  private scratch: number = SCRATCH.NONE;
  /** The same for the machine's bytes (see SHARED_UP_READ). */
  private upScratch: number = SCRATCH.NONE;

  constructor(
    private readonly fwd: Http1Forwarder<C, M, P>,
    readonly socket: net.Socket,
    readonly ctx: C,
  ) {
    super();
    this.s = fwd.settings;
    this.head = new HeadParser('request', fwd.limits);
    this.body = new BodyReader(fwd.limits.maxHeadSize);
    this.who = new CallerIdentity(ctx.caller, ctx.port, fwd.options.region);
    if (!useReadBuffer(socket, SHARED_READ, this.onRead)) socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.on('drain', this.onDrain);
    // An outsider's only answer is a 403: it never holds the connection for long, request or not.
    this.setDeadline(DL.HEADER, ctx.denied !== null ? Math.min(this.s.deniedHoldMs, this.s.headerTimeout) : this.s.headerTimeout);
  }

  // ---- caller socket -------------------------------------------------------------------

  /** A read into a reused buffer (see SHARED_READ); pausing is done with socket.pause(). */
  private readonly onRead = (n: number, buf: Buffer): boolean => {
    const own = buf !== SHARED_READ;
    this.scratch = own ? SCRATCH.OWN : SCRATCH.SHARED;
    this.onData(n === buf.length ? buf : buf.subarray(0, n));
    this.scratch = SCRATCH.NONE;
    const body = !this.reqDone && this.phase === PH.FORWARD;
    // A write queued under the high-water mark brings no 'drain' to resume on: it still holds the buffer.
    const held = this.up !== null && this.up.socket.writableLength > 0 && (this.paused & PAUSE.UP_FULL) === 0;
    const next = nextRead(own, n === buf.length, body, held, SHARED_READ);
    if (next !== null) setNextReadBuffer(next);
    return true;
  };

  private readonly onData = (chunk: Buffer): void => {
    switch (this.phase) {
      case PH.HEAD:
        if (this.held !== null) {
          // Pipelined bytes not read yet come first.
          const h = Buffer.concat([this.held, chunk]);
          this.held = null;
          return this.readHead(h, 0);
        }
        this.pipelined = false;
        return this.readHead(chunk, 0);
      case PH.FORWARD:
        if (!this.reqDone) return this.readBody(chunk, 0);
        return this.hold(chunk);
      case PH.PICK:
        return this.hold(chunk);
      case PH.TUNNEL:
        if (this.up && !this.up.socket.write(this.scratch !== SCRATCH.NONE ? Buffer.from(chunk) : chunk)) this.pause(PAUSE.UP_FULL);
        this.touch();
        return;
      default:
        return; // closing: read and drop what the caller still sends
    }
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    switch (this.phase) {
      case PH.HEAD:
        return this.closeCaller();
      case PH.PICK:
      case PH.FORWARD:
        // Half-close after a whole request is fine (the response still goes back); in the
        // middle of a body the request can never be completed.
        if (!this.reqDone) {
          this.fwd.options.log.info({ request_id: this.id, caller: this.ctx.caller }, 'caller closed in the middle of its request body');
          this.destroy();
        }
        return;
      case PH.TUNNEL:
        this.up?.socket.end();
        return;
      default:
        this.socket.end();
    }
  };

  private readonly onError = (): void => {
    this.socket.destroy();
  };

  private readonly onClose = (): void => {
    this.phase = PH.CLOSED;
    this.fwd.forget(this);
    if (this.idle) {
      this.idle = false;
      this.fwd.hooks.idle?.(this.ctx, false);
    }
    const up = this.up;
    this.up = null;
    up?.destroy();
    const m = this.m;
    this.m = null;
    if (m !== null) this.fwd.hooks.release(m);
    if (this.active) {
      this.active = false;
      this.fwd.inFlight--;
      if (!this.reported) this.fwd.hooks.done?.(this.ctx, m, this.rs === RS.HEAD ? 0 : this.status, this.id, this.method, this.startedAt);
    }
  };

  private readonly onDrain = (): void => {
    if (this.upPaused && this.up) {
      this.upPaused = false;
      this.up.socket.resume();
    }
  };

  private readonly isGone = (): boolean => this.phase === PH.CLOSED;

  private pause(why: number): void {
    if (this.paused === 0) this.socket.pause();
    this.paused |= why;
  }

  private unpause(why: number): void {
    if ((this.paused & why) === 0) return;
    this.paused &= ~why;
    if (this.paused === 0 && this.phase !== PH.CLOSED) this.socket.resume();
  }

  private hold(b: Buffer): void {
    if (this.phase !== PH.HEAD) this.pipelined = true;
    this.held = this.held === null ? (this.scratch !== SCRATCH.NONE ? Buffer.from(b) : b) : Buffer.concat([this.held, b]);
    if (this.held.length > this.s.maxHeld) this.pause(PAUSE.HELD);
  }

  // ---- request -------------------------------------------------------------------------

  private readHead(chunk: Buffer, off: number): void {
    if (this.dl === DL.KEEPALIVE) this.setDeadline(DL.HEADER, this.s.headerTimeout);
    const h = this.head;
    const r = h.feed(chunk, off, chunk.length);
    if (r === NEED_MORE) return;
    if (r === INVALID) {
      if (h.reason === OTHER_VERSION) return this.refuse(505, 'HTTP version not supported (HTTP/1.0 and HTTP/1.1 only)');
      return this.refuse(400, `malformed request: ${h.reason}`);
    }
    const pipelined = this.pipelined;
    this.pipelined = false;
    if (h.upgrade && pipelined) {
      // Behind a request still in flight when it came: an answer to it would interleave with
      // that one's, and a tunnel would carry what follows it raw; it is dropped, the connection ends.
      this.fwd.options.log.info({ caller: this.ctx.caller }, 'upgrade request pipelined behind another request dropped; closing');
      return this.closeCaller();
    }
    this.begin(h);
    if (r < chunk.length) this.hold(chunk.subarray(r));
    if (this.ctx.denied !== null) {
      this.fwd.hooks.denied?.(this.ctx, this.id);
      this.keepCaller = false;
      return this.answer(403, `forbidden: ${this.ctx.denied}`);
    }
    if (this.revoked !== null) {
      this.keepCaller = false;
      return this.answer(403, `forbidden: ${this.revoked}`);
    }
    const target = this.head.buf[this.head.base + this.head.targetStart];
    if (target !== 0x2f && !isAbsoluteTarget(this.head)) {
      // `OPTIONS *` and authority targets mean nothing to the app behind a Flycast address.
      this.keepCaller = false;
      return this.answer(400, 'malformed request: the target must be a path or an absolute URL');
    }
    if (this.upgrade && !this.reqDone) {
      // Its body would be lost (or tunnelled raw) once the machine switched protocols.
      this.keepCaller = false;
      return this.answer(400, 'malformed request: an upgrade request may not carry a body');
    }
    if (h.steering && this.fwd.hooks.route) {
      const r = this.fwd.hooks.route(this.ctx, h, this.id);
      if (r instanceof SixpnError) {
        this.keepCaller = this.reqDone && this.wantsKeepAlive;
        return this.answer(r.status, r.message);
      }
      this.route = r;
    }
    this.attempt();
  }

  /** A request head arrived: fix what the exchange needs, rewrite the head for the machine. */
  private begin(h: HeadParser): void {
    this.active = true;
    this.reported = false;
    this.fwd.inFlight++;
    if (this.idle) {
      this.idle = false;
      this.fwd.hooks.idle?.(this.ctx, false);
    }
    this.startedAt = performance.now();
    if (this.scratch !== SCRATCH.NONE) h.detach(); // the head outlives this read (rewrites, replays)
    this.id = this.fwd.options.requestId();
    this.method = h.method!;
    this.minor = h.minor;
    this.wantsKeepAlive = h.keepAlive;
    this.upgrade = h.upgrade;
    const kind = requestBody(h);
    this.body.begin(kind, h.contentLength);
    this.reqDone = kind === BODY.NONE;
    this.retryable = this.reqDone && (this.method === 'GET' || this.method === 'HEAD' || this.method === 'OPTIONS');
    this.upHead = rewriteRequest(h, this.who, this.id, this.upgrade);
    this.route = null;
    if (this.tried.size > 0) this.tried.clear(); // Set#clear allocates a new table even when empty
    this.replays = 0;
    this.fellBack = false;
    this.keptBytes = 0;
    const keep = kind !== BODY.NONE && this.fwd.hooks.replay !== undefined;
    this.bodyTooLarge = keep && h.contentLength > this.s.maxReplayBody;
    this.kept = keep && !this.bodyTooLarge ? [] : null;
    this.resBytes = false;
    this.rs = RS.HEAD;
    this.status = 0;
    this.keepCaller = true;
    this.upReusable = false;
    this.phase = PH.PICK;
    this.requestDeadline = this.reqDone || this.s.requestTimeout <= 0 ? Infinity : this.startedAt + this.s.requestTimeout;
    this.setDeadline(DL.NONE, 0);
  }

  private attempt(): void {
    this.phase = PH.PICK;
    const r = this.fwd.hooks.connect(this.ctx, this.tried, this.isGone, this.id, this.route);
    if (isPromise<Connected<M> | SixpnError>(r)) {
      // Caller bytes wait (held) while a machine is reached; a pooled connection needs no pause at all.
      this.pause(PAUSE.PICK);
      r.then(this.onConnected, this.onConnectThrew);
    } else this.onConnected(r);
  }

  private readonly onConnectThrew = (err: unknown): void => {
    this.fail(new SixpnError('proxy error', { cause: err }));
  };

  private readonly onConnected = (r: Connected<M> | SixpnError): void => {
    if (r instanceof SixpnError) {
      if (this.phase === PH.CLOSED) return;
      return this.noMachine(r);
    }
    if (this.phase === PH.CLOSED) {
      // The caller went away while the machine was being reached: the connection is clean.
      this.fwd.hooks.release(r.m);
      r.conn.pool.put(r.conn);
      return;
    }
    this.m = r.m;
    r.conn.lend(this);
    this.connected(r.conn);
  };

  /** No machine for this request: a replay may fall back to where it came from, else the error. */
  private noMachine(err: SixpnError): void {
    const hooks = this.fwd.hooks;
    if (this.replays > 0 && !this.fellBack && this.route !== null && hooks.replayFailed !== undefined) {
      const r = hooks.replayFailed(this.ctx, this.route, err, this.id);
      if (r !== null) {
        this.fellBack = true;
        return this.startReplay(r, null);
      }
    }
    this.fail(err);
  }

  /** Keeps body bytes sent to the machine for a replay, until there are too many. */
  private keep(b: Buffer): void {
    this.keptBytes += b.length;
    if (this.keptBytes > this.s.maxReplayBody) {
      this.kept = null;
      this.bodyTooLarge = true;
    } else this.kept!.push(this.scratch !== SCRATCH.NONE ? Buffer.from(b) : b);
  }

  /** A final response head asked for a replay: drop that answer and send the request elsewhere. */
  private replayAsked(h: HeadParser, kind: BodyKind, rest: boolean): void {
    const m = this.m!;
    const hooks = this.fwd.hooks;
    hooks.reportSuccess(m);
    const r = hooks.replay!(this.ctx, m, h, this.route, { replays: this.replays, fallback: this.fellBack, bodyTooLarge: this.bodyTooLarge }, this.id);
    const up = this.up!;
    this.up = null;
    if (this.upPaused) up.socket.resume();
    this.upPaused = false;
    // The machine's connection goes back only when its answer had no body and our request went whole.
    if (kind === BODY.NONE && h.keepAlive && this.reqDone && !rest) up.pool.put(up);
    else up.destroy();
    // Refused: answered (and logged, naming the machine that asked) by fail, which lets go of it.
    if (r instanceof SixpnError) return this.fail(r);
    this.releaseMachine();
    this.replays++;
    this.startReplay(r, m);
  }

  /** Sends the request again (a replay, or its fallback): same head plus `r.header`, the body from its first byte. */
  private startReplay(r: ReplayTo<P>, source: M | null): void {
    this.route = r.route;
    if (this.tried.size > 0) this.tried.clear();
    if (r.excludeSource && source !== null) this.tried.add(source);
    this.resBytes = false;
    this.rs = RS.HEAD;
    this.status = 0;
    this.upReusable = false;
    this.upHead = rewriteRequest(this.head, this.who, this.id, this.upgrade, Buffer.from(r.header, 'latin1'));
    const kind = requestBody(this.head);
    if (kind !== BODY.NONE) {
      // What was kept goes first, then what the caller still sends (read once the target is connected).
      const kept = this.kept!;
      if (kept.length > 0) {
        const prefix = kept.length === 1 ? kept[0]! : Buffer.concat(kept);
        this.held = this.held === null ? prefix : Buffer.concat([prefix, this.held]);
      }
      this.kept = [];
      this.keptBytes = 0;
      this.body.begin(kind, this.head.contentLength);
      this.reqDone = false;
    }
    this.setDeadline(DL.NONE, 0);
    this.pause(PAUSE.PICK);
    this.unpause(PAUSE.UP_FULL);
    this.attempt();
  }

  /** A connection to the picked machine: send the head and what is held of the body. */
  private connected(c: UpstreamConn): void {
    this.up = c;
    this.phase = PH.FORWARD;
    const sock = c.socket;
    sock.cork();
    sock.write(this.upHead!);
    if (this.held !== null && !this.reqDone) {
      const h = this.held;
      this.held = null;
      this.readBody(h, 0);
    }
    sock.uncork();
    if (this.phase !== PH.FORWARD) return; // the held body was malformed
    if (this.reqDone) this.setDeadline(DL.UPSTREAM, this.s.upstreamTimeout);
    else this.setDeadline(DL.IDLE, this.s.idleTimeout);
    this.unpause(PAUSE.PICK);
  }

  private readBody(chunk: Buffer, off: number): void {
    const e = this.body.read(chunk, off, chunk.length);
    if (e === BODY_INVALID) return this.abortRequest(`malformed request body: ${this.body.reason}`);
    const up = this.up!.socket;
    // From the shared read buffer a write must not point into it (see SHARED_READ).
    const copy = this.scratch === SCRATCH.SHARED;
    if (e === BODY_CONTINUES) {
      const b = off === 0 ? chunk : chunk.subarray(off);
      if (this.kept !== null) this.keep(b);
      if (!up.write(copy ? Buffer.from(b) : b)) this.pause(PAUSE.UP_FULL);
      this.touch();
      return;
    }
    if (e > off) {
      const b = off === 0 && e === chunk.length ? chunk : chunk.subarray(off, e);
      if (this.kept !== null) this.keep(b);
      if (!up.write(copy ? Buffer.from(b) : b)) this.pause(PAUSE.UP_FULL);
    }
    this.reqDone = true;
    this.requestDeadline = Infinity;
    if (this.rs === RS.HEAD) this.setDeadline(DL.UPSTREAM, this.s.upstreamTimeout);
    else this.deadline = this.dlAt;
    if (e < chunk.length) this.hold(chunk.subarray(e));
  }

  // ---- machine connection (UpstreamOwner) ----------------------------------------------

  /**
   * A read of the machine's connection into a reused buffer: as for the caller (onRead), bytes
   * that outlive it are copied out of the shared buffer, a large body moves to a buffer of the
   * connection's own (written from directly; reading stops until the caller drains when a write
   * is left queued), and the connection goes back to the shared one when the response is over.
   */
  upRead(n: number, buf: Buffer): void {
    const up = this.up;
    const own = buf !== SHARED_UP_READ;
    this.upScratch = own ? SCRATCH.OWN : SCRATCH.SHARED;
    this.upData(n === buf.length ? buf : buf.subarray(0, n));
    this.upScratch = SCRATCH.NONE;
    // The exchange let go of the connection (pooled or closed): nothing more is coming for it.
    const body = up !== null && this.up === up && (this.rs === RS.BODY || this.phase === PH.TUNNEL);
    const next = nextRead(own, n === buf.length, body, this.socket.writableLength > 0 && !this.upPaused, SHARED_UP_READ);
    if (next !== null) setNextReadBuffer(next);
  }

  /** Machine bytes for the caller: a copy when they sit in the shared read buffer. */
  private upBytes(b: Buffer): Buffer {
    return this.upScratch === SCRATCH.SHARED ? Buffer.from(b) : b;
  }

  upData(chunk: Buffer): void {
    if (this.phase === PH.TUNNEL) {
      if (!this.socket.write(this.upBytes(chunk))) this.pauseUp();
      this.touch();
      return;
    }
    const up = this.up;
    if (up === null) return;
    this.resBytes = true;
    let off = 0;
    if (this.rs === RS.HEAD) {
      const h = up.head;
      for (;;) {
        const r = h.feed(chunk, off, chunk.length);
        if (r === NEED_MORE) return;
        if (r === INVALID) return this.badResponse(`invalid response from machine: ${h.reason}`);
        off = r;
        const kind = responseBody(h, this.method);
        if (kind === BODY.INTERIM) {
          // 100 Continue lets the caller send its body; 103 carries hints. HTTP/1.0 callers get none.
          if (this.minor === 1) this.socket.write(rewriteResponse(h, this.id, CONNECTION.NONE));
          h.reset();
          if (off === chunk.length) return;
          continue;
        }
        if (kind === BODY.SWITCH) {
          if (!this.upgrade) return this.badResponse('invalid response from machine: 101 to a request that did not ask to upgrade');
          return this.switchProtocols(h, chunk, off);
        }
        if (h.replayField >= 0 && this.fwd.hooks.replay !== undefined) return this.replayAsked(h, kind, off < chunk.length);
        return this.responseHead(h, kind, chunk, off);
      }
    }
    if (this.rs === RS.BODY) this.readResponseBody(up, chunk, off);
    else this.upReusable = false; // bytes after the response: never reuse
  }

  /** A final response head in `chunk` (its body, if any, starts at `off`): head and body start go out in one write. */
  private responseHead(h: HeadParser, kind: BodyKind, chunk: Buffer, off: number): void {
    this.status = h.status;
    this.kept = null; // answered: no replay any more
    this.fwd.hooks.reportSuccess(this.m!);
    this.resKind = kind;
    this.upHead = null;
    this.upReusable = h.keepAlive && kind !== BODY.CLOSE;
    // The caller's connection goes on only if its request was read whole (else the rest of its
    // body would be read as the next request) and the response has a length.
    this.keepCaller = this.wantsKeepAlive && this.reqDone && !this.ended && !this.fwd.draining && this.revoked === null && kind !== BODY.CLOSE;
    const conn = !this.keepCaller ? CONNECTION.CLOSE : this.minor === 0 ? CONNECTION.KEEP_ALIVE : CONNECTION.NONE;
    const up = this.up!;
    up.body.begin(kind, h.contentLength);
    if (kind === BODY.NONE) {
      this.socket.write(rewriteResponse(h, this.id, conn));
      this.rs = RS.DONE;
      if (off < chunk.length) this.upReusable = false;
      return this.finish();
    }
    this.rs = RS.BODY;
    this.setDeadline(DL.IDLE, this.s.idleTimeout);
    if (off === chunk.length) {
      this.socket.write(rewriteResponse(h, this.id, conn));
      return;
    }
    const e = up.body.read(chunk, off, chunk.length);
    if (e === BODY_INVALID) {
      this.socket.write(rewriteResponse(h, this.id, conn));
      return this.brokenResponse(`invalid response body from machine: ${up.body.reason}`);
    }
    const end = e === BODY_CONTINUES ? chunk.length : e;
    let ok: boolean;
    if (end - off <= MERGE_BODY) ok = this.socket.write(rewriteResponse(h, this.id, conn, chunk, off, end));
    else {
      this.socket.cork();
      this.socket.write(rewriteResponse(h, this.id, conn));
      ok = this.socket.write(this.upBytes(chunk.subarray(off, end)));
      this.socket.uncork();
    }
    this.bodyWritten(e, ok, chunk);
  }

  private readResponseBody(up: UpstreamConn, chunk: Buffer, off: number): void {
    const e = up.body.read(chunk, off, chunk.length);
    if (e === BODY_INVALID) return this.brokenResponse(`invalid response body from machine: ${up.body.reason}`);
    const end = e === BODY_CONTINUES ? chunk.length : e;
    let ok = true;
    if (end > off) ok = this.socket.write(this.upBytes(off === 0 && end === chunk.length ? chunk : chunk.subarray(off, end)));
    this.bodyWritten(e, ok, chunk);
  }

  /** Body bytes of a read went to the caller (`ok`: without filling its socket); `e` is where the body ended, if it did. */
  private bodyWritten(e: number, ok: boolean, chunk: Buffer): void {
    if (e === BODY_CONTINUES) {
      if (!ok) this.pauseUp();
      this.touch();
      return;
    }
    if (e < chunk.length) this.upReusable = false;
    this.rs = RS.DONE;
    this.finish();
  }

  private pauseUp(): void {
    if (this.upPaused || !this.up) return;
    this.upPaused = true;
    this.up.socket.pause();
  }

  upDrain(): void {
    this.unpause(PAUSE.UP_FULL);
  }

  upEnd(): void {
    if (this.phase === PH.TUNNEL) {
      this.socket.end();
      return;
    }
    this.upGone(null);
  }

  upError(err: Error): void {
    if (this.phase === PH.TUNNEL) return this.destroy();
    this.upGone(err);
  }

  upClose(): void {
    if (this.phase === PH.TUNNEL) {
      this.releaseMachine();
      this.up = null;
      this.socket.end();
      return;
    }
    this.upGone(null);
  }

  /** The machine's connection ended (FIN, reset or close) before we let go of it. */
  private upGone(err: Error | null): void {
    if (this.up === null || this.phase === PH.CLOSED) return;
    if (this.rs === RS.BODY && this.resKind === BODY.CLOSE && err === null) {
      // A body framed by close ends here.
      this.rs = RS.DONE;
      this.upReusable = false;
      return this.finish();
    }
    if (this.rs === RS.BODY) return this.brokenResponse(`machine connection ${err ? `failed (${err.message})` : 'closed'} in the middle of the response`);
    const reason = err ?? Object.assign(new Error(this.resBytes ? 'machine closed the connection in the middle of a response head' : 'machine closed the connection before responding'), { code: 'ECONNRESET' });
    const up = this.up;
    this.up = null;
    up.destroy();
    if (!this.resBytes && this.retryable && this.tried.size + 1 < this.s.connectTries) {
      // A bodiless GET/HEAD/OPTIONS on a connection that died before any response byte
      // (a machine just killed, a keep-alive race): another machine may take it.
      const m = this.m!;
      this.m = null;
      this.fwd.hooks.reportFailure(m, reason, this.id);
      this.fwd.hooks.release(m);
      this.tried.add(m);
      this.pause(PAUSE.PICK);
      return this.attempt();
    }
    this.fail(new UpstreamUnreachableError('machine connection failed', { cause: reason }));
  }

  private switchProtocols(h: HeadParser, chunk: Buffer, off: number): void {
    this.status = 101;
    this.fwd.hooks.reportSuccess(this.m!);
    this.upHead = null;
    this.phase = PH.TUNNEL;
    this.socket.cork();
    this.socket.write(rewriteResponse(h, this.id, CONNECTION.UPGRADE));
    if (off < chunk.length) this.socket.write(this.upBytes(chunk.subarray(off)));
    this.socket.uncork();
    const up = this.up!;
    if (this.held !== null) {
      const b = this.held;
      this.held = null;
      if (!up.socket.write(b)) this.pause(PAUSE.UP_FULL);
    }
    this.requestDeadline = Infinity;
    this.setDeadline(DL.IDLE, this.s.idleTimeout);
    this.reported = true;
    this.fwd.hooks.done?.(this.ctx, this.m, 101, this.id, this.method, this.startedAt);
    this.unpause(PAUSE.HELD | PAUSE.PICK);
    if (this.ended) up.socket.end();
  }

  // ---- endings ---------------------------------------------------------------------------

  /** The exchange is over (response sent whole): let go of the machine, read the next request. */
  private finish(): void {
    const m = this.m;
    this.releaseMachine();
    const up = this.up;
    this.up = null;
    if (up !== null) {
      if (this.upPaused) up.socket.resume();
      if (this.upReusable && this.reqDone) up.pool.put(up);
      else up.destroy();
    }
    this.upPaused = false;
    if (this.active) {
      this.active = false;
      this.fwd.inFlight--;
      if (!this.reported) this.fwd.hooks.done?.(this.ctx, m, this.status, this.id, this.method, this.startedAt);
    }
    this.upHead = null;
    if (this.tried.size > 0) this.tried.clear();
    this.route = null;
    if (!this.keepCaller || this.ended || this.fwd.draining || this.revoked !== null) return this.closeCaller();
    this.phase = PH.HEAD;
    this.head.reset();
    this.requestDeadline = Infinity;
    this.setDeadline(DL.KEEPALIVE, this.s.keepAliveTimeout);
    this.idle = true;
    this.fwd.hooks.idle?.(this.ctx, true);
    this.unpause(PAUSE.HELD | PAUSE.UP_FULL | PAUSE.PICK);
    // Pipelined requests go on from a fresh stack: answers the proxy gives at once (503s, say)
    // would otherwise recurse once per buffered request.
    if (this.held !== null) process.nextTick(this.readHeld);
  }

  private readonly readHeld = (): void => {
    const h = this.held;
    if (h === null || this.phase !== PH.HEAD) return;
    this.held = null;
    this.readHead(h, 0);
  };

  private releaseMachine(): void {
    const m = this.m;
    this.m = null;
    if (m !== null) this.fwd.hooks.release(m);
  }

  /** The proxy answers this request itself with a typed error (before any byte of a machine's response went out). */
  private fail(err: SixpnError): void {
    if (this.phase === PH.CLOSED) return;
    if (this.rs !== RS.HEAD) return this.brokenResponse(err.message);
    const m = this.m;
    const hooks = this.fwd.hooks;
    if (hooks.failed) hooks.failed(this.ctx, m, err, this.id);
    else {
      this.fwd.options.log.warn(
        {
          request_id: this.id,
          caller: this.ctx.caller,
          status: err.status,
          code: err.code,
          ...(m !== null && hooks.describe ? { machine: hooks.describe(m) } : {}),
          ...(err.cause ? { err: (err.cause as Error).message ?? String(err.cause) } : {}),
        },
        `request failed: ${err.message}`,
      );
    }
    const up = this.up;
    this.up = null;
    up?.destroy();
    this.keepCaller = this.wantsKeepAlive && this.reqDone && !this.ended;
    this.answer(err.status, err.message);
  }

  /** Writes the proxy's own response and ends the exchange. */
  private answer(status: number, text: string): void {
    this.releaseMachine();
    this.status = status;
    this.rs = RS.DONE;
    this.upReusable = false;
    if (this.fwd.draining || this.revoked !== null) this.keepCaller = false;
    this.socket.write(ownResponse(status, text, this.id, !this.keepCaller));
    this.finish();
  }

  /** A head that could not be parsed: 400 (or 408, 505) and close; no request id reached a machine. */
  private refuse(status: number, text: string): void {
    const id = this.fwd.options.requestId();
    this.fwd.options.log.info({ caller: this.ctx.caller, request_id: id, status, reason: text }, 'malformed or slow HTTP request refused');
    this.socket.write(ownResponse(status, text, id, true));
    this.fwd.hooks.done?.(this.ctx, null, status, id, '', performance.now());
    this.closeCaller();
  }

  /** The caller's body broke its framing after part of it went to the machine. */
  private abortRequest(text: string): void {
    this.fwd.options.log.info({ caller: this.ctx.caller, request_id: this.id, reason: text }, 'malformed request body; request aborted');
    const up = this.up;
    this.up = null;
    up?.destroy();
    if (this.rs !== RS.HEAD) return this.destroy();
    this.keepCaller = false;
    this.answer(400, text);
  }

  /** The machine's response head was bad: 502 if the caller has seen nothing yet. */
  private badResponse(text: string): void {
    const up = this.up;
    this.up = null;
    up?.destroy();
    this.fail(new UpstreamUnreachableError(text));
  }

  /** The machine's response broke after its head went to the caller: nothing to say, close both. */
  private brokenResponse(text: string): void {
    this.fwd.options.log.warn(
      { request_id: this.id, caller: this.ctx.caller, status: this.status, ...(this.m !== null && this.fwd.hooks.describe ? { machine: this.fwd.hooks.describe(this.m) } : {}), reason: text },
      'machine response failed midway',
    );
    this.destroy();
  }

  /** Ends the caller connection; a caller still sending is read (and ignored) for a while first. */
  private closeCaller(): void {
    if (this.phase === PH.CLOSED) return;
    this.phase = PH.CLOSED;
    this.held = null;
    this.requestDeadline = Infinity;
    this.setDeadline(DL.LINGER, this.s.lingerMs);
    this.socket.end();
    this.paused = 0;
    this.socket.resume();
  }

  /** Drain: an idle keep-alive connection is closed now. */
  closeIfIdle(): void {
    if (this.phase === PH.HEAD && !this.head.partial) this.closeCaller();
  }

  revoke(reason: string): void {
    if (this.revoked !== null || this.phase === PH.CLOSED) return;
    this.revoked = reason;
    if (this.phase === PH.TUNNEL) return this.destroy();
    if (this.phase === PH.HEAD && !this.head.partial) this.closeCaller();
    // Busy: the response in flight goes out (with Connection: close if its head has not), then it closes.
  }

  destroy(): void {
    this.socket.destroy();
    const up = this.up;
    this.up = null;
    up?.destroy();
  }

  // ---- time ------------------------------------------------------------------------------

  private setDeadline(kind: number, ms: number): void {
    this.dl = kind;
    this.dlAt = kind === DL.NONE || ms <= 0 ? Infinity : performance.now() + ms;
    this.deadline = Math.min(this.dlAt, this.requestDeadline);
    this.fwd.deadlines.moved(this);
  }

  /** Bytes moved: the idle deadline starts again (later: the wheel needs no word). */
  private touch(): void {
    if (this.dl === DL.IDLE && this.s.idleTimeout > 0) {
      this.dlAt = performance.now() + this.s.idleTimeout;
      this.deadline = Math.min(this.dlAt, this.requestDeadline);
    }
  }

  onDeadline(now: number): void {
    if (now >= this.requestDeadline) {
      this.requestDeadline = Infinity;
      this.deadline = this.dlAt;
      if (this.rs === RS.HEAD && this.phase !== PH.TUNNEL) {
        this.keepCaller = false;
        const up = this.up;
        this.up = null;
        up?.destroy();
        this.fwd.options.log.info({ request_id: this.id, caller: this.ctx.caller }, 'request not received in time');
        return this.answer(408, 'request timeout');
      }
      return this.destroy();
    }
    if (now < this.dlAt) return;
    switch (this.dl) {
      case DL.HEADER:
        if (this.phase !== PH.HEAD) return;
        if (this.head.partial) return this.refuse(408, 'request timeout');
        return this.closeCaller();
      case DL.KEEPALIVE:
        if (this.phase === PH.HEAD && !this.head.partial) return this.closeCaller();
        return this.setDeadline(DL.HEADER, this.s.headerTimeout);
      case DL.UPSTREAM:
        if (this.rs !== RS.HEAD) return;
        return this.fail(new UpstreamTimeoutError('machine did not answer in time'));
      case DL.IDLE:
        this.fwd.options.log.info({ request_id: this.id, caller: this.ctx.caller }, 'connection idle too long in the middle of a body or tunnel');
        return this.destroy();
      case DL.LINGER:
        this.setDeadline(DL.NONE, 0);
        return void this.socket.destroy();
    }
  }
}

/** `http://` or `https://` (any case) at the start of the request target. */
function isAbsoluteTarget(h: HeadParser): boolean {
  const b = h.buf;
  let i = h.base + h.targetStart;
  const end = h.base + h.targetEnd;
  if (end - i < 8) return false;
  if ((b[i++]! | 0x20) !== 0x68 || (b[i++]! | 0x20) !== 0x74 || (b[i++]! | 0x20) !== 0x74 || (b[i++]! | 0x20) !== 0x70) return false;
  if ((b[i]! | 0x20) === 0x73) i++;
  return b[i] === 0x3a && b[i + 1] === 0x2f && b[i + 2] === 0x2f;
}

/** A response of the proxy's own: text body with the request id. */
function ownResponse(status: number, text: string, id: string, close: boolean): string {
  const body = `${status} ${text} (request id ${id})\n`;
  return (
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    `Fly-Request-Id: ${id}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${body}`
  );
}

/**
 * TCP services: pick and connect a machine through the upstream layer (./upstream.ts), send a
 * PROXY protocol header when the port asks for one, then splice bytes both ways with
 * back-pressure and half-close until either side closes.
 *
 * One `TcpConn` per proxied connection holds both sockets, the machine's slot and the idle
 * deadline (a wheel entry, not a timer per socket); the sockets' handlers are shared module
 * functions that find it through a property, so an idle proxied connection costs two sockets and
 * that one object. Bytes are never buffered beyond the sockets' own high-water marks. The same
 * splice carries an HTTP connection after a 101 (in the HTTP engine).
 */
import type net from 'node:net';
import type { Slot } from '../balancer/index.js';
import type { ConnInfo, ProxyCore, Tracked } from './core.js';
import { Timed } from './http1/deadlines.js';
import { appMetrics } from './metrics.js';
import { proxyHeader } from './proxyproto.js';
import { setNextReadBuffer, useReadBuffer } from './read-buffer.js';
import type { Connected, Upstream } from './upstream.js';

const CONN = Symbol('sixpn.tcp');
type Sock = net.Socket & { [CONN]?: TcpConn };

/**
 * Both directions read into buffers that are used again (node otherwise makes a new 64 KiB buffer
 * per read): machine sockets with `onread`, caller sockets through ./read-buffer.ts. A direction
 * starts on one small buffer shared by every connection, whose bytes are copied before they are
 * written (so it is free again at once): a connection that never moves much never gets a buffer
 * of its own (10,000 idle connections cost nothing here). The first read that fills it marks the
 * direction as bulk: it gets its own BULK_READ buffer. A write the kernel does not take whole
 * still points into that buffer, so reading stops until the other side drains (then the buffer is
 * free again): one buffer per direction, as a C proxy would hold.
 */
const SHARED_READ = Buffer.allocUnsafeSlow(16 * 1024);
const BULK_READ = 256 * 1024;
/** Caller bytes kept while the machine is being connected before reading stops. */
const EARLY_MAX = 64 * 1024;

/** A proxied TCP connection: the caller, the machine once connected, and the idle deadline. */
class TcpConn extends Timed implements Tracked {
  up: Sock | null = null;
  slot: Slot | null = null;
  /** The wheel's clock when a byte last moved either way. */
  lastAt: number;
  /** What the connect needs (dropped once connected, so that an idle connection holds less). */
  tried: Set<Slot> | null = new Set<Slot>();
  /** Caller bytes read before the machine was connected (up to EARLY_MAX). */
  early: Buffer | null = null;
  /** Whether the caller's socket reads through callerRead (else 'data' events: callerData). */
  callerReads = false;

  constructor(
    readonly tcp: TcpService,
    readonly caller: Sock,
    readonly ctx: ConnInfo,
  ) {
    super();
    this.lastAt = tcp.upstream.wheel.now;
  }

  gone: (() => boolean) | null = (): boolean => this.caller.destroyed;

  onDeadline(now: number): void {
    const idle = this.tcp.idleMs;
    if (this.lastAt + idle > now) {
      this.deadline = this.lastAt + idle;
      return;
    }
    this.destroy();
  }

  revoke(): void {
    this.destroy();
  }

  destroy(): void {
    this.caller.destroy();
    this.up?.destroy();
  }

  /** The machine side closed: give its slot back (once). */
  releaseSlot(): void {
    const s = this.slot;
    this.slot = null;
    if (s !== null) this.tcp.upstream.release(s);
  }
}

/**
 * FIN once: end() on a socket already ended or destroyed makes node build an error with a stack
 * trace (and emit it nowhere): a few per cent of a short connection's CPU.
 */
function endOnce(s: net.Socket | null): void {
  if (s !== null && !s.writableEnded && !s.destroyed) s.end();
}

/**
 * Our FIN to a side that already sent its own: when node holds nothing more to write to it, the
 * socket is simply closed, and the kernel sends the FIN after what it still has in its buffer (a
 * close is graceful when no received byte is left unread, and this side's EOF has been read).
 * That spares the shutdown() call, the two epoll_ctl calls libuv makes to wait for it and a turn of
 * the loop: a short connection's last steps. Otherwise (bytes still queued in node) end() as usual.
 */
function finishOnce(s: net.Socket | null): void {
  if (s === null || s.destroyed) return;
  if (s.readableEnded && s.writableLength === 0) s.destroy();
  else endOnce(s);
}

// Shared handlers: `this` is a socket, its TcpConn is this[CONN].
/** The fallback where node lacks reused buffers for accepted sockets (./read-buffer.ts). */
function callerData(this: Sock, chunk: Buffer): void {
  const c = this[CONN]!;
  c.lastAt = c.tcp.upstream.wheel.now;
  if (!c.up!.write(chunk)) this.pause();
}
/** A read of the caller's socket (./read-buffer.ts): false stops reading until the machine drains. */
function callerRead(this: Sock, n: number, buf: Buffer): boolean {
  const c = this[CONN]!;
  c.lastAt = c.tcp.upstream.wheel.now;
  const up = c.up;
  if (up === null) {
    // Kept until the machine is connected; reading goes on up to a bound (stopping and restarting
    // it would cost two epoll_ctl calls for the usual first few bytes of a connection).
    const b = Buffer.from(buf.subarray(0, n));
    c.early = c.early === null ? b : Buffer.concat([c.early, b]);
    return c.early.length < EARLY_MAX;
  }
  if (buf === SHARED_READ) {
    if (n === buf.length) setNextReadBuffer(Buffer.allocUnsafeSlow(BULK_READ));
    return up.write(Buffer.from(buf.subarray(0, n)));
  }
  if (!up.write(buf.subarray(0, n))) return false; // 'drain' resumes us; the buffer is free then
  // Queued under the high-water mark: no 'drain' will come, so the next read needs another buffer.
  if (up.writableLength > 0) setNextReadBuffer(Buffer.allocUnsafeSlow(BULK_READ));
  return true;
}
/**
 * The machine side's buffer generator, shared by every connection (no closure per connection):
 * node calls it once when the socket gets its handle (it returns SHARED_READ then) and right after
 * every upRead, which leaves here the buffer for the socket's next read, or null to keep the one it
 * has (its own bulk buffer stays its own).
 */
let nextUpBuffer: Buffer | null = SHARED_READ;
function upBuffer(): Buffer | null {
  const b = nextUpBuffer;
  nextUpBuffer = SHARED_READ;
  return b;
}
/** `onread` of a machine socket: false stops reading until the caller's side drains. */
function upRead(this: Sock, n: number, buf: Buffer): boolean {
  nextUpBuffer = null;
  const c = this[CONN]!;
  c.lastAt = c.tcp.upstream.wheel.now;
  const caller = c.caller;
  if (buf === SHARED_READ) {
    if (n === buf.length) nextUpBuffer = Buffer.allocUnsafeSlow(BULK_READ);
    return caller.write(Buffer.from(buf.subarray(0, n)));
  }
  if (!caller.write(buf.subarray(0, n))) return false;
  if (caller.writableLength > 0) nextUpBuffer = Buffer.allocUnsafeSlow(BULK_READ);
  return true;
}
// node's types want a buffer from the generator; at run time anything else keeps the current one.
const UP_ONREAD: net.OnReadOpts = { buffer: upBuffer as () => Uint8Array, callback: upRead };

function callerDrain(this: Sock): void {
  this[CONN]!.up?.resume();
}
function upDrain(this: Sock): void {
  this[CONN]!.caller.resume();
}
/** Half-close: the other side gets our FIN once its writes are flushed. */
function callerEnd(this: Sock): void {
  finishOnce(this[CONN]!.up);
}
function upEnd(this: Sock): void {
  finishOnce(this[CONN]!.caller);
}
function destroyConn(this: Sock): void {
  this[CONN]!.destroy();
}
function callerClose(this: Sock, hadError: boolean): void {
  const c = this[CONN]!;
  const t = c.tcp;
  t.core.tcpInFlight--;
  t.core.untrack(c);
  t.upstream.wheel.delete(c);
  const up = c.up;
  if (up !== null) {
    if (hadError) up.destroy();
    else endOnce(up);
  }
}
function upClose(this: Sock, hadError: boolean): void {
  const c = this[CONN]!;
  c.releaseSlot();
  if (hadError) c.caller.destroy();
  else endOnce(c.caller);
}

export class TcpService {
  readonly idleMs: number;

  constructor(
    readonly core: ProxyCore,
    readonly upstream: Upstream,
  ) {
    this.idleMs = core.config.idle_timeout;
  }

  /** A caller connection from a Flycast listener (the ACL has judged it: `info.denied`). */
  accept(socket: net.Socket, info: ConnInfo): void {
    if (info.denied) {
      this.core.denied(info, 'tcp');
      socket.destroy();
      return;
    }
    const t = info.target;
    appMetrics(t.app.name).acceptedTcp.inc();
    const caller = socket as Sock;
    const c = new TcpConn(this, caller, info);
    caller[CONN] = c;
    this.core.tcpInFlight++;
    this.core.track(c);
    // The listener's error handler ends the caller; its 'close' (with hadError) ends the machine
    // side. 'close' comes once: `on` spares the wrapper `once` would keep for the connection's life.
    caller.on('close', callerClose);
    c.callerReads = useReadBuffer(caller, SHARED_READ, callerRead);
    const r = this.upstream.connect<net.Socket>({ app: t.app.name, service: t.service, tried: c.tried!, gone: c.gone!, adopt: adoptSocket, reportConnect: true, onread: UP_ONREAD });
    if (r instanceof Promise) r.then((x) => this.connected(c, x), (err: unknown) => this.failed(c, err));
    else this.connected(c, r);
  }

  private failed(c: TcpConn, err: unknown): void {
    // The edge of a TCP caller: the error is logged and counted once here, then the caller closed.
    if (!c.caller.destroyed) this.core.callerFailed('tcp', err, c.ctx);
    c.caller.destroy();
  }

  private connected(c: TcpConn, r: Connected<net.Socket> | Error): void {
    if (r instanceof Error) return this.failed(c, r);
    const up = r.conn as Sock;
    const caller = c.caller;
    if (caller.destroyed) {
      up.destroy();
      this.upstream.release(r.m);
      return;
    }
    c.up = up;
    c.slot = r.m;
    c.tried = null;
    c.gone = null;
    up[CONN] = c;
    const port = c.ctx.target.port;
    if (port.handlers.includes('proxy_proto')) {
      up.write(proxyHeader(port.proxy_proto_options?.version ?? 'v1', { srcAddress: c.ctx.caller, srcPort: c.ctx.callerPort, dstAddress: c.ctx.flycast, dstPort: c.ctx.port }));
    }
    if (!c.callerReads) caller.on('data', callerData);
    caller.on('drain', callerDrain);
    caller.on('end', callerEnd);
    up.on('drain', upDrain);
    up.on('end', upEnd);
    up.on('error', destroyConn);
    up.on('close', upClose);
    // A FIN that came before the splice (the caller ended while a machine was being picked and
    // dialed: `nc -z`, a port scanner, a probe) has already emitted its 'end' with nobody
    // listening; pass it on now, or the machine never learns and the slot stays taken.
    const early = c.early;
    if (early !== null) {
      c.early = null;
      if (up.write(early) && early.length >= EARLY_MAX) caller.resume(); // reading had stopped at the bound
    }
    if (caller.readableEnded) endOnce(up);
    if (up.readableEnded) endOnce(caller);
    if (this.idleMs > 0) {
      c.lastAt = this.upstream.wheel.now;
      c.deadline = performance.now() + this.idleMs;
      this.upstream.wheel.add(c);
    }
  }
}

function adoptSocket(_s: Slot, socket: net.Socket): net.Socket {
  return socket;
}

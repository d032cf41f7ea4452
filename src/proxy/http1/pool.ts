/**
 * Keep-alive connections to one machine.
 *
 * A connection is lent to one exchange at a time and comes back only when its response ended
 * cleanly, its request was sent whole and nothing else arrived; idle, it is dropped on any byte
 * or FIN from the machine (unread bytes would be read as the next response), after
 * `idleTimeout` (shorter than the usual server keep-alive, 5 s for Node, so that we close it
 * before the machine does), and beyond `maxIdle` connections. Most recently used first, so a
 * burst's extra connections age out.
 */
import type net from 'node:net';
import { Timed, type Deadlines } from './deadlines.js';
import { HeadParser, type HeadLimits } from './head.js';
import { BodyReader } from './framing.js';
import { useReadBuffer } from '../read-buffer.js';

/**
 * Machine bytes are read into reused buffers (../read-buffer.ts): every connection starts on this
 * shared one; its owner copies what outlives a read and may move the connection to a buffer of
 * its own for a large body (see the forwarder's upRead).
 */
export const SHARED_UP_READ = Buffer.allocUnsafeSlow(16 * 1024);

/** The exchange using a connection: its socket's events go there. */
export interface UpstreamOwner {
  upData(chunk: Buffer): void;
  /** A read into a reused buffer (SHARED_UP_READ or one the owner chose), instead of upData. */
  upRead(n: number, buf: Buffer): void;
  upEnd(): void;
  upError(err: Error): void;
  upClose(): void;
  upDrain(): void;
}

export interface PoolOptions {
  /** Idle connections kept (0: none, every request dials). */
  maxIdle: number;
  /** Close an idle connection after this many ms. */
  idleTimeout: number;
  limits: HeadLimits;
}

/** One connection to a machine, with its own response parser (reused for every response). */
export class UpstreamConn extends Timed {
  owner: UpstreamOwner | null = null;
  /** Exchanges completed on it (> 0: a reused connection). */
  served = 0;
  readonly head: HeadParser;
  readonly body: BodyReader;
  private idle = false;

  constructor(
    readonly socket: net.Socket,
    readonly pool: UpstreamPool,
  ) {
    super();
    this.head = new HeadParser('response', pool.options.limits);
    this.body = new BodyReader(pool.options.limits.maxHeadSize);
    // Bytes the socket already holds (a machine that spoke first) keep the 'data' path.
    if (!(socket.readableLength === 0 && useReadBuffer(socket, SHARED_UP_READ, this.onRead))) {
      socket.on('data', (c: Buffer) => (this.owner ? this.owner.upData(c) : this.dropIdle()));
    }
    socket.on('end', () => (this.owner ? this.owner.upEnd() : this.dropIdle()));
    socket.on('error', (err: Error) => (this.owner ? this.owner.upError(err) : this.dropIdle()));
    socket.on('close', () => {
      pool.lent.delete(this);
      if (this.owner) this.owner.upClose();
      else this.dropIdle();
    });
    socket.on('drain', () => this.owner?.upDrain());
  }

  private readonly onRead = (n: number, buf: Buffer): boolean => {
    if (this.owner === null) {
      this.dropIdle();
      return false;
    }
    this.owner.upRead(n, buf);
    return true;
  };

  get usable(): boolean {
    const s = this.socket;
    return !s.destroyed && s.writable && s.readable;
  }

  /** Called by the pool: the connection waits for its next exchange. */
  parkIdle(now: number): void {
    this.idle = true;
    this.owner = null;
    this.deadline = now + this.pool.options.idleTimeout;
    // Reading on while idle is how a machine's FIN or stray bytes are seen.
    this.socket.resume();
  }

  /** @internal the pool handed it out: no longer idle, not owned yet. */
  taken(): void {
    this.idle = false;
    this.deadline = Infinity;
  }

  /** The exchange that uses it from now on. */
  lend(owner: UpstreamOwner): void {
    this.idle = false;
    this.owner = owner;
    this.deadline = Infinity;
    this.head.reset();
  }

  onDeadline(): void {
    this.dropIdle();
  }

  private dropIdle(): void {
    if (this.idle) this.pool.forget(this);
    this.idle = false;
    this.socket.destroy();
  }

  destroy(): void {
    this.owner = null;
    this.socket.destroy();
  }

  /** Destroys it with `err`; an exchange using it hears of it as a failed machine connection. */
  abort(err: Error): void {
    if (this.owner === null) return this.dropIdle();
    this.socket.destroy(err);
  }
}

export class UpstreamPool {
  private readonly idle: UpstreamConn[] = [];
  /** @internal connections handed out (busy, or between a take and its exchange) */
  readonly lent = new Set<UpstreamConn>();
  private closed = false;

  constructor(
    private readonly deadlines: Deadlines,
    readonly options: PoolOptions,
  ) {}

  get idleCount(): number {
    return this.idle.length;
  }

  /**
   * An idle connection still fit for a request, or null. The caller lends it to its exchange
   * (`lend`) before returning to the event loop.
   */
  take(): UpstreamConn | null {
    for (;;) {
      const c = this.idle.pop();
      if (!c) return null;
      this.deadlines.delete(c);
      if (!c.usable) {
        c.destroy();
        continue;
      }
      c.taken();
      this.lent.add(c);
      return c;
    }
  }

  /** Wraps a freshly dialed socket (lent to an exchange next, like `take`'s). */
  adopt(socket: net.Socket): UpstreamConn {
    const c = new UpstreamConn(socket, this);
    this.lent.add(c);
    return c;
  }

  /** A connection whose exchange ended cleanly: keep it for the next one, or close it. */
  put(c: UpstreamConn): void {
    c.served++;
    this.lent.delete(c);
    if (this.closed || this.idle.length >= this.options.maxIdle || !c.usable || c.socket.readableLength > 0) {
      c.destroy();
      return;
    }
    c.parkIdle(performance.now());
    this.idle.push(c);
    this.deadlines.add(c);
  }

  /** An idle connection went away (FIN, bytes, error, timeout). */
  forget(c: UpstreamConn): void {
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    this.deadlines.delete(c);
  }

  /**
   * Closes idle connections now; connections in use are closed when they come back, or at once
   * with `abort` (their exchanges fail as if the machine had reset them).
   */
  close(abort?: Error): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) {
      this.deadlines.delete(c);
      c.destroy();
    }
    if (abort !== undefined) for (const c of [...this.lent]) c.abort(abort);
  }
}

/**
 * The one upstream layer of the proxy: how a caller (a TCP connection, an HTTP request, an
 * Upgrade) gets a connected machine. Written once for all three:
 *
 *   acquire   the balancer's pick (nearest region with room, least outstanding), or a wait in
 *             the bounded capacity queue (./queue.ts) when every candidate is at hard_limit;
 *   connect   a pooled connection (HTTP) or a dial with connect_timeout on the timer wheel;
 *   retry     a failed connect is counted, reported to passive ejection, logged, and the next
 *             candidate is tried (up to connect_tries machines; the last try avoids the regions
 *             that failed when another region has room);
 *   release   every acquired machine is given back exactly once (and the queue woken).
 *
 * Seams, each documented where it is declared: `autostart` (a stopped machine is started when no
 * started one has room), per-pick `prefs` (request steering), `sourceFor` and `dialOptions`
 * (the mesh: from which local address and where a machine is dialed), `share` (a worker's part
 * of every limit, ./workers.ts).
 *
 * @example
 *   const r = upstream.connect({ app: 'web', service, tried: new Set(), gone: () => sock.destroyed,
 *     adopt: (_slot, s) => s, reportConnect: true });
 *   // r: { m: slot, conn: socket } | SixpnError (503 no capacity, 502 unreachable) | a promise of either
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { Balancer, type Limits, type Slot, type Steer } from '../balancer/index.js';
import type { Machine, Service } from '../catalog/types.js';
import { NoCapacityError, SixpnError, UpstreamUnreachableError } from '../errors.js';
import type { ProxyConfig } from './config.js';
import { badUpstream, dialTarget } from './core.js';
import { Timed, type Deadlines } from './http1/deadlines.js';
import { appMetrics, selected } from './metrics.js';
import { CapacityQueue } from './queue.js';
import { share } from './share.js';

export type Acquired = Slot | 'none' | 'full';

/** A connected machine: the acquired slot and the connection (a socket, or a pooled HTTP connection). */
export interface Connected<T> {
  m: Slot;
  conn: T;
}

/**
 * Seam for autostart (issue 16): starts machines when callers need them. The upstream layer asks
 * at the acquire step: `wake` when the app has no candidate at all (the caller waits for the
 * start; an Error is its answer, a typed one keeps its status), `nudge` when the pick went to a
 * farther region (`nearerThan` its rank) or over soft_limit, or found every candidate full
 * (`Infinity`), so a machine is started for the callers that come next.
 */
export interface MachineStarter {
  wake(app: string, service: Service): Promise<Machine | Error | null>;
  nudge(app: string, service: Service, nearerThan: number): void;
  /**
   * The start of this machine this node is waiting on, or null. A machine its host reports
   * started at launch may not listen yet: a caller picked onto it waits with the start's other
   * callers instead of dialing it and being refused.
   */
  warming?(machine: string): Promise<unknown> | null;
}

/** Where a machine is dialed from (the mesh: this host's address in the machine's org), or undefined for the default. */
export type SourcePicker = (m: Machine) => string | undefined;

export interface ConnectRequest<T> {
  app: string;
  service: Service;
  /** Machines already tried for this caller (connect failures are added here). */
  tried: Set<Slot>;
  gone: () => boolean;
  requestId?: string;
  prefs?: Steer | null;
  /** The longest wait in the capacity queue for this request (a replay's `timeout=`); never above queue_timeout. */
  waitMs?: number | null;
  /** An idle connection to the slot's machine, if any (HTTP pools). */
  reuse?: (slot: Slot) => T | null;
  /** A freshly dialed socket as what the caller wants. */
  adopt: (slot: Slot, socket: net.Socket) => T;
  /** A connect is the machine's success verdict (TCP); HTTP waits for the response head. */
  reportConnect: boolean;
  /** Read machine bytes into buffers of the caller's own instead of a new one per read (TCP). */
  onread?: net.OnReadOpts;
}

/** The answer when the caller went away meanwhile (nobody reads it). */
export const CALLER_GONE = new SixpnError('caller went away');

function isPromise<T>(x: unknown): x is Promise<T> {
  return typeof (x as { then?: unknown } | null)?.then === 'function';
}

/** Where a machine is dialed by default: its `upstream`, else [6PN address]:internal_port. */
export function defaultDialOptions(m: Machine, service: Service): net.TcpNetConnectOpts {
  const { host, port } = dialTarget(m, service);
  return { host, port, allowHalfOpen: true, noDelay: true };
}

const DIAL = Symbol('sixpn.dial');
type DialSocket = net.Socket & { [DIAL]?: Dial };
function onDialConnect(this: DialSocket): void {
  this[DIAL]?.connected();
}
function onDialError(this: DialSocket, err: Error): void {
  this[DIAL]?.failed(err);
}

/** One dial in progress; its connect timeout is a deadline on the wheel. */
class Dial extends Timed {
  private readonly started = performance.now();
  constructor(
    private readonly wheel: Deadlines,
    private readonly socket: DialSocket,
    private readonly slot: Slot,
    private readonly timeoutMs: number,
    private readonly resolve: (r: net.Socket | Error) => void,
  ) {
    super();
    socket[DIAL] = this;
    // settle() takes both off: `on` spares the wrappers `once` allocates.
    socket.on('connect', onDialConnect);
    socket.on('error', onDialError);
    this.deadline = this.started + timeoutMs;
    wheel.add(this);
  }

  connected(): void {
    this.settle();
    appMetrics(this.slot.machine.app).connectSeconds.observe((performance.now() - this.started) / 1000);
    this.resolve(this.socket);
  }

  failed(err: Error): void {
    this.settle();
    this.resolve(err);
  }

  onDeadline(): void {
    const s = this.socket;
    this.settle();
    s.destroy();
    this.resolve(Object.assign(new Error(`connect to ${s.remoteAddress ?? this.slot.machine.address} timed out after ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
  }

  private settle(): void {
    this.wheel.delete(this);
    this.socket[DIAL] = undefined;
    this.socket.off('connect', onDialConnect);
    this.socket.off('error', onDialError);
  }
}

export class Upstream {
  readonly queue: CapacityQueue;
  /** Seam for autostart (see MachineStarter); null when `[autostart]` is off. */
  autostart: MachineStarter | null = null;
  /**
   * Seam for the mesh: how a machine is dialed (host, port; may throw for an entry no socket can
   * use, which is a connect failure of that machine). `sourceFor` adds the local address.
   */
  dialOptions: (m: Machine, service: Service) => net.TcpNetConnectOpts = defaultDialOptions;
  /**
   * In a proxy worker (./workers.ts): which of how many it is. Its limits are its share of each
   * service's soft_limit and hard_limit, so the workers together never exceed hard_limit.
   */
  share: { index: number; count: number } | null = null;
  private readonly limitsByService = new WeakMap<Service, Limits>();

  constructor(
    readonly config: ProxyConfig,
    readonly balancer: Balancer,
    readonly log: Logger,
    readonly wheel: Deadlines,
    /** Seam for the mesh: the local address every connect to a machine is made from (TCP and HTTP pools). */
    readonly sourceFor: SourcePicker = () => undefined,
  ) {
    this.queue = new CapacityQueue(wheel, config.max_queue);
    // A freed unit wakes one waiter; a new candidate (or a larger share) lets every waiter try.
    balancer.onCapacity = (app, all) => (all ? this.queue.wakeAll(app) : this.queue.wake(app));
  }

  /** The limits this process balances with for a service (with workers: its share of them). */
  limits(service: Service): Limits {
    const sh = this.share;
    if (sh === null || sh.count <= 1) return service.concurrency;
    let l = this.limitsByService.get(service);
    if (!l) {
      const c = service.concurrency;
      const hard = share(c.hard_limit, sh.index, sh.count);
      l = { soft_limit: Math.min(hard, Math.max(1, share(c.soft_limit, sh.index, sh.count))), hard_limit: hard };
      this.limitsByService.set(service, l);
    }
    return l;
  }

  /**
   * A machine of `app` for a caller, acquired (its outstanding count raised): at once, or after
   * waiting in the queue (or for an autostart). 'none' when the app has no candidate left to
   * try, 'full' when the wait ran out or the queue is full, an Error when a start failed.
   */
  acquire(app: string, service: Service, tried: ReadonlySet<Slot>, gone: () => boolean, prefs: Steer | null = null, waitMs: number | null = null): Acquired | Error | Promise<Acquired | Error> {
    const limits = this.limits(service);
    const got = this.pickNow(app, limits, tried, prefs);
    const starter = this.autostart;
    const queueMs = waitMs === null ? this.config.queue_timeout : Math.min(waitMs, this.config.queue_timeout);
    if (typeof got === 'object') {
      const warm = starter?.warming?.(got.machine.id) ?? null;
      if (warm !== null) {
        this.release(got);
        const again = (): Acquired | Promise<Acquired> => this.afterStart(app, limits, tried, gone, prefs, queueMs);
        return warm.then(again, again);
      }
      if (starter !== null && (got.outcome === 'spilled' || got.outstanding > limits.soft_limit)) {
        starter.nudge(app, service, got.outstanding > limits.soft_limit ? Infinity : got.group.rank);
      }
      return got;
    }
    if (got === 'none') {
      // No started machine at all: the caller waits for one to be started.
      if (starter === null || tried.size > 0) return 'none';
      return starter.wake(app, service).then(
        (woke) => (woke instanceof Error ? woke : woke === null || gone() ? 'none' : this.afterStart(app, limits, tried, gone, prefs, queueMs)),
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      );
    }
    starter?.nudge(app, service, Infinity);
    return this.wait(app, limits, tried, gone, prefs, queueMs);
  }

  /** The pick once a start this caller waited for is over: the started machines may all be full for now (many callers woke at once), which is a wait in the queue like any other. */
  private afterStart(app: string, limits: Limits, tried: ReadonlySet<Slot>, gone: () => boolean, prefs: Steer | null, waitMs: number): Acquired | Promise<Acquired> {
    const got = this.pickNow(app, limits, tried, prefs);
    return got === 'full' ? this.wait(app, limits, tried, gone, prefs, waitMs) : got;
  }

  private async wait(app: string, limits: Limits, tried: ReadonlySet<Slot>, gone: () => boolean, prefs: Steer | null, waitMs: number): Promise<Acquired> {
    if (!this.queue.hasRoom || waitMs === 0) {
      selected('refused');
      return 'full';
    }
    selected('queued');
    const deadline = performance.now() + waitMs;
    let front = false;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0 || gone()) break;
      const woken = await this.queue.wait(app, gone, left, front);
      if (gone()) {
        // The unit this waiter was woken for belongs to the next one.
        if (woken) this.queue.wake(app);
        break;
      }
      const got = this.pickNow(app, limits, tried, prefs);
      if (got !== 'full') return got;
      if (!woken) break;
      // Someone else took the unit first: back to the head of the line.
      front = true;
    }
    selected('refused');
    return 'full';
  }

  private pickNow(app: string, limits: Limits, tried: ReadonlySet<Slot>, prefs: Steer | null): Acquired {
    // The caller's last connect try goes to another region when one has room.
    const lastTry = tried.size > 0 && tried.size === this.config.connect_tries - 1;
    const s = this.balancer.pick(app, limits, tried.size > 0 ? tried : null, lastTry, prefs);
    if (s) {
      selected(s.outcome);
      appMetrics(app).activeOn(s.machine.id).inc();
      return s;
    }
    // Under a steering constraint, "none" means nothing the constraint allows (a forced region or machine).
    if (prefs !== null) return this.balancer.steerCandidates(app, prefs, tried) > 0 ? 'full' : 'none';
    const left = this.balancer.candidateCount(app) - countLive(tried);
    return left > 0 ? 'full' : 'none';
  }

  /** Gives back what `acquire` took. */
  release(s: Slot): void {
    appMetrics(s.machine.app).activeOn(s.machine.id).dec();
    this.balancer.release(s);
  }

  /** The machine answered (TCP: connected; HTTP: a response head): passive ejection forgives it. */
  succeeded(s: Slot): void {
    this.balancer.reportSuccess(s);
  }

  /**
   * A connect to the machine failed, or its connection died before any response byte: count
   * it, tell passive ejection, log it (the slot stays acquired: see connectFailed).
   */
  failed(s: Slot, err: unknown, requestId?: string): void {
    appMetrics(s.machine.app).connectErrors.inc();
    const ejectedMs = this.balancer.reportFailure(s);
    this.log.warn(
      { app: s.machine.app, machine: s.machine.id, err: (err as Error).message, ...(requestId ? { request_id: requestId } : {}), ...(ejectedMs ? { ejected_ms: ejectedMs } : {}) },
      ejectedMs ? 'machine connect failed; ejected from this node for a while' : 'machine connect failed; trying the next one',
    );
  }

  /** `failed`, and the slot given back. */
  connectFailed(s: Slot, err: unknown, requestId?: string): void {
    this.failed(s, err, requestId);
    this.release(s);
  }

  /** Opens a TCP connection to the machine; resolves with the socket or the error (never rejects). */
  dial(s: Slot, service: Service, onread?: net.OnReadOpts): Promise<net.Socket | Error> {
    let up: net.Socket;
    try {
      const opts: net.NetConnectOpts = this.dialOptions(s.machine, service);
      const localAddress = this.sourceFor(s.machine);
      up = net.connect(localAddress === undefined && onread === undefined ? opts : { ...opts, ...(localAddress !== undefined ? { localAddress } : {}), ...(onread ? { onread } : {}) });
    } catch (err) {
      return Promise.resolve(badUpstream(s.machine, err));
    }
    return new Promise((resolve) => new Dial(this.wheel, up, s, this.config.connect_timeout, resolve));
  }

  /**
   * A connected machine for a caller: acquire, reuse or dial, and on a connect failure the
   * next candidate, up to connect_tries machines. Synchronous when a machine is free and a
   * pooled connection can be reused; a promise otherwise. Never throws: the result is the
   * connection or the typed error the caller is answered with.
   */
  connect<T>(r: ConnectRequest<T>): Connected<T> | SixpnError | Promise<Connected<T> | SixpnError> {
    const a = this.acquire(r.app, r.service, r.tried, r.gone, r.prefs ?? null, r.waitMs ?? null);
    if (isPromise<Acquired | Error>(a)) return a.then((x) => this.connectTo(r, x, null));
    return this.connectTo(r, a, null);
  }

  private connectTo<T>(r: ConnectRequest<T>, a: Acquired | Error, lastErr: Error | null): Connected<T> | SixpnError | Promise<Connected<T> | SixpnError> {
    if (a instanceof Error) return a instanceof SixpnError ? a : new UpstreamUnreachableError('machine could not be started', { cause: a });
    if (a === 'full') return new NoCapacityError('all machines are at their hard limit');
    if (a === 'none') return new UpstreamUnreachableError(r.tried.size === 0 ? 'no machine available' : 'no machine reachable', lastErr ? { cause: lastErr } : undefined);
    if (r.gone()) {
      this.release(a);
      return CALLER_GONE;
    }
    const reused = r.reuse ? r.reuse(a) : null;
    if (reused !== null) return { m: a, conn: reused };
    return this.dial(a, r.service, r.onread).then((s) => this.dialed(r, a, s));
  }

  private dialed<T>(r: ConnectRequest<T>, slot: Slot, s: net.Socket | Error): Connected<T> | SixpnError | Promise<Connected<T> | SixpnError> {
    if (s instanceof Error) {
      this.connectFailed(slot, s, r.requestId);
      r.tried.add(slot);
      if (r.gone()) return CALLER_GONE;
      if (r.tried.size >= this.config.connect_tries) return new UpstreamUnreachableError('no machine reachable', { cause: s });
      const a = this.acquire(r.app, r.service, r.tried, r.gone, r.prefs ?? null, r.waitMs ?? null);
      if (isPromise<Acquired | Error>(a)) return a.then((x) => this.connectTo(r, x, s));
      return this.connectTo(r, a, s);
    }
    if (r.gone()) {
      s.destroy();
      this.release(slot);
      return CALLER_GONE;
    }
    if (r.reportConnect) this.balancer.reportSuccess(slot);
    return { m: slot, conn: r.adopt(slot, s) };
  }
}

function countLive(tried: ReadonlySet<Slot>): number {
  let n = 0;
  for (const s of tried) if (s.live && s.pos >= 0) n++;
  return n;
}

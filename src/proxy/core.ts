/**
 * What the TCP and HTTP paths of the proxy share: the target lookup (Flycast address + port ->
 * app and service), the ACL, machine acquisition with a bounded wait queue, dialing a machine
 * with connect retries, and the bookkeeping that drain and catalog changes need (live caller
 * sockets with what they reached, work in flight).
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { Balancer, type Limits, type Slot } from '../balancer/index.js';
import type { App, FlycastIp, Machine, Service, ServicePort } from '../catalog/types.js';
import type { SourcePicker } from '../catalog/source.js';
import type { CatalogView } from '../catalog/view.js';
import { SixpnError } from '../errors.js';
import type { ProxyConfig } from './config.js';
import { CallerAcl } from './acl.js';
import { appMetrics, callerErrors, deniedByOrg, selected } from './metrics.js';

/** What a caller reached: a Flycast address and port, and the app and service behind it. */
export interface Target {
  ip: FlycastIp;
  app: App;
  service: Service;
  port: ServicePort;
  http: boolean;
}

/** Per caller connection, fixed when it is accepted. */
export interface ConnInfo {
  flycast: string;
  port: number;
  /** The address the ACL judged (the socket's peer, or a dev mapping's `as_caller`). */
  caller: string;
  callerPort: number;
  /** Null when allowed, else why not. */
  denied: string | null;
  /** Refreshed on catalog changes while the connection may stay (see `ProxyCore.lost`). */
  target: Target;
}

export function findTarget(view: CatalogView, flycast: string, port: number): Target | null {
  const ip = view.flycast.get(flycast);
  if (!ip) return null;
  const app = view.apps.get(ip.app);
  if (!app) return null;
  for (const service of app.services) {
    for (const p of service.ports) {
      // TLS termination is not done here: a `tls` port is passed through as raw TCP.
      if (p.port === port) return { ip, app, service, port: p, http: !p.handlers.includes('tls') && (service.protocol === 'http' || p.handlers.includes('http')) };
    }
  }
  return null;
}

/** The code of a dial target no socket can use (see `badUpstream`). */
export const BAD_UPSTREAM = 'SIXPN_BAD_UPSTREAM';

/** Wraps whatever building a dial to `m` threw: a connect failure of that machine. */
export function badUpstream(m: Machine, err: unknown): Error {
  return Object.assign(new Error(`machine ${m.id}: cannot dial ${m.upstream ?? m.address}: ${(err as Error).message}`, { cause: err }), { code: BAD_UPSTREAM });
}

/** Where to dial a machine: its `upstream` override, else its 6PN address and the service's internal port. */
export function dialTarget(m: Machine, service: Service): { host: string; port: number } {
  if (m.upstream) {
    const i = m.upstream.lastIndexOf(':');
    let host = m.upstream.slice(0, i);
    if (host.startsWith('[')) host = host.slice(1, -1);
    return { host, port: Number(m.upstream.slice(i + 1)) };
  }
  return { host: m.address, port: service.internal_port };
}

/**
 * Failures before anything reached a machine. Besides the network ones: a name that does not
 * resolve, and an `upstream` no dial can use (a port out of range, a malformed origin), which a
 * catalog entry stored before validation got stricter may still carry: a connect failure of
 * that machine, never an exception on the data path.
 */
const CONNECT_ERRORS = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ECONNRESET_BEFORE_CONNECT',
  'ENOTFOUND',
  'EAI_AGAIN',
  BAD_UPSTREAM,
]);
/** True for failures that happen before anything was sent: safe to try another machine. */
export function isConnectError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code !== undefined && CONNECT_ERRORS.has(code);
}

export type Acquired = Slot | 'none' | 'full';

const TRACKER = Symbol('sixpn.tracker');
const INFO = Symbol('sixpn.conn-info');
type TrackedSocket = net.Socket & { [TRACKER]?: Set<net.Socket>; [INFO]?: ConnInfo };
/** Shared 'close' handler (no closure per connection). */
function untrack(this: TrackedSocket): void {
  this[TRACKER]?.delete(this);
}

interface Waiter {
  wake: () => void;
}

export class ProxyCore {
  readonly acl: CallerAcl;
  /** Caller sockets alive (for drain and close). */
  readonly sockets = new Set<net.Socket>();
  /** TCP connections and HTTP requests in flight (drain waits for 0). */
  inFlight = 0;
  draining = false;
  private readonly waiters = new Map<string, Waiter[]>();
  private queued = 0;

  constructor(
    readonly config: ProxyConfig,
    readonly view: CatalogView,
    readonly balancer: Balancer,
    readonly log: Logger,
    /**
     * The local address to dial a machine from: on a host, its own address in the machine's org
     * (src/catalog/source.ts), so the proxy's traffic passes the same org rule as anyone's.
     */
    readonly sourceFor: SourcePicker = () => undefined,
  ) {
    this.acl = new CallerAcl(config.allow);
    balancer.onCapacity = (app) => this.wake(app);
  }

  private wake(app: string): void {
    const list = this.waiters.get(app);
    if (!list || list.length === 0) return;
    list.shift()!.wake();
  }

  /**
   * A machine for `app` under its hard limit: at once, or after waiting in the bounded queue
   * up to queue_timeout for a release. 'none' when the app has no candidate (left to try),
   * 'full' when the wait ran out or the queue is full.
   */
  async acquire(app: string, limits: Limits, tried: Set<Slot>, isGone: () => boolean): Promise<Acquired> {
    const first = this.pickNow(app, limits, tried);
    if (first !== 'full') return first;
    if (this.queued >= this.config.max_queue || this.config.queue_timeout === 0) {
      selected('refused');
      return 'full';
    }
    selected('queued');
    const deadline = Date.now() + this.config.queue_timeout;
    let list = this.waiters.get(app);
    if (!list) this.waiters.set(app, (list = []));
    this.queued++;
    try {
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0 || isGone()) break;
        const w: Waiter = { wake: () => undefined };
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          w.wake = () => {
            clearTimeout(t);
            resolve();
          };
          list.push(w);
        });
        const i = list.indexOf(w);
        if (i >= 0) list.splice(i, 1);
        if (isGone()) break;
        const got = this.pickNow(app, limits, tried);
        if (got !== 'full') return got;
      }
    } finally {
      this.queued--;
    }
    selected('refused');
    return 'full';
  }

  private pickNow(app: string, limits: Limits, tried: Set<Slot>): Acquired {
    // The caller's last connect try goes to another region when one has room.
    const lastTry = tried.size > 0 && tried.size === this.config.connect_tries - 1;
    const s = this.balancer.pick(app, limits, tried.size > 0 ? tried : null, lastTry);
    if (s) {
      selected(s.outcome);
      appMetrics(app).activeOn(s.machine.id).inc();
      return s;
    }
    const left = this.balancer.candidateCount(app) - countLive(tried);
    return left > 0 ? 'full' : 'none';
  }

  release(s: Slot): void {
    appMetrics(s.machine.app).activeOn(s.machine.id).dec();
    this.balancer.release(s);
  }

  /** Counts a refused caller by org pair (the denial path only: allowed callers never get here). */
  countDenied(info: ConnInfo): void {
    const callerOrg = this.view.orgByNetworkId(this.acl.callerNetwork(info.caller, this.view))?.name ?? '';
    deniedByOrg.inc({ org: info.target.ip.org, caller_org: callerOrg });
  }

  /** A connect to the machine failed: count it, tell passive ejection, give the slot back. */
  connectFailed(s: Slot, err: unknown, requestId?: string): void {
    appMetrics(s.machine.app).connectErrors.inc();
    const ejectedMs = this.balancer.reportFailure(s);
    this.log.warn(
      { app: s.machine.app, machine: s.machine.id, err: (err as Error).message, ...(requestId ? { request_id: requestId } : {}), ...(ejectedMs ? { ejected_ms: ejectedMs } : {}) },
      ejectedMs ? 'machine connect failed; ejected from this node for a while' : 'machine connect failed; trying the next one',
    );
    this.release(s);
  }

  /**
   * Where a caller's failure meets the edge: the error (a SixpnError, or anything else as
   * SIXPN_INTERNAL) is logged once with its code and counted in sixpn_proxy_errors_total. The
   * caller of this maps it to the wire: its status for HTTP, a close for TCP.
   */
  callerFailed(proto: 'tcp' | 'http', err: unknown, info: ConnInfo, fields: Record<string, unknown> = {}): SixpnError {
    const e = err instanceof SixpnError ? err : new SixpnError('proxy error', { cause: err });
    callerErrors.inc({ proto, code: e.code });
    const line = { ...fields, code: e.code, app: info.target.app.name, caller: info.caller, flycast: info.flycast, port: info.port, ...(e.cause ? { err: (e.cause as Error).message ?? String(e.cause) } : {}) };
    if (e.code === 'SIXPN_INTERNAL') this.log.error({ ...line, err: e.cause }, `${proto === 'http' ? 'request' : 'connection'} failed: ${e.message}`);
    else this.log.warn(line, `${proto === 'http' ? 'request' : 'connection'} failed: ${e.message}`);
    return e;
  }

  /** Opens a TCP connection to the machine; resolves with the socket or the error (never rejects). */
  dial(s: Slot, service: Service): Promise<net.Socket | Error> {
    const { host, port } = dialTarget(s.machine, service);
    const localAddress = this.sourceFor(s.machine);
    const started = performance.now();
    let up: net.Socket;
    try {
      up = net.connect(localAddress === undefined ? { host, port, allowHalfOpen: true, noDelay: true } : { host, port, localAddress, allowHalfOpen: true, noDelay: true });
    } catch (err) {
      return Promise.resolve(badUpstream(s.machine, err));
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const err = Object.assign(new Error(`connect to ${host}:${port} timed out after ${this.config.connect_timeout} ms`), { code: 'ETIMEDOUT' });
        up.destroy();
        resolve(err);
      }, this.config.connect_timeout);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        resolve(err);
      };
      up.once('error', onError);
      up.once('connect', () => {
        clearTimeout(timer);
        up.off('error', onError);
        appMetrics(s.machine.app).connectSeconds.observe((performance.now() - started) / 1000);
        resolve(up);
      });
    });
  }

  /** Remembers a caller connection (and what it reached) until it closes. */
  track(socket: net.Socket, info: ConnInfo): void {
    const s = socket as TrackedSocket;
    this.sockets.add(s);
    s[TRACKER] = this.sockets;
    s[INFO] = info;
    s.once('close', untrack);
  }

  /**
   * After a catalog change: the admitted connections that may no longer be served (their
   * Flycast address released, the app behind it gone or changed, the address moved to an org the
   * caller is not in). The others keep going with their target refreshed.
   */
  *lost(): Generator<[net.Socket, ConnInfo]> {
    for (const socket of this.sockets) {
      const info = (socket as TrackedSocket)[INFO];
      if (!info || info.denied) continue; // denied ones are on their way out already
      const t = findTarget(this.view, info.flycast, info.port);
      if (t && t.app.name === info.target.app.name && t.http === info.target.http && this.acl.check(info.caller, t.ip.org, this.view) === null) info.target = t;
      else yield [socket, info];
    }
  }
}

/** What a tracked caller connection reached. */
export function connInfo(socket: net.Socket): ConnInfo | undefined {
  return (socket as TrackedSocket)[INFO];
}

function countLive(tried: Set<Slot>): number {
  let n = 0;
  for (const s of tried) if (s.live && s.pos >= 0) n++;
  return n;
}

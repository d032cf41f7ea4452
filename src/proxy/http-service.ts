/**
 * HTTP services: caller connections from every Flycast listener go to one socket-level HTTP/1.1
 * forwarder (./http1/), whose machine side is the proxy's upstream layer (./upstream.ts) with a
 * keep-alive pool per machine. What the proxy adds around the engine lives here:
 *
 *  - admission: idle caps per source address and per org (./admission.ts), checked before a
 *    byte is read, kept as connections go busy and idle;
 *  - the org boundary: a denied caller's only answer is a 403 (counted and logged once), and its
 *    connection is gone within DENIED_HOLD_MS whether it asks or not;
 *  - access revocation: a tracked connection whose Flycast access was taken away is ended after
 *    its request in flight (./core.ts `lost`);
 *  - the edge: typed errors logged and counted once with their code, request counters per
 *    machine and status class, the latency histogram, the access log;
 *  - pools per machine, keyed by where it is dialed, closed when the machine leaves or moves.
 */
import type net from 'node:net';
import type { Slot } from '../balancer/index.js';
import type { Machine, Service } from '../catalog/types.js';
import { SixpnError } from '../errors.js';
import { IdleCaps, NO_ORG, type Refusal } from './admission.js';
import { dialTarget, type ConnInfo, type ProxyCore, type Tracked } from './core.js';
import { Http1Forwarder, type CallerHandle, type Connected } from './http1/index.js';
import type { UpstreamConn, UpstreamPool } from './http1/pool.js';
import { appMetrics, refusedConnections } from './metrics.js';
import type { Upstream } from './upstream.js';
import { randomBytes } from 'node:crypto';
import { HttpSteering, type Route } from './steer-http.js';
import type { RegionCodes } from './steering.js';

function isPromise<T>(x: unknown): x is Promise<T> {
  return typeof (x as { then?: unknown } | null)?.then === 'function';
}

/** Longest an outsider's connection stays open, request or not: its only answer is a 403. */
export const DENIED_HOLD_MS = 2_000;
/** Longest a connection the proxy ended is still read before it is freed (a lingering close). */
export const LINGER_MS = 1_000;
/** What a request on a connection whose access was taken away is told. */
const REVOKED = 'access to this Flycast address was removed';

/** Per caller connection: its idle-cap keys. */
interface HttpCaller extends ConnInfo {
  capSource: string;
  capOrg: string;
}

const HANDLE = Symbol('sixpn.http-handle');
type HandleSocket = net.Socket & { [HANDLE]?: { core: ProxyCore; handle: Tracked } };
/** Shared 'close' handler (no closure per connection). */
function untrack(this: HandleSocket): void {
  const h = this[HANDLE];
  if (h) h.core.untrack(h.handle);
}

export class HttpService {
  readonly forwarder: Http1Forwarder<HttpCaller, Slot, Route>;
  private readonly caps: IdleCaps;
  /** Per cap: refusals since the last log line about it, and when that was. */
  private readonly refusals = { source: { n: 0, at: 0 }, org: { n: 0, at: 0 } };
  private readonly pools = new Map<string, UpstreamPool>();
  /** The pool a machine version was last reached through, and for which service. */
  private readonly poolByMachine = new WeakMap<Machine, { service: Service; pool: UpstreamPool }>();
  private readonly idPrefix = randomBytes(4).toString('hex');
  private idCounter = 0;
  private readonly steering: HttpSteering;

  constructor(
    private readonly core: ProxyCore,
    private readonly upstream: Upstream,
    /** The region table: steering checks region codes against it. */
    regions: RegionCodes,
  ) {
    const c = core.config;
    this.caps = new IdleCaps(c.max_idle_per_source, c.max_idle_per_org);
    const steering = (this.steering = new HttpSteering(core, regions));
    const region = upstream.balancer.region;
    const log = core.log;
    this.forwarder = new Http1Forwarder<HttpCaller, Slot, Route>(
      {
        connect: (info, tried, gone, id, route) => this.connect(info, tried, gone, id, route),
        route: steering.route,
        replay: steering.replay,
        replayFailed: steering.replayFailed,
        release: (s) => upstream.release(s),
        reportSuccess: (s) => upstream.succeeded(s),
        reportFailure: (s, err, id) => upstream.failed(s, err, id),
        denied: (info, id) => core.denied(info, 'http', id),
        failed: (info, m, err, id) => void core.callerFailed('http', err, info, { request_id: id, ...(m ? { machine: m.machine.id } : {}) }),
        idle: (info, idle) => (idle ? this.caps.enter(info.capSource, info.capOrg, false) : this.caps.leave(info.capSource, info.capOrg)),
        done: (info, m, status, id, method, t0) => this.done(info, m, status, id, method, t0),
        describe: (s) => s.machine.id,
      },
      {
        region,
        requestId: () => this.requestId(region),
        log,
        deadlines: upstream.wheel,
        maxHeadSize: c.max_header_size,
        maxHeaders: c.max_headers,
        connectTries: c.connect_tries,
        headerTimeout: c.header_timeout,
        requestTimeout: c.request_timeout,
        upstreamTimeout: c.upstream_timeout,
        idleTimeout: c.idle_timeout,
        deniedHoldMs: DENIED_HOLD_MS,
        lingerMs: LINGER_MS,
      },
    );
  }

  private requestId(region: string): string {
    this.idCounter = (this.idCounter + 1) % 0x7fffffff;
    return `${this.idPrefix}${this.idCounter.toString(16).padStart(8, '0')}-${region}`;
  }

  /** A caller connection from a Flycast listener (the ACL has judged it: `info.denied`). */
  accept(socket: net.Socket, info: ConnInfo): void {
    const network = this.core.acl.callerNetwork(info.caller, this.core.view);
    const c = info as HttpCaller;
    c.capOrg = network === null ? NO_ORG : String(network);
    c.capSource = socket.remoteAddress ?? info.caller;
    const refusal = this.caps.enter(c.capSource, c.capOrg, true);
    if (refusal) return this.refuseIdle(socket, info, refusal);
    if (!info.denied) appMetrics(info.target.app.name).acceptedHttp.inc();
    const handle = this.forwarder.accept(socket, c);
    const tracked: Tracked = handle as CallerHandle<HttpCaller>;
    this.core.track(tracked);
    (socket as HandleSocket)[HANDLE] = { core: this.core, handle: tracked };
    socket.once('close', untrack);
  }

  /** Revokes a connection whose access was taken away (after its request in flight). */
  static revoke(t: Tracked): void {
    t.revoke(REVOKED);
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

  private connect(info: HttpCaller, tried: Set<Slot>, gone: () => boolean, requestId: string, route: Route | null): Connected<Slot> | SixpnError | Promise<Connected<Slot> | SixpnError> {
    // A steered request (routing headers, a replay) may go to another app of the org, under a constraint.
    const app = route === null ? info.target.app : route.app;
    const service = route === null ? info.target.service : route.service;
    const r = this.upstream.connect<UpstreamConn>({
      app: app.name,
      service,
      tried,
      gone,
      requestId,
      prefs: route === null ? null : route.steer,
      waitMs: route === null ? null : route.waitMs,
      reuse: (s) => this.pool(s, service).take(),
      adopt: (s, socket) => this.pool(s, service).adopt(socket),
      reportConnect: false,
    });
    if (route === null || !route.forced) return r;
    if (r instanceof SixpnError) return this.steering.refusal(route, r);
    if (isPromise(r)) return r.then((x) => (x instanceof SixpnError ? this.steering.refusal(route, x) : x));
    return r;
  }

  private done(info: HttpCaller, m: Slot | null, status: number, id: string, method: string, t0: number): void {
    const app = m?.machine.app ?? info.target.app.name;
    const am = appMetrics(app);
    am.requests(status, m?.machine.id ?? '').inc();
    if (m === null) return;
    am.requestSeconds.observe((performance.now() - t0) / 1000);
    if (this.core.config.access_log) {
      this.core.log.info({ request_id: id, app, machine: m.machine.id, method, status, caller: info.caller, ms: Math.round(performance.now() - t0) }, 'request');
    }
  }

  /** The keep-alive pool of a machine as it is dialed now for `service`. */
  private pool(slot: Slot, service: Service): UpstreamPool {
    // The catalog replaces a machine object whenever it changes, so this lookup needs no key
    // building; the keyed map below shares a pool across versions that dial the same place.
    const m = slot.machine;
    const known = this.poolByMachine.get(m);
    if (known && known.service === service) return known.pool;
    const key = poolKey(m, service);
    let p = this.pools.get(key);
    if (!p) this.pools.set(key, (p = this.forwarder.newPool()));
    this.poolByMachine.set(m, { service, pool: p });
    return p;
  }

  /**
   * Closes the pools of machine `id` but those in `keep`: idle connections at once, busy ones
   * when their response ends, or at once too with `abort`.
   */
  private closePools(id: string, keep: ReadonlySet<string>, abort?: Error): void {
    for (const [key, p] of this.pools) {
      if (!keep.has(key) && key.startsWith(`${id}|`)) {
        this.pools.delete(key);
        this.forwarder.closePool(p, abort);
      }
    }
  }

  /**
   * A machine left the catalog (or, for the mesh, can no longer be reached): its pools go.
   * With `abort` its busy connections are destroyed at once too; their requests fail like a
   * machine reset (a bodiless GET may be retried elsewhere).
   */
  forgetMachine(id: string, abort?: Error): void {
    this.closePools(id, NONE, abort);
  }

  /** A machine changed in the catalog: pools that no longer match where it is dialed go. */
  machineChanged(m: Machine): void {
    const app = this.core.view.apps.get(m.app);
    const keep = new Set<string>();
    for (const s of app?.services ?? []) keep.add(poolKey(m, s));
    this.closePools(m.id, keep);
  }

  get inFlight(): number {
    return this.forwarder.inFlight;
  }

  drain(): void {
    this.forwarder.drain();
  }

  close(): void {
    this.forwarder.close();
    this.pools.clear();
  }
}

const NONE = new Set<string>();

function poolKey(m: Machine, service: Service): string {
  const { host, port } = dialTarget(m, service);
  return `${m.id}|${host}|${port}`;
}

/**
 * What the TCP and HTTP paths of the proxy share besides the upstream layer (./upstream.ts): the
 * target lookup (Flycast address + port -> app and service), the ACL and the denial path, the
 * edge where a caller's failure is logged and counted once, and the bookkeeping that drain and
 * catalog changes need (live caller connections with what they reached).
 */
import type { Logger } from 'pino';
import type { App, FlycastIp, Machine, Service, ServicePort } from '../catalog/types.js';
import type { CatalogView } from '../catalog/view.js';
import { SixpnError } from '../errors.js';
import type { ProxyConfig } from './config.js';
import { CallerAcl } from './acl.js';
import { callerErrors, deniedByOrg, deniedTotal } from './metrics.js';

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

/** An open caller connection the proxy may have to end (access taken away, shutdown). */
export interface Tracked {
  readonly ctx: ConnInfo;
  /** Access to what it reached was taken away: HTTP ends after the requests in flight, TCP at once. */
  revoke(reason: string): void;
  destroy(): void;
}

export class ProxyCore {
  readonly acl: CallerAcl;
  /** Caller connections alive (for access revocation, drain and close). */
  readonly tracked = new Set<Tracked>();
  /** TCP connections in flight (HTTP requests are counted by the forwarder). */
  tcpInFlight = 0;
  draining = false;
  /**
   * Targets found, by Flycast address and port: one object shared by every connection to the
   * same service instead of one per connection. Only found targets are kept (a port scan leaves
   * nothing here); forgotten whenever a Flycast address, app or org changes (`forgetTargets`).
   */
  private readonly targets = new Map<string, Map<number, Target>>();

  constructor(
    readonly config: ProxyConfig,
    readonly view: CatalogView,
    readonly log: Logger,
  ) {
    this.acl = new CallerAcl(config.allow);
  }

  /** The service behind a Flycast address and port, or null (see `targets`). */
  target(flycast: string, port: number): Target | null {
    let byPort = this.targets.get(flycast);
    const known = byPort?.get(port);
    if (known !== undefined) return known;
    const t = findTarget(this.view, flycast, port);
    if (t === null) return null;
    if (byPort === undefined) this.targets.set(flycast, (byPort = new Map()));
    byPort.set(port, t);
    return t;
  }

  /** The catalog changed what a Flycast address leads to. */
  forgetTargets(): void {
    this.targets.clear();
  }

  /**
   * A caller outside the org that holds the address: counted (by protocol and by org pair) and
   * logged once here; the caller of this maps it to the wire (HTTP 403, TCP close).
   */
  denied(info: ConnInfo, proto: 'tcp' | 'http', requestId?: string): void {
    deniedTotal.inc({ proto });
    const callerOrg = this.view.orgByNetworkId(this.acl.callerNetwork(info.caller, this.view))?.name ?? '';
    deniedByOrg.inc({ org: info.target.ip.org, caller_org: callerOrg });
    this.log.warn(
      { caller: info.caller, flycast: info.flycast, port: info.port, app: info.target.app.name, ...(requestId ? { request_id: requestId } : {}), reason: info.denied },
      'caller denied',
    );
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

  track(t: Tracked): void {
    this.tracked.add(t);
  }

  untrack(t: Tracked): void {
    this.tracked.delete(t);
  }

  /**
   * After a catalog change: the admitted connections that may no longer be served (their
   * Flycast address released, the app behind it gone or changed, the address moved to an org the
   * caller is not in). The others keep going with their target refreshed.
   */
  *lost(): Generator<Tracked> {
    this.forgetTargets();
    for (const t of this.tracked) {
      const info = t.ctx;
      if (info.denied) continue; // denied ones are on their way out already
      const tg = this.target(info.flycast, info.port);
      if (tg && tg.app.name === info.target.app.name && tg.http === info.target.http && this.acl.check(info.caller, tg.ip.org, this.view) === null) info.target = tg;
      else yield t;
    }
  }
}

/**
 * The proxy's listening sockets, kept in step with the catalog: which (address, port) pairs
 * to listen on is recomputed after every Flycast or app change and the difference applied
 * (new sockets opened, released ones closed; their open connections keep running).
 *
 *   routed       one socket per service port on `::`; the Flycast address is the connection's
 *                local (destination) address. Needs the Flycast range routed to this host
 *                (`ip -6 route add local fdaa::/16 dev lo`).
 *   per-address  one socket per Flycast address and port (the address must be bindable: local,
 *                or `net.ipv6.ip_nonlocal_bind=1` with the range routed here).
 *   dev          fixed loopback ports mapped to a Flycast address and port, for laptops; callers
 *                arrive from loopback, so the ACL sees the mapping's `as_caller` (or refuses).
 *
 * A socket that cannot be opened (its port taken by another program) is logged once, counted in
 * sixpn_proxy_listeners_failed and tried again every RETRY_MS until it opens: the node keeps
 * serving every other address meanwhile, and heals by itself when the port is free again.
 */
import net from 'node:net';
import { normalizeAddress } from '../addressing/index.js';
import type { ConnInfo, ProxyCore } from './core.js';
import { findTarget } from './core.js';
import type { HttpService } from './http-service.js';
import { listenersFailed } from './metrics.js';
import type { TcpService } from './tcp.js';

interface Spec {
  key: string;
  host: string;
  port: number;
  /** Fixed Flycast address and port (per-address, dev); null when routed. */
  flycast: string | null;
  flycastPort: number;
  /** Dev mapping: the caller the ACL sees; null refuses everyone. */
  asCaller?: string | null;
}

interface Listening {
  spec: Spec;
  server: net.Server;
}

function destroyOnError(this: net.Socket): void {
  this.destroy();
}

const bracket = (host: string): string => (host.includes(':') ? `[${host}]` : host);

/** How often listeners that failed to open are tried again. */
const RETRY_MS = 5_000;

export class Listeners {
  private readonly open = new Map<string, Listening>();
  /** Keys that failed to bind, so the error is logged once, not on every catalog change. */
  private readonly failed = new Set<string>();
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly core: ProxyCore,
    private readonly http: HttpService,
    private readonly tcp: TcpService,
  ) {}

  private desired(): Map<string, Spec> {
    const { config, view } = this.core;
    const want = new Map<string, Spec>();
    if (config.mode === 'dev') {
      for (const m of config.dev_mappings) {
        const flycast = normalizeAddress(m.flycast) ?? m.flycast;
        const key = `${m.listen_host}|${m.listen_port}`;
        want.set(key, { key, host: m.listen_host, port: m.listen_port, flycast, flycastPort: m.port, asCaller: m.as_caller ?? null });
      }
      return want;
    }
    for (const ip of view.flycast.values()) {
      const app = view.apps.get(ip.app);
      if (!app) continue;
      for (const s of app.services) {
        for (const p of s.ports) {
          if (config.mode === 'routed') {
            const key = `::|${p.port}`;
            if (!want.has(key)) want.set(key, { key, host: '::', port: p.port, flycast: null, flycastPort: p.port });
          } else {
            const key = `${ip.address}|${p.port}`;
            want.set(key, { key, host: ip.address, port: p.port, flycast: ip.address, flycastPort: p.port });
          }
        }
      }
    }
    return want;
  }

  /** Applies the catalog's current set of listeners; concurrent calls coalesce. */
  reconcile(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.applyOnce();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = null;
      listenersFailed.set(this.failed.size);
      if (this.failed.size > 0 && !this.stopped && !this.retry) {
        this.retry = setTimeout(() => {
          this.retry = null;
          void this.reconcile();
        }, RETRY_MS);
        this.retry.unref();
      }
    });
    return this.running;
  }

  private async applyOnce(): Promise<void> {
    if (this.stopped) return;
    const want = this.desired();
    for (const [key, l] of this.open) {
      if (want.has(key)) continue;
      this.open.delete(key);
      l.server.close();
      this.core.log.info({ listen: `${bracket(l.spec.host)}:${l.spec.port}` }, 'flycast listener closed');
    }
    for (const key of this.failed) if (!want.has(key)) this.failed.delete(key);
    await Promise.all([...want.values()].filter((s) => !this.open.has(s.key)).map((s) => this.listen(s)));
  }

  private listen(spec: Spec): Promise<void> {
    return new Promise((resolve) => {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true }, (socket) => this.onConnection(spec, socket));
      const onError = (err: NodeJS.ErrnoException): void => {
        if (!this.failed.has(spec.key)) {
          this.failed.add(spec.key);
          this.core.log.error({ listen: `${bracket(spec.host)}:${spec.port}`, code: err.code, err: err.message }, `cannot listen on flycast address; its callers are not served until it opens (tried again every ${RETRY_MS / 1000} s)`);
        }
        resolve();
      };
      server.once('error', onError);
      server.listen({ host: spec.host, port: spec.port, ipv6Only: spec.host === '::' ? false : undefined, backlog: 4096 }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.core.log.error({ err }, 'flycast listener error'));
        if (this.stopped) {
          server.close();
          return resolve();
        }
        this.failed.delete(spec.key);
        this.open.set(spec.key, { spec, server });
        if (spec.asCaller !== undefined) {
          this.core.log.warn(
            { listen: `${bracket(spec.host)}:${spec.port}`, flycast: spec.flycast, port: spec.flycastPort, as_caller: spec.asCaller },
            `DEVELOPMENT MAPPING: ${bracket(spec.host)}:${spec.port} -> [${spec.flycast}]:${spec.flycastPort}; ` +
              (spec.asCaller ? `every caller is treated as ${spec.asCaller}` : 'no as_caller set, every caller is refused') +
              '. Do not use in production: route the Flycast range instead.',
          );
        } else {
          this.core.log.info({ listen: `${bracket(spec.host)}:${spec.port}` }, 'flycast listener open');
        }
        resolve();
      });
    });
  }

  private onConnection(spec: Spec, socket: net.Socket): void {
    const core = this.core;
    if (core.draining) {
      socket.destroy();
      return;
    }
    socket.on('error', destroyOnError);
    // Sockets handed over by node:cluster (workers) do not get the server's noDelay; set it here.
    socket.setNoDelay(true);
    // Routed mode: the kernel writes the local address in canonical form already, so the view's
    // own key usually matches as it is; normalizing is the fallback.
    const local = spec.flycast == null ? (socket.localAddress ?? '') : '';
    const flycast = spec.flycast ?? (core.view.flycast.has(local) ? local : normalizeAddress(local));
    const port = spec.flycast ? spec.flycastPort : (socket.localPort ?? 0);
    const target = flycast ? core.target(flycast, port) : null;
    if (!flycast || !target) {
      core.log.info({ local: socket.localAddress, port, caller: socket.remoteAddress }, 'connection to an address or port with no Flycast service; closed');
      socket.destroy();
      return;
    }
    const caller = spec.asCaller !== undefined ? spec.asCaller : (socket.remoteAddress ?? null);
    const denied = caller === null ? 'development mapping without as_caller: callers have no 6PN identity' : core.acl.check(caller, target.ip.org, core.view);
    const info: ConnInfo = { flycast, port, caller: caller ?? socket.remoteAddress ?? '?', callerPort: socket.remotePort ?? 0, denied, target };
    // No exception on the data path may end the process: whatever escapes ends this caller only.
    try {
      if (target.http) this.http.accept(socket, info);
      else this.tcp.accept(socket, info);
    } catch (err) {
      core.log.error({ err, caller: info.caller, flycast: info.flycast }, `${target.http ? 'http' : 'tcp'} connection failed unexpectedly`);
      socket.destroy();
    }
  }

  /** Banner lines: what is served where. */
  describe(): string[] {
    const { config, view } = this.core;
    const lines: string[] = [];
    for (const l of this.open.values()) {
      const s = l.spec;
      if (s.flycast) {
        const t = findTarget(view, s.flycast, s.flycastPort);
        const what = t ? `${t.app.name} (${t.http ? 'http' : 'tcp'})` : 'nothing yet';
        const dev = s.asCaller !== undefined ? ` [development mapping to [${s.flycast}]:${s.flycastPort}]` : '';
        lines.push(`proxy: ${bracket(s.host)}:${s.port} -> ${what}${dev}`);
      } else {
        for (const ip of view.flycast.values()) {
          const t = findTarget(view, ip.address, s.port);
          if (t) lines.push(`proxy: [${ip.address}]:${s.port} -> ${t.app.name} (${t.http ? 'http' : 'tcp'}) via [::]:${s.port} (routed)`);
        }
      }
    }
    if (lines.length === 0) lines.push(`proxy: no Flycast address to serve yet (mode ${config.mode})`);
    return lines.sort();
  }

  /** Stops accepting (listeners closed); connections already open keep running. */
  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    for (const l of this.open.values()) l.server.close();
    this.open.clear();
  }
}

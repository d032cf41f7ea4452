/**
 * The Flycast proxy role: serves every Flycast address in the catalog on every service port
 * of the app behind it, admits callers of the owning org only, and forwards each connection
 * (TCP) or request (HTTP) to the nearest machine with room (src/balancer). Listeners follow
 * the catalog live; SIGTERM drains (stop accepting, let work in flight finish, then close).
 */
import { startAutostart, type Autostart } from '../autostart/index.js';
import os from 'node:os';
import { attachToView, Balancer, type Ejection } from '../balancer/index.js';
import { HostLiveness } from '../catalog/liveness.js';
import { localHostName, sourcePicker } from '../catalog/source.js';
import type { CatalogChange } from '../catalog/types.js';
import type { NodeContext, RunningRole } from '../role.js';
import { ProxyCore } from './core.js';
import { HttpService } from './http-service.js';
import { Deadlines } from './http1/deadlines.js';
import { Listeners } from './listeners.js';
import { holdYoungGeneration, startMemoryGuard } from './memory.js';
import { appMetrics } from './metrics.js';
import { TcpService } from './tcp.js';
import { Upstream, type MachineStarter, type SourcePicker } from './upstream.js';

export { findTarget, dialTarget } from './core.js';
export type { MachineStarter, SourcePicker } from './upstream.js';

/** How often the proxy's one timer wheel turns: an eighth of the shortest timeout it serves, 10 to 250 ms. */
export function wheelTickMs(c: { header_timeout: number; upstream_timeout: number; connect_timeout: number }): number {
  const shortest = Math.min(c.header_timeout, c.upstream_timeout, c.connect_timeout, 1_000);
  return Math.max(10, Math.min(250, Math.floor(shortest / 8)));
}

/** What the roles around the proxy may plug in (each optional). */
export interface ProxySeams {
  /** The mesh: the local address to dial a machine from (every connect, TCP and HTTP). */
  sourceFor?: SourcePicker;
  /** Autostart: starts machines when callers find none with room. */
  autostart?: MachineStarter | null;
  /** Set in a proxy worker (./worker.ts): which of how many; its limits are its share. */
  share?: { index: number; count: number };
  /** Set in a proxy worker: called with its ejections whenever a machine is ejected or taken back early (the primary's event feed shows them). */
  onEjections?: (list: Ejection[]) => void;
}

/** `[proxy] workers`, 0 meaning one per core. */
export function workerCount(workers: number): number {
  return workers === 0 ? os.availableParallelism() : workers;
}

/** The proxy's role handle: the control role reads passive ejections from it for the event feed. */
export interface ProxyRole extends RunningRole {
  /** Machines this node's passive ejection keeps out right now (with workers: any worker's, once each). */
  ejections(): Ejection[];
  /**
   * Seam for the mesh: machine `id` can no longer be reached (its host left): its pooled HTTP
   * connections are closed, and with `abort` the busy ones too, at once.
   */
  forgetMachine(id: string, abort?: Error): void;
}

export async function startProxyRole(ctx: NodeContext, seams: ProxySeams = {}): Promise<ProxyRole> {
  const cfg = ctx.config.proxy;
  const log = ctx.log.child({ module: 'proxy' });
  if (!cfg.enabled) {
    log.info('proxy disabled by config');
    return { name: 'proxy', describe: () => ['proxy: disabled'], ejections: () => [], forgetMachine: () => undefined, close: async () => undefined };
  }
  const workers = workerCount(cfg.workers);
  if (workers > 1 && seams.share === undefined) {
    // The data path runs in worker processes; this one relays the catalog to them, and the
    // seams below to and from them (passive ejections and the HTTP pools are per worker).
    // node:cluster (with child_process and dgram under it) only where workers run.
    const { startProxyWorkers } = await import('./workers.js');
    const w = await startProxyWorkers(ctx, workers);
    return { name: 'proxy', describe: () => w.describe(), ejections: () => w.ejections(), forgetMachine: (id, abort) => w.forgetMachine(id, abort), drain: (d) => w.drain(d), close: () => w.close() };
  }
  const hc = ctx.config.health;
  const balancer = new Balancer({
    region: ctx.config.node.region,
    regions: ctx.regions,
    slowStartMs: hc.slow_start,
    passive: {
      consecutiveFailures: hc.passive.consecutive_failures,
      baseEjectionMs: hc.passive.base_ejection,
      maxEjectionMs: hc.passive.max_ejection,
      maxEjectionPercent: hc.passive.max_ejection_percent,
    },
  });
  const detach = attachToView(balancer, ctx.view);
  const core = new ProxyCore(cfg, ctx.view, log);
  const wheel = new Deadlines(wheelTickMs(cfg));
  const upstream = new Upstream(cfg, balancer, log, wheel, seams.sourceFor ?? sourcePicker(ctx.view, localHostName(ctx.config)));
  // Autostart (src/autostart): the node's own waker and autostop unless a seam brings one; it
  // reads the balancer's counters for idleness, so it is made here, beside the balancer.
  const rank = ctx.regions.rankFrom(ctx.config.node.region);
  const own: Autostart | null =
    seams.autostart === undefined && ctx.config.autostart.enabled
      ? startAutostart({ config: ctx.config.autostart, store: ctx.store, view: ctx.view, balancer, rank: (r) => rank.get(r) ?? Number.MAX_SAFE_INTEGER, connectTimeoutMs: cfg.connect_timeout, dialTo: (m, service) => { const o = upstream.dialOptions(m, service); const localAddress = upstream.sourceFor(m); return localAddress === undefined ? o : { ...o, localAddress }; }, nodeName: ctx.config.node.name, log })
      : null;
  upstream.autostart = seams.autostart ?? own;
  upstream.share = seams.share ?? null;
  const onEjections = seams.onEjections;
  if (onEjections) balancer.onEjections = () => onEjections(balancer.ejectedMachines());
  const http = new HttpService(core, upstream, ctx.regions);
  const tcp = new TcpService(core, upstream);
  const listeners = new Listeners(core, http, tcp);
  holdYoungGeneration();
  const stopGuard = startMemoryGuard(cfg.gc_after_bytes, 20, () => http.inFlight > 0);

  // Machines of a host that stopped heartbeating are no candidates until it beats again.
  const liveness = new HostLiveness(ctx.view, ctx.config.host.heartbeat_timeout);
  for (const host of liveness.unreachable()) balancer.setHostReachable(host, false);
  liveness.on('change', (host, reachable) => {
    balancer.setHostReachable(host, reachable);
    if (reachable) return void log.info({ host }, 'host heartbeats again: its machines take traffic');
    log.warn({ host, timeout_ms: liveness.timeoutMs }, 'host stopped heartbeating: its machines take no traffic');
    // Kept-alive connections to a silent host would hold requests until upstream_timeout:
    // reset them, so that what waits on them is retried elsewhere (bodiless GETs) or fails now.
    const reset = Object.assign(new Error(`host ${host} stopped heartbeating`), { code: 'ECONNRESET' });
    for (const m of ctx.view.machinesOnHost(host)) http.forgetMachine(m.id, reset);
  });

  // Access taken away (an address released, an exposure removed, an app deleted) ends the
  // connections that used it, not only new ones: HTTP once their requests end, TCP at once.
  const revalidate = (): void => {
    let n = 0;
    for (const t of core.lost()) {
      n++;
      HttpService.revoke(t);
    }
    if (n > 0) log.info({ connections: n }, 'closing connections whose Flycast access was removed');
  };
  const refresh = (): void => {
    listeners.reconcile().catch((err: unknown) => log.error({ err }, 'updating flycast listeners failed'));
    revalidate();
  };
  const onChange = (c: CatalogChange): void => {
    if (c.kind === 'flycast' || c.kind === 'app' || c.kind === 'org') refresh();
    else if (c.kind === 'machine' && c.op === 'del') {
      http.forgetMachine(c.key);
      const app = machineApps.get(c.key);
      if (app !== undefined) appMetrics(app).forgetMachine(c.key);
      machineApps.delete(c.key);
    } else if (c.kind === 'machine' && c.op === 'put') {
      machineApps.set(c.key, c.value.app);
      // Pools that no longer match where the machine is dialed go (idle ones at once).
      http.machineChanged(c.value);
    }
  };
  // Which app a machine belonged to, for dropping its metric series once it is deleted.
  const machineApps = new Map([...ctx.view.machines.values()].map((m) => [m.id, m.app]));
  ctx.view.on('change', onChange);
  ctx.view.on('reset', refresh);
  await listeners.reconcile();
  if (cfg.mode === 'routed') log.info('routed mode: the Flycast range must be routed to this host (ip -6 route add local fdaa::/16 dev lo)');

  let closed = false;
  const stopAccepting = (): void => {
    ctx.view.off('change', onChange);
    ctx.view.off('reset', refresh);
    core.draining = true;
    listeners.stop();
    http.drain();
  };
  const inFlight = (): number => core.tcpInFlight + http.inFlight;
  return {
    name: 'proxy',
    describe: () => [...listeners.describe(), ...(own ? [own.describe()] : [])],
    ejections: () => balancer.ejectedMachines(),
    forgetMachine: (id, abort) => http.forgetMachine(id, abort),
    async drain(deadline: number) {
      stopAccepting();
      log.info({ in_flight: inFlight(), deadline: new Date(deadline).toISOString() }, 'proxy draining');
      while (inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      if (inFlight() > 0) log.warn({ in_flight: inFlight() }, 'drain deadline passed; closing what is left');
      else log.info('proxy drained');
    },
    async close() {
      if (closed) return;
      closed = true;
      stopAccepting();
      await own?.close();
      detach();
      liveness.close();
      stopGuard();
      for (const t of [...core.tracked]) t.destroy();
      http.close();
      wheel.close();
    },
  };
}

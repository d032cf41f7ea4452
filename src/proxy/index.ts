/**
 * The Flycast proxy role: serves every Flycast address in the catalog on every service port
 * of the app behind it, admits callers of the owning org only, and forwards each connection
 * (TCP) or request (HTTP) to the nearest machine with room (src/balancer). Listeners follow
 * the catalog live; SIGTERM drains (stop accepting, let work in flight finish, then close).
 */
import { attachToView, Balancer } from '../balancer/index.js';
import { HostLiveness } from '../catalog/liveness.js';
import { localHostName, sourcePicker } from '../catalog/source.js';
import type { CatalogChange } from '../catalog/types.js';
import type { NodeContext, RunningRole } from '../role.js';
import { ProxyCore } from './core.js';
import { HttpProxy } from './http.js';
import { Listeners } from './listeners.js';
import { startMemoryGuard } from './memory.js';
import { appMetrics } from './metrics.js';
import { closeTcp } from './tcp.js';

export { findTarget, dialTarget } from './core.js';

/** The proxy's role handle: the control role reads passive ejections from it for the event feed. */
export interface ProxyRole extends RunningRole {
  /** Machines this node's passive ejection keeps out right now. */
  ejections(): { app: string; machine: string; until: number }[];
}

export async function startProxyRole(ctx: NodeContext): Promise<ProxyRole> {
  const cfg = ctx.config.proxy;
  const log = ctx.log.child({ module: 'proxy' });
  if (!cfg.enabled) {
    log.info('proxy disabled by config');
    return { name: 'proxy', describe: () => ['proxy: disabled'], ejections: () => [], close: async () => undefined };
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
  const stopGuard = startMemoryGuard(cfg.gc_after_bytes);
  const core = new ProxyCore(cfg, ctx.view, balancer, log, sourcePicker(ctx.view, localHostName(ctx.config)));
  const http = new HttpProxy(core);
  const listeners = new Listeners(core, http);

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
    for (const [socket, info] of core.lost()) {
      n++;
      if (info.target.http) http.revoke(socket);
      else closeTcp(socket);
    }
    if (n > 0) log.info({ connections: n }, 'closing connections whose Flycast access was removed');
  };
  const refresh = (): void => {
    listeners.reconcile().catch((err: unknown) => log.error({ err }, 'updating flycast listeners failed'));
    revalidate();
  };
  const onChange = (c: CatalogChange): void => {
    if (c.kind === 'flycast' || c.kind === 'app' || c.kind === 'org') refresh();
    // Pools are keyed by machine and origin, so a changed upstream gets a fresh pool by itself.
    else if (c.kind === 'machine' && c.op === 'del') {
      http.forgetMachine(c.key);
      const app = machineApps.get(c.key);
      if (app !== undefined) appMetrics(app).forgetMachine(c.key);
      machineApps.delete(c.key);
    } else if (c.kind === 'machine' && c.op === 'put') machineApps.set(c.key, c.value.app);
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
    http.server.closeIdleConnections();
  };
  return {
    name: 'proxy',
    describe: () => listeners.describe(),
    ejections: () => balancer.ejectedMachines(),
    async drain(deadline: number) {
      stopAccepting();
      log.info({ in_flight: core.inFlight, deadline: new Date(deadline).toISOString() }, 'proxy draining');
      while (core.inFlight > 0 && Date.now() < deadline) {
        http.server.closeIdleConnections();
        await new Promise((r) => setTimeout(r, 25));
      }
      if (core.inFlight > 0) log.warn({ in_flight: core.inFlight }, 'drain deadline passed; closing what is left');
      else log.info('proxy drained');
    },
    async close() {
      if (closed) return;
      closed = true;
      stopAccepting();
      detach();
      liveness.close();
      stopGuard();
      for (const s of core.sockets) s.destroy();
      await http.close();
    },
  };
}

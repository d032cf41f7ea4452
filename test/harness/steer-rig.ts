/**
 * A Flycast HTTP proxy on the HTTP/1 engine with steering, assembled in the test process the
 * way src/proxy/http1/README.md wires it (ProxyCore + Balancer on a real catalog view, the
 * forwarder's hooks, HttpSteering), listening on real Flycast addresses inside the test's
 * network namespace. Machines are real processes (test/harness/machines.ts); callers dial from
 * 6PN source addresses. Every log line is kept for assertions.
 */
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { attachToView, Balancer, type Slot } from '../../src/balancer/index.js';
import { MemoryStore } from '../../src/catalog/memory.js';
import { seedCatalog, type Seed } from '../../src/catalog/seed.js';
import type { Machine, Service } from '../../src/catalog/types.js';
import { CatalogView } from '../../src/catalog/view.js';
import { proxyConfigSchema } from '../../src/proxy/config.js';
import { findTarget, ProxyCore, type ConnInfo } from '../../src/proxy/core.js';
import { Http1Forwarder, type UpstreamPool } from '../../src/proxy/http1/index.js';
import { appMetrics } from '../../src/proxy/metrics.js';
import { HttpSteering, type Route } from '../../src/proxy/steer-http.js';
import { loadRegionTable } from '../../src/regions/load.js';
import { ROOT } from './env.js';

export interface SteeringRig {
  view: CatalogView;
  balancer: Balancer;
  logs: Record<string, unknown>[];
  /** Flycast address of an app (the first one allocated). */
  flycast(app: string): string;
  close(): Promise<void>;
}

let ids = 0;

export async function startSteeringRig(seed: Seed, opts: { region: string; proxy?: Record<string, unknown> }): Promise<SteeringRig> {
  const regions = loadRegionTable(`${ROOT}/config/regions.csv`, {});
  const store = await MemoryStore.open({ regions: regions.codes });
  await seedCatalog(store, seed, 0x10);
  const view = await CatalogView.open(store);
  const balancer = new Balancer({ region: opts.region, regions, slowStartMs: 0, passive: { consecutiveFailures: 3, baseEjectionMs: 1_000, maxEjectionMs: 10_000, maxEjectionPercent: 50 } });
  const detach = attachToView(balancer, view);
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log = pino({ level: 'info' }, sink);
  const config = proxyConfigSchema.parse({ queue_timeout: 300, connect_timeout: 1_000, ...opts.proxy });
  const core = new ProxyCore(config, view, balancer, log);
  const steering = new HttpSteering(core, regions);
  const pools = new Map<string, UpstreamPool>();
  const poolOf = (m: Machine, service: Service): UpstreamPool => {
    const key = `${m.id}/${m.upstream ?? ''}/${service.internal_port}`;
    let p = pools.get(key);
    if (!p) pools.set(key, (p = forwarder.newPool()));
    return p;
  };
  const forwarder: Http1Forwarder<ConnInfo, Slot, Route> = new Http1Forwarder<ConnInfo, Slot, Route>(
    {
      pick: (info, tried, gone, route) => steering.pick(info, tried as Set<Slot>, gone, route),
      pool: (slot, info, route) => poolOf(slot.machine, route?.service ?? info.target.service),
      dial: (slot, info, route) => core.dial(slot, route?.service ?? info.target.service),
      release: (slot) => core.release(slot),
      reportSuccess: (slot) => balancer.reportSuccess(slot),
      // Not core.connectFailed: that also releases, and the forwarder releases every pick itself.
      reportFailure: (slot, err, id) => {
        appMetrics(slot.machine.app).connectErrors.inc();
        const ms = balancer.reportFailure(slot);
        log.warn({ machine: slot.machine.id, err: err.message, request_id: id, ejected_ms: ms }, 'machine connect failed');
      },
      steer: steering.steer,
      replay: steering.replay,
      replayFailed: steering.replayFailed,
      done: (info, slot, status) => appMetrics(info.target.app.name).requests(status, slot?.machine.id).inc(),
      describe: (slot) => slot.machine.id,
    },
    { region: opts.region, requestId: () => `rig${(++ids).toString(16).padStart(8, '0')}-${opts.region}`, log, connectTries: config.connect_tries },
  );
  const servers: net.Server[] = [];
  for (const ip of view.flycast.values()) {
    const app = view.apps.get(ip.app)!;
    for (const service of app.services) {
      for (const p of service.ports) {
        const server = net.createServer({ allowHalfOpen: true }, (socket) => {
          const target = findTarget(view, ip.address, p.port)!;
          const caller = socket.remoteAddress ?? '';
          const info: ConnInfo = { flycast: ip.address, port: p.port, caller, callerPort: socket.remotePort ?? 0, denied: core.acl.check(caller, target.ip.org, view), target };
          forwarder.accept(socket, info);
        });
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: ip.address, port: p.port }, resolve);
        });
        servers.push(server);
      }
    }
  }
  return {
    view,
    balancer,
    logs,
    flycast(app) {
      for (const ip of view.flycast.values()) if (ip.app === app) return ip.address;
      throw new Error(`no Flycast address for ${app}`);
    },
    async close() {
      for (const s of servers) s.close();
      forwarder.close();
      detach();
      view.close();
      await store.close();
    },
  };
}

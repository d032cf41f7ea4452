import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/catalog/memory.js';
import type { CatalogStore } from '../../../src/catalog/store.js';
import type { AppInput, Machine, Service } from '../../../src/catalog/types.js';
import { CatalogView } from '../../../src/catalog/view.js';
import { StoreUnavailableError } from '../../../src/errors.js';
import { HealthChecker } from '../../../src/health/checker.js';
import { rootLogger } from '../../../src/observe/log.js';
import { registry } from '../../../src/observe/metrics.js';
import { sleep, waitFor } from '../../harness/net.js';

/** A machine process stand-in: a real HTTP server whose answer the test changes. */
class Backend {
  status = 200;
  delayMs = 0;
  hits = 0;
  inFlight = 0;
  maxInFlight = 0;
  hitTimes: number[] = [];
  readonly server = http.createServer((_req, res) => {
    this.hits++;
    this.hitTimes.push(Date.now());
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    setTimeout(() => {
      this.inFlight--;
      res.writeHead(this.status).end();
    }, this.delayMs);
  });
  port = 0;
  async listen(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const svc = (checks: Partial<Service> = {}): Service => ({
  protocol: 'http',
  internal_port: 8080,
  ports: [{ port: 80, handlers: ['http'] }],
  concurrency: { type: 'requests', soft_limit: 20, hard_limit: 25 },
  tcp_checks: [],
  http_checks: [],
  ...checks,
});
const httpCheck = (o: Record<string, unknown> = {}) => ({
  interval: 60,
  timeout: 200,
  grace_period: 0,
  method: 'GET',
  path: '/health',
  protocol: 'http' as const,
  headers: {},
  tls_skip_verify: false,
  ...o,
});

interface World {
  store: MemoryStore;
  view: CatalogView;
  checker: HealthChecker;
  /** Health statuses written to the store, per machine, in order. */
  writes: Map<string, string[]>;
  machine(id: string, port: number, opts?: { region?: string; state?: 'started' | 'stopped' }): Promise<Machine>;
  health(id: string): Machine['health'];
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function world(app: AppInput, opts: { fall?: number; rise?: number; maxConcurrent?: number; regions?: string[]; store?: (s: MemoryStore) => CatalogStore } = {}): Promise<World> {
  const store = await MemoryStore.open({ regions: ['ewr', 'iad', 'lhr'] });
  await store.createOrg({ name: 'acme', network_id: 0x18 });
  await store.createApp(app);
  const view = await CatalogView.open(store);
  const writes = new Map<string, string[]>();
  store.subscribe((e) => {
    if (e.kind === 'machine' && e.op === 'put' && e.value.health.reason !== 'no check has run yet') {
      const list = writes.get(e.key) ?? [];
      if (list.at(-1) !== e.value.health.status) list.push(e.value.health.status);
      writes.set(e.key, list);
    }
  });
  const regions = opts.regions ?? ['ewr', 'iad', 'lhr'];
  const checker = new HealthChecker({
    store: opts.store ? opts.store(store) : store,
    view,
    log: rootLogger().child({ module: 'health' }),
    fall: opts.fall ?? 2,
    rise: opts.rise ?? 2,
    maxConcurrent: opts.maxConcurrent ?? 64,
    inScope: (r) => regions.includes(r),
    retryWriteMs: 50,
  });
  cleanups.push(async () => {
    checker.close();
    view.close();
    await store.close();
  });
  return {
    store,
    view,
    checker,
    writes,
    machine: (id, port, o = {}) => store.registerMachine({ id, app: app.name, region: o.region ?? 'ewr', upstream: `127.0.0.1:${port}`, state: o.state ?? 'started' }, { hostId: 0x0a7b007d }),
    health: (id) => view.machines.get(id)!.health,
  };
}

async function backend(): Promise<Backend> {
  const b = await new Backend().listen();
  cleanups.push(() => b.close());
  return b;
}

describe('HealthChecker', () => {
  it('writes healthy after rise passes, unhealthy after fall failures, and nothing in between', async () => {
    const b = await backend();
    const w = await world({ name: 'web', org: 'acme', services: [svc({ http_checks: [httpCheck()] })] });
    await w.machine('aaaaaaaa0001', b.port);
    w.checker.start();
    await waitFor(() => w.health('aaaaaaaa0001').status === 'healthy', { what: 'healthy' });
    expect(w.health('aaaaaaaa0001').reason).toBe('http 200');
    expect(b.hits).toBeGreaterThanOrEqual(2);
    const changedAt = w.health('aaaaaaaa0001').changed_at;

    b.status = 503;
    const failedFrom = b.hits;
    await waitFor(() => w.health('aaaaaaaa0001').status === 'unhealthy', { what: 'unhealthy' });
    expect(w.health('aaaaaaaa0001')).toMatchObject({ status: 'unhealthy', reason: 'http 503' });
    expect(w.health('aaaaaaaa0001').changed_at).toBeGreaterThan(changedAt);
    expect(b.hits - failedFrom).toBeGreaterThanOrEqual(2); // fall = 2

    b.status = 302;
    await waitFor(() => w.health('aaaaaaaa0001').status === 'healthy', { what: 'healthy again' });
    await sleep(300); // several more passing checks: no more writes
    expect(w.writes.get('aaaaaaaa0001')).toEqual(['healthy', 'unhealthy', 'healthy']);
    const text = await registry.getSingleMetric('sixpn_health_machine_healthy')!.get();
    expect(text.values.find((v) => v.labels.machine === 'aaaaaaaa0001')?.value).toBe(1);
  });

  it('leaves machines without checks, stopped machines and other regions alone', async () => {
    const b = await backend();
    const w = await world({ name: 'web', org: 'acme', services: [svc({ http_checks: [httpCheck()] })] }, { regions: ['ewr'] });
    await w.store.createApp({ name: 'bare', org: 'acme', services: [svc()] });
    await w.store.registerMachine({ id: 'bbbbbbbb0001', app: 'bare', region: 'ewr', upstream: `127.0.0.1:${b.port}` }, { hostId: 0x0a7b007d });
    await w.machine('a2aaaaaa0002', b.port, { state: 'stopped' });
    await w.machine('a3aaaaaa0003', b.port, { region: 'lhr' });
    w.checker.start();
    await sleep(300);
    expect(b.hits).toBe(0);
    expect(w.checker.stats().machines).toBe(0);
    for (const id of ['bbbbbbbb0001', 'a2aaaaaa0002', 'a3aaaaaa0003']) expect(w.health(id).status).toBe('unknown');
  });

  it('follows the catalog: started, stopped, removed machines and changed services', async () => {
    const b = await backend();
    const w = await world({ name: 'web', org: 'acme', services: [svc()] });
    w.checker.start();
    await w.machine('a4aaaaaa0004', b.port, { state: 'stopped' });
    expect(w.checker.stats().machines).toBe(0);
    // The app gains a check: the (stopped) machine still is not checked.
    await w.store.updateAppServices('web', [svc({ http_checks: [httpCheck()] })]);
    expect(w.checker.stats().machines).toBe(0);
    await w.store.updateMachine('a4aaaaaa0004', { state: 'started' });
    expect(w.checker.stats()).toMatchObject({ machines: 1, checks: 1 });
    await waitFor(() => w.health('a4aaaaaa0004').status === 'healthy', { what: 'healthy' });
    // A second check (tcp) is added to the service.
    await w.store.updateAppServices('web', [svc({ http_checks: [httpCheck()], tcp_checks: [{ interval: 60, timeout: 200, grace_period: 0 }] })]);
    expect(w.checker.stats()).toMatchObject({ machines: 1, checks: 2 });
    await w.store.updateMachine('a4aaaaaa0004', { state: 'stopped' });
    expect(w.checker.stats().machines).toBe(0);
    const hits = b.hits;
    await sleep(200);
    expect(b.hits).toBe(hits);
    await w.store.updateMachine('a4aaaaaa0004', { state: 'started' });
    expect(w.checker.stats().machines).toBe(1);
    await w.store.removeMachine('a4aaaaaa0004');
    expect(w.checker.stats().machines).toBe(0);
  });

  it('checks only started machines: starting, stopping and failed ones are left alone', async () => {
    const b = await backend();
    const w = await world({ name: 'web', org: 'acme', services: [svc({ http_checks: [httpCheck()] })] });
    w.checker.start();
    await w.machine('a6aaaaaa0006', b.port);
    expect(w.checker.stats().machines).toBe(1);
    for (const state of ['starting', 'stopping', 'failed', 'created', 'destroying'] as const) {
      await w.store.updateMachine('a6aaaaaa0006', { state });
      expect(w.checker.stats().machines, state).toBe(0);
    }
    await w.store.updateMachine('a6aaaaaa0006', { state: 'started' });
    expect(w.checker.stats().machines).toBe(1);
  });

  it('gives no verdict during the grace period after a machine starts', async () => {
    const w = await world({ name: 'web', org: 'acme', services: [svc({ tcp_checks: [{ interval: 50, timeout: 100, grace_period: 600 }] })] }, { fall: 1 });
    w.checker.start();
    const t0 = Date.now();
    await w.machine('a5aaaaaa0005', 1); // nothing listens on port 1: refused at once
    await waitFor(() => w.health('a5aaaaaa0005').status === 'unhealthy', { what: 'unhealthy', timeoutMs: 3000 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
    expect(w.health('a5aaaaaa0005').reason).toBe('tcp connect refused');
  });

  it('keeps at most max_concurrent_checks in flight', async () => {
    const b = await backend();
    b.delayMs = 80;
    const w = await world({ name: 'web', org: 'acme', services: [svc({ http_checks: [httpCheck({ interval: 100, timeout: 1000 })] })] }, { maxConcurrent: 3 });
    for (let i = 0; i < 12; i++) await w.machine(`c${i.toString(16).padStart(7, '0')}0001`, b.port);
    w.checker.start();
    await waitFor(() => b.hits >= 24, { what: '24 checks', timeoutMs: 5000 });
    expect(b.maxInFlight).toBe(3);
  });

  it('spreads the first checks of machines over the interval', async () => {
    const b = await backend();
    const w = await world({ name: 'web', org: 'acme', services: [svc({ http_checks: [httpCheck({ interval: 400 })] })] });
    for (let i = 0; i < 10; i++) await w.machine(`d${i.toString(16).padStart(7, '0')}0001`, b.port);
    const t0 = Date.now();
    w.checker.start();
    await waitFor(() => b.hits >= 10, { what: 'first round' });
    const firsts = b.hitTimes.slice(0, 10).map((t) => t - t0);
    // Ten random offsets in [0, 400): they do not all land together.
    expect(Math.max(...firsts) - Math.min(...firsts)).toBeGreaterThan(100);
  });

  it('keeps checking while the store is down and writes the transition when it is back', async () => {
    const b = await backend();
    let down = false;
    let failedWrites = 0;
    const w = await world(
      { name: 'web', org: 'acme', services: [svc({ http_checks: [httpCheck()] })] },
      {
        store: (s) =>
          new Proxy(s, {
            get(target, prop, recv) {
              if (prop === 'updateMachine' && down) {
                return async () => {
                  failedWrites++;
                  throw new StoreUnavailableError('catalog store unreachable');
                };
              }
              const v = Reflect.get(target, prop, recv) as unknown;
              return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
            },
          }),
      },
    );
    await w.machine('a6aaaaaa0006', b.port);
    w.checker.start();
    await waitFor(() => w.health('a6aaaaaa0006').status === 'healthy', { what: 'healthy' });
    down = true;
    b.status = 500;
    await waitFor(() => failedWrites >= 3, { what: 'retried writes' });
    expect(w.health('a6aaaaaa0006').status).toBe('healthy'); // the store never took it
    down = false;
    await waitFor(() => w.health('a6aaaaaa0006').status === 'unhealthy', { what: 'written after recovery' });
    expect(w.health('a6aaaaaa0006').reason).toBe('http 500');
  });
});

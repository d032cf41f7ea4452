import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { CatalogView } from '../../../src/catalog/view.js';
import { bucketQuantile, LiveSampler } from '../../../src/control/sampler.js';
import { latestRates } from '../../../src/control/status.js';
import { activeConnections, connectionsAccepted, deniedByOrg, httpRequests, requestDuration, upstreamConnectErrors } from '../../../src/proxy/metrics.js';

const REGIONS = ['ewr', 'iad', 'lhr'];

/** A view with app `web` (http, machines m1 ewr, m2 ewr, m3 lhr) and `db` (tcp, d1 iad). */
async function catalog(prefix: string): Promise<{ view: CatalogView; store: MemoryStore; web: string; db: string }> {
  const store = await MemoryStore.open({ regions: REGIONS });
  await store.createOrg({ name: 'o', network_id: 1 });
  const web = `${prefix}-web`;
  const db = `${prefix}-db`;
  await store.createApp({ name: web, org: 'o', services: [{ protocol: 'http', internal_port: 80, ports: [{ port: 80 }] }] });
  await store.createApp({ name: db, org: 'o', services: [{ protocol: 'tcp', internal_port: 5432, ports: [{ port: 5432 }] }] });
  for (const [id, region] of [['aaaaaaa1', 'ewr'], ['aaaaaaa2', 'ewr'], ['aaaaaaa3', 'lhr']] as const) await store.registerMachine({ id, app: web, region }, { hostId: 0x0a7b007d });
  await store.registerMachine({ id: 'bbbbbbb1', app: db, region: 'iad' }, { hostId: 0x0a7b007d });
  return { view: await CatalogView.open(store), store, web, db };
}

describe('bucketQuantile', () => {
  const les = [0.01, 0.05, 0.1, Infinity];
  it.each([
    // q, cumulative counts, expected
    [0.5, [0, 10, 10, 10], 0.03], // all in (0.01, 0.05]: the middle of it
    [0.5, [10, 10, 10, 10], 0.005],
    [0.99, [50, 90, 100, 100], 0.1 - 0.05 * 0.1],
    [0.99, [0, 0, 0, 5], 0.1], // all above the last bound: the last finite bound
    [0.5, [0, 0, 0, 0], NaN],
  ])('q=%s of %j is %s', (q, cum, want) => {
    const got = bucketQuantile(q, les, cum);
    if (Number.isNaN(want)) expect(got).toBeNaN();
    else expect(got).toBeCloseTo(want, 6);
  });
});

describe('LiveSampler', () => {
  it('turns the proxy counters into per-second points per app, machine and region', async () => {
    const { view, web, db } = await catalog('s1');
    const s = new LiveSampler(view);
    const t0 = 1_000_000;
    // Series exist before the first sample (the proxy counted earlier): the first sample primes.
    httpRequests.inc({ app: web, machine: 'aaaaaaa1', status_class: '2xx' }, 1000);
    await s.sample(t0);
    expect(s.store.count).toBe(0);
    httpRequests.inc({ app: web, machine: 'aaaaaaa1', status_class: '2xx' }, 20);
    httpRequests.inc({ app: web, machine: 'aaaaaaa2', status_class: '2xx' }, 10);
    httpRequests.inc({ app: web, machine: 'aaaaaaa2', status_class: '5xx' }, 6);
    httpRequests.inc({ app: web, machine: 'aaaaaaa3', status_class: '4xx' }, 4);
    httpRequests.inc({ app: web, machine: '', status_class: '5xx' }, 4); // the proxy's own 502s
    upstreamConnectErrors.inc({ app: web }, 2);
    connectionsAccepted.inc({ app: web, proto: 'http' }, 4); // keep-alive: not what an http app is measured in
    connectionsAccepted.inc({ app: db, proto: 'tcp' }, 8);
    activeConnections.set({ app: db, machine: 'bbbbbbb1' }, 3);
    for (let i = 0; i < 40; i++) requestDuration.observe({ app: web }, 0.003);
    for (let i = 0; i < 4; i++) requestDuration.observe({ app: web }, 0.7);
    await s.sample(t0 + 2000);
    expect(s.store.times(0)).toEqual([t0 + 2000]);
    const a = s.apps.read(web, 0)!;
    expect(a.rate).toEqual([22]);
    expect(a.errors_4xx).toEqual([2]);
    expect(a.errors_5xx).toEqual([5]);
    expect(a.errors_connect).toEqual([1]);
    expect(a.p50_ms[0]).toBeGreaterThan(2.5);
    expect(a.p50_ms[0]).toBeLessThanOrEqual(5);
    expect(a.p99_ms[0]).toBeGreaterThan(500);
    expect(s.apps.read(db, 0)).toMatchObject({ rate: [4], active: [3], errors_4xx: [null] });
    expect(s.machines.read(`${web}/aaaaaaa1`, 0)).toMatchObject({ rate: [10], errors_5xx: [0] });
    expect(s.machines.read(`${web}/aaaaaaa2`, 0)).toMatchObject({ rate: [8], errors_5xx: [3] });
    // TCP apps count connections per app only: no made-up per-machine rate.
    expect(s.machines.read(`${db}/bbbbbbb1`, 0)).toMatchObject({ rate: [null], active: [3] });
    // Regions sum the machines the catalog puts there.
    expect(s.regions.read(`${web}/ewr`, 0)).toMatchObject({ rate: [18] });
    expect(s.regions.read(`${web}/lhr`, 0)).toMatchObject({ rate: [2] });
    expect(s.regions.read(`${db}/iad`, 0)).toMatchObject({ rate: [null], active: [3] });
    const rates = latestRates(s);
    expect(rates.rateByApp.get(web)).toBe(22);
    expect(rates.errorRateByApp.get(web)).toBe(5);
    expect(rates.rateByMachine.get(`${web}/aaaaaaa2`)).toBe(8);
    // Nothing happens: the next point is all zeros, latency empty.
    await s.sample(t0 + 3000);
    expect(s.apps.read(web, t0 + 2000)).toMatchObject({ rate: [0], errors_5xx: [0], p50_ms: [null] });
    activeConnections.set({ app: db, machine: 'bbbbbbb1' }, 0);
    view.close();
  });

  it('reports denials by org pair with the tick', async () => {
    const { view } = await catalog('s2');
    const s = new LiveSampler(view);
    deniedByOrg.inc({ org: 's2-acme', caller_org: 'demo' }, 3);
    await s.sample(1000);
    const ticks: unknown[] = [];
    s.on('tick', (t) => ticks.push(t));
    deniedByOrg.inc({ org: 's2-acme', caller_org: 'demo' }, 2);
    deniedByOrg.inc({ org: 's2-acme', caller_org: '' }, 1);
    await s.sample(2000);
    expect(ticks).toEqual([
      expect.objectContaining({
        at: 2000,
        denied: expect.arrayContaining([
          { org: 's2-acme', caller_org: 'demo', count: 2 },
          { org: 's2-acme', caller_org: '', count: 1 },
        ]),
        storeConnected: null,
      }),
    ]);
    view.close();
  });

  it('takes a point every second, and closes it early after a routing change', async () => {
    const { view, web } = await catalog('s3');
    const s = new LiveSampler(view);
    s.start();
    const ticks: number[] = [];
    s.on('tick', (t) => ticks.push(t.at));
    await new Promise((r) => setTimeout(r, 1150));
    expect(ticks.length).toBe(1);
    httpRequests.inc({ app: web, machine: 'aaaaaaa1', status_class: '2xx' });
    await new Promise((r) => setTimeout(r, 200));
    const cutAt = Date.now();
    s.cut();
    await new Promise((r) => setTimeout(r, 250));
    expect(ticks.length).toBe(2);
    // The cut point comes CUT_DELAY_MS after the change, not at the next whole second.
    expect(ticks[1]! - cutAt).toBeLessThan(200);
    expect(ticks[1]! - ticks[0]!).toBeLessThan(800);
    s.close();
    view.close();
  });

  it('says once that sampling fails, keeps trying every second, and says when it works again', async () => {
    const { view, web } = await catalog('s4');
    const machinesOf = view.machinesOf.bind(view);
    let broken = true;
    let failedCalls = 0;
    view.machinesOf = (app: string) => {
      if (broken) {
        failedCalls++;
        throw new Error('the view broke');
      }
      return machinesOf(app);
    };
    const s = new LiveSampler(view);
    const said: string[] = [];
    const ticks: number[] = [];
    s.on('failed', (err) => said.push(`failed: ${(err as Error).message}`));
    s.on('recovered', () => said.push('recovered'));
    s.on('tick', (t) => ticks.push(t.at));
    const traffic = setInterval(() => httpRequests.inc({ app: web, machine: 'aaaaaaa1', status_class: '2xx' }), 50);
    try {
      s.start();
      await new Promise((r) => setTimeout(r, 2300)); // the priming sample, then two that fail
      expect(said).toEqual(['failed: the view broke']);
      expect(ticks).toEqual([]);
      // A failed try waits its second like any other: no spinning on a broken sampler.
      expect(failedCalls).toBeGreaterThanOrEqual(1);
      expect(failedCalls).toBeLessThanOrEqual(3);
      broken = false;
      await new Promise((r) => setTimeout(r, 1100));
      expect(said).toEqual(['failed: the view broke', 'recovered']);
      expect(ticks.length).toBe(1);
    } finally {
      clearInterval(traffic);
      s.close();
      view.close();
    }
  });
});

import { describe, expect, it } from 'vitest';
import { connectionsAccepted, httpRequests } from '../../../src/proxy/metrics.js';
import { buildStatus, emptyTraffic, RateSampler, sumByAppAndMachine } from '../../../src/control/status.js';
import { startTestNode } from '../../harness/test-node.js';

describe('RateSampler', () => {
  it('turns the proxy counters into per-second rates: requests for http apps, connections for tcp apps', async () => {
    const s = new RateSampler();
    const t0 = 1_000_000;
    await s.sample(t0);
    httpRequests.inc({ app: 'web', machine: 'm1', status_class: '2xx' }, 20);
    httpRequests.inc({ app: 'web', machine: 'm2', status_class: '2xx' }, 10);
    httpRequests.inc({ app: 'web', machine: 'm2', status_class: '5xx' }, 6);
    httpRequests.inc({ app: 'web', machine: '', status_class: '5xx' }, 4); // the proxy's own 502s
    connectionsAccepted.inc({ app: 'web', proto: 'http' }, 4); // keep-alive: not what an http app is measured in
    connectionsAccepted.inc({ app: 'db', proto: 'tcp' }, 8);
    const t = await s.sample(t0 + 2000);
    expect(t.rateByApp.get('web')).toBe(20);
    expect(t.rateByApp.get('db')).toBe(4);
    expect(t.errorRateByApp.get('web')).toBe(5);
    expect(t.rateByMachine.get('web/m1')).toBe(10);
    expect(t.rateByMachine.get('web/m2')).toBe(8);
    const t2 = await s.sample(t0 + 4000);
    expect(t2.rateByApp.get('web')).toBe(0);
  });

  it('has no rates before the second sample', async () => {
    const s = new RateSampler();
    const t = await s.sample(5);
    expect(t.rateByApp.size).toBe(0);
  });

  it('sums samples by app and by app/machine, skipping unlabelled ones', () => {
    const r = sumByAppAndMachine([
      { labels: { app: 'a', machine: 'm1' }, value: 2 },
      { labels: { app: 'a', machine: 'm2' }, value: 3 },
      { labels: { app: 'b' }, value: 1 },
      { labels: {}, value: 100 },
    ]);
    expect(r.byApp).toEqual(new Map([['a', 5], ['b', 1]]));
    expect(r.byMachine).toEqual(new Map([['a/m1', 2], ['a/m2', 3]]));
  });
});

describe('buildStatus', () => {
  it('orders regions nearest to the node first and counts machine states', async () => {
    const node = await startTestNode({ node: { region: 'lhr' } });
    try {
      await node.store.updateMachine('e286d4c2a17d89', { state: 'stopped', health: { status: 'unhealthy', reason: 'http 503' } });
      const s = buildStatus(
        { view: node.ctx.view, regions: node.ctx.regions, node: { name: 'n', region: 'lhr' }, store: 'embedded', startedAt: 0 },
        emptyTraffic(),
        10_000,
      );
      const hello = s.orgs.find((o) => o.name === 'demo')!.apps.find((a) => a.name === 'hello')!;
      expect(hello.regions.map((r) => r.region)).toEqual(['lhr', 'ewr']);
      expect(hello.counts).toEqual({ machines: 2, started: 1, healthy: 0, unhealthy: 1 });
      expect(s.totals).toMatchObject({ machines: 3, started: 2, unhealthy: 1 });
      expect(s.node.uptime_s).toBe(10);
      expect(hello.active_connections).toBeNull();
      expect(hello.regions[1]!.machines[0]!.health.reason).toBe('http 503');
      // Another org's Flycast address on an app is listed with its org.
      const ip = await node.store.allocateFlycast('hello', 'acme');
      const s2 = buildStatus({ view: node.ctx.view, regions: node.ctx.regions, node: { name: 'n', region: 'lhr' }, store: 'embedded', startedAt: 0 }, emptyTraffic());
      const hello2 = s2.orgs.find((o) => o.name === 'demo')!.apps.find((a) => a.name === 'hello')!;
      expect(hello2.flycast).toContainEqual({ address: ip.address, org: 'acme' });
    } finally {
      await node.close();
    }
  });
});

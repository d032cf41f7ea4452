import { describe, expect, it } from 'vitest';
import { buildStatus, emptyTraffic, sumByAppAndMachine } from '../../../src/control/status.js';
import { startTestNode } from '../../harness/test-node.js';

describe('status traffic helpers', () => {
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

  it('lists hosts with their status and where each machine runs; only started machines count as started', async () => {
    const node = await startTestNode();
    try {
      const now = Date.now();
      await node.store.registerHost({ name: 'ewr-1', region: 'ewr', host_id: 0x0b000001, driver: 'netns', session: 's1' }, { reservedHostIds: [], staleAfterMs: 6000 });
      await node.store.registerHost({ name: 'lhr-1', region: 'lhr', driver: 'local', session: 's2' }, { reservedHostIds: [], staleAfterMs: 6000 });
      await node.store.registerMachine({ id: 'f1000000000001', app: 'hello', region: 'ewr', host: 'ewr-1', config: { cmd: ['x'] } }, { hostId: 0 });
      await node.store.registerMachine({ id: 'f2000000000002', app: 'hello', region: 'ewr', host: 'ewr-1', config: { cmd: ['x'] } }, { hostId: 0 });
      await node.store.updateMachine('f1000000000001', { state: 'started' });
      await node.store.updateMachine('f2000000000002', { state: 'failed', state_reason: 'command not found: x' });
      const src = { view: node.ctx.view, regions: node.ctx.regions, node: { name: 'n', region: 'ewr' }, store: 'embedded', startedAt: 0, hostStaleAfterMs: 6000 };
      const s = buildStatus(src, emptyTraffic(), now + 10_000);
      expect(s.hosts).toEqual([
        { name: 'ewr-1', region: 'ewr', host_id: 'b00:1', status: 'unreachable', driver: 'netns', machines: 2, started: 1, heartbeat_at: expect.any(Number) },
        { name: 'lhr-1', region: 'lhr', host_id: expect.stringMatching(/^[0-9a-f]+:[0-9a-f]+$/), status: 'unreachable', driver: 'local', machines: 0, started: 0, heartbeat_at: expect.any(Number) },
      ]);
      expect(buildStatus(src, emptyTraffic(), now).hosts.map((h) => h.status)).toEqual(['up', 'up']);
      const hello = s.orgs.find((o) => o.name === 'demo')!.apps.find((a) => a.name === 'hello')!;
      const ewr = hello.regions.find((r) => r.region === 'ewr')!.machines;
      expect(ewr.find((m) => m.id === 'f2000000000002')).toMatchObject({ host: 'ewr-1', state: 'failed' });
      expect(ewr.find((m) => m.id === 'e286d4c2a17d89')!.host).toBeNull();
      expect(hello.counts.started).toBe(3);
    } finally {
      await node.close();
    }
  });
});

// Hot children (src/observe/metrics.ts): increments held as plain numbers reach the Prometheus
// text and get() when the metric is read, every read folds only what is new, and a dropped child's
// series can be removed for good.
import { describe, expect, it } from 'vitest';
import { dropHotChild, hotChild, hotCounter, hotGauge, registry } from '../../../src/observe/metrics.js';

const value = async (name: string, labels: Record<string, string>): Promise<number | undefined> => {
  const m = registry.getSingleMetric(name)!;
  const v = (await m.get()).values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value;
};

describe('hot metric children', () => {
  it('fold into the counter when it is read, once each', async () => {
    const c = hotCounter({ name: 'sixpn_test_hot_total', help: 'test', labelNames: ['app', 'machine'] as const });
    const a = hotChild(c, { app: 'web', machine: 'm1' });
    const b = hotChild(c, { app: 'web', machine: 'm2' });
    a.inc();
    a.inc(4);
    b.inc();
    expect(await value('sixpn_test_hot_total', { machine: 'm1' })).toBe(5);
    expect(await value('sixpn_test_hot_total', { machine: 'm2' })).toBe(1);
    a.inc(2);
    expect(await registry.metrics()).toContain('sixpn_test_hot_total{app="web",machine="m1"} 7');
    expect(await value('sixpn_test_hot_total', { machine: 'm1' })).toBe(7);
    dropHotChild(c, a);
    c.remove({ app: 'web', machine: 'm1' });
    a.inc(100);
    expect(await value('sixpn_test_hot_total', { machine: 'm1' })).toBeUndefined();
    expect(await value('sixpn_test_hot_total', { machine: 'm2' })).toBe(1);
  });

  it('fold ups and downs into a gauge, next to values set directly', async () => {
    const g = hotGauge({ name: 'sixpn_test_hot_active', help: 'test', labelNames: ['machine'] as const });
    const x = hotChild(g, { machine: 'x' });
    x.inc();
    x.inc();
    x.dec();
    g.set({ machine: 'y' }, 3);
    expect(await value('sixpn_test_hot_active', { machine: 'x' })).toBe(1);
    x.dec();
    expect(await value('sixpn_test_hot_active', { machine: 'x' })).toBe(0);
    expect(await value('sixpn_test_hot_active', { machine: 'y' })).toBe(3);
  });
});

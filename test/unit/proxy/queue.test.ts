import { readFileSync } from 'node:fs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Balancer, type Slot } from '../../../src/balancer/index.js';
import type { Machine } from '../../../src/catalog/types.js';
import type { CatalogView } from '../../../src/catalog/view.js';
import { proxyConfigSchema } from '../../../src/proxy/config.js';
import { ProxyCore } from '../../../src/proxy/core.js';
import { parseRegionsCsv, RegionTable } from '../../../src/regions/index.js';

const table = new RegionTable(parseRegionsCsv(readFileSync(new URL('../../../config/regions.csv', import.meta.url), 'utf8')));
const limits = { soft_limit: 1, hard_limit: 1 };

function setup(proxy: Record<string, unknown> = {}): { core: ProxyCore; balancer: Balancer } {
  const balancer = new Balancer({ region: 'ewr', regions: table, slowStartMs: 0, passive: { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 10_000, maxEjectionPercent: 50 } });
  const m: Machine = {
    id: 'aaaa0001',
    app: 'web',
    region: 'ewr',
    address: 'fdaa:0:18:a7b:7d:aaaa:1:2',
    state: 'started',
    health: { status: 'healthy', reason: '', changed_at: 0 },
    created_at: 0,
    updated_at: 0,
  };
  balancer.upsert(m);
  const core = new ProxyCore(proxyConfigSchema.parse(proxy), {} as CatalogView, balancer, pino({ level: 'silent' }));
  return { core, balancer };
}

const never = (): boolean => false;

describe('proxy queue (all machines at hard limit)', () => {
  it('wakes a waiting caller as soon as a slot is released', async () => {
    const { core } = setup({ queue_timeout: 2_000 });
    const first = (await core.acquire('web', limits, new Set(), never)) as Slot;
    expect(typeof first).toBe('object');
    const t0 = Date.now();
    const waiting = core.acquire('web', limits, new Set(), never);
    setTimeout(() => core.release(first), 60);
    const second = await waiting;
    expect(second).toBe(first);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50);
    expect(Date.now() - t0).toBeLessThan(1_000);
  });

  it.each([
    ['the wait runs out', { queue_timeout: 80 }],
    ['the queue is full', { max_queue: 0 }],
    ['queueing is off', { queue_timeout: 0 }],
  ])('refuses with full when %s', async (_name, cfg) => {
    const { core } = setup(cfg);
    await core.acquire('web', limits, new Set(), never);
    expect(await core.acquire('web', limits, new Set(), never)).toBe('full');
  });

  it('stops waiting when the caller went away', async () => {
    const { core } = setup({ queue_timeout: 5_000 });
    const first = (await core.acquire('web', limits, new Set(), never)) as Slot;
    let gone = false;
    const waiting = core.acquire('web', limits, new Set(), () => gone);
    gone = true;
    core.release(first);
    expect(await waiting).toBe('full');
  });

  it("answers none when the app has no candidate (nothing to wait for)", async () => {
    const { core, balancer } = setup();
    balancer.remove('aaaa0001');
    expect(await core.acquire('web', limits, new Set(), never)).toBe('none');
  });

  it('answers none when every candidate was already tried', async () => {
    const { core } = setup();
    const s = (await core.acquire('web', { soft_limit: 5, hard_limit: 5 }, new Set(), never)) as Slot;
    expect(await core.acquire('web', { soft_limit: 5, hard_limit: 5 }, new Set([s]), never)).toBe('none');
  });
});

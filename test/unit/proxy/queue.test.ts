import { readFileSync } from 'node:fs';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Balancer, type Slot } from '../../../src/balancer/index.js';
import type { Machine, Service } from '../../../src/catalog/types.js';
import { proxyConfigSchema } from '../../../src/proxy/config.js';
import { Deadlines } from '../../../src/proxy/http1/deadlines.js';
import { CapacityQueue } from '../../../src/proxy/queue.js';
import { Upstream } from '../../../src/proxy/upstream.js';
import { parseRegionsCsv, RegionTable } from '../../../src/regions/index.js';

const table = new RegionTable(parseRegionsCsv(readFileSync(new URL('../../../config/regions.csv', import.meta.url), 'utf8')));
const limits = { soft_limit: 1, hard_limit: 1 };
const service = (concurrency: { soft_limit: number; hard_limit: number }): Service => ({ concurrency }) as Service;
const one = service(limits);

const wheels: Deadlines[] = [];
afterEach(() => {
  for (const w of wheels.splice(0)) w.close();
});

/** The upstream layer's acquire step, as the TCP and HTTP paths use it. */
class Acquirer {
  constructor(readonly upstream: Upstream) {}
  acquire(app: string, l: { soft_limit: number; hard_limit: number }, tried: Set<Slot>, gone: () => boolean): Promise<Slot | 'none' | 'full' | Error> {
    return Promise.resolve(this.upstream.acquire(app, l === limits ? one : service(l), tried, gone));
  }
  release(s: Slot): void {
    this.upstream.release(s);
  }
}

function setup(proxy: Record<string, unknown> = {}): { core: Acquirer; balancer: Balancer } {
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
  const wheel = new Deadlines(10);
  wheels.push(wheel);
  const core = new Acquirer(new Upstream(proxyConfigSchema.parse(proxy), balancer, pino({ level: 'silent' }), wheel));
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

describe('capacity queue wake-ups', () => {
  it('a woken waiter whose caller went away passes the wake on to the next one', async () => {
    const { core } = setup({ queue_timeout: 5_000 });
    const first = (await core.acquire('web', limits, new Set(), never)) as Slot;
    let gone = false;
    const leaving = core.acquire('web', limits, new Set(), () => gone);
    const staying = core.acquire('web', limits, new Set(), never);
    // The release wakes the first waiter while its caller is still there; it leaves before its
    // turn comes to pick. Without passing the wake on, the second waiter would sleep out its
    // whole queue_timeout although a unit is free.
    core.release(first);
    gone = true;
    const t0 = Date.now();
    expect(await leaving).toBe('full');
    expect(await staying).toBe(first);
    expect(Date.now() - t0).toBeLessThan(1_000);
  });

  it('skips waiters whose callers are gone and wakes the first live one', async () => {
    const wheel = new Deadlines(10);
    wheels.push(wheel);
    const q = new CapacityQueue(wheel, 10);
    let goneA = false;
    const a = q.wait('web', () => goneA, 5_000);
    const b = q.wait('web', never, 5_000);
    const c = q.wait('web', never, 5_000);
    goneA = true;
    q.wake('web');
    expect(await a).toBe(false);
    expect(await b).toBe(true);
    expect(q.waiting('web')).toBe(1);
    expect(q.size).toBe(1);
    q.wake('web');
    expect(await c).toBe(true);
    expect(q.size).toBe(0);
  });

  it('times a waiter out on the wheel and frees its place', async () => {
    const wheel = new Deadlines(10);
    wheels.push(wheel);
    const q = new CapacityQueue(wheel, 1);
    const t0 = Date.now();
    const a = q.wait('web', never, 60);
    expect(q.hasRoom).toBe(false);
    expect(await a).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50);
    expect(q.hasRoom).toBe(true);
  });
});

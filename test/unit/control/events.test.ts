import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { CatalogView } from '../../../src/catalog/view.js';
import { EventFeed, FeedWatcher, parseFeedFilter, type FeedEvent } from '../../../src/control/events.js';
import { LiveSampler, type Tick } from '../../../src/control/sampler.js';
import type { RunningRole } from '../../../src/role.js';

const HOST = 0x0a7b007d;

async function setup(proxy: () => RunningRole | undefined = () => undefined) {
  const store = await MemoryStore.open({ regions: ['ewr', 'iad'] });
  await store.createOrg({ name: 'acme', network_id: 0x2a });
  await store.createApp({ name: 'web', org: 'acme', services: [{ protocol: 'http', internal_port: 80, ports: [{ port: 80 }] }] });
  await store.registerMachine({ id: 'aaaaaaa1', app: 'web', region: 'ewr' }, { hostId: HOST });
  const view = await CatalogView.open(store);
  const feed = new EventFeed(50);
  const sampler = new LiveSampler(view);
  const watcher = new FeedWatcher(view, feed, sampler, proxy);
  const got: FeedEvent[] = [];
  feed.subscribe((e) => got.push(e));
  const tick = (t: Partial<Tick> = {}): void => void sampler.emit('tick', { at: Date.now(), denied: [], storeConnected: null, ...t });
  return { store, view, feed, sampler, got, tick, close: () => (watcher.close(), sampler.close(), view.close()) };
}

describe('FeedWatcher', () => {
  it('turns machine changes into health, machine and catalog events with app, org and region', async () => {
    const t = await setup();
    await t.store.updateMachine('aaaaaaa1', { health: { status: 'unhealthy', reason: 'http 503' } });
    await t.store.updateMachine('aaaaaaa1', { state: 'stopped' });
    await t.store.updateMachine('aaaaaaa1', { upstream: '127.0.0.1:9000' });
    await t.store.registerMachine({ id: 'aaaaaaa2', app: 'web', region: 'iad' }, { hostId: HOST });
    await t.store.removeMachine('aaaaaaa2');
    await t.store.allocateFlycast('web');
    expect(t.got.map((e) => [e.kind, e.level, e.message])).toEqual([
      ['health', 'warn', 'machine aaaaaaa1 of web unhealthy: http 503 (was unknown)'],
      ['machine', 'info', 'machine aaaaaaa1 of web stopped (was started)'],
      ['catalog', 'info', 'machine aaaaaaa1 of web updated'],
      ['machine', 'info', 'machine aaaaaaa2 of web created in iad (started)'],
      ['machine', 'info', 'machine aaaaaaa2 of web removed'],
      ['catalog', 'info', 'flycast fdaa:0:2a:0:1::3 allocated to web'],
    ]);
    expect(t.got[0]).toMatchObject({ app: 'web', org: 'acme', machine: 'aaaaaaa1', region: 'ewr', data: { from: 'unknown', to: 'unhealthy', reason: 'http 503' } });
    expect(t.got.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    t.close();
  });

  it('reports denials by org pair, and sums the tail past 20 pairs into one event', async () => {
    const t = await setup();
    t.tick({ denied: [{ org: 'acme', caller_org: 'demo', count: 3 }, { org: 'acme', caller_org: '', count: 1 }] });
    expect(t.got.map((e) => [e.kind, e.org, e.message])).toEqual([
      ['denied', 'acme', '3 callers from org demo denied at org acme\'s Flycast addresses'],
      ['denied', 'acme', '1 caller from outside every org denied at org acme\'s Flycast addresses'],
    ]);
    t.got.length = 0;
    t.tick({ denied: Array.from({ length: 25 }, (_, i) => ({ org: `o${i}`, caller_org: 'x', count: 1 })) });
    expect(t.got).toHaveLength(21);
    expect(t.got.at(-1)!.message).toBe('5 more callers denied across 5 more org pairs');
    t.close();
  });

  it('reports the Redis store going away and coming back, not its first "up"', async () => {
    const t = await setup();
    t.tick({ storeConnected: 1 });
    t.tick({ storeConnected: 1 });
    t.tick({ storeConnected: 0 });
    t.tick({ storeConnected: 1 });
    expect(t.got.map((e) => [e.kind, e.level, e.data])).toEqual([
      ['store', 'error', { connected: false }],
      ['store', 'info', { connected: true }],
    ]);
    t.close();
  });

  it('reports passive ejections and re-admissions read from the proxy role', async () => {
    let ejected: { app: string; machine: string; until: number }[] = [];
    const proxy = { name: 'proxy', close: async () => undefined, ejections: () => ejected } as RunningRole;
    const t = await setup(() => proxy);
    t.tick();
    ejected = [{ app: 'web', machine: 'aaaaaaa1', until: Date.now() + 5000 }];
    t.tick();
    t.tick();
    ejected = [];
    t.tick();
    expect(t.got.map((e) => [e.kind, e.machine, e.region, e.data?.ejected])).toEqual([
      ['ejection', 'aaaaaaa1', 'ewr', true],
      ['ejection', 'aaaaaaa1', 'ewr', false],
    ]);
    expect(t.got[0]!.message).toMatch(/^machine aaaaaaa1 of web ejected from this node's rotation for 5s after failed connects$/);
    t.close();
  });
});

describe('EventFeed', () => {
  it('keeps the newest `capacity` events and answers since / filter / limit', () => {
    const feed = new EventFeed(5);
    for (let i = 0; i < 8; i++) feed.publish({ kind: i % 2 ? 'health' : 'denied', level: 'info', app: i % 3 ? 'a' : 'b', message: `e${i}` });
    expect(feed.since(0).map((e) => e.seq)).toEqual([4, 5, 6, 7, 8]);
    expect(feed.since(6).map((e) => e.seq)).toEqual([7, 8]);
    expect(feed.since(0, { kinds: new Set(['health']) }).map((e) => e.message)).toEqual(['e3', 'e5', 'e7']);
    expect(feed.since(0, { app: 'b' }).map((e) => e.message)).toEqual(['e3', 'e6']);
    expect(feed.since(0, {}, 2).map((e) => e.seq)).toEqual([7, 8]);
    expect(feed.lastSeq).toBe(8);
  });

  it('parses a filter from the query and refuses an unknown kind', () => {
    expect(parseFeedFilter(new URLSearchParams('kind=health,denied&app=web'))).toEqual({ kinds: new Set(['health', 'denied']), app: 'web' });
    expect(() => parseFeedFilter(new URLSearchParams('kind=health,nope'))).toThrow(/kind "nope" is not an event kind \(one of: health, machine/);
  });
});

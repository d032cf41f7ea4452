import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { CatalogView } from '../../../src/catalog/view.js';
import { catalogChangeLag, catalogChanges, watchCatalog } from '../../../src/catalog/watch.js';

describe('watchCatalog', () => {
  it('logs one JSON line per catalog change and counts it, once per view', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
        cb();
      },
    });
    const log = pino({ level: 'info' }, sink);
    const store = await MemoryStore.open({ regions: ['ewr', 'lhr'] });
    const view = await CatalogView.open(store);
    watchCatalog(view, log);
    watchCatalog(view, log); // a second control listener on the same view must not double the lines
    await store.createOrg({ name: 'acme', network_id: 7 });
    await store.createApp({ name: 'web', org: 'acme', services: [] });
    const m = await store.registerMachine({ app: 'web', region: 'lhr' }, { hostId: 0x0a7b007d });
    await store.updateMachine(m.id, { health: { status: 'unhealthy', reason: 'tcp connect refused' } });
    await new Promise((r) => setImmediate(r));
    const changes = lines.filter((l) => l.msg === 'catalog change');
    expect(changes.map((l) => `${l.kind} ${l.op}`)).toEqual(['org put', 'app put', 'machine put', 'machine put']);
    expect(changes[3]).toMatchObject({ module: 'catalog', key: m.id, app: 'web', region: 'lhr', health: 'unhealthy', reason: 'tcp connect refused' });
    expect(typeof changes[3]!.lag_ms).toBe('number');
    const counted = (await catalogChanges.get()).values.find((v) => v.labels.kind === 'machine' && v.labels.op === 'put');
    expect(counted?.value).toBe(2);
    const lag = (await catalogChangeLag.get()).values.find((v) => v.metricName === 'sixpn_catalog_change_lag_seconds_count');
    expect(lag?.value).toBe(4);
    view.close();
    await store.close();
  });
});

/**
 * A small two-org catalog for the DNS tests: acme (0x18) with apps web and api, beta (0x19)
 * with app db; machines in several regions and health states, peers (one interactive), and
 * Flycast addresses including one of web allocated in beta's network; and a Responder over it.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { CatalogView } from '../../../src/catalog/view.js';
import { Responder } from '../../../src/dns/responder.js';
import { DnsIndex } from '../../../src/dns/zone.js';
import { createRootLogger } from '../../../src/observe/log.js';
import { parseRegionsCsv, RegionTable } from '../../../src/regions/index.js';
import { ROOT } from '../../harness/env.js';

export const HOST = 0x0a7b007d;
export const GATEWAY = 0x0a7b0d6b;
export const KEY = (n: number): string => Buffer.alloc(32, n).toString('base64');

export function regionTable(): RegionTable {
  return new RegionTable(parseRegionsCsv(readFileSync(resolve(ROOT, 'config/regions.csv'), 'utf8')));
}

export async function dnsFixture(): Promise<{ store: MemoryStore; view: CatalogView; regions: RegionTable }> {
  const regions = regionTable();
  const store = await MemoryStore.open({ regions: regions.codes });
  await store.createOrg({ name: 'acme', network_id: 0x18 });
  await store.createOrg({ name: 'beta', network_id: 0x19 });
  await store.createApp({ name: 'web', org: 'acme' });
  await store.createApp({ name: 'api', org: 'acme' });
  await store.createApp({ name: 'db', org: 'beta' });
  await store.registerMachine({ id: 'aaaaaaaa0001', app: 'web', region: 'ewr' }, { hostId: HOST });
  await store.registerMachine({ id: 'bbbbbbbb0002', app: 'web', region: 'ord' }, { hostId: HOST });
  await store.registerMachine({ id: 'cccccccc0003', app: 'web', region: 'ams' }, { hostId: HOST });
  await store.registerMachine({ id: 'dddddddd0004', app: 'web', region: 'ewr', state: 'stopped' }, { hostId: HOST });
  await store.registerMachine({ id: 'eeeeeeee0005', app: 'api', region: 'syd' }, { hostId: HOST });
  await store.registerMachine({ id: 'ffffffff0006', app: 'db', region: 'fra' }, { hostId: HOST });
  await store.updateMachine('bbbbbbbb0002', { health: { status: 'unhealthy', reason: 'check failed' } });
  await store.updateMachine('eeeeeeee0005', { health: { status: 'unhealthy', reason: 'check failed' } });
  await store.createPeer({ name: 'laptop', org: 'acme', region: 'lhr', public_key: KEY(1) }, { gatewayHostId: GATEWAY });
  await store.createPeer({ name: 'interactive-x1', org: 'acme', region: 'ewr', public_key: KEY(2) }, { gatewayHostId: GATEWAY });
  await store.createPeer({ name: 'ci', org: 'beta', region: 'iad', public_key: KEY(3) }, { gatewayHostId: GATEWAY });
  await store.allocateFlycast('web'); // fdaa:0:18:0:1::<n> in acme
  await store.allocateFlycast('web', 'beta'); // web shared into beta's network
  const view = await CatalogView.open(store);
  return { store, view, regions };
}

export interface DnsResponderFixture {
  store: MemoryStore;
  responder: Responder;
  /** Closes the responder, its index, the view and the store, in that order. */
  close(): Promise<void>;
}

/**
 * A Responder over dnsFixture() (TTL 5, node region ewr, no forwarder, silent log); callers on
 * loopback are taken as members of `loopbackOrg` ('' for none).
 */
export async function dnsResponder(loopbackOrg: string): Promise<DnsResponderFixture> {
  const { store, view, regions } = await dnsFixture();
  const index = new DnsIndex(view);
  const responder = new Responder({ index, regions, ttl: 5, nodeRegion: 'ewr', loopbackOrg, forwarder: null, log: createRootLogger({ level: 'silent', pretty: false }) });
  return {
    store,
    responder,
    close: async () => {
      responder.close();
      index.close();
      view.close();
      await store.close();
    },
  };
}

// Machines of a host that stopped heartbeating leave the answers (AAAA, regions, nearest, vms,
// _instances) within the liveness timeout and come back with its next heartbeat; the other
// host's machines and machines registered by hand are not touched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Answer } from 'dns-packet';
import { HostLiveness } from '../../../src/catalog/liveness.js';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { CatalogView } from '../../../src/catalog/view.js';
import { resolveLocal } from '../../../src/dns/resolve.js';
import { DnsIndex } from '../../../src/dns/zone.js';
import { HOST, regionTable } from './fixture.js';

const regions = regionTable();
let store: MemoryStore;
let view: CatalogView;
let index: DnsIndex;
let clock = Date.now();
const ids = { ewr: 'a0000000000001', iad: 'b0000000000002', byHand: 'c0000000000003' };
const cfg = { cmd: ['/bin/true'] };

const aaaa = (name: string): string[] =>
  resolveLocal({ name, type: 'AAAA' }, index.zone('acme')!, 'ewr', { ttl: 5, regions })
    .answers.filter((a: Answer) => a.type === 'AAAA')
    .map((a) => (a as { data: string }).data)
    .sort();
const txt = (name: string): string =>
  resolveLocal({ name, type: 'TXT' }, index.zone('acme')!, 'ewr', { ttl: 5, regions })
    .answers.map((a) => (a as { data: Buffer[] }).data.map((b) => b.toString()).join(''))
    .join('|');
const addr = (id: string): string => view.machines.get(id)!.address;

beforeAll(async () => {
  store = await MemoryStore.open({ regions: regions.codes });
  await store.createOrg({ name: 'acme', network_id: 0x18 });
  await store.createApp({ name: 'web', org: 'acme' });
  for (const [name, region] of [['ewr-1', 'ewr'], ['iad-1', 'iad']] as const) await store.registerHost({ name, region, driver: 'netns', session: name }, { reservedHostIds: [], staleAfterMs: 60_000 });
  await store.registerMachine({ id: ids.ewr, app: 'web', region: 'ewr', host: 'ewr-1', config: cfg }, { hostId: HOST });
  await store.registerMachine({ id: ids.iad, app: 'web', region: 'iad', host: 'iad-1', config: cfg }, { hostId: HOST });
  await store.registerMachine({ id: ids.byHand, app: 'web', region: 'ewr' }, { hostId: HOST });
  for (const id of [ids.ewr, ids.iad]) await store.updateMachine(id, { state: 'started' });
  view = await CatalogView.open(store);
  index = new DnsIndex(view, new HostLiveness(view, 1_000, () => clock));
});
afterAll(async () => {
  index.close();
  view.close();
  await store.close();
});

const beat = async (ms: number, hosts: string[]): Promise<void> => {
  clock += ms;
  for (const h of hosts) await store.updateHost(h, { heartbeat_at: clock });
  await new Promise((r) => setImmediate(r));
  // the liveness timer, without waiting for it
  ((index as unknown as { liveness: { evaluate(): void } }).liveness).evaluate();
};

describe('DNS answers follow host liveness', () => {
  it('leaves a silent host\'s machines out and takes them back when it heartbeats', async () => {
    const all = [addr(ids.ewr), addr(ids.iad), addr(ids.byHand)].sort();
    expect(aaaa('web.internal')).toEqual(all);
    await beat(700, ['ewr-1']);
    await beat(700, ['ewr-1']);
    expect(aaaa('web.internal')).toEqual([addr(ids.ewr), addr(ids.byHand)].sort());
    expect(aaaa('iad.web.internal')).toEqual([]);
    expect(aaaa('top3.nearest.of.web.internal')).toEqual([addr(ids.ewr), addr(ids.byHand)].sort());
    expect(txt('regions.web.internal')).toBe('ewr');
    expect(txt('vms.web.internal')).toBe([ids.ewr, ids.byHand].sort().join(','));
    expect(txt('_instances.internal')).not.toContain(ids.iad);
    await beat(10, ['iad-1']);
    expect(aaaa('web.internal')).toEqual(all);
    expect(txt('regions.web.internal')).toBe('ewr,iad');
  });
});

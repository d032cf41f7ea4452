import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Answer } from 'dns-packet';
import type { CatalogView } from '../../../src/catalog/view.js';
import type { MemoryStore } from '../../../src/catalog/memory.js';
import type { RegionTable } from '../../../src/regions/index.js';
import { localZoneOf, resolveLocal, splitTxt } from '../../../src/dns/resolve.js';
import { DnsIndex, preferHealthy } from '../../../src/dns/zone.js';
import { dnsFixture } from './fixture.js';

let store: MemoryStore;
let view: CatalogView;
let regions: RegionTable;
let index: DnsIndex;
const opts = () => ({ ttl: 5, regions });
const addr = (id: string): string => view.machines.get(id)!.address;
const peer = (org: string, name: string): string => view.peers.get(`${org}/${name}`)!.address;
const flycast = (app: string, org: string): string[] => [...view.flycast.values()].filter((f) => f.app === app && f.org === org).map((f) => f.address);

function ask(name: string, type: string, org = 'acme', region = 'ewr') {
  return resolveLocal({ name, type }, index.zone(org)!, region, opts());
}
const aaaa = (as: Answer[]): string[] => as.filter((a) => a.type === 'AAAA').map((a) => (a as { data: string }).data);
const txt = (as: Answer[]): string[] => as.filter((a) => a.type === 'TXT').map((a) => (a as { data: Buffer[] }).data.map((b) => b.toString()).join(''));

beforeAll(async () => {
  ({ store, view, regions } = await dnsFixture());
  index = new DnsIndex(view);
});
afterAll(async () => {
  index.close();
  view.close();
  await store.close();
});

describe('resolveLocal: the table, asked by a member of acme', () => {
  const cases: [string, string, () => { aaaa?: string[]; txt?: string[] }][] = [
    // unhealthy ord machine left out while healthy/unknown ones exist; stopped one never
    ['web.internal', 'AAAA', () => ({ aaaa: [addr('aaaaaaaa0001'), addr('cccccccc0003')] })],
    ['global.web.internal', 'AAAA', () => ({ aaaa: [addr('aaaaaaaa0001'), addr('cccccccc0003')] })],
    ['ewr.web.internal', 'AAAA', () => ({ aaaa: [addr('aaaaaaaa0001')] })],
    // the only machine in ord is unhealthy: returned, an answer beats none
    ['ord.web.internal', 'AAAA', () => ({ aaaa: [addr('bbbbbbbb0002')] })],
    ['top1.nearest.of.web.internal', 'AAAA', () => ({ aaaa: [addr('aaaaaaaa0001')] })],
    ['top2.nearest.of.web.internal', 'AAAA', () => ({ aaaa: [addr('aaaaaaaa0001'), addr('cccccccc0003')] })],
    ['dddddddd0004.vm.web.internal', 'AAAA', () => ({ aaaa: [addr('dddddddd0004')] })],
    ['bbbbbbbb0002.vm.web.internal', 'AAAA', () => ({ aaaa: [addr('bbbbbbbb0002')] })],
    ['vms.web.internal', 'TXT', () => ({ txt: ['aaaaaaaa0001,bbbbbbbb0002,cccccccc0003'] })],
    ['regions.web.internal', 'TXT', () => ({ txt: ['ams,ewr,ord'] })],
    ['_apps.internal', 'TXT', () => ({ txt: ['api,web'] })],
    ['_peer.internal', 'TXT', () => ({ txt: ['laptop'] })],
    ['laptop._peer.internal', 'AAAA', () => ({ aaaa: [peer('acme', 'laptop')] })],
    ['interactive-x1._peer.internal', 'AAAA', () => ({ aaaa: [peer('acme', 'interactive-x1')] })],
    [
      '_instances.internal',
      'TXT',
      () => ({
        txt: ['aaaaaaaa0001', 'bbbbbbbb0002', 'cccccccc0003', 'eeeeeeee0005'].map((id) => {
          const m = view.machines.get(id)!;
          return `instance=${id},app=${m.app},ip=${m.address},region=${m.region}`;
        }),
      }),
    ],
    // all api machines are unhealthy: all started ones are returned
    ['api.internal', 'AAAA', () => ({ aaaa: [addr('eeeeeeee0005')] })],
    ['web.flycast', 'AAAA', () => ({ aaaa: flycast('web', 'acme') })],
  ];
  it.each(cases)('%s %s', (name, type, want) => {
    const r = ask(name, type);
    const w = want();
    expect(r.rcode).toBe('NOERROR');
    expect(aaaa(r.answers)).toEqual(w.aaaa ?? []);
    expect(txt(r.answers)).toEqual(w.txt ?? []);
    expect(r.answers.every((a) => a.name === name && (a as { ttl: number }).ttl === 5)).toBe(true);
    expect(r.authorities).toEqual([]);
  });
});

describe('resolveLocal: names and types', () => {
  it('matches case-insensitively and answers with the question spelling', () => {
    const r = ask('WeB.InTeRnAl', 'AAAA');
    expect(aaaa(r.answers)).toEqual([addr('aaaaaaaa0001'), addr('cccccccc0003')]);
    expect(r.answers[0]!.name).toBe('WeB.InTeRnAl');
    expect(aaaa(ask('LAPTOP._peer.internal', 'AAAA').answers)).toEqual([peer('acme', 'laptop')]);
  });

  it.each([
    ['db.internal'], // beta's app
    ['ci._peer.internal'], // beta's peer
    ['ffffffff0006.vm.db.internal'],
    ['nope.internal'],
    ['aaaaaaaa0001.vm.api.internal'], // machine of another app
    ['xyz.web.internal'], // not a region
    ['top0.nearest.of.web.internal'],
    ['db.flycast'],
    ['a.b.web.internal'],
    ['1.2.a.a.d.f.ip6.arpa'],
  ])('%s: NXDOMAIN with the SOA', (name) => {
    const r = ask(name, 'AAAA');
    expect(r.rcode).toBe('NXDOMAIN');
    expect(r.answers).toEqual([]);
    expect(r.authorities).toHaveLength(1);
    expect(r.authorities[0]!.type).toBe('SOA');
  });

  it.each([
    ['web.internal', 'TXT'],
    ['web.internal', 'A'],
    ['vms.web.internal', 'AAAA'],
    ['_apps.internal', 'AAAA'],
    ['syd.web.internal', 'AAAA'], // known region, no machine there
    ['vm.web.internal', 'AAAA'], // empty non-terminal
    ['web.internal', 'UNKNOWN_65000'],
  ])('%s %s: NODATA (NOERROR, empty, SOA)', (name, type) => {
    const r = ask(name, type);
    expect(r.rcode).toBe('NOERROR');
    expect(r.answers).toEqual([]);
    expect(r.authorities.map((a) => a.type)).toEqual(['SOA']);
  });

  it('ANY returns every record of the name; SOA at the apex', () => {
    expect(aaaa(ask('web.internal', 'ANY').answers)).toHaveLength(2);
    expect(ask('internal', 'SOA').answers.map((a) => a.type)).toEqual(['SOA']);
  });

  it('beta sees its own names and web through the Flycast address shared into its network', () => {
    expect(aaaa(ask('db.internal', 'AAAA', 'beta').answers)).toEqual([addr('ffffffff0006')]);
    expect(ask('web.internal', 'AAAA', 'beta').rcode).toBe('NXDOMAIN');
    expect(aaaa(ask('web.flycast', 'AAAA', 'beta').answers)).toEqual(flycast('web', 'beta'));
    expect(txt(ask('_peer.internal', 'TXT', 'beta').answers)).toEqual(['ci']);
    expect(txt(ask('_apps.internal', 'TXT', 'beta').answers)).toEqual(['db']);
  });

  it('nearest ranks from the asker region, and is not cacheable', () => {
    const r = ask('top1.nearest.of.web.internal', 'AAAA', 'acme', 'fra');
    expect(aaaa(r.answers)).toEqual([addr('cccccccc0003')]); // ams is nearest to fra
    expect(r.cacheable).toBe(false);
    expect(aaaa(ask('top9.nearest.of.web.internal', 'AAAA', 'acme', 'fra').answers)).toEqual([addr('cccccccc0003'), addr('aaaaaaaa0001')]);
  });
});

describe('zone index follows catalog changes', () => {
  it('a stopped machine leaves, a new one appears, a new org gets a zone', async () => {
    await store.updateMachine('cccccccc0003', { state: 'stopped' });
    expect(aaaa(ask('web.internal', 'AAAA').answers)).toEqual([addr('aaaaaaaa0001')]);
    await store.registerMachine({ id: '12345678aaaa', app: 'web', region: 'ams' }, { hostId: 0x0a7b007d });
    expect(aaaa(ask('ams.web.internal', 'AAAA').answers)).toEqual([addr('12345678aaaa')]);
    await store.updateMachine('cccccccc0003', { state: 'started' });
    await store.createOrg({ name: 'gamma', network_id: 0x20 });
    expect(index.zone('gamma')?.appNames).toEqual([]);
    await store.removePeer('acme', 'laptop');
    expect(ask('laptop._peer.internal', 'AAAA').rcode).toBe('NXDOMAIN');
    await store.removeMachine('12345678aaaa');
    expect(ask('ams.web.internal', 'AAAA').answers.length).toBe(1);
  });

  it('only started machines are answered: the states of machines a host runs leave the sets', async () => {
    for (const state of ['created', 'starting', 'stopping', 'destroying', 'failed'] as const) {
      await store.updateMachine('cccccccc0003', { state });
      expect(aaaa(ask('web.internal', 'AAAA').answers), state).toEqual([addr('aaaaaaaa0001')]);
      expect(txt(ask('_instances.internal', 'TXT').answers).some((t) => t.includes('cccccccc0003')), state).toBe(false);
      // its own name still answers, as for a stopped machine
      expect(aaaa(ask('cccccccc0003.vm.web.internal', 'AAAA').answers), state).toEqual([addr('cccccccc0003')]);
    }
    await store.updateMachine('cccccccc0003', { state: 'started' });
    expect(aaaa(ask('web.internal', 'AAAA').answers).sort()).toEqual([addr('aaaaaaaa0001'), addr('cccccccc0003')].sort());
  });

  it('a released Flycast address and a deleted app leave their orgs', async () => {
    const shared = flycast('web', 'beta')[0]!;
    await store.releaseFlycast(shared, 'beta');
    expect(ask('web.flycast', 'AAAA', 'beta').rcode).toBe('NXDOMAIN');
    expect(aaaa(ask('web.flycast', 'AAAA').answers)).toEqual(flycast('web', 'acme'));
    await store.deleteApp('api');
    expect(ask('api.internal', 'AAAA').rcode).toBe('NXDOMAIN');
    expect(txt(ask('_apps.internal', 'TXT').answers)).toEqual(['web']);
    expect(txt(ask('_instances.internal', 'TXT').answers).some((t) => t.includes('app=api'))).toBe(false);
  });

  it('knows the region of machine and peer addresses', () => {
    expect(index.regionOf(addr('aaaaaaaa0001'))).toBe('ewr');
    const p = peer('beta', 'ci');
    expect(index.regionOf(p)).toBe('iad');
    expect(index.regionOf(p.replace(/:2$/, ':7'))).toBe('iad'); // same /120
    expect(index.regionOf('fdaa:0:18::99')).toBeUndefined();
  });
});

describe('helpers', () => {
  it('splits long TXT values into 255-byte strings', () => {
    const parts = splitTxt('x'.repeat(600));
    expect(parts.map((p) => p.length)).toEqual([255, 255, 90]);
    expect(splitTxt('')).toHaveLength(1);
  });

  it('knows which names are local', () => {
    expect(localZoneOf('web.internal')).toBe('internal');
    expect(localZoneOf('internal')).toBe('internal');
    expect(localZoneOf('x.flycast')).toBe('flycast');
    expect(localZoneOf('notinternal')).toBeNull();
    expect(localZoneOf('example.com')).toBeNull();
    expect(localZoneOf('3.0.0.0.a.a.d.f.ip6.arpa')).toBe('a.a.d.f.ip6.arpa');
  });

  it('prefers healthy machines, returns all when none is', () => {
    const m = (id: string, status: 'healthy' | 'unhealthy' | 'unknown') => ({ id, health: { status } }) as never;
    expect(preferHealthy([m('a', 'unhealthy'), m('b', 'unknown')]).map((x: { id: string }) => x.id)).toEqual(['b']);
    expect(preferHealthy([m('a', 'unhealthy'), m('b', 'unhealthy')])).toHaveLength(2);
  });
});

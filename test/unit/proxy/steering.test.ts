import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { App, Machine } from '../../../src/catalog/types.js';
import { parseRegionsCsv, RegionTable } from '../../../src/regions/index.js';
import {
  MAX_REPLAY_BODY,
  MAX_REPLAYS,
  parseReplay,
  planReplay,
  replaySrc,
  steerFromHeaders,
  type SteeringCatalog,
  type SteeringHeaders,
} from '../../../src/proxy/steering.js';

const regions = new RegionTable(parseRegionsCsv(readFileSync(new URL('../../../config/regions.csv', import.meta.url), 'utf8')));

const svc = (port: number, protocol: 'http' | 'tcp' = 'http') => ({ protocol, internal_port: 8080, ports: [{ port, handlers: [] }], concurrency: { type: 'requests', soft_limit: 20, hard_limit: 25 }, tcp_checks: [], http_checks: [] }) as unknown as App['services'][number];
const apps: App[] = [
  { name: 'web', org: 'acme', services: [svc(80)] },
  { name: 'api', org: 'acme', services: [svc(5432, 'tcp'), svc(80)] },
  { name: 'db', org: 'acme', services: [svc(5432, 'tcp')] },
  { name: 'evil', org: 'globex', services: [svc(80)] },
];
const m = (id: string, app: string, region: string): Machine => ({ id, app, region, address: 'fdaa::', state: 'started', health: { status: 'healthy', reason: '', changed_at: 0 }, created_at: 0, updated_at: 0 }) as Machine;
const machines = [m('e0000001', 'web', 'ewr'), m('10000001', 'web', 'iad'), m('a0000001', 'api', 'lhr'), m('b0000001', 'evil', 'ewr')];
const catalog: SteeringCatalog = {
  apps: new Map(apps.map((a) => [a.name, a])),
  machinesByApp: new Map(['web', 'api', 'evil'].map((a) => [a, new Map(machines.filter((x) => x.app === a).map((x) => [x.id, x]))])),
};

const H = (o: Partial<SteeringHeaders>): SteeringHeaders => ({ preferRegion: null, forceRegion: null, preferInstance: null, forceInstance: null, ...o });

describe('steering: the caller headers', () => {
  it.each<[string, Partial<SteeringHeaders>, object]>([
    ['prefer a region', { preferRegion: 'lhr' }, { regions: ['lhr'], forceRegions: false, machine: null }],
    ['prefer a list, case and spaces tolerated', { preferRegion: 'LHR, iad' }, { regions: ['lhr', 'iad'], forceRegions: false }],
    ['force a region', { forceRegion: 'iad' }, { regions: ['iad'], forceRegions: true }],
    ['prefer a machine', { preferInstance: '10000001' }, { machine: '10000001', forceMachine: false, regions: null }],
    ['force a machine', { forceInstance: 'E0000001' }, { machine: 'e0000001', forceMachine: true }],
    ['machine and region together', { preferInstance: '10000001', forceRegion: 'ewr' }, { machine: '10000001', forceMachine: false, regions: ['ewr'], forceRegions: true }],
  ])('%s', (_n, h, want) => {
    expect(steerFromHeaders(H(h), 'web', catalog, regions)).toMatchObject(want);
  });

  it.each<[string, Partial<SteeringHeaders>, number, RegExp]>([
    ['unknown region', { preferRegion: 'xyz' }, 400, /fly-prefer-region: unknown region "xyz"/],
    ['not a region code', { forceRegion: 'london' }, 400, /fly-force-region: unknown region "london"/],
    ['empty', { forceRegion: '' }, 400, /empty region/],
    ['any is for replays only', { preferRegion: 'lhr,any' }, 400, /unknown region "any"/],
    ['both region forms', { preferRegion: 'lhr', forceRegion: 'iad' }, 400, /not both/],
    ['both instance forms', { preferInstance: '10000001', forceInstance: '10000001' }, 400, /not both/],
    ['malformed id', { forceInstance: 'zz' }, 400, /not a machine id/],
    ['prefer an id of no machine of the app', { preferInstance: 'a0000001' }, 400, /no machine a0000001 in app web/],
    ['force an id of no machine of the app', { forceInstance: 'a0000001' }, 404, /no machine a0000001 in app web/],
    ['force an id of another org', { forceInstance: 'b0000001' }, 404, /no machine b0000001 in app web/],
  ])('%s: %i', (_n, h, status, msg) => {
    let err: unknown;
    try {
      steerFromHeaders(H(h), 'web', catalog, regions);
    } catch (e) {
      err = e;
    }
    expect((err as { status: number }).status).toBe(status);
    expect((err as Error).message).toMatch(msg);
  });
});

describe('steering: fly-replay values', () => {
  it.each<[string, object]>([
    ['region=iad', { regions: ['iad'], anyRegion: false }],
    ['region="iad,lhr,any"', { regions: ['iad', 'lhr'], anyRegion: true }],
    ['instance=10000001', { instance: '10000001' }],
    ['prefer_instance=10000001;elsewhere=true', { preferInstance: '10000001', elsewhere: true }],
    ['app=api; region=lhr; state="a;b \\"c\\""', { app: 'api', regions: ['lhr'], state: 'a;b "c"' }],
    ['elsewhere=true;timeout=800ms;fallback=prefer_self', { elsewhere: true, timeoutMs: 800, fallback: 'prefer_self' }],
    ['app=api;timeout=10s;fallback=force_self', { app: 'api', timeoutMs: 10_000, fallback: 'force_self' }],
    ['REGION=iad', { regions: ['iad'] }],
  ])('%s', (v, want) => {
    expect(parseReplay(v, regions)).toMatchObject(want);
  });

  it.each<[string, RegExp]>([
    ['', /no target/],
    ['state=x', /no target/],
    ['region=xyz', /unknown region "xyz"/],
    ['region=iad;region=lhr', /given twice/],
    ['planet=mars', /unknown field "planet"/],
    ['region', /without a value/],
    ['state="open', /unterminated quote/],
    ['instance=nothex!', /not a machine id/],
    ['instance=10000001;prefer_instance=e0000001', /together/],
    ['app=Not_An_App', /not an app name/],
    ['elsewhere=yes', /not true or false/],
    ['region=iad;timeout=forever', /not a duration/],
    ['region=iad;timeout=5m', /not a duration/],
    ['region=iad;fallback=elsewhere', /not force_self or prefer_self/],
  ])('refuses %j', (v, msg) => {
    expect(() => parseReplay(v, regions)).toThrow(msg);
  });
});

describe('steering: the replay policy', () => {
  const web = catalog.apps.get('web')!;
  const from = { app: web, machine: machines[0]!, service: web.services[0]! };
  const fresh = { replays: 0, fallback: false, bodyTooLarge: false };
  const plan = (v: string, h = fresh) => planReplay(parseReplay(v, regions), from, catalog, h, 1_700_000_000_000);

  it.each<[string, object]>([
    ['region=iad', { app: { name: 'web' }, steer: { regions: ['iad'], forceRegions: true, machine: null }, excludeSource: false }],
    ['region="iad,any"', { steer: { regions: ['iad'], forceRegions: false } }],
    ['instance=10000001', { steer: { machine: '10000001', forceMachine: true } }],
    ['elsewhere=true', { excludeSource: true, steer: { machine: null, regions: null } }],
    ['app=api', { app: { name: 'api' }, service: { ports: [{ port: 80 }] }, excludeSource: false }],
    ['app=api;instance=a0000001;elsewhere=true', { app: { name: 'api' }, steer: { machine: 'a0000001', forceMachine: true }, excludeSource: false }],
    ['region=iad;timeout=2s;fallback=force_self', { timeoutMs: 2000, fallback: 'force_self' }],
  ])('%s', (v, want) => {
    expect(plan(v)).toMatchObject(want);
  });

  it.each<[string, typeof fresh, number, RegExp]>([
    ['app=evil', fresh, 403, /app evil is not in org acme/],
    ['app=nope', fresh, 502, /no app nope/],
    ['app=db', fresh, 502, /app db has no HTTP service/],
    ['instance=a0000001', fresh, 502, /no machine a0000001 in app web/],
    ['region=iad', { ...fresh, bodyTooLarge: true }, 413, /over 1048576 bytes/],
    ['region=iad', { ...fresh, replays: MAX_REPLAYS }, 508, /after 2 replays/],
    ['region=iad', { ...fresh, replays: 1, fallback: true }, 508, /failed replay/],
  ])('%s -> %i', (v, h, status, msg) => {
    let err: unknown;
    try {
      plan(v, h);
    } catch (e) {
      err = e;
    }
    expect((err as { status: number }).status).toBe(status);
    expect((err as Error).message).toMatch(msg);
  });

  it('lets a chain of MAX_REPLAYS replays through', () => {
    expect(MAX_REPLAYS).toBe(2);
    expect(plan('region=iad', { ...fresh, replays: MAX_REPLAYS - 1 }).steer.regions).toEqual(['iad']);
    expect(MAX_REPLAY_BODY).toBe(1 << 20);
  });

  it('fly-replay-src names the machine, its region, the time in µs and the state', () => {
    expect(replaySrc(machines[0]!, null, 1_700_000_000_123)).toBe('instance=e0000001;region=ewr;t=1700000000123000');
    expect(replaySrc(machines[0]!, 'write', 1)).toBe('instance=e0000001;region=ewr;t=1000;state=write');
    expect(replaySrc(machines[0]!, 'a "b";c', 1)).toBe('instance=e0000001;region=ewr;t=1000;state="a \\"b\\";c"');
  });
});

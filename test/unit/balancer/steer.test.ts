import { describe, expect, it } from 'vitest';
import { Balancer, type Slot, type Steer } from '../../../src/balancer/index.js';
import { regionTable, webMachine } from './fixture.js';

const passive = { consecutiveFailures: 1, baseEjectionMs: 60_000, maxEjectionMs: 60_000, maxEjectionPercent: 100 };
const limits = { soft_limit: 1, hard_limit: 2 };

/** ewr (proxy region), iad, lhr: one machine each; ids name the region. */
function fleet(): Balancer {
  const b = new Balancer({ region: 'ewr', regions: regionTable, slowStartMs: 0, passive, random: () => 0 });
  b.upsert(webMachine('e0000001', 'ewr'));
  b.upsert(webMachine('10000001', 'iad'));
  b.upsert(webMachine('a0000001', 'lhr'));
  return b;
}

const NONE: Steer = { machine: null, forceMachine: false, regions: null, forceRegions: false };
const preferRegion = (...r: string[]): Steer => ({ ...NONE, regions: r });
const forceRegion = (...r: string[]): Steer => ({ ...NONE, regions: r, forceRegions: true });
const preferMachine = (id: string): Steer => ({ ...NONE, machine: id });
const forceMachine = (id: string): Steer => ({ ...NONE, machine: id, forceMachine: true });

type Setup = (b: Balancer) => void;
const busy =
  (id: string, n: number): Setup =>
  (b) => {
    for (let i = 0; i < n; i++) expect(b.pickSteered('web', { soft_limit: 99, hard_limit: 99 }, forceMachine(id))?.machine.id).toBe(id);
  };
const stopped =
  (id: string): Setup =>
  (b) =>
    b.upsert({ ...b.slot(id)!.machine, state: 'stopped' });
const unhealthy =
  (id: string): Setup =>
  (b) =>
    b.upsert({ ...b.slot(id)!.machine, health: { status: 'unhealthy', reason: 'x', changed_at: 1 } });
const ejected =
  (id: string): Setup =>
  (b) =>
    void b.reportFailure(b.slot(id)!);

describe('balancer: steered picks', () => {
  it.each<[string, Steer, Setup[], string | null]>([
    ['no constraint: nearest region', NONE, [], 'e0000001'],
    ['prefer lhr', preferRegion('lhr'), [], 'a0000001'],
    ['prefer lhr, then iad (list order, not distance)', preferRegion('lhr', 'iad'), [stopped('a0000001')], '10000001'],
    ['prefer a region without machines: normal order', preferRegion('syd'), [], 'e0000001'],
    ['prefer lhr at soft limit: still lhr (under hard limit)', preferRegion('lhr'), [busy('a0000001', 1)], 'a0000001'],
    ['prefer lhr at hard limit: normal order', preferRegion('lhr'), [busy('a0000001', 2)], 'e0000001'],
    ['prefer lhr, unhealthy there: normal order', preferRegion('lhr'), [unhealthy('a0000001')], 'e0000001'],
    ['force lhr', forceRegion('lhr'), [], 'a0000001'],
    ['force lhr at hard limit: nothing', forceRegion('lhr'), [busy('a0000001', 2)], null],
    ['force lhr, stopped: nothing', forceRegion('lhr'), [stopped('a0000001')], null],
    ['force syd (no machine there): nothing', forceRegion('syd'), [], null],
    ['force lhr or iad: iad when lhr is ejected', forceRegion('lhr', 'iad'), [ejected('a0000001')], '10000001'],
    ['force list: soft limits before order', forceRegion('lhr', 'iad'), [busy('a0000001', 1)], '10000001'],
    ['prefer machine', preferMachine('10000001'), [], '10000001'],
    ['prefer machine at soft limit: still it', preferMachine('10000001'), [busy('10000001', 1)], '10000001'],
    ['prefer machine at hard limit: normal pick', preferMachine('10000001'), [busy('10000001', 2)], 'e0000001'],
    ['prefer stopped machine: normal pick', preferMachine('10000001'), [stopped('10000001')], 'e0000001'],
    ['prefer unknown machine: normal pick', preferMachine('ffffffff'), [], 'e0000001'],
    ['force machine', forceMachine('a0000001'), [], 'a0000001'],
    ['force machine at hard limit: nothing', forceMachine('a0000001'), [busy('a0000001', 2)], null],
    ['force unhealthy machine: nothing', forceMachine('a0000001'), [unhealthy('a0000001')], null],
    ['force ejected machine: nothing', forceMachine('a0000001'), [ejected('a0000001')], null],
    ['prefer machine, else force lhr', { ...preferMachine('10000001'), regions: ['lhr'], forceRegions: true }, [stopped('10000001')], 'a0000001'],
  ])('%s', (_name, steer, setup, want) => {
    const b = fleet();
    for (const f of setup) f(b);
    const s = b.pickSteered('web', limits, steer);
    expect(s?.machine.id ?? null).toBe(want);
  });

  it('acquires: a forced machine fills to its hard limit, then refuses', () => {
    const b = fleet();
    const got = [1, 2, 3].map(() => b.pickSteered('web', limits, forceMachine('e0000001'))?.machine.id ?? null);
    expect(got).toEqual(['e0000001', 'e0000001', null]);
    expect(b.slot('e0000001')!.outstanding).toBe(2);
  });

  it('honours the exclude set (fly-replay elsewhere=true)', () => {
    const b = fleet();
    const self = new Set<Slot>([b.slot('e0000001')!]);
    expect(b.pickSteered('web', limits, NONE, self)!.machine.id).toBe('10000001');
    expect(b.pickSteered('web', limits, forceRegion('ewr'), self)).toBeNull();
    expect(b.pickSteered('web', limits, forceMachine('e0000001'), self)).toBeNull();
  });

  it.each<[string, Steer, Setup[], number]>([
    ['force machine with room', forceMachine('a0000001'), [], 1],
    ['force machine at hard limit (wait)', forceMachine('a0000001'), [busy('a0000001', 2)], 1],
    ['force stopped machine (fail)', forceMachine('a0000001'), [stopped('a0000001')], 0],
    ['force region list', forceRegion('lhr', 'iad'), [], 2],
    ['force region without machines', forceRegion('syd'), [], 0],
    ['prefer: the whole app', preferRegion('syd'), [], 3],
  ])('steerCandidates: %s', (_name, steer, setup, want) => {
    const b = fleet();
    for (const f of setup) f(b);
    expect(b.steerCandidates('web', steer)).toBe(want);
  });
});

import { describe, expect, it } from 'vitest';
import { Balancer, type Slot } from '../../../src/balancer/index.js';
import type { Machine } from '../../../src/catalog/types.js';
import { parseRegionsCsv, RegionTable } from '../../../src/regions/index.js';
import { regionsCsv, regionTable, webMachine } from './fixture.js';

const passive = { consecutiveFailures: 2, baseEjectionMs: 1_000, maxEjectionMs: 10_000, maxEjectionPercent: 50 };

let seq = 0;
const machine = (region: string, over: Partial<Machine> = {}): Machine => webMachine((0x10000000 + seq++).toString(16), region, over);

function balancer(opts: { region?: string; now?: () => number; random?: () => number; slowStartMs?: number; rtt?: Record<string, Record<string, number>> } = {}): Balancer {
  const regions = opts.rtt ? new RegionTable(parseRegionsCsv(regionsCsv), opts.rtt) : regionTable;
  return new Balancer({
    region: opts.region ?? 'ewr',
    regions,
    slowStartMs: opts.slowStartMs ?? 0,
    passive,
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.random ? { random: opts.random } : {}),
  });
}

const limits = { soft_limit: 2, hard_limit: 3 };

describe('balancer: region choice', () => {
  it.each([
    // proxy region, machine regions, expected region of the first pick, outcome
    ['ewr', ['ewr', 'iad', 'lhr'], 'ewr', 'same_region'],
    ['ewr', ['iad', 'lhr', 'syd'], 'iad', 'spilled'],
    ['ams', ['lhr', 'fra', 'syd'], 'fra', 'spilled'],
    ['syd', ['nrt', 'sin', 'lax'], 'sin', 'spilled'],
  ])('from %s over %j picks %s (%s)', (from, regions, want, outcome) => {
    const b = balancer({ region: from });
    for (const r of regions) b.upsert(machine(r));
    const s = b.pick('web', limits)!;
    expect(s.machine.region).toBe(want);
    expect(s.outcome).toBe(outcome);
  });

  it('honours an RTT matrix over great-circle distance', () => {
    const b = balancer({ region: 'ewr', rtt: { ewr: { lhr: 1 } } });
    b.upsert(machine('iad'));
    b.upsert(machine('lhr'));
    expect(b.pick('web', limits)!.machine.region).toBe('lhr');
  });

  it('spills to the next region at soft_limit, then fills to hard_limit nearest first', () => {
    const b = balancer({ region: 'ewr' });
    b.upsert(machine('ewr'));
    b.upsert(machine('iad'));
    const got = Array.from({ length: 6 }, () => b.pick('web', limits)?.machine.region ?? null);
    // 2 to ewr (soft), 2 to iad (soft), then hard: ewr once more, iad once more.
    expect(got).toEqual(['ewr', 'ewr', 'iad', 'iad', 'ewr', 'iad']);
    expect(b.pick('web', limits)).toBeNull();
    expect(b.candidateCount('web')).toBe(2);
  });

  it('never goes above hard_limit, and a release makes room again', () => {
    const b = balancer();
    b.upsert(machine('ewr'));
    const held: Slot[] = [];
    for (let i = 0; i < 10; i++) {
      const s = b.pick('web', { soft_limit: 3, hard_limit: 5 });
      if (s) held.push(s);
    }
    expect(held).toHaveLength(5);
    expect(held[0]!.outstanding).toBe(5);
    b.release(held.pop()!);
    expect(b.pick('web', { soft_limit: 3, hard_limit: 5 })).not.toBeNull();
  });

  it('returns null for an unknown app or one without candidates', () => {
    const b = balancer();
    expect(b.pick('nope', limits)).toBeNull();
    b.upsert(machine('ewr', { state: 'stopped' }));
    expect(b.pick('web', limits)).toBeNull();
    expect(b.candidateCount('web')).toBe(0);
  });
});

describe('balancer: least outstanding inside a region', () => {
  it('spreads 30 long-lived acquisitions over 3 machines exactly 10 each', () => {
    const b = balancer();
    for (let i = 0; i < 3; i++) b.upsert(machine('ewr'));
    const counts = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const s = b.pick('web', { soft_limit: 100, hard_limit: 100 })!;
      counts.set(s.machine.id, (counts.get(s.machine.id) ?? 0) + 1);
    }
    expect([...counts.values()]).toEqual([10, 10, 10]);
  });

  it('sends the next pick to the machine that released', () => {
    const b = balancer();
    for (let i = 0; i < 3; i++) b.upsert(machine('ewr'));
    const a = b.pick('web', limits)!;
    const c = b.pick('web', limits)!;
    b.pick('web', limits);
    b.release(c);
    expect(b.pick('web', limits)).toBe(c);
    expect(a.outstanding).toBe(1);
  });

  it('breaks ties at random', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const b = balancer();
      for (let j = 0; j < 4; j++) b.upsert(machine('ewr', { id: `aaaa000${j}` }));
      seen.add(b.pick('web', limits)!.machine.id);
    }
    expect(seen.size).toBeGreaterThan(1);
  });
});

describe('balancer: candidates', () => {
  it.each([
    ['started, healthy', { state: 'started' }, 'healthy', true],
    ['started, unknown health', { state: 'started' }, 'unknown', true],
    ['started, unhealthy', { state: 'started' }, 'unhealthy', false],
    ['stopped, healthy', { state: 'stopped' }, 'healthy', false],
    // the lifecycle of machines a host runs: only `started` takes work
    ['created, healthy', { state: 'created' }, 'healthy', false],
    ['starting, healthy', { state: 'starting' }, 'healthy', false],
    ['stopping, healthy', { state: 'stopping' }, 'healthy', false],
    ['destroying, healthy', { state: 'destroying' }, 'healthy', false],
    ['failed, unknown health', { state: 'failed' }, 'unknown', false],
  ] as const)('%s -> candidate %s', (_name, over, status, want) => {
    const b = balancer();
    b.upsert(machine('ewr', { ...over, health: { status, reason: '', changed_at: 0 } }));
    expect(b.pick('web', limits) !== null).toBe(want);
  });

  it('follows updates: stopping and deleting remove a machine, starting adds it back', () => {
    const b = balancer();
    const m = machine('ewr');
    b.upsert(m);
    b.upsert({ ...m, state: 'stopped' });
    expect(b.pick('web', limits)).toBeNull();
    b.upsert({ ...m, state: 'started' });
    const s = b.pick('web', limits)!;
    expect(s.machine.id).toBe(m.id);
    b.remove(m.id);
    expect(b.pick('web', limits)).toBeNull();
    b.release(s); // in-flight work of a deleted machine still releases
    expect(s.outstanding).toBe(0);
  });

  it('drops a machine the moment its host reports it restarting, and takes it back when started', () => {
    const b = balancer();
    const a = machine('ewr', { id: 'aaaa0001' });
    const c = machine('ewr', { id: 'aaaa0002' });
    b.upsert(a);
    b.upsert(c);
    b.upsert({ ...a, state: 'starting' });
    for (let i = 0; i < 10; i++) {
      const s = b.pick('web', limits)!;
      expect(s.machine.id).toBe('aaaa0002');
      b.release(s);
    }
    b.upsert({ ...a, state: 'stopping' });
    b.upsert({ ...c, state: 'failed' });
    expect(b.pick('web', limits)).toBeNull();
    b.upsert({ ...a, state: 'started' });
    expect(b.pick('web', limits)!.machine.id).toBe('aaaa0001');
  });

  it('keeps counters across a region change and a reset', () => {
    const b = balancer();
    const m = machine('ewr');
    b.upsert(m);
    const s = b.pick('web', limits)!;
    b.upsert({ ...m, region: 'iad' });
    b.reset([{ ...m, region: 'iad' }]);
    expect(b.slot(m.id)!.outstanding).toBe(1);
    expect(b.pick('web', limits)!.outcome).toBe('spilled');
    b.release(s);
  });

  it('skips excluded machines (connect retries)', () => {
    const b = balancer();
    b.upsert(machine('ewr'));
    b.upsert(machine('ewr'));
    const first = b.pick('web', limits)!;
    b.release(first);
    const second = b.pick('web', limits, new Set([first]))!;
    expect(second).not.toBe(first);
    expect(b.pick('web', limits, new Set([first, second]))).toBeNull();
  });
});

describe('balancer: retries', () => {
  it.each([
    // machine regions, regions of the tried machines, avoid tried regions?, expected region
    [['ewr', 'ewr', 'ewr', 'iad', 'iad'], ['ewr', 'ewr'], false, 'ewr'],
    [['ewr', 'ewr', 'ewr', 'iad', 'iad'], ['ewr', 'ewr'], true, 'iad'],
    [['ewr', 'ewr', 'ewr', 'iad', 'lhr'], ['ewr', 'iad'], true, 'lhr'],
    // nowhere else to go: the last try stays in the failed region rather than failing
    [['ewr', 'ewr', 'ewr'], ['ewr', 'ewr'], true, 'ewr'],
  ])('machines in %j, tried %j, avoid=%s -> %s', (regions, triedRegions, avoid, want) => {
    const b = balancer();
    const ms = regions.map((r) => machine(r));
    for (const m of ms) b.upsert(m);
    const tried = new Set<Slot>();
    for (const r of triedRegions) tried.add(b.slot(ms.find((m) => m.region === r && !tried.has(b.slot(m.id)!))!.id)!);
    const s = b.pick('web', limits, tried, avoid)!;
    expect(s.machine.region).toBe(want);
    expect(tried.has(s)).toBe(false);
  });
});

describe('balancer: passive ejection', () => {
  it('ejects after consecutive failures, re-admits after the ejection time', () => {
    let now = 1_000_000;
    const b = balancer({ now: () => now });
    const bad = machine('ewr');
    for (const m of [bad, machine('ewr'), machine('ewr'), machine('ewr')]) b.upsert(m);
    const s = b.slot(bad.id)!;
    expect(b.reportFailure(s)).toBe(0);
    expect(b.reportFailure(s)).toBe(1_000);
    for (let i = 0; i < 20; i++) {
      const p = b.pick('web', { soft_limit: 100, hard_limit: 100 })!;
      expect(p.machine.id).not.toBe(bad.id);
    }
    now += 1_001;
    expect(b.candidateCount('web')).toBe(4);
  });

  it('a success ends the run of failures', () => {
    const b = balancer();
    const m = machine('ewr');
    b.upsert(m);
    b.upsert(machine('ewr'));
    const s = b.slot(m.id)!;
    b.reportFailure(s);
    b.reportSuccess(s);
    expect(b.reportFailure(s)).toBe(0);
  });

  it('ends a passive ejection as soon as the active checker re-admits the machine', () => {
    const now = 1_000_000;
    const b = balancer({ now: () => now });
    const bad = machine('ewr');
    for (const m of [bad, machine('ewr'), machine('ewr'), machine('ewr')]) b.upsert(m);
    b.reportFailure(b.slot(bad.id)!);
    expect(b.reportFailure(b.slot(bad.id)!)).toBe(1_000);
    b.upsert({ ...bad, health: { status: 'unhealthy', reason: 'tcp connect refused', changed_at: now } });
    expect(b.candidateCount('web')).toBe(3);
    // still inside the ejection time, but healthy again: back in rotation at once
    b.upsert({ ...bad, health: { status: 'healthy', reason: '', changed_at: now } });
    expect(b.candidateCount('web')).toBe(4);
    // and its ejection history is gone: the next ejection starts from the base time again
    b.reportFailure(b.slot(bad.id)!);
    expect(b.reportFailure(b.slot(bad.id)!)).toBe(1_000);
  });

  it('tells onEjections when a machine is ejected or taken back early, not on each failure or when an ejection runs out', () => {
    let now = 1_000_000;
    const b = balancer({ now: () => now });
    const told: string[][] = [];
    b.onEjections = () => told.push(b.ejectedMachines().map((e) => e.machine));
    const [bad, other] = [machine('ewr'), machine('ewr')];
    for (const m of [bad, other, machine('ewr'), machine('ewr')]) b.upsert(m);
    b.reportFailure(b.slot(bad.id)!);
    expect(told).toEqual([]);
    b.reportFailure(b.slot(bad.id)!);
    expect(told).toEqual([[bad.id]]);
    b.reportFailure(b.slot(other.id)!);
    b.reportFailure(b.slot(other.id)!);
    expect(told).toEqual([[bad.id], [bad.id, other.id]]);
    b.upsert({ ...bad, health: { status: 'unhealthy', reason: 'refused', changed_at: now } });
    b.upsert({ ...bad, health: { status: 'healthy', reason: '', changed_at: now } });
    expect(told).toEqual([[bad.id], [bad.id, other.id], [other.id]]);
    b.remove(other.id);
    expect(told).toEqual([[bad.id], [bad.id, other.id], [other.id], []]);
    now += 60_000;
    b.candidateCount('web');
    expect(told).toHaveLength(4);
  });

  it('never ejects more than the panic threshold allows', () => {
    const b = balancer();
    const ms = [machine('ewr'), machine('ewr')];
    for (const m of ms) b.upsert(m);
    for (const m of ms) {
      b.reportFailure(b.slot(m.id)!);
      b.reportFailure(b.slot(m.id)!);
    }
    expect(b.candidateCount('web')).toBe(1);
  });
});

describe('balancer: slow start', () => {
  it.each([
    // elapsed share of the window, expected share of picks for the new machine (of 2)
    [0.1, 0.05],
    [0.5, 0.25],
    [0.9, 0.45],
  ])('at %s of the window the re-admitted machine gets about %s of new picks', (elapsedShare, want) => {
    const window = 10_000;
    const now = 1_000_000;
    const b = balancer({ now: () => now, slowStartMs: window });
    const steady = machine('ewr');
    const back = machine('ewr', { health: { status: 'unhealthy', reason: 'down', changed_at: 0 } });
    b.upsert(steady);
    b.upsert(back);
    b.upsert({ ...back, health: { status: 'healthy', reason: '', changed_at: now - elapsedShare * window } });
    let toBack = 0;
    const n = 4_000;
    for (let i = 0; i < n; i++) {
      const s = b.pick('web', { soft_limit: 100, hard_limit: 100 })!;
      if (s.machine.id === back.id) toBack++;
      b.release(s);
    }
    expect(toBack / n).toBeGreaterThan(want - 0.05);
    expect(toBack / n).toBeLessThan(want + 0.05);
  });

  it('takes a slow-starting machine when it is the only one', () => {
    const now = 1_000_000;
    const b = balancer({ now: () => now, slowStartMs: 10_000 });
    const m = machine('ewr', { health: { status: 'unhealthy', reason: 'down', changed_at: 0 } });
    b.upsert(m);
    b.upsert({ ...m, health: { status: 'healthy', reason: '', changed_at: now } });
    expect(b.pick('web', limits)!.machine.id).toBe(m.id);
  });
});

describe('balancer: hosts that stopped heartbeating', () => {
  it('leaves the machines of an unreachable host out, counters kept, and takes them back', () => {
    const b = balancer({ region: 'ewr' });
    const ewr = machine('ewr', { host: 'ewr-1' });
    const iad = machine('iad', { host: 'iad-1' });
    const byHand = machine('ewr');
    for (const m of [ewr, iad, byHand]) b.upsert(m);
    const held = b.pick('web', limits)!;
    expect(held.machine.region).toBe('ewr');
    let woken = 0;
    b.onCapacity = () => woken++;
    b.setHostReachable('ewr-1', false);
    b.setHostReachable('ewr-1', false); // twice changes nothing
    expect(b.candidateCount('web')).toBe(2);
    const seen = new Set<string>();
    const slots: Slot[] = [];
    for (let i = 0; i < 4; i++) {
      const s = b.pick('web', limits)!;
      seen.add(s.machine.id);
      slots.push(s);
    }
    expect(seen.has(ewr.id)).toBe(false); // the machine registered by hand in ewr is still picked
    expect(seen.has(byHand.id)).toBe(true);
    // a catalog update of a machine on the silent host does not bring it back
    b.upsert({ ...ewr, updated_at: 5 });
    expect(b.candidateCount('web')).toBe(2);
    b.setHostReachable('ewr-1', true);
    expect(b.candidateCount('web')).toBe(3);
    expect(woken).toBe(1);
    // its in-flight count survived the round trip
    expect(b.slot(ewr.id)!.outstanding).toBe(held.machine.id === ewr.id ? 1 : 0);
    for (const s of [held, ...slots]) b.release(s);
    woken = 0;
    b.setHostReachable('iad-1', true); // never down: nothing happens
    expect(woken).toBe(0);
  });
});

import { describe, expect, it } from 'vitest';
import { PassiveEjector } from '../../../src/balancer/passive.js';

const opts = { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 8000, maxEjectionPercent: 50 };

describe('PassiveEjector', () => {
  it('ejects after N consecutive failures, not before; a success resets the run', () => {
    const p = new PassiveEjector(opts);
    const rows: [op: 'fail' | 'ok', now: number, returns: number, ejected: boolean][] = [
      ['fail', 0, 0, false],
      ['fail', 1, 0, false],
      ['ok', 2, 0, false],
      ['fail', 3, 0, false],
      ['fail', 4, 0, false],
      ['fail', 5, 1000, true],
      ['fail', 6, 0, true], // already ejected: nothing more
    ];
    for (const [op, now, ret, ejected] of rows) {
      if (op === 'fail') expect(p.failure('web', 'm1', 4, now), `fail at ${now}`).toBe(ret);
      else p.success('m1');
      expect(p.isEjected('m1', now)).toBe(ejected);
    }
    expect(p.isEjected('m1', 1004)).toBe(true);
    expect(p.isEjected('m1', 1005)).toBe(false);
  });

  it('doubles the ejection time on each repeat, up to the cap', () => {
    const p = new PassiveEjector(opts);
    let now = 0;
    const times: number[] = [];
    for (let round = 0; round < 6; round++) {
      let ms = 0;
      for (let i = 0; i < 3; i++) ms = p.failure('web', 'm1', 4, now);
      times.push(ms);
      now += ms; // back in rotation exactly when the ejection ends
    }
    expect(times).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
  });

  it('starts over after staying clean for a whole max ejection period (decay)', () => {
    const p = new PassiveEjector(opts);
    const ejectAt = (now: number): number => {
      p.failure('web', 'm1', 4, now);
      p.failure('web', 'm1', 4, now);
      return p.failure('web', 'm1', 4, now);
    };
    expect(ejectAt(0)).toBe(1000); // until 1000
    expect(ejectAt(1000)).toBe(2000); // until 3000
    expect(ejectAt(3000 + 8000)).toBe(4000); // exactly max later: still counts as a repeat
    expect(ejectAt(15_000 + 8001)).toBe(1000); // clean for longer than max: back to base
  });

  it.each([
    // [machines in app, percent, how many of them may be ejected at once]
    [1, 50, 0],
    [2, 50, 1],
    [3, 50, 1],
    [5, 50, 2],
    [10, 50, 5],
    [10, 100, 10],
    [4, 0, 0],
  ])('panic threshold: %i machines at %i%% -> at most %i ejected', (size, pct, allowed) => {
    const p = new PassiveEjector({ ...opts, maxEjectionPercent: pct });
    for (let m = 0; m < size; m++) for (let i = 0; i < 3; i++) p.failure('web', `m${m}`, size, 0);
    expect(p.ejected('web', 0)).toHaveLength(allowed);
    for (let m = 0; m < size; m++) expect(p.isEjected(`m${m}`, 0)).toBe(m < allowed);
  });

  it('frees panic room when ejections expire, and counts apps separately', () => {
    const p = new PassiveEjector(opts);
    const fail3 = (app: string, id: string, now: number): number => {
      let ms = 0;
      for (let i = 0; i < 3; i++) ms = p.failure(app, id, 2, now);
      return ms;
    };
    expect(fail3('web', 'a', 0)).toBe(1000);
    expect(fail3('web', 'b', 0)).toBe(0); // 1 of 2 already out
    expect(fail3('api', 'c', 0)).toBe(1000); // another app has its own budget
    // a came back at 1000; b's run of failures was kept, so its next failure ejects it.
    expect(p.failure('web', 'b', 2, 1000)).toBe(1000);
    expect(p.ejected('web', 1000)).toEqual(['b']);
  });

  it('forget drops the machine and its ejection', () => {
    const p = new PassiveEjector(opts);
    for (let i = 0; i < 3; i++) p.failure('web', 'm1', 4, 0);
    expect(p.ejected('web', 0)).toEqual(['m1']);
    p.forget('m1');
    expect(p.isEjected('m1', 0)).toBe(false);
    expect(p.ejected('web', 0)).toEqual([]);
    expect(p.failure('web', 'm1', 4, 1)).toBe(0); // starts from zero failures
  });
});

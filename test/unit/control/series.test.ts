import { describe, expect, it } from 'vitest';
import { SeriesStore } from '../../../src/control/series.js';

describe('SeriesStore', () => {
  it('keeps the last `capacity` points, oldest first, with null where a series had no value', () => {
    const store = new SeriesStore(3);
    const f = store.family(['a', 'b'], 10);
    store.begin(1000);
    f.set('x', [1, 10]);
    store.begin(2000);
    f.set('y', [5, NaN]); // x has no value at 2000
    store.begin(3000);
    f.set('x', [3, 30]);
    store.begin(4000); // the ring wraps: 1000 is gone
    f.set('x', [4, 40]);
    expect(store.times(0)).toEqual([2000, 3000, 4000]);
    expect(f.read('x', 0)).toEqual({ a: [null, 3, 4], b: [null, 30, 40] });
    expect(f.read('y', 0)).toEqual({ a: [5, null, null], b: [null, null, null] });
    expect(f.read('x', 2500, ['b'])).toEqual({ b: [30, 40] });
    expect(f.read('nope', 0)).toBeNull();
  });

  it('refuses new series past the family ceiling and says so', () => {
    const store = new SeriesStore(4);
    const f = store.family(['v'], 2);
    store.begin(1);
    expect(f.set('a', [1])).toBe(true);
    expect(f.set('b', [1])).toBe(true);
    expect(f.set('c', [1])).toBe(false);
    expect(f.size).toBe(2);
    expect(f.refused).toBe(1);
  });

  it('drops a series that stayed zero or empty for a whole window', () => {
    const store = new SeriesStore(3);
    const f = store.family(['v'], 10);
    store.begin(1);
    f.set('busy', [1]);
    f.set('idle', [0]);
    for (let t = 2; t <= 3; t++) {
      store.begin(t);
      f.set('busy', [t]);
      f.set('idle', [0]);
    }
    expect([...f.keys()].sort()).toEqual(['busy', 'idle']);
    store.begin(4);
    expect([...f.keys()]).toEqual(['busy']);
  });

  it('averages a column over a window, weighting each point by the time it covers', () => {
    const store = new SeriesStore(10, 1000);
    const f = store.family(['rate'], 10);
    store.begin(1000);
    f.set('x', [100]);
    store.begin(2000);
    f.set('x', [10]);
    store.begin(2250); // a short point (closed early after a routing change)
    f.set('x', [50]);
    // The last 1250 ms: the points at 2000 (covers 1000 ms) and 2250 (covers 250 ms).
    expect(f.mean('x', 'rate', 1250)).toBeCloseTo((10 * 1000 + 50 * 250) / 1250, 6);
    expect(f.mean('nope', 'rate', 1500)).toBeNaN();
  });
});

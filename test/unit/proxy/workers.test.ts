import { describe, expect, it } from 'vitest';
import { share } from '../../../src/proxy/share.js';

// Each worker's share of a limit; the shares must add up to the limit exactly (the node-wide cap).
describe('worker shares of a limit', () => {
  it.each([
    [5, 2, [3, 2]],
    [3, 2, [2, 1]],
    [1, 2, [1, 0]],
    [25, 4, [7, 6, 6, 6]],
    [7, 1, [7]],
    [0, 3, [0, 0, 0]],
  ])('%s over %s workers -> %j', (limit, count, want) => {
    const got = Array.from({ length: count }, (_, i) => share(limit, i, count));
    expect(got).toEqual(want);
    expect(got.reduce((a, b) => a + b, 0)).toBe(limit);
  });
});

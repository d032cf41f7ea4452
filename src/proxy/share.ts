/**
 * A proxy worker's share of a limit (see ./workers.ts): its own module, so that the data path
 * (./upstream.ts) can use it without loading node:cluster into a one-process proxy.
 */

/** Units of a limit worker `index` of `count` may hold; the shares of all workers sum to `limit`. */
export function share(limit: number, index: number, count: number): number {
  if (count <= 1) return limit;
  return Math.floor(limit / count) + (index < limit % count ? 1 : 0);
}

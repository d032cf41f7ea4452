/**
 * The proxy's memory policy for its own process.
 *
 * The guard keeps streamed bodies from inflating the proxy's memory. Every chunk read from a
 * socket is a fresh buffer, freed only when the garbage collector runs; V8 lets about 64 MiB of
 * such dead buffers pile up before it collects on its own, so a 100 MiB transfer would show as
 * tens of MiB of RSS growth although at most a few chunks are alive. While HTTP requests are in
 * flight, it samples buffer memory every 20 ms and asks for a young-generation collection once it
 * grew past `thresholdBytes` since the last one (a scavenge costs about a millisecond).
 *
 * holdYoungGeneration() keeps V8's young generation at its first size (see there).
 */
import v8 from 'node:v8';
import vm from 'node:vm';

type Gc = (opts?: { type: 'minor' | 'major' }) => void;
let gcFn: Gc | null | undefined;
/*
 * The guard bounds memory for HTTP bodies (a stated requirement); TCP splices are left to V8's
 * own collection, because forced collections cost bulk TCP throughput about a third.
 */

function collector(): Gc | null {
  if (gcFn !== undefined) return gcFn;
  try {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as Gc;
  } catch {
    gcFn = null;
  }
  return gcFn;
}

/**
 * Stops V8 from growing the young generation past its first size (two 1 MiB semi-spaces) in this
 * process; `hold = false` gives growth back to V8 (its default factor, 2). V8 doubles the young
 * generation, up to 2 x 16 MiB, whenever many objects survive a scavenge, which is what a proxy
 * does when thousands of connections open at once (each keeps its sockets), and hands it back
 * only after about ten quiet seconds: with 9,900 idle connections it held 29 MiB, mostly empty,
 * of the proxy's 136. Objects that live on are promoted sooner, which is where connections belong
 * anyway. The flag is read each time V8 would grow the space, so setting it at run time works;
 * it is process-wide. Measurements: src/proxy/README.md, "Memory".
 */
export function holdYoungGeneration(hold = true): void {
  v8.setFlagsFromString(`--semi-space-growth-factor=${hold ? 1 : 2}`);
}

/** Starts the guard (it collects while `busy()`: HTTP work in flight); returns a function that stops it. */
export function startMemoryGuard(thresholdBytes: number, everyMs: number, busy: () => boolean): () => void {
  const gc = thresholdBytes > 0 ? collector() : null;
  if (!gc) return () => undefined;
  let base = v8.getHeapStatistics().external_memory;
  const t = setInterval(() => {
    const now = v8.getHeapStatistics().external_memory;
    // Without HTTP work, or after a collection freed buffers (asynchronously), move the base.
    if (!busy() || now < base) {
      base = now;
      return;
    }
    if (now - base > thresholdBytes) {
      // Socket chunks die young: a scavenge (about 1 ms) frees them, no full collection needed.
      gc({ type: 'minor' });
      base = now;
    }
  }, everyMs);
  t.unref();
  return () => clearInterval(t);
}

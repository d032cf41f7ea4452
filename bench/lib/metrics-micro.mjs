// Scratch: nanoseconds per metric operation the proxy does per request, through the proxy's own
// metric objects (src/proxy/metrics.ts) of a built tree: a labelled counter child's inc(), a
// histogram child's observe(), a gauge child's inc()+dec(), and, for scale, a counter inc() with a
// label object (the lookup the hot path avoids). Pass another checkout's root to compare trees
// (e.g. one still on prom-client): both run the same calls.
//   npm run build && node bench/lib/metrics-micro.mjs [ROOT]
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(process.argv[2] ?? fileURLToPath(new URL('../..', import.meta.url)));
const { appMetrics, httpRequests } = await import(`${root}/dist/proxy/metrics.js`);
const N = Number(process.env.MICRO_N ?? 5e6);
const ROUNDS = 7;

const app = appMetrics('web');
const ok = app.requests(200, 'aaaa0001');
const active = app.activeOn('aaaa0001');
const ops = {
  'counter child inc()': () => ok.inc(),
  'histogram child observe()': (i) => app.requestSeconds.observe((i & 1023) * 0.00002),
  'gauge child inc()+dec()': () => {
    active.inc();
    active.dec();
  },
  'counter inc(labels object)': () => httpRequests.inc({ app: 'web', machine: 'aaaa0002', status_class: '2xx' }),
};

console.log(`${root}: ns per operation, best of ${ROUNDS} rounds of ${N.toLocaleString('en')}`);
for (const [name, op] of Object.entries(ops)) {
  const n = name.includes('labels object') ? N / 10 : N;
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) op(i);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n);
  }
  console.log(`  ${name.padEnd(28)} ${best.toFixed(1)} ns`);
}

// Runs one autocannon load in its own process (so the load generator's CPU is not the bench's)
// and prints "RESULT <json>" with the summary; options come as one JSON argument.
// autocannon's own histogram keeps whole milliseconds, too coarse on loopback, so the worker
// also keeps every 2xx response time (fractional ms) and adds exact percentiles as `fine`.
// With `samples: true` it also prints "SAMPLE <json>" each second (2xx, non-2xx, errors), which a
// failover bench reads as a timeline.
import autocannon from 'autocannon';

const opts = JSON.parse(process.argv[2] ?? '{}');
const { samples = false, ...ac } = opts;
const inst = autocannon({ ...ac, renderProgressBar: false, renderResultsTable: false, renderLatencyTable: false });

let times = new Float64Array(1 << 16);
let n = 0;
let ok = 0;
let bad = 0;
let errors = 0;
inst.on('response', (_client, status, _bytes, responseTime) => {
  if (status >= 200 && status < 300) {
    ok++;
    if (n === times.length) {
      const bigger = new Float64Array(times.length * 2);
      bigger.set(times);
      times = bigger;
    }
    times[n++] = responseTime;
  } else bad++;
});
inst.on('reqError', () => errors++);

function percentiles() {
  const s = times.subarray(0, n).sort();
  const at = (q) => (n ? s[Math.min(n - 1, Math.ceil(q * n) - 1)] : NaN);
  return { count: n, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: n ? s[n - 1] : NaN };
}

if (samples) {
  const t0 = Date.now();
  const timer = setInterval(() => {
    console.log(`SAMPLE ${JSON.stringify({ t: Date.now() - t0, ok, non2xx: bad, errors })}`);
    ok = bad = errors = 0;
  }, 1000);
  inst.on('done', () => clearInterval(timer));
}
inst.on('done', (r) => {
  console.log(`RESULT ${JSON.stringify({ ...r, fine: percentiles() })}`);
  process.exit(0);
});
process.on('SIGTERM', () => inst.stop());

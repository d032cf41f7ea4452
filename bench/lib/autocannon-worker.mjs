// Runs one autocannon load in its own process (so the load generator's CPU is not the bench's)
// and prints "RESULT <json>" with the summary; options come as one JSON argument.
// With `samples: true` it also prints "SAMPLE <json>" each second (2xx, non-2xx, errors), which a
// failover bench reads as a timeline.
import autocannon from 'autocannon';

const opts = JSON.parse(process.argv[2] ?? '{}');
const { samples = false, ...ac } = opts;
const inst = autocannon({ ...ac, renderProgressBar: false, renderResultsTable: false, renderLatencyTable: false });
if (samples) {
  let ok = 0;
  let bad = 0;
  let errors = 0;
  inst.on('response', (_client, status) => {
    if (status >= 200 && status < 300) ok++;
    else bad++;
  });
  inst.on('reqError', () => errors++);
  const t0 = Date.now();
  const timer = setInterval(() => {
    console.log(`SAMPLE ${JSON.stringify({ t: Date.now() - t0, ok, non2xx: bad, errors })}`);
    ok = bad = errors = 0;
  }, 1000);
  inst.on('done', () => clearInterval(timer));
}
inst.on('done', (r) => {
  console.log(`RESULT ${JSON.stringify(r)}`);
  process.exit(0);
});
process.on('SIGTERM', () => inst.stop());

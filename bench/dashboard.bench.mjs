// What the dashboard's 1-second sampler costs the control role, against a Prometheus scrape
// of the same registry in the same run (the reference: what every scrape already pays).
// A catalog of N machines (10 per app, HTTP, in 35 regions), each with request counters for
// 2xx and 5xx, an active-connections gauge, and a latency histogram per app; counters move
// between samples as under traffic. Per size: median ms of one sample, of one `/metrics`
// render, of the points frame pushed to open dashboards, and the memory a full 15-minute
// window takes (array buffers after 900 samples).
// Run: npm run build && node bench/dashboard.bench.mjs
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MemoryStore } from '../dist/catalog/memory.js';
import { CatalogView } from '../dist/catalog/view.js';
import { LiveSampler } from '../dist/control/sampler.js';
import { buildSeries } from '../dist/control/series-doc.js';
import { registry } from '../dist/observe/metrics.js';
import { activeConnections, httpRequests, requestDuration } from '../dist/proxy/metrics.js';
import { parseRegionsCsv, RegionTable } from '../dist/regions/index.js';
import { machineLine, median, writeSection } from './lib/results.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const table = new RegionTable(parseRegionsCsv(readFileSync(join(here, '../config/regions.csv'), 'utf8')));
const SIZES = [100, 1_000, 2_000, 10_000];
const RUNS = 15;

async function setup(n) {
  registry.resetMetrics();
  const store = await MemoryStore.open({ regions: table.codes });
  await store.createOrg({ name: 'bench', network_id: 0x18 });
  const apps = Math.ceil(n / 10);
  for (let a = 0; a < apps; a++) await store.createApp({ name: `app${a}`, org: 'bench', services: [{ protocol: 'http', internal_port: 80, ports: [{ port: 80 }] }] });
  const machines = [];
  for (let i = 0; i < n; i++) {
    const id = (0x10000000 + i).toString(16);
    const app = `app${Math.floor(i / 10)}`;
    await store.registerMachine({ id, app, region: table.codes[i % table.codes.length] }, { hostId: 0x0a7b007d });
    machines.push({ app, id, ok: httpRequests.labels({ app, machine: id, status_class: '2xx' }), err: httpRequests.labels({ app, machine: id, status_class: '5xx' }) });
    activeConnections.set({ app, machine: id }, i % 7);
  }
  const view = await CatalogView.open(store);
  return { view, machines, apps };
}

/** Traffic between two samples: every machine answers some requests, every app observes latencies. */
function traffic({ machines, apps }) {
  for (const m of machines) {
    m.ok.inc(20);
    m.err.inc(1);
  }
  for (let a = 0; a < apps; a++) for (let k = 0; k < 5; k++) requestDuration.observe({ app: `app${a}` }, 0.001 * (k + 1));
}

const rows = [];
for (const n of SIZES) {
  const ctx = await setup(n);
  const s = new LiveSampler(ctx.view);
  const src = { sampler: s, view: ctx.view, regions: table, node: { name: 'bench', region: 'ewr' } };
  let t = 1_000_000;
  traffic(ctx);
  await s.sample((t += 1000));
  const sampleMs = [];
  const scrapeMs = [];
  const frameMs = [];
  for (let r = 0; r < RUNS; r++) {
    traffic(ctx);
    const before = s.store.lastTime;
    let t0 = performance.now();
    await s.sample((t += 1000));
    sampleMs.push(performance.now() - t0);
    t0 = performance.now();
    JSON.stringify(buildSeries(src, { since: before }));
    frameMs.push(performance.now() - t0);
    t0 = performance.now();
    await registry.metrics();
    scrapeMs.push(performance.now() - t0);
  }
  // Fill the 15-minute window, then weigh it (every series is one typed array, allocated whole).
  for (let i = 0; i < 900; i++) await s.sample((t += 1000));
  const mib = s.store.bytes / 2 ** 20;
  const row = {
    n,
    sample: median(sampleMs),
    scrape: median(scrapeMs),
    frame: median(frameMs),
    mib,
    kept: s.machines.size,
    refused: s.machines.refused > 0,
  };
  rows.push(row);
  console.log(`${n} machines: sample ${row.sample.toFixed(2)} ms, /metrics ${row.scrape.toFixed(2)} ms (${(row.sample / row.scrape).toFixed(2)}x), points frame ${row.frame.toFixed(2)} ms, window ${mib.toFixed(1)} MiB, ${row.kept} machine series${row.refused ? ' (ceiling reached)' : ''}`);
  s.close();
  ctx.view.close();
}

const fmt = (x) => (x >= 10 ? x.toFixed(0) : x.toFixed(2));
writeSection(
  'dashboard',
  `## Dashboard sampler

\`npm run build && node bench/dashboard.bench.mjs\` (${machineLine()}; load average ${os.loadavg()[0].toFixed(1)} at the start). The control role reads
the proxy's metrics once a second into the 15-minute series; the reference is rendering
\`/metrics\` from the same registry, in the same run. Medians of ${RUNS} samples, 10 HTTP
machines per app, every machine with 2xx and 5xx counters and an active gauge, one latency
histogram per app. "points frame" is the JSON pushed to open dashboards after each sample
(nothing when none is open). "window" is the memory of 900 points of every series.

| machines | one sample | one /metrics render | sample / render | points frame | window (15 min) | machine series kept |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows.map((r) => `| ${r.n.toLocaleString('en')} | ${fmt(r.sample)} ms | ${fmt(r.scrape)} ms | ${(r.sample / r.scrape).toFixed(2)}x | ${fmt(r.frame)} ms | ${r.mib.toFixed(1)} MiB | ${r.kept.toLocaleString('en')}${r.refused ? ' (ceiling)' : ''} |`).join('\n')}

A sample costs ${rows.map((r) => (r.sample / r.scrape).toFixed(2)).join(', ')} times a \`/metrics\` render at these sizes (both
walk the same registry series), once a second in the control role and never on a proxied
request; it yields to the event loop between its phases, so a node that also proxies is not
held for the whole of it. Past 2,000 machines with traffic the machine series stop at their
ceiling (the page and /v1/status/series say so in \`limits\`); app and region series go on.
`,
);

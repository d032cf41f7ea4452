// Flycast proxy benchmark: the same loopback backends reached directly, through HAProxy and
// through sixpn, in one run, interleaved: HTTP (autocannon), TCP bulk throughput, TCP short
// connection rate, and RSS with 10,000 idle TCP connections. Writes the `proxy` section of
// bench/RESULTS.md. Run inside the bench namespace:
//   sh test/harness/netns-run.sh node bench/proxy.bench.mjs
// Env: BENCH_RUNS (3), BENCH_BULK_RUNS (5), BENCH_HTTP_SECONDS (8), BENCH_BULK_MIB (1024), BENCH_IDLE (10000),
//      BENCH_SIXPN=0 (direct + HAProxy only), BENCH_CPU_PROF=DIR (profile the sixpn proxy),
//      BENCH_HAPROXY_THREADS (1), BENCH_ONLY=http,bulk,rate,idle,body,workers, BENCH_WRITE=0 (print, do not write),
//      BENCH_BODY_MIB (100).
// `workers`: HTTP with sixpn `[proxy] workers = 2` against HAProxy `nbthread 2` (CPU summed over
// the sixpn primary and its workers); `body`: RSS of each proxy while one 100 MiB request body
// goes through it (sampled every 10 ms, no forced collection by the bench).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import os from 'node:os';
import { startBackends } from './lib/backends.mjs';
import { haproxyConfig, haproxyVersion, startHaproxy } from './lib/haproxy.mjs';
import { summariseCpuProfile } from './lib/cpuprofile-top.mjs';
import { openIdleConnections, runAutocannon, runTcpBulk, runTcpRate } from './lib/load.mjs';
import { NOFILE, cpuTimes, freePort, rssBytes, sleep } from '../test/harness/spawn.mjs';
import { machineLine, median, writeSection } from './lib/results.mjs';
import { CLI, routeCallerSource, sixpnConfig, startSixpnProxy, tuneNamespaceTcp } from './lib/sixpn.mjs';

const env = process.env;
const RUNS = Number(env.BENCH_RUNS ?? 3);
// Bulk runs are short and swing most with the machine's load: take more of them.
const BULK_RUNS = Number(env.BENCH_BULK_RUNS ?? Math.max(RUNS, 5));
const HTTP_SECONDS = Number(env.BENCH_HTTP_SECONDS ?? 8);
const BULK_BYTES = Number(env.BENCH_BULK_MIB ?? 1024) * 2 ** 20;
const IDLE_WANTED = Number(env.BENCH_IDLE ?? 10_000);
// A proxied connection costs the proxy two descriptors; stay under the open-files limit it gets.
const IDLE = Math.min(IDLE_WANTED, Math.floor((NOFILE - 200) / 2));
const RATE_MS = 5_000;
const WANT_SIXPN = env.BENCH_SIXPN !== '0';
const HA_THREADS = Number(env.BENCH_HAPROXY_THREADS ?? 1);
/** How long the idle connections are held before the second RSS reading. */
const IDLE_SETTLE_MS = 30_000;
const ONLY = new Set((env.BENCH_ONLY ?? 'http,bulk,rate,idle,body,workers').split(','));
const BODY_BYTES = Number(env.BENCH_BODY_MIB ?? 100) * 2 ** 20;
const COMMAND = 'npm run bench';
const COMMAND_ALONE = 'npm run build && sh test/harness/netns-run.sh node bench/proxy.bench.mjs';
const MiB = 2 ** 20;

const log = (...a) => console.log(`[proxy.bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);

if (env.SIXPN_IN_NETNS !== '1') {
  console.error('proxy.bench: run inside the bench namespace: sh test/harness/netns-run.sh node bench/proxy.bench.mjs');
  process.exit(2);
}
const haVersion = haproxyVersion();
if (!haVersion) {
  console.error('proxy.bench: haproxy is not installed (apt-get install haproxy)');
  process.exit(2);
}

/**
 * Runs `fn` and adds the CPU the process `pid` used meanwhile: `cpu` (seconds), `user` and
 * `system` (seconds) and `cpuShare` (of one core over the wall time).
 */
/** The process and its children (sixpn's proxy workers). */
function tree(pid) {
  try {
    return [pid, ...readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)];
  } catch {
    return [pid];
  }
}
function treeCpu(pids) {
  const t = { user: 0, system: 0 };
  for (const p of pids) {
    const c = cpuTimes(p);
    t.user += c.user;
    t.system += c.system;
  }
  return t;
}
async function withCpu(pid, fn) {
  const pids = tree(pid);
  const c0 = treeCpu(pids);
  const t0 = Date.now();
  const res = await fn();
  const c1 = treeCpu(pids);
  const user = c1.user - c0.user;
  const system = c1.system - c0.system;
  return { ...res, cpu: user + system, user, system, cpuShare: (user + system) / ((Date.now() - t0) / 1000) };
}

const cleanups = [];
async function cleanup() {
  for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
  cleanups.length = 0;
}

const notes = [];
const loadBefore = os.loadavg();
tuneNamespaceTcp();
const { caller } = routeCallerSource({ networkId: 0x18 });

log('starting backends');
const http = await startBackends({ count: 3, kind: 'http' });
cleanups.push(http.stop);
const sink = await startBackends({ count: 1, kind: 'sink' });
cleanups.push(sink.stop);
const echo = await startBackends({ count: 2, kind: 'echo' });
cleanups.push(echo.stop);

const haPorts = { web: await freePort(), sink: await freePort(), echo: await freePort() };
const haCfg = haproxyConfig({
  threads: HA_THREADS,
  services: [
    { name: 'web', mode: 'http', bind: `127.0.0.1:${haPorts.web}`, servers: http.list.map((b) => b.address) },
    { name: 'sink', mode: 'tcp', bind: `127.0.0.1:${haPorts.sink}`, servers: sink.list.map((b) => b.address) },
    { name: 'echo', mode: 'tcp', bind: `127.0.0.1:${haPorts.echo}`, servers: echo.list.map((b) => b.address) },
  ],
});
log('starting haproxy');
let ha = await startHaproxy(haCfg);
cleanups.push(() => ha.stop());

// Targets: name -> { http: url, sink: {host,port}, echo: {host,port} }
const targets = {
  direct: {
    http: `http://${http.list[0].address}/`,
    sink: { host: '127.0.0.1', port: sink.list[0].port },
    echo: { host: '127.0.0.1', port: echo.list[0].port },
  },
  haproxy: {
    http: `http://127.0.0.1:${haPorts.web}/`,
    sink: { host: '127.0.0.1', port: haPorts.sink },
    echo: { host: '127.0.0.1', port: haPorts.echo },
  },
};

let sixpn = null;
let sixpnError = null;
let sixpnPid = null;
let startSixpn = null;
if (WANT_SIXPN) {
  const { text, apps } = sixpnConfig({
    networkId: 0x18,
    proxy: { drain_timeout: '2s' },
    apps: [
      { name: 'web', protocol: 'http', port: 80, servers: http.list.map((b) => b.address) },
      { name: 'sink', protocol: 'tcp', port: 5000, servers: sink.list.map((b) => b.address) },
      { name: 'echo', protocol: 'tcp', port: 7000, servers: echo.list.map((b) => b.address) },
    ],
  });
  const [web, sk, ec] = apps;
  const nodeArgs = env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${env.BENCH_CPU_PROF}`] : [];
  try {
    log('starting sixpn proxy', existsSync(CLI) ? '' : '(dist missing: npm run build)');
    startSixpn = async () => {
      sixpn = await startSixpnProxy(text, {
        nodeArgs,
        listen: [
          { host: web.flycast, port: 80 },
          { host: sk.flycast, port: 5000 },
          { host: ec.flycast, port: 7000 },
        ],
      });
      sixpnPid = sixpn.pid;
    };
    await startSixpn();
    cleanups.push(() => sixpn?.stop());
    targets.sixpn = {
      http: `http://[${web.flycast}]:80/`,
      sink: { host: sk.flycast, port: 5000 },
      echo: { host: ec.flycast, port: 7000 },
    };
    // A proxy that answers 403 or 502 would look fast: prove one request goes through first.
    const probe = await runAutocannon({ url: targets.sixpn.http, connections: 1, amount: 20, duration: 5 });
    if (probe.total2xx !== 20) throw new Error(`sixpn probe: ${probe.total2xx}/20 responses were 2xx (non2xx ${probe.non2xx}, errors ${probe.errors})`);
  } catch (err) {
    sixpnError = String(err.message ?? err).split('\n').slice(0, 6).join(' ');
    log(`sixpn unavailable: ${sixpnError}`);
    if (sixpn) await sixpn.stop('SIGKILL').catch(() => {});
    sixpn = null;
    delete targets.sixpn;
  }
}
// The process doing the forwarding for a target (for direct: the backend itself).
const pidOf = (n, direct = http) => (n === 'direct' ? direct.list[0].proc.pid : n === 'haproxy' ? ha.pid : sixpn.pid);
const names = Object.keys(targets);
const results = { http: {}, bulk: {}, rate: {}, idle: {}, body: {}, workers: {} };

/**
 * One POST with a `bytes`-long body through a proxy (written as fast as the socket takes it),
 * sampling the proxy's RSS every 10 ms: { status, ms, before, peak }.
 */
async function postBody(url, bytes, pid) {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const before = rssBytes(pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 10);
  const t0 = Date.now();
  const status = await new Promise((resolve, reject) => {
    const s = net.connect({ host, port: Number(u.port || 80) }, async () => {
      s.write(`POST / HTTP/1.1\r\nHost: bench\r\nContent-Length: ${bytes}\r\nConnection: close\r\n\r\n`);
      const chunk = Buffer.alloc(1 << 20, 120);
      for (let sent = 0; sent < bytes; sent += chunk.length) {
        if (!s.write(sent + chunk.length <= bytes ? chunk : chunk.subarray(0, bytes - sent))) await new Promise((r) => s.once('drain', r));
      }
    });
    let head = '';
    s.on('data', (b) => (head += b.toString('latin1')));
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0)));
    s.on('error', reject);
  });
  clearInterval(sampler);
  peak = Math.max(peak, rssBytes(pid));
  return { status, ms: Date.now() - t0, before, peak };
}
for (const n of names) {
  results.http[n] = [];
  results.bulk[n] = [];
  results.rate[n] = [];
}

try {
  // First, on fresh proxy processes, so that RSS is about connections and not about garbage
  // left by the load tests (whose heap the collector may or may not have returned yet).
  if (ONLY.has('idle')) {
    // RUNS rounds, each on fresh proxy processes (a process's baseline varies by a few MiB from
    // start to start); the table gives the run with the median RSS at 1 s.
    const runs = { haproxy: [], sixpn: [] };
    for (let r = 0; r < RUNS; r++) {
      const procs = { haproxy: ha.pid };
      if (sixpn) procs.sixpn = sixpn.pid;
      for (const [n, pid] of Object.entries(procs)) {
        const before = rssBytes(pid);
        const idle = await openIdleConnections({ ...targets[n].echo, count: IDLE, concurrency: 200 });
        await sleep(1_000);
        const after = rssBytes(pid);
        // The same connections, still idle, once the collector has had its quiet time (V8's memory
        // reducer starts about 8 s after the burst): what a proxy holding idle callers settles at.
        await sleep(IDLE_SETTLE_MS - 1_000);
        const settled = rssBytes(pid);
        runs[n].push({ before, after, settled, opened: idle.opened, errors: idle.errors, ms: idle.ms });
        log(`idle run ${r + 1} ${n}: ${idle.opened} open (${idle.errors} failed) in ${idle.ms} ms; RSS ${fmt(before / MiB, 1)} -> ${fmt(after / MiB, 1)} MiB, ${fmt(settled / MiB, 1)} MiB after ${IDLE_SETTLE_MS / 1000} s`);
        await idle.close();
        await sleep(1_000);
      }
      // Fresh proxy processes for the next round and for the load tests, so they do not start
      // with the heap and the descriptors of 10,000 connections just closed.
      await ha.stop();
      ha = await startHaproxy(haCfg);
      if (sixpn) {
        await sixpn.stop();
        await startSixpn();
      }
    }
    for (const [n, list] of Object.entries(runs)) {
      if (list.length === 0) continue;
      const sorted = [...list].sort((a, b) => a.after - b.after);
      results.idle[n] = sorted[Math.floor((sorted.length - 1) / 2)];
    }
  }
  if (ONLY.has('http')) {
    log('http warm-up');
    for (const n of names) await runAutocannon({ url: targets[n].http, connections: 50, duration: 2 });
    for (let r = 0; r < RUNS; r++) {
      for (const n of names) {
        const res = await withCpu(pidOf(n), () => runAutocannon({ url: targets[n].http, connections: 50, duration: HTTP_SECONDS, pipelining: 1 }));
        results.http[n].push(res);
        log(`http run ${r + 1} ${n}: ${fmt(res.reqPerSec)} req/s p50 ${fmt(res.p50, 2)} ms p99 ${fmt(res.p99, 2)} ms non2xx ${res.non2xx} errors ${res.errors}; CPU ${fmt(res.cpuShare * 100)}%`);
      }
    }
  }
  if (ONLY.has('bulk')) {
    for (let r = 0; r < BULK_RUNS; r++) {
      for (const n of names) {
        const res = await withCpu(pidOf(n, sink), () => runTcpBulk({ ...targets[n].sink, bytes: BULK_BYTES }));
        results.bulk[n].push(res);
        log(`bulk run ${r + 1} ${n}: ${fmt(res.mbPerSec)} MB/s (${fmt(res.ms)} ms)`);
      }
    }
  }
  if (ONLY.has('rate')) {
    for (let r = 0; r < RUNS; r++) {
      for (const n of names) {
        const res = await withCpu(pidOf(n, echo), () => runTcpRate({ ...targets[n].echo, durationMs: RATE_MS, concurrency: 50 }));
        results.rate[n].push(res);
        log(`rate run ${r + 1} ${n}: ${fmt(res.perSec)} conn/s errors ${res.errors}`);
        await sleep(500);
      }
    }
  }
  if (ONLY.has('body')) {
    const procs = { haproxy: [ha.pid, targets.haproxy.http] };
    if (sixpn) procs.sixpn = [sixpn.pid, targets.sixpn.http];
    for (const [n, [pid, url]] of Object.entries(procs)) {
      const res = await postBody(url, BODY_BYTES, pid);
      results.body[n] = res;
      log(`body ${n}: ${fmt(BODY_BYTES / MiB)} MiB in ${fmt(res.ms)} ms, status ${res.status}; RSS ${fmt(res.before / MiB, 1)} -> peak ${fmt(res.peak / MiB, 1)} MiB`);
    }
  }
  if (ONLY.has('workers') && sixpn) {
    // Two processes each: sixpn with 2 workers, HAProxy with 2 threads, same backends.
    await sixpn.stop();
    sixpn = null;
    const two = sixpnConfig({
      networkId: 0x18,
      proxy: { drain_timeout: '2s', workers: 2 },
      apps: [{ name: 'web', protocol: 'http', port: 80, servers: http.list.map((b) => b.address) }],
    });
    const w2 = await startSixpnProxy(two.text, { listen: [{ host: two.apps[0].flycast, port: 80 }] });
    cleanups.push(() => w2.stop());
    const haPort2 = await freePort();
    const ha2 = await startHaproxy(haproxyConfig({ threads: 2, services: [{ name: 'web', mode: 'http', bind: `127.0.0.1:${haPort2}`, servers: http.list.map((b) => b.address) }] }));
    cleanups.push(() => ha2.stop());
    const two2 = { 'sixpn, 2 workers': [w2.pid, `http://[${two.apps[0].flycast}]:80/`], 'HAProxy, nbthread 2': [ha2.pid, `http://127.0.0.1:${haPort2}/`] };
    for (const [, [, url]] of Object.entries(two2)) await runAutocannon({ url, connections: 50, duration: 2 });
    for (let r = 0; r < RUNS; r++) {
      for (const [n, [pid, url]] of Object.entries(two2)) {
        const res = await withCpu(pid, () => runAutocannon({ url, connections: 50, duration: HTTP_SECONDS, pipelining: 1 }));
        (results.workers[n] ??= []).push(res);
        log(`workers run ${r + 1} ${n}: ${fmt(res.reqPerSec)} req/s p99 ${fmt(res.p99, 2)} ms; CPU ${fmt(res.cpuShare * 100)}% (${tree(pid).length} processes)`);
      }
    }
  }
} finally {
  await cleanup();
}

// ---- the RESULTS.md section
const med = (xs, f) => median(xs.map(f));
const H = {};
for (const n of names) {
  const rs = results.http[n];
  H[n] = rs.length
    ? {
        rps: med(rs, (x) => x.reqPerSec),
        p50: med(rs, (x) => x.p50),
        p99: med(rs, (x) => x.p99),
        bad: rs.reduce((a, x) => a + x.non2xx + x.errors + x.timeouts, 0),
        cpu: med(rs, (x) => x.cpuShare),
        perCpu: med(rs, (x) => x.raw.requests.total / x.cpu),
        userUs: med(rs, (x) => (x.user * 1e6) / x.raw.requests.total),
        sysUs: med(rs, (x) => (x.system * 1e6) / x.raw.requests.total),
      }
    : null;
}
const B = Object.fromEntries(names.map((n) => [n, results.bulk[n].length ? med(results.bulk[n], (x) => x.mbPerSec) : NaN]));
const Bcpu = Object.fromEntries(names.map((n) => [n, results.bulk[n].length ? med(results.bulk[n], (x) => x.bytes / 1e6 / x.cpu) : NaN]));
// CPU milliseconds per GiB moved, user and kernel.
const Bsplit = Object.fromEntries(
  names.map((n) => {
    const rs = results.bulk[n];
    if (!rs.length) return [n, 'n/a'];
    const per = (f) => med(rs, (x) => (f(x) * 1000 * 2 ** 30) / x.bytes);
    return [n, `${fmt(per((x) => x.user))} / ${fmt(per((x) => x.system))}`];
  }),
);
const Rcpu = Object.fromEntries(names.map((n) => [n, results.rate[n].length ? med(results.rate[n], (x) => x.cpuShare) : NaN]));
const RperCpu = Object.fromEntries(names.map((n) => [n, results.rate[n].length ? med(results.rate[n], (x) => x.connections / x.cpu) : NaN]));
const R = Object.fromEntries(names.map((n) => [n, results.rate[n].length ? med(results.rate[n], (x) => x.perSec) : NaN]));
const rateErr = Object.fromEntries(names.map((n) => [n, results.rate[n].reduce((a, x) => a + x.errors, 0)]));

const verdict = (ok) => (ok === null ? 'not measured' : ok ? '**met**' : '**missed**');
const targetsRows = [];
const s = targets.sixpn ? 'sixpn' : null;
const rpsRatio = s && H.sixpn && H.haproxy ? ratio(H.sixpn.rps, H.haproxy.rps) : NaN;
const p99Ratio = s && H.sixpn && H.haproxy ? ratio(H.sixpn.p99, H.haproxy.p99) : NaN;
const bulkRatio = s ? ratio(B.sixpn, B.haproxy) : NaN;
const rateRatio = s ? ratio(R.sixpn, R.haproxy) : NaN;
const idleSixpn = results.idle.sixpn;
// Where the open-files limit holds the test under the target's count, scale the measured growth
// per connection up to it (stated in the notes).
const rssAtTarget = (x) => x.after + ((x.after - x.before) / Math.max(1, x.opened)) * (IDLE_WANTED - x.opened);
const idleOk = idleSixpn && idleSixpn.opened >= IDLE * 0.99 ? rssAtTarget(idleSixpn) < 100 * MiB : null;
const cpuReqRatio = s && H.sixpn && H.haproxy ? ratio(H.haproxy.perCpu, H.sixpn.perCpu) : NaN;
const cpuConnRatio = s ? ratio(RperCpu.haproxy, RperCpu.sixpn) : NaN;
const bodySixpn = results.body.sixpn;
const bodyDelta = bodySixpn ? bodySixpn.peak - bodySixpn.before : NaN;
if (IDLE < IDLE_WANTED && ONLY.has('idle')) {
  notes.push(
    `The open-files hard limit here is ${NOFILE} and cannot be raised (no CAP_SYS_RESOURCE in this container); a proxied connection takes two descriptors, ` +
      `so the idle test holds ${fmt(IDLE)} connections and the RSS for ${fmt(IDLE_WANTED)} is the measured RSS plus the measured growth per connection times the remainder.`,
  );
}
const judge = (x, ok) => (Number.isFinite(x) ? ok(x) : null);
targetsRows.push(['HTTP req/s, sixpn / HAProxy (1 process / 1 thread)', '>= 0.80', fmt(rpsRatio, 2), verdict(judge(rpsRatio, (x) => x >= 0.8))]);
targetsRows.push(['HTTP CPU per request, sixpn / HAProxy', '<= 1.6', fmt(cpuReqRatio, 2), verdict(judge(cpuReqRatio, (x) => x <= 1.6))]);
targetsRows.push(['HTTP p99, sixpn / HAProxy', '<= 1.5', fmt(p99Ratio, 2), verdict(judge(p99Ratio, (x) => x <= 1.5))]);
targetsRows.push(['TCP bulk MB/s, sixpn / HAProxy', '>= 0.90', fmt(bulkRatio, 2), verdict(judge(bulkRatio, (x) => x >= 0.9))]);
targetsRows.push(['TCP connections/s, sixpn / HAProxy', '>= 0.60', fmt(rateRatio, 2), verdict(judge(rateRatio, (x) => x >= 0.6))]);
targetsRows.push(['TCP CPU per connection, sixpn / HAProxy', '<= 2.5', fmt(cpuConnRatio, 2), verdict(judge(cpuConnRatio, (x) => x <= 2.5))]);
targetsRows.push([
  `RSS with ${fmt(IDLE_WANTED)} idle TCP connections`,
  '< 100 MiB',
  idleSixpn
    ? `${fmt(rssAtTarget(idleSixpn) / MiB, 1)} MiB 1 s after opening, ${fmt(rssAtTarget({ ...idleSixpn, after: idleSixpn.settled }) / MiB, 1)} MiB still idle after ${IDLE_SETTLE_MS / 1000} s${IDLE < IDLE_WANTED ? ` (scaled from ${fmt(idleSixpn.opened)})` : ''}`
    : 'n/a',
  verdict(idleOk),
]);
targetsRows.push([`RSS growth while a ${fmt(BODY_BYTES / MiB)} MiB body goes through`, '< 8 MiB', Number.isFinite(bodyDelta) ? `${fmt(bodyDelta / MiB, 1)} MiB` : 'n/a', verdict(judge(bodyDelta, (x) => x < 8 * MiB))]);
targetsRows.push(['Pick time at 10,000 machines', '< 0.2 µs', 'see the balancer section (`node bench/balancer.bench.mjs`)', '']);

const table = (head, rows) => [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
const label = { direct: 'direct to one backend', haproxy: `HAProxy (${HA_THREADS} thread${HA_THREADS > 1 ? 's' : ''}, leastconn, http-reuse always)`, sixpn: 'sixpn proxy (Flycast address)' };
const rowsFor = (f) => names.map((n) => [label[n], ...f(n)]);
const md = [];
md.push('## Flycast proxy (`bench/proxy.bench.mjs`)', '');
md.push(`Command: \`${COMMAND}\` (this section alone: \`${COMMAND_ALONE}\`)`, '');
md.push(`Machine: ${machineLine()}; load average (1/5/15 min) at start ${loadBefore.map((x) => x.toFixed(2)).join(' / ')}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(' / ')}. ${haVersion}.`, '');
md.push(
  `Backends: ${http.list.length} Node HTTP servers (keep-alive, 3-byte body), ${sink.list.length} TCP sink and ${echo.list.length} TCP echo servers, each its own process on 127.0.0.1. ` +
    `Clients are separate processes; the caller address for sixpn is ${caller} (inside the org's /48, via a namespace route). ` +
    `Runs of direct, HAProxy and sixpn are interleaved; figures are medians of ${RUNS} runs.`,
  '',
);
if (sixpnError) md.push(`**sixpn was not measured in this run**: ${sixpnError}`, '');
md.push('### Targets', '', table(['what', 'target', 'reached', 'verdict'], targetsRows), '');
if (ONLY.has('http')) {
  md.push(`### HTTP (autocannon, 50 connections, pipelining 1, ${HTTP_SECONDS} s per run)`, '');
  md.push(
    table(
      ['target', 'req/s', 'p50 ms', 'p99 ms', 'req/s vs HAProxy', 'p99 vs HAProxy', 'failed responses', 'CPU (of one core)', 'requests per CPU second', 'CPU µs per request, user / kernel'],
      rowsFor((n) => {
        const h = H[n];
        if (!h) return ['n/a', 'n/a', 'n/a', '', '', '', '', '', ''];
        return [
          fmt(h.rps),
          fmt(h.p50, 2),
          fmt(h.p99, 2),
          fmt(ratio(h.rps, H.haproxy?.rps), 2),
          fmt(ratio(h.p99, H.haproxy?.p99), 2),
          String(h.bad),
          `${fmt(h.cpu * 100)}%`,
          fmt(h.perCpu),
          `${fmt(h.userUs, 1)} / ${fmt(h.sysUs, 1)}`,
        ];
      }),
    ),
    '',
  );
}
if (ONLY.has('bulk')) {
  md.push(`### TCP bulk (${fmt(BULK_BYTES / MiB)} MiB through one connection to a sink that confirms the count; median of ${BULK_RUNS} runs)`, '');
  md.push(
    table(
      ['target', 'MB/s', 'vs HAProxy', 'vs direct', 'MB per CPU second', 'CPU ms per GiB, user / kernel'],
      rowsFor((n) => [fmt(B[n]), fmt(ratio(B[n], B.haproxy), 2), fmt(ratio(B[n], B.direct), 2), fmt(Bcpu[n]), Bsplit[n]]),
    ),
    '',
  );
}
if (ONLY.has('rate')) {
  md.push(`### TCP connection rate (connect, 1 byte echoed, close; 50 in flight, ${RATE_MS / 1000} s per run)`, '');
  md.push(
    table(
      ['target', 'connections/s', 'vs HAProxy', 'failed', 'CPU (of one core)', 'connections per CPU second'],
      rowsFor((n) => [fmt(R[n]), fmt(ratio(R[n], R.haproxy), 2), String(rateErr[n]), `${fmt(Rcpu[n] * 100)}%`, fmt(RperCpu[n])]),
    ),
    '',
  );
}
if (ONLY.has('idle')) {
  md.push(`### Memory with ${fmt(IDLE)} idle TCP connections (each proven by an echoed byte; VmRSS of the proxy process; the run with the median RSS at 1 s of ${RUNS}, each on fresh processes)`, '');
  md.push(
    table(
      ['proxy', 'RSS before', 'RSS with connections (1 s after opening)', `still idle after ${IDLE_SETTLE_MS / 1000} s`, 'per connection (1 s)', 'opened', 'time to open'],
      Object.entries(results.idle).map(([n, x]) => [
        label[n],
        `${fmt(x.before / MiB, 1)} MiB`,
        `${fmt(x.after / MiB, 1)} MiB`,
        `${fmt(x.settled / MiB, 1)} MiB`,
        `${fmt((x.after - x.before) / Math.max(1, x.opened) / 1024, 1)} KiB`,
        `${fmt(x.opened)} / ${fmt(IDLE)}`,
        `${fmt(x.ms / 1000, 1)} s`,
      ]),
    ),
    '',
  );
}
if (ONLY.has('body') && Object.keys(results.body).length) {
  md.push(`### One ${fmt(BODY_BYTES / MiB)} MiB request body (POST, Content-Length; VmRSS of the proxy sampled every 10 ms; no collection forced by the bench)`, '');
  md.push(
    table(
      ['proxy', 'status', 'time', 'RSS before', 'RSS peak', 'growth'],
      Object.entries(results.body).map(([n, x]) => [label[n], String(x.status), `${fmt(x.ms)} ms`, `${fmt(x.before / MiB, 1)} MiB`, `${fmt(x.peak / MiB, 1)} MiB`, `${fmt((x.peak - x.before) / MiB, 1)} MiB`]),
    ),
    '',
  );
}
if (ONLY.has('workers') && Object.keys(results.workers).length) {
  const W = Object.fromEntries(
    Object.entries(results.workers).map(([n, rs]) => [n, { rps: med(rs, (x) => x.reqPerSec), p99: med(rs, (x) => x.p99), cpu: med(rs, (x) => x.cpuShare), us: med(rs, (x) => (x.cpu * 1e6) / x.raw.requests.total) }]),
  );
  if (H.sixpn) W['sixpn, 1 process'] = { rps: H.sixpn.rps, p99: H.sixpn.p99, cpu: H.sixpn.cpu, us: 1e6 / H.sixpn.perCpu };
  if (H.haproxy) W['HAProxy, nbthread 1'] = { rps: H.haproxy.rps, p99: H.haproxy.p99, cpu: H.haproxy.cpu, us: 1e6 / H.haproxy.perCpu };
  const order = ['HAProxy, nbthread 1', 'sixpn, 1 process', 'HAProxy, nbthread 2', 'sixpn, 2 workers'].filter((n) => W[n]);
  const ref = (n) => (n.startsWith('sixpn, 2') || n.startsWith('HAProxy, nbthread 2') ? W['HAProxy, nbthread 2'] : W['HAProxy, nbthread 1']);
  md.push(`### Workers: HTTP with 1 and 2 processes against HAProxy with nbthread 1 and 2 (same run, 50 connections, ${HTTP_SECONDS} s, median of ${RUNS})`, '');
  md.push(
    table(
      ['proxy', 'req/s', 'p99 ms', 'req/s vs HAProxy (same count)', 'CPU (of one core, all processes)', 'CPU µs per request'],
      order.map((n) => [n, fmt(W[n].rps), fmt(W[n].p99, 2), fmt(ratio(W[n].rps, ref(n)?.rps), 2), `${fmt(W[n].cpu * 100)}%`, fmt(W[n].us, 1)]),
    ),
    '',
  );
  md.push('The load generator (autocannon), the 3 backends and the proxy share the 2 cores: a second proxy process mostly takes CPU from the others, so CPU per request is the figure to compare.', '');
}
// With BENCH_CPU_PROF the sixpn proxy ran under --cpu-prof and wrote its profile when stopped.
const profile = (() => {
  if (!env.BENCH_CPU_PROF || !sixpnPid) return null;
  const f = readdirSync(env.BENCH_CPU_PROF).find((x) => x.includes(`.${sixpnPid}.`) && x.endsWith('.cpuprofile'));
  return f ? { file: join(env.BENCH_CPU_PROF, f), ...summariseCpuProfile(join(env.BENCH_CPU_PROF, f), 12) } : null;
})();
if (profile) {
  md.push(`### Where sixpn spends its CPU (\`node --cpu-prof\` over the proxy's whole life in this run, start-up included; ${fmt(profile.busyMs / 1000, 1)} s busy; self time as a share of busy time)`, '');
  md.push(table(['self time', 'function', 'where'], profile.functions.map((f) => [`${fmt(f.share * 100, 1)}%`, `\`${f.name}\``, f.where ? `\`${f.where}\`` : '(native)'])), '');
}
md.push('### Notes', '');
md.push('- CPU columns: CPU time the forwarding process (for direct: the backend) used during the runs, from /proc/<pid>/stat, over the wall time of the run; "per CPU second" is the work done per second of that CPU, a figure less sensitive to the shared machine than req/s.');
md.push('- The machine is shared (2 cores, several engineers at work): absolute figures are noisy; ratios are same-run and interleaved. A rerun on a quiet machine is the reference.');
md.push('- Load generator, proxy and backends share the same 2 cores (and the other work on the machine), so req/s also depends on how much CPU the scheduler gave each process; the CPU columns show it.');
md.push(`- HAProxy runs with nbthread ${HA_THREADS} so that it and sixpn (one Node event loop) use one core each; BENCH_HAPROXY_THREADS changes it.`);
md.push('- Latency percentiles are exact over every 2xx response time the load generator saw (the autocannon histogram keeps whole milliseconds, too coarse on loopback).');
if (Number.isFinite(rpsRatio) && rpsRatio < 0.8) {
  const cpuCost = ratio(H.haproxy?.perCpu, H.sixpn?.perCpu);
  notes.push(
    `HTTP req/s is limited by CPU per request: sixpn spends ${fmt(cpuCost, 1)}x the CPU HAProxy spends on a request (requests per CPU second above), on one event loop ` +
      `(${fmt(H.sixpn?.userUs, 0)} µs user + ${fmt(H.sixpn?.sysUs, 0)} µs kernel per request against HAProxy's ${fmt(H.haproxy?.userUs, 0)} + ${fmt(H.haproxy?.sysUs, 0)}). ` +
      `In this run sixpn got ${fmt((H.sixpn?.cpu ?? NaN) * 100)}% of a core; at its CPU per request one fully busy core would serve about ${fmt(H.sixpn?.perCpu)} req/s (HAProxy: ${fmt(H.haproxy?.perCpu)}). ` +
      'The data path is the socket-level HTTP/1 engine (no node:http, no undici) with one write system call per message each way (a response head and the body bytes that came with it go out together), reused read buffers on caller and machine sockets, and no pause/resume of the caller while a pooled machine connection is at hand. ' +
      'What is left is per-read and per-write cost in node itself: a JavaScript callback and stream bookkeeping per read (`onStreamRead`, Readable/Writable state) and a write request object per write (`writeBuffer`, which on loopback also runs the receiving side of TCP in our time slice); the engine\'s parse and rewrite are a few per cent of the profile. ' +
      'What would lift it further: leaving net.Socket streams for the raw handles (the metrics, about five per request, are already an addition each: src/observe/metrics/).',
  );
}
if (Number.isFinite(p99Ratio) && p99Ratio > 1.5) {
  notes.push('HTTP p99 follows from saturation: with 50 connections on a CPU-bound event loop, a request waits behind the other 49 turns of the loop; garbage-collection pauses add to the tail. Workers (above) shorten the queue per loop.');
}
if (Number.isFinite(bulkRatio) && bulkRatio < 0.9) {
  notes.push(
    `TCP bulk through sixpn costs ${fmt(ratio(Bcpu.haproxy, Bcpu.sixpn), 1)}x HAProxy's CPU per byte (CPU ms per GiB, user / kernel: ${Bsplit.sixpn} against ${Bsplit.haproxy}). ` +
      'Both directions read into reused buffers (the caller side through node\'s `onread` state set on the accepted socket, src/proxy/read-buffer.ts), and a direction whose write is left queued stops reading until the other side drains. ' +
      `sixpn's user time per GiB ranged from ${fmt(Math.min(...results.bulk.sixpn.map((x) => (x.user * 1000 * 2 ** 30) / x.bytes)))} to ${fmt(Math.max(...results.bulk.sixpn.map((x) => (x.user * 1000 * 2 ** 30) / x.bytes)))} ms over the runs, so single runs say little. ` +
      'What would lift it: a native splice path; workers do not help a single connection.',
  );
}
if (Number.isFinite(cpuConnRatio) && cpuConnRatio > 2.5) {
  notes.push(
    `A short TCP connection costs sixpn ${fmt(cpuConnRatio, 1)}x HAProxy's CPU (connections per CPU second above). Per connection both proxies make the same socket calls (accept, connect, a read and a write each way, two shutdowns, two closes); ` +
      'sixpn adds about five epoll_ctl calls (libuv re-arms each handle as node starts and stops reading and writing) and a getpeername, and in user space two net.Socket objects with their stream state, an async connect callback and the close/end events of both. ' +
      'In a profile (`BENCH_ONLY=rate BENCH_CPU_PROF=DIR`) the connect call itself (`internalConnect`, the loopback handshake runs inside it) and the writes are the largest items; `QUICK_MODE=rate QUICK_STRACE=1 sh test/harness/netns-run.sh node bench/lib/quick-http.mjs` counts the system calls of both proxies. What would lower it: raw TCP handles instead of net.Socket for the splice (libuv\'s TCPWrap without node\'s streams), which this project has not taken on.',
  );
}
if (idleSixpn && idleSixpn.opened > 0) {
  notes.push(
    `RSS with idle connections is the process's baseline (${fmt(idleSixpn.before / MiB, 1)} MiB before any connection: Node, pino, zod, the CLI) plus ` +
      `${fmt((idleSixpn.after - idleSixpn.before) / idleSixpn.opened / 1024, 1)} KiB per proxied connection (two net.Socket objects with their libuv handles and stream state, one TcpConn holding both and its wheel entry; no timer and no read buffer of its own while idle). ` +
      'What would lower it: fewer objects per net.Socket, which only leaving net.Socket would give.',
  );
}
for (const n of notes) md.push(`- ${n}`);
if (env.BENCH_WRITE === '0') {
  console.log(md.join('\n'));
} else {
  writeSection('proxy', md.join('\n'));
  log('wrote the proxy section of bench/RESULTS.md');
}
process.exit(sixpnError && WANT_SIXPN ? 1 : 0);

// Failover under load, measured through sixpn (proxy + health checker) and through HAProxy
// with the same check settings (`check inter 500 fall 1 rise 2`, `timeout check 300ms`), in one
// run, against the same kind of backends. 3 machines in the proxy's region and 2 in the next
// one (HAProxy: 3 servers + 2 `backup`). Under a steady autocannon load:
//   1. kill -9 one near machine, restart it;  2. SIGSTOP one, SIGCONT it;
//   3. kill -9 every near machine, restart them.
// Measured: failed requests out of total, time to eject (signal -> the proxy marks it down,
// from its log line) and time to recover (machine back -> marked up). Medians of RUNS runs.
// Run: npm run build && sh test/harness/netns-run.sh node bench/failover.bench.mjs
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { startHaproxy, haproxyVersion } from './lib/haproxy.mjs';
import { startAutocannon } from './lib/load.mjs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { startBackends } from './lib/backends.mjs';
import { cpuSeconds, freePort, rssBytes, sleep, start as startProc } from '../test/harness/spawn.mjs';
import { machineLine, median, writeSection } from './lib/results.mjs';
import { CLI, flycastAddress, routeCallerSource, startSixpnProxy, tuneNamespaceTcp } from './lib/sixpn.mjs';

const RUNS = Number(process.env.FAILOVER_RUNS ?? 3);
/** `[health] max_concurrent_checks` of the checker-cost node (the default, 256). */
const MAX_CONCURRENT_CHECKS = Number(process.env.CHECKER_MAX_CONCURRENT ?? 256);
const SKIP_SCENARIO = process.env.FAILOVER_SKIP_SCENARIO === '1';
const INTERVAL = 500;
const TIMEOUT = 300;
const FALL = 1;
const RISE = 2;
const CONNECTIONS = 16;
const SERVER = join(dirname(fileURLToPath(import.meta.url)), 'lib/backend-server.mjs');
const NETWORK_ID = 0x18;
const NEAR = 'ewr';
const NEXT = 'iad';

if (process.env.SIXPN_IN_NETNS !== '1') {
  console.error('failover bench: run inside the namespace: sh test/harness/netns-run.sh node bench/failover.bench.mjs');
  process.exit(1);
}
if (!haproxyVersion()) {
  console.error('failover bench: haproxy is not installed');
  process.exit(1);
}
tuneNamespaceTcp();
const { caller } = routeCallerSource({ networkId: NETWORK_ID });

/** One backend process on a fixed port, so it can be killed and started again in place. */
function backend(name, port) {
  const b = { name, port, proc: null };
  b.start = async () => {
    b.proc = startProc(process.execPath, [SERVER, 'http', '127.0.0.1', String(port), name]);
    await b.proc.waitForLine(/^listening \d+/, 10_000);
  };
  b.signal = async (sig) => {
    if (!b.proc || b.proc.child.exitCode !== null || b.proc.child.signalCode !== null) return;
    b.proc.child.kill(sig);
    if (sig === 'SIGKILL') await b.proc.exited;
  };
  b.stop = async () => {
    b.proc?.child.kill('SIGCONT');
    await b.proc?.stop('SIGKILL');
  };
  return b;
}

/** Time-stamps each output line of a proxy as it arrives, to time its up/down verdicts. */
function watchLines(proc) {
  const lines = [];
  let rest = '';
  const onData = (buf) => {
    const now = Date.now();
    const parts = (rest + buf.toString()).split('\n');
    rest = parts.pop() ?? '';
    for (const l of parts) lines.push({ at: now, line: l });
  };
  proc.child.stdout.on('data', onData);
  proc.child.stderr.on('data', onData);
  return {
    /** How many lines so far match each distinct first capture group of `re`. */
    tally(re) {
      const out = {};
      for (const l of lines) {
        const m = re.exec(l.line);
        if (m) out[m[1]] = (out[m[1]] ?? 0) + 1;
      }
      return out;
    },
    /** Resolves with the arrival time of the first line after `after` matching `re`. */
    async wait(re, after, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = lines.find((l) => l.at >= after && re.test(l.line));
        if (hit) return hit.at;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; last lines:\n${lines.slice(-20).map((l) => l.line).join('\n')}`);
        await sleep(10);
      }
    },
  };
}

async function startSixpnTarget(ports) {
  const port = 80;
  const specs = ports.map((p, i) => ({ id: `${i < 3 ? 'e' : 'f'}${i + 1}000000aaaa`, region: i < 3 ? NEAR : NEXT, upstream: `127.0.0.1:${p}` }));
  const toml = [
    '[node]',
    'name = "failover-bench"',
    `region = "${NEAR}"`,
    '[catalog]',
    'store = "embedded"',
    'path = ""',
    '[control]',
    'enabled = false',
    '[log]',
    'level = "info"',
    '[proxy]',
    'mode = "per-address"',
    `connect_timeout = "${TIMEOUT}ms"`,
    'upstream_timeout = "1500ms"',
    '[health]',
    `fall = ${FALL}`,
    `rise = ${RISE}`,
    'slow_start = "500ms"',
    '[health.passive]',
    'base_ejection = "1s"',
    '[[orgs]]',
    'name = "bench"',
    `network_id = ${NETWORK_ID}`,
    '[[apps]]',
    'name = "web"',
    'org = "bench"',
    '[[apps.services]]',
    'protocol = "http"',
    'internal_port = 8080',
    `ports = [{ port = ${port}, handlers = ["http"] }]`,
    'concurrency = { type = "requests", soft_limit = 20000, hard_limit = 30000 }',
    `http_checks = [{ interval = "${INTERVAL}ms", timeout = "${TIMEOUT}ms", grace_period = "0s", path = "/health" }]`,
    ...specs.flatMap((s) => ['[[machines]]', `id = "${s.id}"`, 'app = "web"', `region = "${s.region}"`, `upstream = "${s.upstream}"`]),
    '[[ips]]',
    'app = "web"',
  ].join('\n');
  const flycast = flycastAddress(NETWORK_ID, 3);
  const p = await startSixpnProxy(`${toml}\n`, { listen: [{ host: flycast, port }] });
  const lines = watchLines(p.proc);
  // Every machine's first verdict (unknown -> healthy) before the load starts.
  for (const s of specs) await lines.wait(new RegExp(`"machine":"${s.id}".*"to":"healthy"`), 0, 15_000);
  const idOf = (i) => specs[i].id;
  return {
    name: 'sixpn',
    url: `http://[${flycast}]:${port}/`,
    down: (i, after) => lines.wait(new RegExp(`"machine":"${idOf(i)}".*"to":"unhealthy"`), after),
    up: (i, after) => lines.wait(new RegExp(`"machine":"${idOf(i)}".*"to":"healthy"`), after),
    /** Why requests failed, from the proxy's one warning line per failed request. */
    failures: () => lines.tally(/"msg":"request failed: ([^"]+)"/),
    stop: () => p.stop(),
  };
}

async function startHaproxyTarget(ports) {
  const port = await freePort();
  const text = [
    'global',
    '  maxconn 2000',
    'defaults',
    '  mode http',
    `  timeout connect ${TIMEOUT}ms`,
    '  timeout client 30s',
    '  timeout server 1500ms',
    `  timeout check ${TIMEOUT}ms`,
    '  retries 3',
    '  option redispatch',
    'listen web',
    `  bind 127.0.0.1:${port}`,
    '  balance leastconn',
    '  option http-keep-alive',
    '  http-reuse always',
    '  option httpchk GET /health',
    ...ports.map((p, i) => `  server m${i + 1} 127.0.0.1:${p} check inter ${INTERVAL} fall ${FALL} rise ${RISE}${i >= 3 ? ' backup' : ''}`),
  ].join('\n');
  const h = await startHaproxy(`${text}\n`);
  const lines = watchLines(h.proc);
  return {
    name: 'HAProxy',
    url: `http://127.0.0.1:${port}/`,
    down: (i, after) => lines.wait(new RegExp(`Server web/m${i + 1} is DOWN`), after),
    up: (i, after) => lines.wait(new RegExp(`Server web/m${i + 1} is UP`), after),
    failures: () => ({}),
    stop: () => h.stop(),
  };
}

/** One measured run against one target: returns { total, failed, phases: {name: {eject, recover}} }. */
async function runScenario(kind) {
  const ports = [];
  for (let i = 0; i < 5; i++) ports.push(await freePort());
  const machines = ports.map((p, i) => backend(i < 3 ? `${NEAR}-${i + 1}` : `${NEXT}-${i - 2}`, p));
  await Promise.all(machines.map((m) => m.start()));
  const target = kind === 'sixpn' ? await startSixpnTarget(ports) : await startHaproxyTarget(ports);
  const phases = {};
  // Per-second samples, placed at the middle of the second they cover, to count failures per phase.
  const samples = [];
  const marks = [];
  const ac = startAutocannon({
    url: target.url,
    connections: CONNECTIONS,
    duration: 60,
    timeout: 3,
    samples: true,
    onSample: (x) => samples.push({ at: Date.now() - 500, failed: x.non2xx + x.errors, total: x.ok + x.non2xx + x.errors }),
  });
  try {
    await sleep(1_500);
    // 1. kill -9 one near machine, then restart it.
    let t = Date.now();
    marks.push(['kill -9 one', t]);
    await machines[0].signal('SIGKILL');
    const kEject = (await target.down(0, t)) - t;
    await sleep(800);
    await machines[0].start();
    t = Date.now();
    const kRecover = (await target.up(0, t)) - t;
    phases['kill -9 one'] = { eject: kEject, recover: kRecover };
    await sleep(800);
    // 2. freeze one (accepts, never answers), then thaw it.
    t = Date.now();
    marks.push(['SIGSTOP one', t]);
    await machines[1].signal('SIGSTOP');
    const sEject = (await target.down(1, t)) - t;
    await sleep(1_800);
    t = Date.now();
    await machines[1].signal('SIGCONT');
    const sRecover = (await target.up(1, t)) - t;
    phases['SIGSTOP one'] = { eject: sEject, recover: sRecover };
    await sleep(800);
    // 3. the whole near region down, then back.
    t = Date.now();
    marks.push(['region down', t]);
    await Promise.all(machines.slice(0, 3).map((m) => m.signal('SIGKILL')));
    const rEject = Math.max(...(await Promise.all([0, 1, 2].map((i) => target.down(i, t))))) - t;
    await sleep(1_000);
    await Promise.all(machines.slice(0, 3).map((m) => m.start()));
    t = Date.now();
    const rRecover = Math.max(...(await Promise.all([0, 1, 2].map((i) => target.up(i, t))))) - t;
    phases['region down'] = { eject: rEject, recover: rRecover };
    await sleep(1_000);
  } finally {
    ac.stop();
  }
  const r = await ac.result;
  const reasons = target.failures();
  await target.stop();
  await Promise.all(machines.map((m) => m.stop()));
  const total = r.total2xx + r.non2xx + r.errors;
  marks.push(['end', Infinity]);
  for (let i = 0; i + 1 < marks.length; i++) {
    const [name, from] = marks[i];
    const to = marks[i + 1][1];
    phases[name].failed = samples.filter((x) => x.at >= from - 500 && x.at < to - 500).reduce((n, x) => n + x.failed, 0);
  }
  const codes = Object.fromEntries(Object.entries(r.raw.statusCodeStats ?? {}).filter(([c]) => c !== '200').map(([c, v]) => [c, v.count]));
  if (r.errors) codes.errors = r.errors;
  return { total, failed: r.non2xx + r.errors, timeouts: r.timeouts, reqPerSec: r.reqPerSec, phases, reasons, codes };
}

const loadBefore = os.loadavg();
const results = { sixpn: [], HAProxy: [] };
for (let run = 0; run < (SKIP_SCENARIO ? 0 : RUNS); run++) {
  for (const kind of run % 2 ? ['HAProxy', 'sixpn'] : ['sixpn', 'HAProxy']) {
    const r = await runScenario(kind);
    results[kind].push(r);
    console.log(`run ${run + 1} ${kind}: ${r.failed}/${r.total} failed, ${JSON.stringify(r.phases)} ${JSON.stringify(r.reasons)} ${JSON.stringify(r.codes)}`);
  }
}

const med = (xs) => median(xs);
const fmtMs = (x) => `${Math.round(x)} ms`;
const md = [
  '## Failover under load',
  '',
  `Command: \`npm run build && sh test/harness/netns-run.sh node bench/failover.bench.mjs\` (bench/failover.bench.mjs).`,
  `Machine: ${machineLine()}; load average at start ${loadBefore.map((x) => x.toFixed(2)).join(' / ')}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(' / ')}. ${haproxyVersion()}.`,
  '',
  `5 HTTP machines (3 in ${NEAR}, the proxy's region, 2 in ${NEXT}; for HAProxy 3 servers + 2 \`backup\`), autocannon with ${CONNECTIONS} keep-alive connections for the whole scenario: kill -9 one near machine and restart it; SIGSTOP one and SIGCONT it; kill -9 all three near machines and restart them. Both proxies check \`GET /health\` every ${INTERVAL} ms with a ${TIMEOUT} ms timeout, fall ${FALL}, rise ${RISE}; both retry a refused connect on another machine (sixpn connect_tries 3; HAProxy \`retries 3\` + \`option redispatch\`); both give a machine 1.5 s to answer. Eject = signal -> the proxy logs the machine down; recover = machine listening (or SIGCONT) -> logged up (for the region, the last of the three). Medians of ${RUNS} runs, runs interleaved.`,
  '',
  '| | failed / total requests | kill -9 one: failed, eject, recover | SIGSTOP one: failed, eject, recover | whole region: failed, eject, recover |',
  '| --- | --- | --- | --- | --- |',
];
for (const kind of ['sixpn', 'HAProxy']) {
  const rs = results[kind];
  const ph = (name) => {
    const m = (key) => med(rs.map((r) => r.phases[name][key]));
    return `${m('failed')}, ${fmtMs(m('eject'))}, ${fmtMs(m('recover'))}`;
  };
  md.push(
    `| ${kind} | ${med(rs.map((r) => r.failed))} / ${Math.round(med(rs.map((r) => r.total)))} (runs: ${rs.map((r) => `${r.failed}/${r.total}`).join(', ')}) | ${ph('kill -9 one')} | ${ph('SIGSTOP one')} | ${ph('region down')} |`,
  );
}
/** What each of the proxy's failure reasons means in this scenario. */
const REASON_NOTES = {
  'machine did not answer in time': 'a request sent to the frozen machine before it was marked down (504 after the 1.5 s upstream timeout); HAProxy loses the same handful.',
  'no machine reachable': "every connect try of the request (3) hit a dead near machine before the checker's verdict; passive ejection holds at most half of the app's machines, so with all three near machines dead one of them stays a candidate.",
  'machine connection failed': 'the connection to a machine failed after the request was sent and the request could not be retried (not idempotent, or a body already sent).',
};
const reasons = {};
for (const r of results.sixpn) for (const [k, v] of Object.entries(r.reasons)) reasons[k] = (reasons[k] ?? 0) + v;
const codesOf = (kind) => {
  const all = {};
  for (const r of results[kind]) for (const [k, v] of Object.entries(r.codes)) all[k] = (all[k] ?? 0) + v;
  return Object.entries(all).map(([k, v]) => `${v} x ${k}`).join(', ') || 'none';
};
md.push(
  '',
  `Failed requests by status, all runs together: sixpn ${codesOf('sixpn')}; HAProxy ${codesOf('HAProxy')}.`,
  '',
  `Why sixpn's requests failed, all runs together (its log has one line per failed request): ${Object.entries(reasons).map(([k, v]) => `${v} x "${k}"`).join(', ') || 'none'}.`,
  '',
  ...Object.keys(reasons).map((k) => `- "${k}": ${REASON_NOTES[k] ?? 'see the proxy log'}`),
  "- With the whole near region down, HAProxy answers 503 until its checks have marked all three primaries DOWN and it switches to the `backup` servers (every request in that window fails fast, so the count is large); sixpn's connect retries usually reach the next region at once.",
  '- With fall 1 both eject within interval + timeout, and recover within about rise x interval + timeout.',
);

/**
 * What active checks cost: a checker-only node (`sixpn up` with every other role off) checking
 * N machines every second (HTTP checks, a new connection each), spread over 4 loopback
 * backends. Measured over 5 s once every first check has run: checks/s the backends saw, and
 * the node's CPU (share of one core) and RSS.
 */
async function checkerCost(count) {
  const backends = await startBackends({ count: 4, kind: 'http', prefix: 'chk' });
  const dir = mkdtempSync(join(os.tmpdir(), 'sixpn-bench-checker-'));
  const lines = [
    '[node]', 'region = "ewr"', '[catalog]', 'store = "embedded"', 'path = ""', '[control]', 'enabled = false',
    '[proxy]', 'enabled = false', '[dns]', 'enabled = false', '[wireguard]', 'enabled = false', '[log]', 'level = "warn"',
    '[health]', `max_concurrent_checks = ${MAX_CONCURRENT_CHECKS}`,
    '[[orgs]]', 'name = "bench"', `network_id = ${NETWORK_ID}`, '[[apps]]', 'name = "web"', 'org = "bench"', '[[apps.services]]',
    'protocol = "http"', 'internal_port = 8080', 'ports = [{ port = 80, handlers = ["http"] }]',
    'http_checks = [{ interval = "1s", timeout = "500ms", grace_period = "0s", path = "/health" }]',
  ];
  for (let i = 0; i < count; i++) {
    const b = backends.list[i % backends.list.length];
    lines.push('[[machines]]', `id = "${(0x10000000 + i).toString(16)}0000"`, 'app = "web"', 'region = "ewr"', `upstream = "${b.address}"`);
  }
  writeFileSync(join(dir, 'node.toml'), `${lines.join('\n')}\n`);
  const node = startProc(process.execPath, [CLI, 'up', '--config', join(dir, 'node.toml')], { cwd: dir });
  const served = async () => {
    let n = 0;
    for (const b of backends.list) n += (await (await fetch(`http://${b.address}/__stats`)).json()).requests;
    return n;
  };
  try {
    await node.waitForLine(/^sixpn ready/, 60_000);
    await sleep(2_500);
    const [c0, n0, t0] = [cpuSeconds(node.pid), await served(), Date.now()];
    await sleep(5_000);
    const [c1, n1, t1] = [cpuSeconds(node.pid), await served(), Date.now()];
    const secs = (t1 - t0) / 1000;
    return { count, checksPerSec: (n1 - n0 - backends.list.length) / secs, cpu: (c1 - c0) / secs, rssMiB: rssBytes(node.pid) / 2 ** 20 };
  } finally {
    await node.stop('SIGTERM', 5_000);
    await backends.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const costs = [];
for (const n of [1_000, 5_000]) {
  const rs = [];
  for (let i = 0; i < RUNS; i++) rs.push(await checkerCost(n));
  const c = { count: n, checksPerSec: median(rs.map((r) => r.checksPerSec)), cpu: median(rs.map((r) => r.cpu)), rssMiB: median(rs.map((r) => r.rssMiB)) };
  costs.push(c);
  console.log(`checker ${n} machines: ${JSON.stringify(c)}`);
}
md.push(
  '',
  '### What active checks cost',
  '',
  `A checker-only node (\`sixpn up\`, every other role off) checking N machines with one HTTP check each every 1 s (a new connection per check, at most ${MAX_CONCURRENT_CHECKS} in flight), machines spread over 4 loopback backends; 5 s measured after the first round. Medians of ${RUNS} runs.`,
  '',
  '| machines | checks/s seen by the machines | node CPU (share of one core) | node RSS |',
  '| --- | --- | --- | --- |',
  ...costs.map((c) => `| ${c.count} | ${Math.round(c.checksPerSec)} | ${(c.cpu * 100).toFixed(0)} % | ${c.rssMiB.toFixed(0)} MiB |`),
  '',
  'When the checks/s seen fall short of N, the node did not keep up on this shared machine (see the load average above): each (machine, check) has at most one run pending, so the interval stretches instead of work piling up.',
);
// A cost-only experiment (FAILOVER_SKIP_SCENARIO=1) prints but does not replace the section.
if (!SKIP_SCENARIO) writeSection('failover', md.join('\n'));
console.log(md.join('\n'));

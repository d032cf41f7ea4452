// DNS benchmark: dnsperf against sixpn's .internal resolver, against unbound (one thread,
// `local-data`) and dnsmasq serving the same records (AAAA and TXT), and against a bare Node
// UDP responder (the floor Node's dgram sets: no DNS work at all), in one run, same query file.
// Throughput: alternating runs at full speed, medians. Latency: each server again at unbound's
// median rate with `dnsperf -v` (one line per query with its latency), for the p99.
// Run: npm run build && sh test/harness/netns-run.sh node bench/dns.bench.mjs
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineLine, median, writeSection } from './lib/results.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.env.DNS_BENCH_RUNS ?? 5);
const SECONDS = Number(process.env.DNS_BENCH_SECONDS ?? 5);
const SIXPN_PORT = 5301;
const DNSMASQ_PORT = 5302;
const DNSMASQ_ADDR = 'fdaa:0:18::53';
const UNBOUND_PORT = 5303;
const UNBOUND_ADDR = 'fdaa:0:18::54';
const FLOOR_PORT = 5304;
const FLOOR_ADDR = 'fdaa:0:18::55';
const TTL = 5;
const HOST = 'a7b:7d';

if (process.env.SIXPN_IN_NETNS !== '1') {
  console.error('run inside the test namespace: sh test/harness/netns-run.sh node bench/dns.bench.mjs');
  process.exit(1);
}
for (const cmd of ['dnsperf', 'dnsmasq', 'unbound']) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    console.error(`${cmd} is not installed`);
    process.exit(1);
  }
}

// The zone: org acme (0x18), app web with 5 machines, app api with 3.
const machines = [
  ['10000001cafe', 'web', 'ewr'],
  ['10000002cafe', 'web', 'ewr'],
  ['10000003cafe', 'web', 'ord'],
  ['10000004cafe', 'web', 'ams'],
  ['10000005cafe', 'web', 'syd'],
  ['20000001cafe', 'api', 'ewr'],
  ['20000002cafe', 'api', 'fra'],
  ['20000003cafe', 'api', 'nrt'],
];
const addr = (id) => `fdaa:0:18:a7b:7d:${id.slice(0, 4)}:${id.slice(4, 8).replace(/^0+(?=.)/, '')}:2`;
const MEMBER = addr('10000001cafe');

const dir = mkdtempSync(join(tmpdir(), 'sixpn-dnsbench-'));
const cfg = join(dir, 'sixpn.toml');
writeFileSync(
  cfg,
  [
    `[node]\nregion = "ewr"\nhost_id = "${HOST}"\n[catalog]\npath = ""\n[log]\nlevel = "warn"\n[dns]\nport = ${SIXPN_PORT}`,
    '[[orgs]]\nname = "acme"\nnetwork_id = 24',
    '[[apps]]\nname = "web"\norg = "acme"',
    '[[apps]]\nname = "api"\norg = "acme"',
    ...machines.map(([id, app, region]) => `[[machines]]\nid = "${id}"\napp = "${app}"\nregion = "${region}"`),
  ].join('\n'),
);
const byApp = (app) => machines.filter((m) => m[1] === app);
const regionsOf = (app) => [...new Set(byApp(app).map((m) => m[2]))].sort().join(',');

// The same records for dnsmasq, answered from its own tables.
const dnsmasqArgs = [
  '-k',
  '--conf-file=/dev/null',
  '--no-resolv',
  '--no-hosts',
  '--local=/internal/',
  '--bind-interfaces',
  `--listen-address=${DNSMASQ_ADDR}`,
  '-p',
  String(DNSMASQ_PORT),
  '--pid-file=',
  '--user=root',
  ...machines.map(([id, app]) => `--host-record=${app}.internal,${addr(id)}`),
  ...machines.filter((m) => m[2] === 'ewr').map(([id, app]) => `--host-record=ewr.${app}.internal,${addr(id)}`),
  `--txt-record=vms.web.internal,${byApp('web').map((m) => m[0]).join(',')}`,
  `--txt-record=regions.web.internal,${regionsOf('web')}`,
  '--txt-record=_apps.internal,api,web',
];

// And for unbound: a static local zone with the same data, one thread, nothing upstream.
const unboundConf = join(dir, 'unbound.conf');
const unboundData = [
  ...machines.map(([id, app]) => `${app}.internal. ${TTL} IN AAAA ${addr(id)}`),
  ...machines.filter((m) => m[2] === 'ewr').map(([id, app]) => `ewr.${app}.internal. ${TTL} IN AAAA ${addr(id)}`),
  `vms.web.internal. ${TTL} IN TXT "${byApp('web').map((m) => m[0]).join(',')}"`,
  `regions.web.internal. ${TTL} IN TXT "${regionsOf('web')}"`,
  `_apps.internal. ${TTL} IN TXT "api,web"`,
];
writeFileSync(
  unboundConf,
  [
    'server:',
    `  interface: ${UNBOUND_ADDR}`,
    `  port: ${UNBOUND_PORT}`,
    '  num-threads: 1',
    '  do-ip4: no',
    '  do-tcp: yes',
    '  access-control: ::/0 allow',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 0',
    '  so-rcvbuf: 4m',
    '  so-sndbuf: 4m',
    '  local-zone: "internal." static',
    ...unboundData.map((d) => `  local-data: '${d}'`),
    'remote-control:',
    '  control-enable: no',
    '',
  ].join('\n'),
);
{
  const check = spawnSync('unbound-checkconf', [unboundConf], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`unbound-checkconf: ${check.stdout}${check.stderr}`);
}

// The floor: Node's dgram with no DNS work (the query comes back as an empty NOERROR answer).
const floorJs = join(dir, 'floor.mjs');
writeFileSync(
  floorJs,
  `import dgram from 'node:dgram';
const s = dgram.createSocket({ type: 'udp6', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20, lookup: (a, f, cb) => cb(null, a, 6) });
s.on('message', (msg, rinfo) => { const out = Buffer.allocUnsafe(msg.length); msg.copy(out); out[2] |= 0x80; s.send(out, rinfo.port, rinfo.address); });
s.bind({ address: '${FLOOR_ADDR}', port: ${FLOOR_PORT} });
`,
);

const queries = join(dir, 'queries.txt');
writeFileSync(queries, ['web.internal AAAA', 'api.internal AAAA', 'ewr.web.internal AAAA', 'vms.web.internal TXT', 'regions.web.internal TXT', '_apps.internal TXT'].join('\n') + '\n');

function dnsperf(server, port, seconds, extra = []) {
  const r = spawnSync('dnsperf', ['-s', server, '-p', String(port), '-a', MEMBER, '-d', queries, '-l', String(seconds), ...extra], {
    encoding: 'utf8',
    maxBuffer: 512 * 1024 * 1024,
  });
  const out = r.stdout + r.stderr;
  const num = (re) => Number(re.exec(out)?.[1] ?? NaN);
  const res = {
    qps: num(/Queries per second:\s+([\d.]+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    lostPct: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/),
    out,
  };
  if (!Number.isFinite(res.qps)) throw new Error(`dnsperf failed:\n${out.slice(-2000)}`);
  return res;
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

function p99FromVerbose(out) {
  const lat = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('> ')) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) lat.push(v);
  }
  lat.sort((a, b) => a - b);
  return { p99Ms: lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] * 1000 : NaN, n: lat.length };
}

function waitForAnswer(server, port) {
  for (let i = 0; i < 100; i++) {
    const r = spawnSync('dig', ['-b', MEMBER, `@${server}`, '-p', String(port), 'web.internal', 'AAAA', '+short', '+time=1', '+tries=1'], { encoding: 'utf8' });
    const lines = r.stdout.trim().split('\n');
    if (r.status === 0 && lines.every((l) => /^fdaa:[0-9a-f:]+$/.test(l))) return lines.sort();
    spawnSync('sleep', ['0.1']);
  }
  throw new Error(`${server}:${port} does not answer`);
}

const procs = [];
const cleanup = () => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
};
process.on('exit', cleanup);

for (const a of [DNSMASQ_ADDR, UNBOUND_ADDR, FLOOR_ADDR]) {
  try {
    execFileSync('ip', ['-6', 'addr', 'add', `${a}/128`, 'dev', 'lo', 'nodad'], { stdio: 'pipe' });
  } catch {
    // already there
  }
}
const sixpn = spawn(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'dns', '--config', cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
const unbound = spawn('unbound', ['-d', '-c', unboundConf], { stdio: ['ignore', 'ignore', 'inherit'] });
const dnsmasq = spawn('dnsmasq', dnsmasqArgs, { stdio: ['ignore', 'ignore', 'inherit'] });
const floor = spawn(process.execPath, [floorJs], { stdio: ['ignore', 'ignore', 'inherit'] });
procs.push(sixpn, unbound, dnsmasq, floor);

const servers = { sixpn: ['fdaa::3', SIXPN_PORT], unbound: [UNBOUND_ADDR, UNBOUND_PORT], dnsmasq: [DNSMASQ_ADDR, DNSMASQ_PORT], floor: [FLOOR_ADDR, FLOOR_PORT] };
const names = Object.keys(servers);
const a = waitForAnswer(...servers.sixpn);
for (const ref of ['unbound', 'dnsmasq']) {
  const b = waitForAnswer(...servers[ref]);
  if (a.join() !== b.join()) throw new Error(`sixpn and ${ref} disagree on web.internal: ${a} vs ${b}`);
}
// unbound holds the same data for every name of the query file: check each answer.
for (const line of readFileSync(queries, 'utf8').trim().split('\n')) {
  const [name, type] = line.split(' ');
  const ask = ([server, port]) =>
    spawnSync('dig', ['-b', MEMBER, `@${server}`, '-p', String(port), name, type, '+short', '+time=1', '+tries=2'], { encoding: 'utf8' }).stdout.trim().split('\n').sort().join(' ');
  const mine = ask(servers.sixpn);
  const theirs = ask(servers.unbound);
  if (mine !== theirs || mine === '') throw new Error(`sixpn and unbound disagree on ${name} ${type}: ${mine} vs ${theirs}`);
}
for (let i = 0; spawnSync('dig', ['-b', MEMBER, `@${FLOOR_ADDR}`, '-p', String(FLOOR_PORT), 'x', '+time=1', '+tries=1']).status !== 0; i++) {
  if (i > 50) throw new Error('the floor responder does not answer');
  spawnSync('sleep', ['0.1']);
}

const perServer = () => Object.fromEntries(names.map((n) => [n, []]));
// Warm-up (JIT, caches), then alternating full-speed runs.
for (const s of Object.values(servers)) dnsperf(...s, 2);
const qps = perServer();
const avg = perServer();
const lost = perServer();
const cpuUs = perServer();
const pids = { sixpn: sixpn.pid, unbound: unbound.pid, dnsmasq: dnsmasq.pid, floor: floor.pid };
for (let i = 0; i < RUNS; i++) {
  // Each run starts with another server, so a drift in the machine's load hits all alike.
  for (const name of [...names.slice(i % names.length), ...names.slice(0, i % names.length)]) {
    const s = servers[name];
    const cpu0 = cpuSeconds(pids[name]);
    const r = dnsperf(...s, SECONDS);
    const perQuery = ((cpuSeconds(pids[name]) - cpu0) / r.completed) * 1e6;
    qps[name].push(r.qps);
    avg[name].push(r.avgMs);
    lost[name].push(r.lostPct);
    cpuUs[name].push(perQuery);
    console.log(`run ${i + 1} ${name}: ${Math.round(r.qps)} q/s, avg ${r.avgMs.toFixed(3)} ms, lost ${r.lostPct}%, ${perQuery.toFixed(1)} us CPU/query`);
  }
}
const refQps = Math.round(median(qps.unbound));

// Latency at the reference's load (every DNS server at unbound's median rate), and at half of it
// (below saturation, where queueing in the client and the kernel does not dominate).
const loads = [refQps, Math.round(refQps / 2)];
const latencyServers = Object.entries(servers).filter(([n]) => n !== 'floor');
const p99 = {};
const avgAtLoad = {};
const achieved = {};
for (const load of loads) {
  p99[load] = perServer();
  avgAtLoad[load] = perServer();
  achieved[load] = perServer();
  for (let i = 0; i < 3; i++) {
    for (const [name, s] of latencyServers) {
      const r = dnsperf(...s, SECONDS, ['-Q', String(load), '-v']);
      const { p99Ms, n } = p99FromVerbose(r.out);
      p99[load][name].push(p99Ms);
      avgAtLoad[load][name].push(r.avgMs);
      achieved[load][name].push(r.qps);
      console.log(`latency run ${i + 1} ${name} at ${load} q/s: p99 ${p99Ms.toFixed(3)} ms over ${n} queries, avg ${r.avgMs.toFixed(3)} ms`);
    }
  }
}
const half = loads[1];

const m = (xs, d = 0) => median(xs).toFixed(d);
const load = os.loadavg().map((x) => x.toFixed(1)).join(' / ');
const ratio = (n, ref) => median(qps[n]) / median(qps[ref]);
const unboundVersion = (spawnSync('unbound', ['-V'], { encoding: 'utf8' }).stdout.match(/Version ([\d.]+)/) ?? [])[1] ?? '?';
const label = {
  sixpn: 'sixpn',
  unbound: `unbound ${unboundVersion} (reference; 1 thread, local-data)`,
  dnsmasq: `${execFileSync('dnsmasq', ['--version'], { encoding: 'utf8' }).split('\n')[0].replace(/\s+Copyright.*$/, '')}`,
  floor: 'bare Node UDP responder (floor: no DNS work)',
};
const row = (n) =>
  n === 'floor'
    ? `| ${label[n]} | ${m(qps[n])} | ${ratio(n, 'unbound').toFixed(2)} | ${m(cpuUs[n], 1)} us | ${m(avg[n], 3)} ms | - | - | ${m(lost[n], 2)}% |`
    : `| ${label[n]} | ${m(qps[n])} | ${ratio(n, 'unbound').toFixed(2)} | ${m(cpuUs[n], 1)} us | ${m(avg[n], 3)} ms | ${m(avgAtLoad[refQps][n], 3)} / ${m(p99[refQps][n], 3)} ms | ${m(avgAtLoad[half][n], 3)} / ${m(p99[half][n], 3)} ms | ${m(lost[n], 2)}% |`;
const sixpnP99 = median(p99[refQps].sixpn);
const md = `## DNS: sixpn's .internal resolver vs unbound and dnsmasq

Command: \`npm run build && sh test/harness/netns-run.sh node bench/dns.bench.mjs\` — ${machineLine()}.

Same zone in all (org acme: web with 5 machines, api with 3; AAAA for \`web.internal\`, \`api.internal\`,
\`ewr.web.internal\`, TXT for \`vms.web.internal\`, \`regions.web.internal\`, \`_apps.internal\`), same query file,
asked by \`dnsperf\` (one client, 100 outstanding, no EDNS) from a machine address of the org over UDP inside the
test namespace. sixpn: \`sixpn dns\` on \`fdaa::3\` (answers from its fast path: templates per org, name and type).
unbound: \`num-threads: 1\`, a static \`local-zone\` with \`local-data\` for the same records, on \`${UNBOUND_ADDR}\`.
dnsmasq: \`--host-record\`/\`--txt-record\` on \`${DNSMASQ_ADDR}\`. The floor: a Node process whose \`dgram\` socket
sends each query back as an empty answer, to show what Node's UDP path costs before any DNS work.
Throughput: ${RUNS} alternating runs of ${SECONDS} s at full speed after a 2 s warm-up, medians. Latency: 3 runs
each at unbound's median rate (\`-Q ${refQps}\`) and at half of it, with \`dnsperf -v\`, p99 over every query, medians.

| server | queries/s | vs unbound | server CPU per query | avg latency, full speed | avg / p99 at ${refQps} q/s | avg / p99 at ${half} q/s | lost |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${names.map(row).join('\n')}

sixpn / unbound queries/s: **${ratio('sixpn', 'unbound').toFixed(2)}x** (target >= 0.9x: ${ratio('sixpn', 'unbound') >= 0.9 ? 'met' : '**missed**'});
sixpn / dnsmasq: ${ratio('sixpn', 'dnsmasq').toFixed(2)}x; sixpn / the Node floor: ${ratio('sixpn', 'floor').toFixed(2)}x.
sixpn p99 at unbound's rate: **${sixpnP99.toFixed(3)} ms** (target < 2 ms: ${sixpnP99 < 2 ? 'met' : '**missed**'}; unbound's own: ${m(p99[refQps].unbound, 3)} ms).
Rates actually answered in the latency runs (dnsperf offers at most \`-Q\`, with at most 100 queries outstanding):
at ${refQps} q/s offered, ${latencyServers.map(([n]) => `${n} ${m(achieved[refQps][n])}`).join(', ')} q/s; at ${half} q/s offered,
${latencyServers.map(([n]) => `${n} ${m(achieved[half][n])}`).join(', ')} q/s. When a server answers less than offered, it is
saturated and its latency is bounded by the client's window rather than by a queue.
Per-run figures: ${names.map((n) => `${n} ${qps[n].map(Math.round).join(', ')}`).join('; ')} q/s.
Server CPU per query is the server process's user + system CPU time over a full-speed run divided by the
queries it answered: unlike queries/s it hardly depends on what else the machine is doing.
Two cores are shared by dnsperf (two threads) and the server under test, so every server runs near the
point where the client and the kernel's loopback path set the pace. Load average (1/5/15 min) when the run
ended: ${load} on ${os.cpus().length} cores; other engineers' work on the machine shows up in every server's tail.

### What limits sixpn here

sixpn answers these queries from its fast path (one template per org, name and type; per query it reads the
header and question, copies the template and patches the id, RD and the question bytes: 1 to 2 us of
JavaScript measured in-process on this machine under load). Its CPU per query, ${m(cpuUs.sixpn, 1)} us in this run,
is close to the Node floor's, ${m(cpuUs.floor, 1)} us (the bare responder above, which does no DNS work at all), and
both are about ${(median(cpuUs.floor) / median(cpuUs.unbound)).toFixed(1)}x unbound's ${m(cpuUs.unbound, 1)} us: the cost is Node's path per datagram, not sixpn's. A profile of \`sixpn dns\` under dnsperf
(\`perf record -g -p <pid>\`, 2026-12-01): 46% kernel (one \`recvmsg\` and one \`sendmsg\` per query; strace counts
them 1:1, libuv does not use \`recvmmsg\` for Node's dgram sockets), 33% node's own C++ and V8 runtime (a
callback into JavaScript per datagram with its microtask checkpoint, an ArrayBuffer and a \`rinfo\` object per
datagram), 13% libc (a 64 KiB receive buffer malloc'd per datagram, the sender's address formatted with
\`inet_ntop\`/\`vfprintf\` into a string per datagram), 6% JIT code (sixpn's and dgram's JavaScript together).
unbound reads and answers in C with one buffer. Closing the rest of the gap needs batched receive (\`recvmmsg\`)
and no per-datagram allocation in Node's UDP binding, i.e. native code, which this project does not carry; several
processes on \`SO_REUSEPORT\` sockets would add cores, not make one core faster. Skipping dgram's JavaScript (the
UDP handle's \`onmessage\` and \`send\` called directly, 2026-12-07, 8 alternating dnsperf runs against an echo
responder) did not lower CPU per query (10.3-12.7 us against dgram's 9.2-12.1 us): the cost is below JavaScript.

The p99 target is a latency target for a server that keeps up: at unbound's rate sixpn is saturated (it answers
what one core gives it), and at half that rate its ${m(cpuUs.sixpn, 1)} us per query take about
${Math.round((median(cpuUs.sixpn) * half) / 1e4)}% of a core while dnsperf's two threads take
most of the other one: a query that arrives while sixpn waits for the CPU waits with it (unbound needs
${Math.round((median(cpuUs.unbound) * half) / 1e4)}% of a core for the same rate).
`;
if (process.env.BENCH_WRITE !== '0') writeSection('dns', md);
console.log(md);
process.exit(0); // the servers it started would keep the event loop alive (the exit hook kills them)

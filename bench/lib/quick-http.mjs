// Scratch: sixpn and HAProxy over the bench's backends, one load run each, with CPU per request
// (or per connection) and optional strace -c (QUICK_STRACE=1), perf record (QUICK_PERF=FILE) or
// node --cpu-prof (QUICK_PROF=DIR) of the proxies. Not a benchmark of record (bench/proxy.bench.mjs
// is): a loop for profiling. QUICK_MODE=http (autocannon, 50 connections) or rate (short TCP
// connections, 1 byte echoed); QUICK_SECONDS (5).
//   sh test/harness/netns-run.sh node bench/lib/quick-http.mjs
import { spawn } from 'node:child_process';
import { startBackends } from './backends.mjs';
import { haproxyConfig, startHaproxy } from './haproxy.mjs';
import { runAutocannon, runTcpRate } from './load.mjs';
import { routeCallerSource, sixpnConfig, startSixpnProxy, tuneNamespaceTcp } from './sixpn.mjs';
import { cpuTimes, freePort } from '../../test/harness/spawn.mjs';

const env = process.env;
const SECONDS = Number(env.QUICK_SECONDS ?? 5);
const RATE = env.QUICK_MODE === 'rate';
tuneNamespaceTcp();
routeCallerSource({ networkId: 0x18 });
const backends = await startBackends({ count: RATE ? 2 : 3, kind: RATE ? 'echo' : 'http' });
const port = await freePort();
const servers = backends.list.map((b) => b.address);
const ha = await startHaproxy(haproxyConfig({ threads: 1, services: [{ name: 'web', mode: RATE ? 'tcp' : 'http', bind: `127.0.0.1:${port}`, servers }] }));
const flyPort = RATE ? 7000 : 80;
const { text, apps } = sixpnConfig({ networkId: 0x18, proxy: { drain_timeout: '2s', ...(env.QUICK_WORKERS ? { workers: Number(env.QUICK_WORKERS) } : {}) }, apps: [{ name: 'web', protocol: RATE ? 'tcp' : 'http', port: flyPort, servers }] });
const nodeArgs = [...(env.QUICK_PROF ? ['--cpu-prof', `--cpu-prof-dir=${env.QUICK_PROF}`] : []), ...(env.QUICK_NODE_ARGS ? env.QUICK_NODE_ARGS.split(' ') : [])];
const sixpn = await startSixpnProxy(text, { nodeArgs, listen: [{ host: apps[0].flycast, port: flyPort }] });
const targets = {
  haproxy: [{ host: '127.0.0.1', port, url: `http://127.0.0.1:${port}/` }, ha.pid],
  sixpn: [{ host: apps[0].flycast, port: flyPort, url: `http://[${apps[0].flycast}]:80/` }, sixpn.pid],
};
/** One load run: { n: requests or connections answered }. */
const load = async (t, seconds) => {
  if (RATE) return { n: (await runTcpRate({ host: t.host, port: t.port, durationMs: seconds * 1000 })).connections };
  const r = await runAutocannon({ url: t.url, connections: 50, duration: seconds });
  return { n: r.total2xx, non2xx: r.non2xx };
};
try {
  for (const [t] of Object.values(targets)) await load(t, 1);
  for (const [name, [t, pid]] of Object.entries(targets)) {
    const st = env.QUICK_STRACE ? spawn('strace', ['-c', '-f', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] }) : null;
    const pf = env.QUICK_PERF ? spawn('perf', ['record', '-g', '-o', `${env.QUICK_PERF}.${name}`, '-p', String(pid)], { stdio: 'ignore' }) : null;
    let err = '';
    st?.stderr.on('data', (d) => (err += d));
    const c0 = cpuTimes(pid);
    const r = await load(t, SECONDS);
    const c1 = cpuTimes(pid);
    for (const p of [pf, st]) {
      if (!p) continue;
      p.kill('SIGINT');
      await new Promise((res) => p.on('close', res));
    }
    const us = (x) => ((x * 1e6) / r.n).toFixed(1);
    const unit = RATE ? 'conn' : 'req';
    console.log(`${name}: ${Math.round(r.n / SECONDS)} ${unit}/s, CPU µs/${unit} user ${us(c1.user - c0.user)} sys ${us(c1.system - c0.system)}${RATE ? '' : `, non2xx ${r.non2xx}`}`);
    if (st) console.log(err.split('\n').slice(0, 40).filter((l) => !l.startsWith('strace:')).join('\n'), `\n(${unit}s under strace: ${r.n})`);
  }
} finally {
  await sixpn.stop();
  await ha.stop();
  await backends.stop();
}

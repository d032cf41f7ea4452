// Scratch: sixpn and HAProxy over the bench's backends, one autocannon run each, optional strace -c of
// the proxy (QUICK_STRACE=1). Not a benchmark of record (bench/proxy.bench.mjs is): a loop for profiling.
//   sh test/harness/netns-run.sh node bench/lib/quick-http.mjs
import { execFileSync, spawn } from 'node:child_process';
import { startBackends } from './backends.mjs';
import { haproxyConfig, startHaproxy } from './haproxy.mjs';
import { runAutocannon } from './load.mjs';
import { routeCallerSource, sixpnConfig, startSixpnProxy, tuneNamespaceTcp } from './sixpn.mjs';
import { cpuTimes, freePort } from '../../test/harness/spawn.mjs';

const SECONDS = Number(process.env.QUICK_SECONDS ?? 5);
tuneNamespaceTcp();
routeCallerSource({ networkId: 0x18 });
const http = await startBackends({ count: 3, kind: 'http' });
const port = await freePort();
const ha = await startHaproxy(haproxyConfig({ threads: 1, services: [{ name: 'web', mode: 'http', bind: `127.0.0.1:${port}`, servers: http.list.map((b) => b.address) }] }));
const { text, apps } = sixpnConfig({ networkId: 0x18, proxy: { drain_timeout: '2s', ...(process.env.QUICK_WORKERS ? { workers: Number(process.env.QUICK_WORKERS) } : {}) }, apps: [{ name: 'web', protocol: 'http', port: 80, servers: http.list.map((b) => b.address) }] });
const nodeArgs = process.env.QUICK_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.QUICK_PROF}`] : [];
const sixpn = await startSixpnProxy(text, { nodeArgs, listen: [{ host: apps[0].flycast, port: 80 }] });
const targets = { haproxy: [`http://127.0.0.1:${port}/`, ha.pid], sixpn: [`http://[${apps[0].flycast}]:80/`, sixpn.pid] };
try {
  for (const [name, [url]] of Object.entries(targets)) await runAutocannon({ url, connections: 50, duration: 1 });
  for (const [name, [url, pid]] of Object.entries(targets)) {
    const st = process.env.QUICK_STRACE ? spawn('strace', ['-c', '-f', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] }) : null;
    const pf = process.env.QUICK_PERF ? spawn('perf', ['record', '-g', '-o', `${process.env.QUICK_PERF}.${name}`, '-p', String(pid)], { stdio: 'ignore' }) : null;
    let err = '';
    st?.stderr.on('data', (d) => (err += d));
    const c0 = cpuTimes(pid);
    const r = await runAutocannon({ url, connections: 50, duration: SECONDS });
    const c1 = cpuTimes(pid);
    if (pf) {
      pf.kill('SIGINT');
      await new Promise((res) => pf.on('close', res));
    }
    if (st) {
      st.kill('SIGINT');
      await new Promise((res) => st.on('close', res));
    }
    const n = r.total2xx;
    const us = (x) => ((x * 1e6) / n).toFixed(1);
    console.log(`${name}: ${Math.round(n / SECONDS)} req/s, CPU µs/req user ${us(c1.user - c0.user)} sys ${us(c1.system - c0.system)}, non2xx ${r.non2xx}`);
    if (st) console.log(err.split('\n').slice(0, 40).filter((l) => !l.startsWith("strace:")).join('\n'), `\n(requests: ${n})`);
  }
} finally {
  await sixpn.stop();
  await ha.stop();
  await http.stop();
}

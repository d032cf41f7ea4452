// Autostart bench: what scale to zero costs a Flycast caller. The caller's first byte through the
// app's Flycast address when its only machine is stopped (cold start: the proxy starts it through
// the host agent and waits until it accepts) or suspended (resume: its process thawed), against
// (a) the first byte from an already started machine (a new connection through the proxy, the
// same path with nothing to start) and (b) the machine's own start time (the same program started
// directly, polled until it answers), measured in the same run. Then failed requests over stop ->
// start and suspend -> resume cycles with concurrent callers arriving at a machine at zero.
//
//   npm run build && sh test/harness/netns-run.sh node bench/autostart.bench.mjs
//
// Like bench/host.bench.mjs it makes a host namespace (inside the test namespace; see
// bench/lib/host-namespace.mjs), re-runs itself inside it, and starts `sixpn up` there with the
// host (netns driver), routed proxy and control roles. Everything it makes is deleted at the end.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { machineProgram } from '../test/harness/machine-program.mjs';
import { freePort, sleep, start } from '../test/harness/spawn.mjs';
import { controlCaller } from './lib/control.mjs';
import { enterHostNamespace } from './lib/host-namespace.mjs';
import { machineLine, median, pct, writeSection } from './lib/results.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist/cli/main.js');
const MACHINE = machineProgram(); // readable by the machines' unprivileged user
const COMMAND = 'npm run build && sh test/harness/netns-run.sh node bench/autostart.bench.mjs';
const RUNS = Number(process.env.AUTOSTART_BENCH_RUNS ?? 15);
const CYCLES = Number(process.env.AUTOSTART_BENCH_CYCLES ?? 20);
const CALLERS = Number(process.env.AUTOSTART_BENCH_CALLERS ?? 20);
const FLYCAST = 'fdaa:0:18:0:1::3';
const CALLER = 'fdaa:0:18::99';
const MID = 'a5000000000001';

if (process.env.SIXPN_IN_NETNS !== '1') {
  console.error('autostart bench: run it inside the test namespace: sh test/harness/netns-run.sh node bench/autostart.bench.mjs');
  process.exit(2);
}

// Outside, this makes the host namespace, re-runs the bench inside it and exits; inside, it
// returns the machines' namespace prefix.
const prefix = await enterHostNamespace({ script: fileURLToPath(import.meta.url), envStem: 'AUTOSTART_BENCH', nsStem: 'sxabench', prefixStem: 'sxa' });
const dir = mkdtempSync(join(tmpdir(), 'sixpn-autostart-bench-'));
const port = await freePort();
const TOKEN = 'autostart-bench-token-0123456789';
// idle_period is long: the bench stops and suspends the machine itself, autostop stays out of it.
writeFileSync(
  join(dir, 'sixpn.toml'),
  `[node]\nname = "bench"\nregion = "ewr"\n[log]\nlevel = "warn"\n[catalog]\npath = ""\n[control]\nlisten = "127.0.0.1:${port}"\ntoken = "${TOKEN}"\n` +
    `[proxy]\nmode = "routed"\n[dns]\nupstreams = []\n[health]\nenabled = false\n` +
    `[host]\nenabled = true\nstate_dir = "state"\nnetns_prefix = "${prefix}"\nresync_interval = "1m"\n` +
    `[autostart]\nstart_timeout = "15s"\nidle_period = "1h"\ncheck_interval = "30m"\n` +
    `[[orgs]]\nname = "acme"\nnetwork_id = 24\n[[apps]]\nname = "web"\norg = "acme"\n  [[apps.services]]\n  protocol = "http"\n  internal_port = 8080\n  ports = [{ port = 80 }]\n  auto_stop_machines = "stop"\n  concurrency = { type = "requests", soft_limit = 100, hard_limit = 200 }\n` +
    `[[ips]]\napp = "web"\n`,
);
const api = `http://127.0.0.1:${port}`;
const call = controlCaller(api, TOKEN, 60_000);
// A fresh connection per request (keep-alive off on the caller's side): every measured request
// pays the caller -> proxy connect, as a first request after a cold start does.
const caller = () => new Agent({ localAddress: CALLER, connect: { timeout: 2000 }, pipelining: 0 });
const direct = new Agent({ connect: { timeout: 1000 }, keepAliveTimeout: 10 });

/** One GET through Flycast; resolves with [status, ms to the response head]. */
async function once(dispatcher, path = '/') {
  const t0 = performance.now();
  const res = await request(`http://[${FLYCAST}]${path}`, { dispatcher, headersTimeout: 20_000, bodyTimeout: 20_000 });
  const t1 = performance.now();
  await res.body.text();
  return [res.statusCode, t1 - t0];
}

/** The same program started directly on the host, polled every ms until it answers: its own start time. */
async function directStart() {
  const p = await freePort();
  const t0 = performance.now();
  const child = spawn(process.execPath, [MACHINE, '--kind', 'http', '--id', 'ref', '--host', '127.0.0.1', '--port', String(p)], { stdio: 'ignore' });
  try {
    for (;;) {
      try {
        const res = await request(`http://127.0.0.1:${p}/`, { dispatcher: direct, headersTimeout: 2000 });
        await res.body.text();
        if (res.statusCode === 200) return performance.now() - t0;
      } catch {}
      await sleep(1);
    }
  } finally {
    child.kill('SIGKILL');
  }
}

const f0 = (x) => x.toFixed(0);
const f1 = (x) => x.toFixed(1);

const node = start(process.execPath, [CLI, 'up', '--config', join(dir, 'sixpn.toml')], { env: { ...process.env, LOG_LEVEL: 'warn' } });
try {
  await node.waitForLine(/sixpn ready/, 30_000);
  await call('POST', '/v1/apps/web/machines', { region: 'ewr', id: MID, config: { cmd: [process.execPath, MACHINE, '--kind', 'http', '--id', 'web', '--host', '::', '--port', '8080'] } });
  const d = caller();
  for (let i = 0; i < 20; i++) await once(d); // warm the paths

  const cold = [], resume = [], warm = [], own = [], apiStart = [];
  for (let i = 0; i <= RUNS; i++) {
    // warm: an already started machine, a new caller connection
    const [sw, tw] = await once(caller());
    // cold: stopped -> first byte
    await call('POST', `/v1/machines/${MID}/stop`);
    const [sc, tc] = await once(caller());
    // resume: suspended -> first byte
    await call('POST', `/v1/machines/${MID}/suspend`);
    const [sr, tr] = await once(caller());
    // the reference for a start through the API: stopped -> POST start returns -> first byte
    await call('POST', `/v1/machines/${MID}/stop`);
    const a0 = performance.now();
    await call('POST', `/v1/machines/${MID}/start`);
    for (;;) {
      const [s] = await once(d).catch(() => [0]);
      if (s === 200) break;
      await sleep(1);
    }
    const ta = performance.now() - a0;
    const to = await directStart();
    if ([sw, sc, sr].some((s) => s !== 200)) throw new Error(`run ${i}: statuses warm ${sw}, cold ${sc}, resume ${sr}`);
    if (i === 0) continue;
    warm.push(tw), cold.push(tc), resume.push(tr), apiStart.push(ta), own.push(to);
    console.error(`autostart bench: run ${i}/${RUNS}: warm ${f1(tw)} ms, cold ${f0(tc)} ms, resume ${f1(tr)} ms, API start -> first byte ${f0(ta)} ms, direct start ${f0(to)} ms`);
  }

  // Cycles under load: the machine goes to zero, then CALLERS concurrent callers arrive at once.
  const cycles = { stop: { ok: 0, failed: 0, ms: [] }, suspend: { ok: 0, failed: 0, ms: [] } };
  const failures = [];
  for (const mode of ['stop', 'suspend']) {
    for (let c = 0; c < CYCLES; c++) {
      await call('POST', `/v1/machines/${MID}/${mode}`);
      const t0 = performance.now();
      const res = await Promise.all(Array.from({ length: CALLERS }, () => once(caller(), '/sleep?ms=20').catch((e) => [0, 0, e.message])));
      cycles[mode].ms.push(performance.now() - t0);
      for (const [s, , e] of res) {
        if (s === 200) cycles[mode].ok++;
        else {
          cycles[mode].failed++;
          if (failures.length < 5) failures.push(`${mode} cycle ${c}: ${s || e}`);
        }
      }
    }
  }
  const metrics = (await (await request(`${api}/metrics`)).body.text()).split('\n');
  const metric = (name) => metrics.filter((l) => l.startsWith(name)).map((l) => `${l.split(' ')[0].slice(name.length)} ${l.split(' ')[1]}`).join(', ');

  const cm = median(cold), rm = median(resume), wm = median(warm), om = median(own), am = median(apiStart);
  const md = `## Autostart: scale to zero over Flycast (\`bench/autostart.bench.mjs\`)

\`${COMMAND}\` — ${machineLine()}; one host namespace with the netns driver, routed Flycast proxy; ${RUNS} runs after a warm-up. The machine is a Node HTTP server (\`test/harness/machine.mjs\`) in its own namespace, the only machine of its app (\`auto_stop_machines = "stop"\`); the caller opens a new connection to the app's Flycast address from an address of the app's org for every request. The bench stops and suspends the machine through the API (\`idle_period\` is long, so autostop stays out of the timings).

### Caller's first byte (time to the response head)

| machine was | median | p95 | runs (ms) |
|---|---|---|---|
| started (reference: nothing to start) | ${f1(wm)} ms | ${f1(pct(warm, 95))} ms | ${warm.map(f1).join(', ')} |
| **stopped** (autostart: the host starts it, the proxy waits until it accepts) | **${f0(cm)} ms** | ${f0(pct(cold, 95))} ms | ${cold.map(f0).join(', ')} |
| **suspended** (autostart: its process thawed) | **${f1(rm)} ms** | ${f1(pct(resume, 95))} ms | ${resume.map(f1).join(', ')} |
| reference: \`POST /v1/machines/:id/start\` returns, then the first byte through Flycast (polled every ms) | ${f0(am)} ms | ${f0(pct(apiStart, 95))} ms | ${apiStart.map(f0).join(', ')} |
| reference: the same program started directly on the host -> first byte (its own start time) | ${f0(om)} ms | ${f0(pct(own, 95))} ms | ${own.map(f0).join(', ')} |

- Cold start: **${f0(cm - om)} ms over the machine's own start time** (${(cm / om).toFixed(2)}x), ${f0(cm - am)} ms against starting it through the API and polling (the autostart path has no poll interval: the proxy dials until the machine accepts, 2 ms doubling to 50 ms between tries).
${cm < om ? `- **The direct-start reference came out slower than the cold start itself**: it is launched from the bench process, which polls it every millisecond, and on a loaded machine that process's own scheduling dominates. Read the cold start against the API start row instead, and rerun on a quiet machine for the ratio over the machine's own start.\n` : ''}- Resume: **${f1(rm - wm)} ms over a started machine** (${(rm / wm).toFixed(2)}x): a catalog write, the host's SIGCONT and \`started\`, one probe connect.

### Stop/start cycles with callers arriving at zero

${CYCLES} cycles per mode: the machine is stopped (or suspended) through the API, then ${CALLERS} callers arrive at once (each a new connection, \`GET /sleep?ms=20\`).

| cycle | requests | failed | time for all ${CALLERS} to be answered, median (p95) |
|---|---|---|---|
| stopped -> started | ${cycles.stop.ok + cycles.stop.failed} | **${cycles.stop.failed}** | ${f0(median(cycles.stop.ms))} ms (${f0(pct(cycles.stop.ms, 95))} ms) |
| suspended -> resumed | ${cycles.suspend.ok + cycles.suspend.failed} | **${cycles.suspend.failed}** | ${f1(median(cycles.suspend.ms))} ms (${f1(pct(cycles.suspend.ms, 95))} ms) |
${failures.length ? `\nFirst failures: ${failures.join('; ')}\n` : ''}
\`sixpn_autostart_starts_total\`: ${metric('sixpn_autostart_starts_total')}.

What a cold start costs above the machine's own start is the host's work (three catalog writes,
the namespace, veth, routes, filter entry and shim; see the host bench) plus the proxy's probe;
the caller waits on the catalog change and the probe only, never on a poll. A resume skips all of
it: the process, its sockets and its memory are kept, so a suspended machine answers in about the
time of a catalog round trip. Load average while this ran: ${os.loadavg().map(f1).join(', ')}.
`;
  writeSection('autostart', md);
  console.log(md);
} catch (err) {
  console.error(err);
  console.error(node.output().slice(-3000));
  process.exitCode = 1;
} finally {
  await node.stop('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.exit();

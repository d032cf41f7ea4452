// Host bench: how long `machines run` takes until the machine's first byte comes back through its
// Flycast address (median, p95), against the same program started directly on the host (its own
// start-up time, the reference), and what each machine costs the host with 100 machines on it
// (memory, namespaces, links, filter entries; time to run and destroy them).
//
//   npm run build && sh test/harness/netns-run.sh node bench/host.bench.mjs
//
// The bench makes a host namespace (`ip netns add`, inside the test namespace) set up like a 6PN
// host, re-runs itself inside it (network namespace only; bench/lib/host-namespace.mjs), starts
// `sixpn up` there with the host, DNS, routed proxy and control roles, and measures through the
// control API and a caller bound to an address of the app's org. Everything it makes is deleted
// at the end.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { machineProgram } from '../test/harness/machine-program.mjs';
import { freePort, rssBytes, sleep, start } from '../test/harness/spawn.mjs';
import { controlCaller } from './lib/control.mjs';
import { enterHostNamespace } from './lib/host-namespace.mjs';
import { machineLine, median, pct, writeSection } from './lib/results.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist/cli/main.js');
const MACHINE = machineProgram(); // readable by the machines' unprivileged user
const COMMAND = 'npm run build && sh test/harness/netns-run.sh node bench/host.bench.mjs';
const RUNS = Number(process.env.HOST_BENCH_RUNS ?? 20);
const MANY = Number(process.env.HOST_BENCH_MACHINES ?? 100);
const FLYCAST = 'fdaa:0:18:0:1::3';
const CALLER = 'fdaa:0:18::99';
const sh = (cmd, args, input) => execFileSync(cmd, args, { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();

if (process.env.SIXPN_IN_NETNS !== '1') {
  console.error('host bench: run it inside the test namespace: sh test/harness/netns-run.sh node bench/host.bench.mjs');
  process.exit(2);
}

// Outside, this makes the host namespace, re-runs the bench inside it and exits; inside, it
// returns the machines' namespace prefix.
const prefix = await enterHostNamespace({ script: fileURLToPath(import.meta.url), envStem: 'HOST_BENCH', nsStem: 'sxbench', prefixStem: 'sxb' });
const dir = mkdtempSync(join(tmpdir(), 'sixpn-host-bench-'));
const port = await freePort();
const TOKEN = 'host-bench-token-0123456789';
writeFileSync(
  join(dir, 'sixpn.toml'),
  `[node]\nname = "bench"\nregion = "ewr"\n[log]\nlevel = "warn"\n[catalog]\npath = ""\n[control]\nlisten = "127.0.0.1:${port}"\ntoken = "${TOKEN}"\n` +
    `[proxy]\nmode = "routed"\n[dns]\nupstreams = []\n[health]\nenabled = false\n` +
    `[host]\nenabled = true\nstate_dir = "state"\nnetns_prefix = "${prefix}"\nresync_interval = "1m"\n` +
    `[[orgs]]\nname = "acme"\nnetwork_id = 24\n[[apps]]\nname = "web"\norg = "acme"\n  [[apps.services]]\n  protocol = "http"\n  internal_port = 8080\n  ports = [{ port = 80 }]\n` +
    `[[apps]]\nname = "idle"\norg = "acme"\n[[ips]]\napp = "web"\n`,
);
const api = `http://127.0.0.1:${port}`;
const call = controlCaller(api, TOKEN, 120_000);
const caller = new Agent({ localAddress: CALLER, connect: { timeout: 1000 }, keepAliveTimeout: 10 });
const direct = new Agent({ connect: { timeout: 1000 }, keepAliveTimeout: 10 });

/** Polls `url` every millisecond until it answers 200 with `want`; resolves with the time it did. */
async function firstByte(url, want, dispatcher, deadlineMs = 20_000) {
  const end = performance.now() + deadlineMs;
  for (;;) {
    try {
      const res = await request(url, { dispatcher, headersTimeout: 2000, bodyTimeout: 2000 });
      const text = await res.body.text();
      if (res.statusCode === 200 && text.trim() === want) return performance.now();
    } catch {
      // not yet
    }
    if (performance.now() > end) throw new Error(`no answer from ${url} within ${deadlineMs} ms`);
    await sleep(1);
  }
}
const id = () => randomBytes(7).toString('hex');
const meminfo = () => Object.fromEntries(readFileSync('/proc/meminfo', 'utf8').split('\n').filter(Boolean).map((l) => [l.split(':')[0], Number(l.split(/\s+/)[1]) * 1024]));
const mib = (b) => (b / 2 ** 20).toFixed(1);
const kib = (b) => (b / 1024).toFixed(0);
/** PSS of a process (its fair share of shared pages), bytes. */
const pss = (pid) => {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))[1]) * 1024;
  } catch {
    return 0;
  }
};

const node = start(process.execPath, [CLI, 'up', '--config', join(dir, 'sixpn.toml')], { env: { ...process.env, LOG_LEVEL: 'warn' } });
try {
  await node.waitForLine(/sixpn ready/, 30_000);
  const config = (name) => ({ cmd: [process.execPath, MACHINE, '--kind', 'http', '--id', name, '--host', '::', '--port', '8080'] });

  // 1. run -> first byte through Flycast, against the same program started directly.
  const sixpn = { started: [], first: [], destroy: [] };
  const ref = [];
  for (let i = 0; i <= RUNS; i++) {
    const mid = id();
    const t0 = performance.now();
    await call('POST', '/v1/apps/web/machines', { region: 'ewr', id: mid, config: config(mid) });
    const tStarted = performance.now();
    const tFirst = await firstByte(`http://[${FLYCAST}]/`, mid, caller);
    const td = performance.now();
    await call('DELETE', `/v1/machines/${mid}`);
    const tGone = performance.now();
    // The reference: the same machine program on a loopback port of the host, no sixpn.
    const p = await freePort();
    const r0 = performance.now();
    const plain = spawn(process.execPath, [MACHINE, '--kind', 'http', '--id', mid, '--host', '127.0.0.1', '--port', String(p)], { stdio: 'ignore' });
    const r1 = await firstByte(`http://127.0.0.1:${p}/`, mid, direct);
    plain.kill('SIGKILL');
    if (i === 0) continue; // warm-up
    sixpn.started.push(tStarted - t0);
    sixpn.first.push(tFirst - t0);
    sixpn.destroy.push(tGone - td);
    ref.push(r1 - r0);
    console.error(`host bench: run ${i}/${RUNS}: started ${(tStarted - t0).toFixed(0)} ms, first byte ${(tFirst - t0).toFixed(0)} ms (direct ${(r1 - r0).toFixed(0)} ms)`);
  }

  // The agent's own share of a start (decision -> started written), over the runs above, one at a time.
  const metrics = (await (await request(`${api}/metrics`)).body.text()).split('\n');
  const metric = (name) => Number(metrics.find((l) => l.startsWith(`${name} `))?.split(' ')[1] ?? NaN);
  const agentStartMs = (metric('sixpn_host_machine_start_seconds_sum') / metric('sixpn_host_machine_start_seconds_count')) * 1000;

  // 2. 100 machines on one host: what each costs, and whether runs slow down with them there.
  // Memory is read system-wide, so each figure is the median of ROUNDS rounds of "run 100,
  // measure, destroy 100"; the kernel's share (slab, per-cpu, stacks, page tables) is less
  // disturbed by other work on the machine than MemAvailable.
  const ROUNDS = Number(process.env.HOST_BENCH_ROUNDS ?? 3);
  const agentPid = node.child.pid;
  const kernel = (m) => m.Slab + (m.Percpu ?? 0) + m.KernelStack + m.PageTables;
  const rounds = { runMs: [], destroyMs: [], kernel: [], avail: [], refKernel: [], refAvail: [], shim: [], proc: [], agent: [] };
  let namespaces = 0, veths = 0, routes = 0, nftSources = 0, leftNs = 0;
  const loaded = [];
  for (let round = 0; round < ROUNDS; round++) {
    const memBefore = meminfo();
    const rssBefore = rssBytes(agentPid);
    const t100 = performance.now();
    const ids = [];
    for (let b = 0; b < MANY; b += 10) {
      await Promise.all(
        Array.from({ length: Math.min(10, MANY - b) }, async () => {
          const mid = id();
          ids.push(mid);
          await call('POST', '/v1/apps/idle/machines', { region: 'ewr', id: mid, config: { cmd: ['sleep', 'infinity'] } });
        }),
      );
    }
    rounds.runMs.push(performance.now() - t100);
    await sleep(1000);
    const memAfter = meminfo();
    rounds.agent.push((rssBytes(agentPid) - rssBefore) / MANY);
    rounds.kernel.push((kernel(memAfter) - kernel(memBefore)) / MANY);
    rounds.avail.push((memBefore.MemAvailable - memAfter.MemAvailable) / MANY);
    const shims = ids.map((m) => Number(readFileSync(join(dir, 'state/machines', m, 'shim.pid'), 'utf8')));
    rounds.shim.push(shims.reduce((a, p) => a + pss(p), 0) / shims.length);
    rounds.proc.push(ids.reduce((a, m) => a + pss(Number(readFileSync(join(dir, 'state/machines', m, 'pid'), 'utf8'))), 0) / ids.length);
    namespaces = readdirSync('/run/netns').filter((n) => n.startsWith(prefix)).length;
    veths = sh('ip', ['-o', 'link']).split('\n').filter((l) => / sxm[0-9a-f]{8}@/.test(l)).length;
    routes = sh('ip', ['-6', 'route', 'show', 'table', 'local']).split('\n').filter((l) => / via fe80::2 dev sxm/.test(l)).length;
    nftSources = (sh('nft', ['list', 'set', 'inet', 'sixpn_host', 'sources']).match(/ \. fdaa:/g) ?? []).length;
    if (round === 0) {
      for (let i = 0; i < 5; i++) {
        const mid = id();
        const t0 = performance.now();
        await call('POST', '/v1/apps/web/machines', { region: 'ewr', id: mid, config: config(mid) });
        loaded.push((await firstByte(`http://[${FLYCAST}]/`, mid, caller)) - t0);
        await call('DELETE', `/v1/machines/${mid}`);
      }
    }
    const t1 = performance.now();
    for (let b = 0; b < ids.length; b += 10) await Promise.all(ids.slice(b, b + 10).map((m) => call('DELETE', `/v1/machines/${m}`)));
    rounds.destroyMs.push(performance.now() - t1);
    leftNs = readdirSync('/run/netns').filter((n) => n.startsWith(prefix)).length;
    await sleep(1000);
    // The reference: the same 100 `sleep` processes started directly, no namespace, no shim.
    const ref0 = meminfo();
    const plain = Array.from({ length: MANY }, () => spawn('sleep', ['infinity'], { stdio: 'ignore' }));
    await sleep(1000);
    const ref1 = meminfo();
    for (const c of plain) c.kill('SIGKILL');
    rounds.refKernel.push((kernel(ref1) - kernel(ref0)) / MANY);
    rounds.refAvail.push((ref0.MemAvailable - ref1.MemAvailable) / MANY);
    await sleep(500);
    console.error(`host bench: ${MANY} machines, round ${round + 1}/${ROUNDS}: run ${(rounds.runMs.at(-1) / 1000).toFixed(1)} s, kernel ${kib(rounds.kernel.at(-1))} KiB per machine`);
  }
  // 3. Where the host's own time goes: the steps of one machine's network, alone (median of 10).
  await node.stop('SIGTERM');
  const { renderChanges, renderRuleset } = await import('../dist/host/firewall.js');
  const steps = {
    'ip netns add': [],
    'ip -batch (host side: veth, address, up)': [],
    'ip -n <ns> -batch (machine side: addresses, up, route)': [],
    'ip netns exec <ns> sysctl': [],
    'nft -f: one machine into a filter holding 100 (what a run does)': [],
    'nft -f: one machine out of 101 (what a destroy does)': [],
    'nft -f: whole refill at 100 machines (agent start, or a refused change)': [],
    'teardown (link del, netns del)': [],
  };
  const timed = (name, fn) => {
    const t = performance.now();
    fn();
    steps[name].push(performance.now() - t);
  };
  const many = Array.from({ length: 100 }, (_, i) => ({ id: `${(0xc0000000 + i).toString(16)}000000`, address: `fdaa:0:18:b00:1:${(0xc000 + i).toString(16)}:0:2`, networkId: 0x18 }));
  for (let i = 0; i < 10; i++) {
    const ns = `${prefix}step${i}`;
    const veth = `sxmstep${i}`;
    timed('ip netns add', () => sh('ip', ['netns', 'add', ns]));
    timed('ip -batch (host side: veth, address, up)', () => sh('ip', ['-batch', '-'], `link add ${veth} type veth peer name eth0 netns ${ns}\nlink set dev ${veth} addrgenmode none\naddr add fe80::1/64 dev ${veth} nodad\nlink set dev ${veth} up\n`));
    timed('ip -n <ns> -batch (machine side: addresses, up, route)', () => sh('ip', ['-n', ns, '-batch', '-'], `link set dev lo up\nlink set dev eth0 addrgenmode none\naddr add fe80::2/64 dev eth0 nodad\naddr add fdaa:0:18:b00:1:abcd:${i}:2/128 dev eth0 nodad\nlink set dev eth0 up\nroute add ::/0 via fe80::1 dev eth0\n`));
    timed('ip netns exec <ns> sysctl', () => sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_unprivileged_port_start=0']));
    timed('nft -f: whole refill at 100 machines (agent start, or a refused change)', () => sh('nft', ['-f', '-'], renderRuleset(many)));
    const extra = { id: `d${i}00000000000`, address: `fdaa:0:18:b00:1:d00${i}:0:2`, networkId: 0x18 };
    timed('nft -f: one machine into a filter holding 100 (what a run does)', () => sh('nft', ['-f', '-'], renderChanges([extra], [])));
    timed('nft -f: one machine out of 101 (what a destroy does)', () => sh('nft', ['-f', '-'], renderChanges([], [extra])));
    timed('teardown (link del, netns del)', () => (sh('ip', ['link', 'del', 'dev', veth]), sh('ip', ['netns', 'del', ns])));
  }
  sh('nft', ['delete', 'table', 'inet', 'sixpn_host']);
  const stepRows = Object.entries(steps).map(([k, v]) => `| ${k} | ${median(v).toFixed(1)} ms |`).join('\n');

  const fm = median(sixpn.first);
  const rm = median(ref);
  const md = `## Hosts: machines run by sixpn (\`bench/host.bench.mjs\`)

\`${COMMAND}\` — ${machineLine()}; one host namespace with the netns driver, nftables isolation, routed Flycast proxy and DNS; ${RUNS} runs after a warm-up. The machine is a Node HTTP server (\`test/harness/machine.mjs\`) in its own namespace; the caller asks its app's Flycast address from an address of the app's org every millisecond until the new machine answers.

### Run -> first byte through the machine's Flycast address

| measure | median | p95 | runs (ms) |
|---|---|---|---|
| \`POST /v1/apps/web/machines\` returns \`started\` (catalog write, namespace, veth, routes, filter, process) | ${median(sixpn.started).toFixed(0)} ms | ${pct(sixpn.started, 95).toFixed(0)} ms | ${sixpn.started.map((x) => x.toFixed(0)).join(', ')} |
| run -> first byte through Flycast | **${fm.toFixed(0)} ms** | ${pct(sixpn.first, 95).toFixed(0)} ms | ${sixpn.first.map((x) => x.toFixed(0)).join(', ')} |
| reference: the same program started directly on the host -> first byte | ${rm.toFixed(0)} ms | ${pct(ref, 95).toFixed(0)} ms | ${ref.map((x) => x.toFixed(0)).join(', ')} |
| sixpn / direct | ${(fm / rm).toFixed(2)}x (${(fm - rm).toFixed(0)} ms added) | | |
| of which the host agent's own work (decision -> \`started\` written: network, filter, shim, catalog; mean, from \`sixpn_host_machine_start_seconds\`) | ${agentStartMs.toFixed(0)} ms | | |
| run -> first byte with ${MANY} other machines on the host | ${median(loaded).toFixed(0)} ms | | ${loaded.map((x) => x.toFixed(0)).join(', ')} |
| \`DELETE /v1/machines/:id\` (SIGINT, namespace and filter entries gone) | ${median(sixpn.destroy).toFixed(0)} ms | ${pct(sixpn.destroy, 95).toFixed(0)} ms | |

### ${MANY} machines on one host (\`sleep infinity\` each, run 10 at a time through the API; medians of ${ROUNDS} rounds)

| measure | sixpn machine | reference: plain \`sleep\` process |
|---|---|---|
| time to run all ${MANY} | ${(median(rounds.runMs) / 1000).toFixed(1)} s (${(median(rounds.runMs) / MANY).toFixed(0)} ms per machine) | |
| namespaces / host veths / machine routes / filter source entries | ${namespaces} / ${veths} / ${routes} / ${nftSources} | |
| kernel memory per machine (Slab + Percpu + KernelStack + PageTables) | ${kib(median(rounds.kernel))} KiB | ${kib(median(rounds.refKernel))} KiB |
| MemAvailable drop per machine (noisy: the whole machine's) | ${kib(median(rounds.avail))} KiB | ${kib(median(rounds.refAvail))} KiB |
| user memory per machine: shim (\`sh\`, PSS) + its process (PSS) | ${kib(median(rounds.shim))} + ${kib(median(rounds.proc))} KiB | ${kib(median(rounds.proc))} KiB |
| agent RSS growth per machine | ${kib(median(rounds.agent))} KiB | |
| time to destroy all ${MANY} | ${(median(rounds.destroyMs) / 1000).toFixed(1)} s; namespaces left: ${leftNs} | |

### Where the host's own time goes (one machine's network, each step alone; median of 10)

| step | median |
|---|---|
${stepRows}

A run is three catalog writes (the API's \`created\`, the host's \`starting\` and \`started\`),
the four processes above, one \`nft -f\` change and the shim (a \`sh\` that starts the program with
\`setsid\`, \`ip netns exec\` and \`setpriv\`); the rest of the first byte is the machine's own start
(Node loading the server) and the proxy's first connect. The reference starts the same program
from the bench process itself, and its start-up varies run to run by more than the host's own
~100 ms, so the ratio is within noise: read sixpn's cost from "the host agent's own work" row.
What limits that work is process starts (each step above is one or two \`fork\`+\`exec\` on a busy
2-core machine); doing the network through netlink from the agent, instead of \`ip\`, \`sysctl\`
and \`nft\` processes, would be the next saving. Filter changes are per machine (a whole refill at
100 machines would cost ~170 ms a run). Memory figures are system-wide (\`/proc/meminfo\`) on a shared machine: read
them as orders of magnitude, not to the kilobyte. Load average while this ran: ${os.loadavg().map((x) => x.toFixed(1)).join(', ')}.
`;
  writeSection('host', md);
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

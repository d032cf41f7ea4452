// Child processes and waiting, for tests and benchmarks alike (plain JavaScript so that the
// bench scripts run it without a compile step): start a process, collect its output, wait for a
// line, stop it for sure; run one to completion; free ports; polling; CPU and memory of a pid.
// Every process started here is SIGKILLed when the parent exits, so no server outlives a run.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

const live = new Set();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});
// A bench script stopped with Ctrl-C still runs the exit handler above; vitest manages its own workers.
if (!process.env.VITEST) {
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));
}

/** Output kept per process; older output is dropped past this. */
const MAX_OUTPUT = 4_000_000;

/** This process's hard open-files limit (from /proc/self/limits), or Infinity when unlimited/unknown. */
export function hardNofileLimit() {
  try {
    const m = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * Open-files limit for children that hold thousands of sockets: 65536, or the hard limit when
 * that is lower (raising the hard limit needs CAP_SYS_RESOURCE, which containers often lack).
 */
export const NOFILE = Math.min(65536, hardNofileLimit());

/**
 * Starts `cmd args`. `opts` are node's spawn options plus `nofile` (run through
 * `sh -c 'ulimit -n N; exec ...'`, so the limit is raised in the child only and its pid stays the
 * real process's pid) and `stdin` ('ignore' by default, 'pipe' to write to it).
 * Returns { child, pid, name, exited, output(), waitForLine(re, ms), stop(signal, graceMs) }.
 */
export function start(cmd, args, opts = {}) {
  const { nofile, stdin = 'ignore', ...spawnOpts } = opts;
  const [file, argv] = nofile ? ['sh', ['-c', `ulimit -n ${nofile}; exec "$@"`, 'sh', cmd, ...args]] : [cmd, args];
  const child = spawn(file, argv, { stdio: [stdin, 'pipe', 'pipe'], ...spawnOpts });
  live.add(child);
  let out = '';
  const waiters = [];
  const onData = (b) => {
    out += b.toString();
    if (out.length > MAX_OUTPUT) out = out.slice(-MAX_OUTPUT / 2);
    for (const w of [...waiters]) {
      const line = out.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, sig) => {
      live.delete(child);
      resolve(code ?? sig ?? -1);
    });
    child.on('error', (err) => {
      out += `\nspawn error: ${err.message}`;
      live.delete(child);
      resolve(-1);
    });
  });
  const name = `${cmd} ${args.join(' ')}`.slice(0, 200);
  return {
    child,
    pid: child.pid,
    name,
    exited,
    output: () => out,
    /** Resolves with the first output line matching `re`; rejects on timeout or exit. */
    waitForLine(re, timeoutMs = 15_000) {
      const line = out.split('\n').find((l) => re.test(l));
      if (line !== undefined) return Promise.resolve(line);
      return new Promise((resolve, reject) => {
        const w = {
          re,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re} from ${name}; output:\n${out.slice(-3000)}`));
        }, timeoutMs);
        waiters.push(w);
        void exited.then((code) => {
          if (waiters.includes(w)) {
            clearTimeout(t);
            waiters.splice(waiters.indexOf(w), 1);
            reject(new Error(`${name} exited (${code}) before printing ${re}; output:\n${out.slice(-3000)}`));
          }
        });
      });
    },
    /** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves with the exit code or signal. */
    async stop(signal = 'SIGTERM', graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/**
 * Runs a command to completion; resolves with { code, stdout, stderr } (never rejects on a
 * non-zero exit). `input` is written to its stdin (otherwise stdin is /dev/null); `timeoutMs`
 * (default 60 s) kills it.
 */
export function run(cmd, args, opts = {}) {
  const { input, timeoutMs = 60_000, ...spawnOpts } = opts;
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...spawnOpts });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (b) => (stdout += b.toString()));
    child.stderr?.on('data', (b) => (stderr += b.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(t);
      resolve({ code: -1, stdout, stderr: stderr + err.message });
    });
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    // A child that exits without reading its input (dig, wg) must not crash the caller with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}

/** A port the kernel just handed out on `host` (released before return; tiny race accepted). */
function onePort(host) {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Binds `port` on `host` and releases it: whether it was free just now. */
function canBind(host, port) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** The low end of the kernel's ephemeral range (what bind(0) and outgoing connections get); 0 if unknown. */
function ephemeralLow() {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0;
  }
}

/** Where handed-out ports come from: above the demo's fixed ports, below the ephemeral range. */
const PICK_FROM = 20_000;
const PICK_BELOW = ephemeralLow();

/** Ports this process has handed out: the kernel may give a closed port again at once. */
const handedOut = new Set();

/**
 * A port free now and never handed out before by this process: a test asking for several in a row
 * (control, listeners, DNS) gets distinct ones, or two listeners of one node would collide and the
 * second would not listen at all: a port meant for a refused caller would then answer for another
 * app, the likely cause of one CI failure of prometheus.test.ts (200 where 403 was expected).
 */
export async function freePort(host = '127.0.0.1') {
  // Outside the ephemeral range, so no listener on port 0 (a demo machine, a backend) and no
  // outgoing connection can be given the port between now and when the test listens on it: a
  // demo machine once got the port meant for the proxy's hello mapping, and callers reached the
  // machine directly (dashboard.test.ts saw no traffic counted).
  if (PICK_BELOW - PICK_FROM >= 1_000) {
    for (let tries = 0; tries < 200; tries++) {
      const port = PICK_FROM + Math.floor(Math.random() * (PICK_BELOW - PICK_FROM));
      if (handedOut.has(port) || !(await canBind(host, port))) continue;
      handedOut.add(port);
      return port;
    }
  }
  for (;;) {
    const port = await onePort(host);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it returns a truthy value (resolved with it) or `timeoutMs` passes. */
export async function waitFor(check, { timeoutMs = 10_000, everyMs = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await sleep(everyMs);
  }
}

/** True once a TCP connection to host:port succeeds (closed at once). */
export function canConnect(host, port) {
  return new Promise((resolve) => {
    const s = connect({ host, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** Resident set size of a process in bytes (VmRSS from /proc/<pid>/status), or NaN. */
export function rssBytes(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

let clockTicks = 0;
/** CPU time a process has used so far, { user, system } in seconds, from /proc/<pid>/stat; NaNs if gone. */
export function cpuTimes(pid) {
  if (!clockTicks) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clockTicks = Number(r.stdout) || 100;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name (which may itself contain spaces): utime is 14th, stime 15th.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[11]) / clockTicks, system: Number(f[12]) / clockTicks };
  } catch {
    return { user: NaN, system: NaN };
  }
}

/** CPU time (user + system) a process has used so far, in seconds; NaN if gone. */
export function cpuSeconds(pid) {
  const t = cpuTimes(pid);
  return t.user + t.system;
}

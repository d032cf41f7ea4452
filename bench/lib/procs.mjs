// Child processes for benchmarks: start one (optionally with a raised open-files limit),
// collect its output, wait for a line, stop it for sure. Every process started here is
// SIGKILLed if the bench process exits without stopping it, so no server outlives a run.
import { spawn, spawnSync } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { readFileSync } from 'node:fs';

const live = new Set();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(130));
}

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
 * Starts `cmd args`; with `nofile`, through `sh -c 'ulimit -n N; exec ...'` so the limit is
 * raised in the child only and its pid stays the real process's pid (for /proc/<pid>/status).
 */
export function startProc(cmd, args, { nofile, env, cwd, stdin = 'ignore' } = {}) {
  const argv = nofile
    ? ['sh', ['-c', `ulimit -n ${nofile}; exec "$@"`, 'sh', cmd, ...args]]
    : [cmd, args];
  const child = spawn(argv[0], argv[1], { stdio: [stdin, 'pipe', 'pipe'], env: env ?? process.env, cwd });
  live.add(child);
  let out = '';
  const waiters = [];
  const onData = (b) => {
    out += b.toString();
    if (out.length > 1_000_000) out = out.slice(-500_000);
    for (const w of [...waiters]) {
      const line = out.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
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

/** Runs a child to completion and returns its output; rejects on a non-zero exit. */
export async function runProc(cmd, args, opts = {}) {
  const p = startProc(cmd, args, opts);
  const { timeoutMs = 120_000 } = opts;
  const t = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const code = await p.exited;
  clearTimeout(t);
  if (code !== 0) throw new Error(`${p.name} failed (${code}):\n${p.output().slice(-3000)}`);
  return p.output();
}

/** A port the kernel just handed out on `host` (released before return; tiny race accepted). */
export function freePort(host = '127.0.0.1') {
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

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until truthy or `timeoutMs` passes. */
export async function waitFor(check, { timeoutMs = 10_000, everyMs = 50, what = 'condition' } = {}) {
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

/** Resident set size of a process in bytes (VmRSS from /proc/<pid>/status), or NaN. */
export function rssBytes(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
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

// Load generators for benchmarks, each run as a child process: autocannon for HTTP and
// tcp-worker.mjs for TCP bulk throughput, short-connection rate and idle connections.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NOFILE, start as startProc } from '../../test/harness/spawn.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const AC_WORKER = join(here, 'autocannon-worker.mjs');
const TCP_WORKER = join(here, 'tcp-worker.mjs');

function parseLine(out, tag) {
  const line = out.split('\n').find((l) => l.startsWith(`${tag} `));
  if (!line) return null;
  return JSON.parse(line.slice(tag.length + 1));
}

/**
 * Starts one autocannon load (child process) without waiting. Options are autocannon's: url,
 * connections (50), duration (s, 8), pipelining (1), timeout (s), method, headers, body;
 * `samples: true` adds a per-second timeline and `onSample({ t, ok, non2xx, errors })` sees it live.
 * Returns { result, stop() }: `stop` ends the load early (the result still resolves);
 * `result` resolves with { reqPerSec, p50, p99 (ms, exact), total2xx, non2xx, errors, timeouts, samples, raw }.
 */
export function startAutocannon({ onSample, ...opts }) {
  const full = { connections: 50, duration: 8, pipelining: 1, timeout: 10, ...opts };
  const p = startProc(process.execPath, [AC_WORKER, JSON.stringify(full)], { nofile: NOFILE });
  const samples = [];
  if (full.samples) {
    let seen = 0;
    p.child.stdout.on('data', () => {
      const lines = p.output().split('\n').filter((l) => l.startsWith('SAMPLE '));
      for (; seen < lines.length; seen++) {
        const s = JSON.parse(lines[seen].slice(7));
        samples.push(s);
        onSample?.(s);
      }
    });
  }
  const result = (async () => {
    const kill = setTimeout(() => p.child.kill('SIGKILL'), (full.duration + 60) * 1000);
    const code = await p.exited;
    clearTimeout(kill);
    const r = parseLine(p.output(), 'RESULT');
    if (code !== 0 || !r) throw new Error(`autocannon ${full.url} failed (${code}):\n${p.output().slice(-3000)}`);
    return {
      reqPerSec: r.requests.average,
      // Exact percentiles of the 2xx response times (ms, fractional); autocannon's own are whole ms.
      p50: r.fine?.count ? r.fine.p50 : r.latency.p50,
      p99: r.fine?.count ? r.fine.p99 : r.latency.p99,
      total2xx: r['2xx'],
      non2xx: r.non2xx,
      errors: r.errors,
      timeouts: r.timeouts,
      samples,
      raw: r,
    };
  })();
  return { result, stop: () => p.child.kill('SIGTERM') };
}

/** One autocannon run to the end (see startAutocannon for options and result). */
export function runAutocannon(opts) {
  return startAutocannon(opts).result;
}

async function tcpWorker(mode, opts, timeoutMs) {
  const p = startProc(process.execPath, [TCP_WORKER, mode, JSON.stringify(opts)], { nofile: NOFILE });
  const kill = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const code = await p.exited;
  clearTimeout(kill);
  const r = parseLine(p.output(), 'RESULT');
  if (code !== 0 || !r) throw new Error(`tcp ${mode} to [${opts.host}]:${opts.port} failed (${code}):\n${p.output().slice(-3000)}`);
  return r;
}

/**
 * Writes `bytes` through one connection to a sink (which replies with the count it received).
 * Resolves with { bytes, confirmed, ms, mbPerSec } (MB = 10^6 bytes).
 */
export function runTcpBulk({ host, port, bytes = 2 ** 30, chunk = 256 * 1024 }) {
  return tcpWorker('bulk', { host, port, bytes, chunk }, 300_000);
}

/**
 * Short connections for `durationMs` with `concurrency` in flight: connect, send a byte, get it
 * back (echo), close. Resolves with { connections, errors, ms, perSec }.
 */
export function runTcpRate({ host, port, durationMs = 5_000, concurrency = 50 }) {
  return tcpWorker('rate', { host, port, durationMs, concurrency }, durationMs + 60_000);
}

/**
 * Opens `count` connections to an echo service, each proven end-to-end (a byte echoed back),
 * and holds them. Resolves once all are up with { opened, errors, ms, close() }.
 */
export async function openIdleConnections({ host, port, count = 10_000, concurrency = 200 }) {
  const p = startProc(process.execPath, [TCP_WORKER, 'idle', JSON.stringify({ host, port, count, concurrency })], { nofile: NOFILE });
  let r;
  try {
    const line = await p.waitForLine(/^(READY|RESULT) /, 180_000);
    r = JSON.parse(line.slice(line.indexOf(' ') + 1));
  } catch (err) {
    await p.stop('SIGKILL');
    throw err;
  }
  return { ...r, close: () => p.stop('SIGTERM', 5_000) };
}

// TCP load client, run as its own process: `node tcp-worker.mjs MODE JSON`.
//   bulk: write `bytes` through one connection to a sink, half-close, read the sink's count back
//   rate: short connections (connect, 1 byte out, 1 byte back, close) for a fixed time
//   idle: open `count` echo-proven connections, print READY, hold them until SIGTERM
// Prints "RESULT <json>" (bulk, rate) or "READY <json>" (idle).
import { connect } from 'node:net';

const [mode, json] = process.argv.slice(2);
const opts = JSON.parse(json ?? '{}');
const { host, port } = opts;

function bulk() {
  const { bytes, chunk } = opts;
  const buf = Buffer.alloc(chunk, 0x61);
  const t0 = process.hrtime.bigint();
  const sock = connect({ host, port, noDelay: true, allowHalfOpen: true });
  let sent = 0;
  let reply = '';
  const pump = () => {
    while (sent < bytes) {
      const n = Math.min(chunk, bytes - sent);
      sent += n;
      if (!sock.write(n === chunk ? buf : buf.subarray(0, n))) return sock.once('drain', pump);
    }
    sock.end();
  };
  sock.on('connect', pump);
  sock.on('data', (b) => {
    reply += b.toString();
  });
  sock.on('error', (err) => {
    console.error(`bulk: ${err.message}`);
    process.exit(1);
  });
  sock.on('close', () => {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const confirmed = Number(reply.trim());
    if (confirmed !== bytes) {
      console.error(`bulk: sink confirmed ${reply.trim() || 'nothing'} of ${bytes} bytes`);
      process.exit(1);
    }
    console.log(`RESULT ${JSON.stringify({ bytes, confirmed, ms, mbPerSec: bytes / 1e6 / (ms / 1000) })}`);
    process.exit(0);
  });
}

function rate() {
  const { durationMs, concurrency } = opts;
  const t0 = Date.now();
  const deadline = t0 + durationMs;
  let connections = 0;
  let errors = 0;
  let running = 0;
  const one = () => {
    if (Date.now() >= deadline) {
      if (--running === 0) {
        const ms = Date.now() - t0;
        console.log(`RESULT ${JSON.stringify({ connections, errors, ms, perSec: connections / (ms / 1000) })}`);
        process.exit(0);
      }
      return;
    }
    let ok = false;
    const sock = connect({ host, port, noDelay: true });
    sock.setTimeout(5_000, () => sock.destroy(new Error('timeout')));
    sock.on('connect', () => sock.write('x'));
    sock.on('data', () => {
      ok = true;
      sock.end();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      if (ok) connections++;
      else errors++;
      one();
    });
  };
  for (let i = 0; i < concurrency; i++) {
    running++;
    one();
  }
}

function idle() {
  const { count, concurrency } = opts;
  const t0 = Date.now();
  const socks = [];
  let started = 0;
  let opened = 0;
  let errors = 0;
  let done = 0;
  const finish = () => {
    console.log(`READY ${JSON.stringify({ opened, errors, ms: Date.now() - t0 })}`);
  };
  const next = () => {
    if (started >= count) {
      if (done === count) finish();
      return;
    }
    started++;
    const sock = connect({ host, port, noDelay: true });
    let settled = false;
    const settle = (ok) => {
      if (settled) return;
      settled = true;
      if (ok) opened++;
      else errors++;
      done++;
      next();
    };
    sock.setTimeout(10_000, () => {
      if (!settled) sock.destroy(new Error('timeout'));
    });
    sock.on('connect', () => sock.write('x'));
    sock.once('data', () => {
      sock.setTimeout(0);
      settle(true);
    });
    sock.on('error', () => settle(false));
    sock.on('close', () => settle(false));
    socks.push(sock);
  };
  for (let i = 0; i < Math.min(concurrency, count); i++) next();
  process.on('SIGTERM', () => {
    for (const s of socks) s.destroy();
    process.exit(0);
  });
}

const modes = { bulk, rate, idle };
if (!modes[mode] || !host || !port) {
  console.error('usage: node tcp-worker.mjs bulk|rate|idle \'{"host":"::1","port":5000,...}\'');
  process.exit(2);
}
modes[mode]();

// A test machine: a real process bound to its own (6PN) address that says who it is and counts
// what reaches it. Started by test/harness/machines.ts; prints one `ready {json}` line.
//
//   node machine.mjs --kind http|tcp --id ID --host ADDR --port N [--greet] [--log]
//
// --log prints one line per connection (`connection from <addr>`) to stdout: a machine run by a
// host shows them in `sixpn logs`, which tests read to prove what reached it.
//
// http: every answer carries `x-machine-id`; paths:
//   /            -> "<id>\n"
//   /headers     -> JSON of the request headers as received
//   /sleep?ms=N  -> "<id>\n" after N ms (holds a request in flight)
//   /bytes?n=N   -> N bytes streamed in 64 KiB chunks
//   POST /sink   -> reads the body, answers {"bytes":N}
//   /bytes?n=N   -> N bytes (?pattern=1: bytes[i] = (i*7919 >>> 3) & 255; ?chunked=1: chunked)
//   /echo        -> reads the body (?stall=MS: pausing MS after each chunk), answers JSON {id, region, method, url, headers, bytes, sha256}
//   /replay?to=V -> answers 409 with `fly-replay: V` (after reading the body; with early=1 at
//                   once; `to_<region>=V` overrides V on machines of that region), except on a
//                   machine whose --region or id is in `unless` (comma list), or for a request
//                   that carries fly-replay-failed: those answer as /echo
//   --region R   -> the machine's region (for /echo and `unless`)
//   Upgrade      -> 101, then echoes raw bytes (a WebSocket-like tunnel); on /no-upgrade a plain
//                   200 "<id>\n" instead, and the connection goes on serving HTTP requests
//                   (what a server that ignores Upgrade does)
// tcp: echoes bytes back and ends its side when the caller ends; with --greet first writes
//   "<id>\n"; with --fin-first writes "<id>\n" and ends its side at once, then only counts
//   what it receives.
// Stats (never through the proxy): GET http://127.0.0.1:<statsPort>/stats, POST /reset.
// {connections, active, maxActive, requests, activeRequests, maxActiveRequests, remotes{addr:n},
//  bytesIn, eofs (callers whose end of stream arrived)}
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const kind = opt('kind', 'http');
const id = opt('id', 'machine');
const host = opt('host', '127.0.0.1');
const port = Number(opt('port', '0'));
const greet = args.includes('--greet');
const finFirst = args.includes('--fin-first');
const logConnections = args.includes('--log');
const region = opt('region', '');

let stats;
const resetStats = () => {
  stats = { id, connections: 0, active: 0, maxActive: 0, requests: 0, activeRequests: 0, maxActiveRequests: 0, remotes: {}, bytesIn: 0, eofs: 0 };
};
resetStats();

/** Marks a connection handed back to HTTP parsing after a refused upgrade (counted once). */
const REATTACHED = Symbol('reattached');

function onSocket(socket) {
  if (socket[REATTACHED]) return;
  stats.connections++;
  stats.active++;
  stats.maxActive = Math.max(stats.maxActive, stats.active);
  const r = socket.remoteAddress ?? '?';
  stats.remotes[r] = (stats.remotes[r] ?? 0) + 1;
  if (logConnections) console.log(`connection from ${r}`);
  socket.once('close', () => stats.active--);
}

let server;
if (kind === 'tcp') {
  server = net.createServer({ allowHalfOpen: true }, (socket) => {
    onSocket(socket);
    socket.on('error', () => socket.destroy());
    socket.on('data', (c) => (stats.bytesIn += c.length));
    socket.once('end', () => stats.eofs++);
    if (finFirst) return void socket.end(`${id}\n`);
    if (greet) socket.write(`${id}\n`);
    socket.pipe(socket);
  });
} else {
  server = http.createServer((req, res) => {
    stats.requests++;
    stats.activeRequests++;
    stats.maxActiveRequests = Math.max(stats.maxActiveRequests, stats.activeRequests);
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        stats.activeRequests--;
      }
    };
    res.once('close', finish);
    res.setHeader('x-machine-id', id);
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/headers') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ headers: req.headers, rawHeaders: req.rawHeaders }));
    } else if (url.pathname === '/sleep') {
      setTimeout(() => res.end(`${id}\n`), Number(url.searchParams.get('ms') ?? '100'));
    } else if (url.pathname === '/bytes') {
      const total = Number(url.searchParams.get('n') ?? '0');
      let left = total;
      // ?pattern=1: bytes[i] = (i * 7919) >>> 3 & 255, so a caller can check every byte; ?chunked=1: no length.
      const pattern = url.searchParams.get('pattern') === '1';
      if (url.searchParams.get('chunked') !== '1') res.setHeader('content-length', String(left));
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          let out = n === chunk.length ? chunk : chunk.subarray(0, n);
          if (pattern) {
            out = Buffer.allocUnsafe(n);
            for (let i = 0, at = total - left; i < n; i++, at++) out[i] = ((at * 7919) >>> 3) & 255;
          }
          left -= n;
          if (!res.write(out)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else if (
      url.pathname === '/echo' ||
      (url.pathname === '/replay' && (req.headers['fly-replay-failed'] !== undefined || (url.searchParams.get('unless') ?? '').split(',').some((u) => u === region || u === id)))
    ) {
      const hash = createHash('sha256');
      let bytes = 0;
      // ?stall=MS: stop reading for MS after each chunk (a slow machine: the proxy's writes queue).
      const stall = Number(url.searchParams.get('stall') ?? '0');
      req.on('data', (c) => {
        bytes += c.length;
        hash.update(c);
        if (stall > 0) {
          req.pause();
          setTimeout(() => req.resume(), stall);
        }
      });
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ id, region, method: req.method, url: req.url, headers: req.headers, bytes, sha256: hash.digest('hex') }));
      });
    } else if (url.pathname === '/replay') {
      const answer = () => {
        res.writeHead(409, { 'fly-replay': url.searchParams.get(`to_${region}`) ?? url.searchParams.get('to') ?? '', 'content-length': '0' });
        res.end();
      };
      if (url.searchParams.get('early') === '1') {
        answer();
        req.resume();
      } else {
        req.resume();
        req.on('end', answer);
      }
    } else if (url.pathname === '/sink') {
      let bytes = 0;
      req.on('data', (c) => (bytes += c.length));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ bytes }));
      });
    } else {
      req.resume();
      res.end(`${id}\n`);
    }
  });
  server.on('connection', onSocket);
  server.on('upgrade', (req, socket, head) => {
    stats.requests++;
    if (req.url?.startsWith('/no-upgrade')) {
      socket.write(`HTTP/1.1 200 OK\r\nx-machine-id: ${id}\r\ncontent-length: ${id.length + 1}\r\n\r\n${id}\n`);
      if (head.length) socket.unshift(head);
      socket[REATTACHED] = true;
      return void server.emit('connection', socket);
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade ?? 'websocket'}\r\nConnection: Upgrade\r\nX-Machine-Id: ${id}\r\n\r\n`);
    if (head.length) socket.write(head);
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  server.keepAliveTimeout = 30_000;
}

const statsServer = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/reset') resetStats();
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(stats));
});

server.listen({ host, port }, () => {
  statsServer.listen(0, '127.0.0.1', () => {
    const addr = server.address();
    console.log(`ready ${JSON.stringify({ id, kind, host, port: addr.port, statsPort: statsServer.address().port, pid: process.pid })}`);
  });
});
server.on('error', (err) => {
  console.error(`machine ${id} cannot listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
});
process.on('SIGTERM', () => process.exit(0));

// One benchmark backend, run as its own process: `node backend-server.mjs KIND HOST PORT NAME`.
//   http: keep-alive HTTP/1.1 server answering every request with a tiny fixed body
//   sink: TCP server that counts the bytes it receives and, at the caller's end, replies "<count>\n"
//   echo: TCP server that writes back every byte it receives (connection-rate and idle tests)
// Prints "listening <port>" once bound (PORT 0 picks a free one).
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';

const [kind = 'http', host = '127.0.0.1', portText = '0', name = 'backend'] = process.argv.slice(2);
const BODY = Buffer.from('ok\n');

function httpServer() {
  let requests = 0;
  const srv = createHttpServer({ keepAliveTimeout: 120_000, headersTimeout: 130_000, requestTimeout: 0 }, (req, res) => {
    requests++;
    if (req.url === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name, requests }));
      return;
    }
    // Drain any request body before answering so keep-alive connections stay usable.
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length, 'x-backend': name });
      res.end(BODY);
    });
  });
  srv.keepAliveTimeout = 120_000;
  return srv;
}

function sinkServer() {
  return createTcpServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
    let bytes = 0;
    sock.on('data', (b) => {
      bytes += b.length;
    });
    sock.on('end', () => sock.end(`${bytes}\n`));
    sock.on('error', () => sock.destroy());
  });
}

function echoServer() {
  return createTcpServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
    sock.on('error', () => sock.destroy());
    sock.pipe(sock);
  });
}

const makers = { http: httpServer, sink: sinkServer, echo: echoServer };
const make = makers[kind];
if (!make) {
  console.error(`unknown backend kind ${kind}; use one of ${Object.keys(makers).join(', ')}`);
  process.exit(2);
}
const srv = make();
srv.on('error', (err) => {
  console.error(`backend ${name} (${kind}) failed: ${err.message}`);
  process.exit(1);
});
srv.listen({ host, port: Number(portText), backlog: 4096 }, () => {
  console.log(`listening ${srv.address().port}`);
});
// Idle keep-alive and echo sockets would hold close() open; the bench is done with them.
process.on('SIGTERM', () => process.exit(0));

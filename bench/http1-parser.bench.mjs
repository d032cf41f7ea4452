// The HTTP/1 engine's head parser alone: ns per head for requests and responses of a few
// shapes, against llhttp as node:http runs it (the HTTPParser binding, strict, one parser per
// connection fed head after head, header strings handed to JavaScript), in the same process
// and run. Also the parse + rewrite the forwarder does per request. Pure CPU, no network.
// Run: npm run build && node bench/http1-parser.bench.mjs
import { createRequire } from 'node:module';
import os from 'node:os';
import { HeadParser } from '../dist/proxy/http1/head.js';
import { CallerIdentity, CONNECTION, rewriteRequest, rewriteResponse } from '../dist/proxy/http1/rewrite.js';
import { machineLine, median, writeSection } from './lib/results.mjs';

const { HTTPParser } = createRequire(import.meta.url)('_http_common');
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const ITER = Number(process.env.BENCH_ITER ?? 200_000);
const LIMITS = { maxHeadSize: 16_384, maxHeaders: 100 };

const HEADS = [
  {
    name: 'load-generator GET (2 fields, 62 B)',
    kind: 'request',
    text: 'GET / HTTP/1.1\r\nhost: [fdaa:0:18:0:1::3]:80\r\nconnection: keep-alive\r\n\r\n',
  },
  {
    name: 'curl GET (3 fields, 91 B)',
    kind: 'request',
    text: 'GET /api/v1/items?id=42 HTTP/1.1\r\nHost: [fdaa:0:18:0:1::3]\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n',
  },
  {
    name: 'browser GET (13 fields, ~750 B)',
    kind: 'request',
    text:
      'GET /dashboard/apps/web?tab=machines&region=ewr HTTP/1.1\r\nHost: app.internal\r\n' +
      'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n' +
      'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n' +
      'Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n' +
      'Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; _ga=GA1.2.123456789.1700000000\r\n' +
      'Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\n' +
      'Cache-Control: max-age=0\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n',
  },
  {
    name: 'POST with a body (5 fields, ~200 B)',
    kind: 'request',
    text: 'POST /v1/events HTTP/1.1\r\nHost: api.internal\r\nContent-Type: application/json\r\nContent-Length: 512\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo\r\nAccept: application/json\r\n\r\n',
  },
  {
    name: 'node:http response (5 fields, ~150 B)',
    kind: 'response',
    text: 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\nDate: Tue, 24 Nov 2026 22:42:59 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n',
  },
];

function timeIt(fn) {
  const t0 = process.hrtime.bigint();
  fn(ITER);
  return Number(process.hrtime.bigint() - t0) / ITER;
}

function engineParse(kind, buf) {
  const p = new HeadParser(kind, LIMITS);
  return (n) => {
    for (let i = 0; i < n; i++) {
      p.reset();
      if (p.feed(buf, 0, buf.length) !== buf.length) throw new Error(`engine refused: ${p.reason}`);
    }
  };
}

function engineParseRewrite(kind, buf) {
  const p = new HeadParser(kind, LIMITS);
  const who = new CallerIdentity('fdaa:0:18:a7b:7d:0:ca11:1', 80, 'ewr');
  return (n) => {
    let sink = 0;
    for (let i = 0; i < n; i++) {
      p.reset();
      p.feed(buf, 0, buf.length);
      sink += (kind === 'request' ? rewriteRequest(p, who, '1a2b3c4d00000001-ewr', false) : rewriteResponse(p, '1a2b3c4d00000001-ewr', CONNECTION.NONE)).length;
    }
    return sink;
  };
}

function llhttp(kind, buf) {
  const p = new HTTPParser();
  p.initialize(kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, LIMITS.maxHeadSize, HTTPParser.kLenientNone);
  let heads = 0;
  p[HTTPParser.kOnHeadersComplete] = () => {
    heads++;
    return 0;
  };
  p[HTTPParser.kOnMessageComplete] = () => undefined;
  p[HTTPParser.kOnBody] = () => undefined;
  p[HTTPParser.kOnHeaders] = () => undefined;
  // A request with a body would wait for it; frame these as bodiless for both parsers.
  const b = Buffer.from(buf.toString('latin1').replace(/Content-Length: \d+/, 'Content-Length: 0'), 'latin1');
  return (n) => {
    for (let i = 0; i < n; i++) {
      const r = p.execute(b);
      if (typeof r !== 'number') throw new Error(`llhttp refused: ${r.code}`);
    }
    if (heads < n) throw new Error('llhttp did not complete every head');
  };
}

const rows = [];
for (const h of HEADS) {
  const buf = Buffer.from(h.text, 'latin1');
  const ways = { engine: engineParse(h.kind, buf), rewrite: engineParseRewrite(h.kind, buf), llhttp: llhttp(h.kind, buf) };
  for (const f of Object.values(ways)) f(20_000); // warm-up (JIT)
  const ns = { engine: [], rewrite: [], llhttp: [] };
  for (let r = 0; r < RUNS; r++) for (const [k, f] of Object.entries(ways)) ns[k].push(timeIt(f));
  const row = { name: h.name, bytes: buf.length, engine: median(ns.engine), rewrite: median(ns.rewrite), llhttp: median(ns.llhttp) };
  rows.push(row);
  console.log(`${h.name}: engine ${row.engine.toFixed(0)} ns, engine + rewrite ${row.rewrite.toFixed(0)} ns, llhttp ${row.llhttp.toFixed(0)} ns`);
}

const load = os.loadavg().map((x) => x.toFixed(1)).join(' / ');
const md = `## HTTP/1 head parser (\`bench/http1-parser.bench.mjs\`)

Command: \`npm run build && node bench/http1-parser.bench.mjs\` (pure CPU, no network). ${machineLine()}; load average (1/5/15 min) at the end ${load} on ${os.cpus().length} cores (other engineers' work included).

ns per head, median of ${RUNS} runs of ${ITER.toLocaleString('en-US')} heads each, in one process. **engine**: \`HeadParser.feed\` over a
whole head (validation of every byte, offsets and framing facts recorded, no strings). **engine + rewrite**:
that plus the head the forwarder sends on (\`rewriteRequest\` with the six identity fields, or \`rewriteResponse\`),
one new Buffer. **llhttp**: node:http's parser (the \`HTTPParser\` binding, strict), one parser fed head after
head as on a keep-alive connection, including the header strings the binding hands to JavaScript (what node:http
pays per head before it builds IncomingMessage; llhttp alone, in C, is faster than that).

| head | bytes | engine ns | engine + rewrite ns | llhttp (node binding) ns | engine / llhttp |
|---|---:|---:|---:|---:|---:|
${rows.map((r) => `| ${r.name} | ${r.bytes} | ${r.engine.toFixed(0)} | ${r.rewrite.toFixed(0)} | ${r.llhttp.toFixed(0)} | ${(r.engine / r.llhttp).toFixed(2)} |`).join('\n')}
`;
if (process.env.BENCH_WRITE !== '0') writeSection('http1-parser', md);
console.log(md);

// Scratch: nanoseconds per orgOf (the org of a caller's address, which every proxied connection
// and DNS query starts with) on the built tree, beside ipaddr.js's parse of the same texts (what
// sixpn read IPv6 text with before src/addressing had its own reader). Not a benchmark of record.
//   npm run build && node bench/lib/addressing-micro.mjs
import ipaddr from 'ipaddr.js';
import { orgOf } from '../../dist/addressing/index.js';

const N = Number(process.env.MICRO_N ?? 2e6);
const ROUNDS = 5;
const texts = Array.from({ length: 1024 }, (_, i) => `fdaa:0:${(i % 50).toString(16)}:a7b:${i.toString(16)}:0:ca11:${(i * 7).toString(16)}`);
const ops = {
  'orgOf(text)': (s) => orgOf(s) !== null,
  'ipaddr.js IPv6.parse(text)': (s) => ipaddr.IPv6.parse(s).parts[2] !== 0,
};
console.log(`ns per call, best of ${ROUNDS} rounds of ${N.toLocaleString('en')} over ${texts.length} addresses`);
for (const [name, op] of Object.entries(ops)) {
  let best = Infinity;
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) if (op(texts[i & 1023])) sink++;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / N);
  }
  // sink keeps the calls' results alive, so that none is optimised away
  console.log(`  ${name.padEnd(28)} ${best.toFixed(0)} ns (${sink} true results)`);
}

// The bulk TCP sender of the mesh and wireguard benches, as program text for `node -e` (it runs
// inside other namespaces, in the mesh bench as a machine's unprivileged user, who may not be
// able to read this checkout): `node -e BULK_SENDER HOST PORT BYTES` writes BYTES in 1 MiB
// chunks, half-closes, and prints {"ms", "reply"} once the sink has answered and closed.
export const BULK_SENDER = `
const net = require('node:net');
const [host, port, bytes] = process.argv.slice(1);
const chunk = Buffer.alloc(1 << 20, 7);
let left = Number(bytes);
const t0 = process.hrtime.bigint();
const s = net.connect({ host, port: Number(port) }, () => {
  const pump = () => {
    while (left > 0) {
      left -= chunk.length;
      if (!s.write(chunk)) return s.once('drain', pump);
    }
    s.end();
  };
  pump();
});
let reply = '';
s.on('data', (b) => (reply += b));
s.on('end', () => { console.log(JSON.stringify({ ms: Number(process.hrtime.bigint() - t0) / 1e6, reply: reply.trim() })); });
s.on('error', (e) => { console.error(e.message); process.exit(2); });`;

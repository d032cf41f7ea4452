// Benchmark backends: N small servers (HTTP, TCP sink or TCP echo), each its own child process
// on loopback, so that their CPU is not the bench's and a failover test can kill one.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NOFILE, start as startProc } from '../../test/harness/spawn.mjs';

const SERVER = join(dirname(fileURLToPath(import.meta.url)), 'backend-server.mjs');

/**
 * Starts `count` backends of `kind` ('http' | 'sink' | 'echo') on `host`, each on a free port.
 * Returns { kind, list: [{ name, host, port, address, proc }], stop() }; `address` is "host:port"
 * (what a sixpn machine's `upstream` and a HAProxy `server` line take).
 */
export async function startBackends({ count = 3, kind = 'http', host = '127.0.0.1', prefix = kind } = {}) {
  const list = [];
  const stop = () => Promise.all(list.map((b) => b.proc.stop('SIGTERM', 2_000)));
  try {
    for (let i = 0; i < count; i++) {
      const name = `${prefix}-${i + 1}`;
      const proc = startProc(process.execPath, [SERVER, kind, host, '0', name], { nofile: NOFILE });
      list.push({ name, host, port: 0, address: '', proc });
    }
    for (const b of list) {
      const line = await b.proc.waitForLine(/^listening \d+/, 10_000);
      b.port = Number(line.split(' ')[1]);
      b.address = `${host.includes(':') ? `[${host}]` : host}:${b.port}`;
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { kind, list, stop };
}

/**
 * Machines for health and failover tests: each a real child process serving HTTP on its own
 * 6PN address, answering every request with its name (body and `x-machine` header), so a test
 * can see which machine served what, and counting the health checks it got (GET /__checks).
 * They can be killed, frozen (SIGSTOP), thawed and
 * restarted on the same address and port.
 */
import { start, type Proc } from './procs.js';

const SERVER = `
const http = require('node:http');
const [host, port, name] = process.argv.slice(1);
let checks = 0;
const srv = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  req.resume();
  if (req.url === '/health') checks++;
  if (req.url === '/__checks') return res.end(String(checks));
  res.writeHead(200, { 'content-type': 'text/plain', 'x-machine': name });
  res.end(name + '\\n');
});
srv.listen(Number(port), host, () => console.log('listening ' + name));
process.on('SIGTERM', () => { srv.close(() => process.exit(0)); srv.closeIdleConnections(); });
`;

export class TestMachine {
  proc: Proc | null = null;

  constructor(
    readonly id: string,
    readonly name: string,
    readonly region: string,
    readonly host: string,
    readonly port: number,
  ) {}

  async start(): Promise<this> {
    const p = start(process.execPath, ['-e', SERVER, this.host, String(this.port), this.name]);
    this.proc = p;
    await p.waitForLine(/^listening/, 10_000);
    return this;
  }

  /** Sends `sig`; SIGKILL and SIGTERM resolve once the process is gone. */
  async signal(sig: NodeJS.Signals): Promise<void> {
    const p = this.proc;
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill(sig);
    if (sig === 'SIGKILL' || sig === 'SIGTERM') await p.exited;
  }

  /** Health checks (GET /health) this process has answered so far. */
  async checks(): Promise<number> {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    const r = await fetch(`http://${host}:${this.port}/__checks`);
    return Number(await r.text());
  }

  async stop(): Promise<void> {
    if (this.proc) {
      this.proc.child.kill('SIGCONT');
      await this.proc.stop('SIGKILL');
    }
  }
}

export async function startMachines(specs: { id: string; name: string; region: string; host: string; port: number }[]): Promise<TestMachine[]> {
  const ms = specs.map((s) => new TestMachine(s.id, s.name, s.region, s.host, s.port));
  await Promise.all(ms.map((m) => m.start()));
  return ms;
}

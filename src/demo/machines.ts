/**
 * Demo machines: tiny in-process servers that say who they are, so a newcomer can see which
 * machine and region the Flycast proxy picked. HTTP apps answer every request with the
 * machine id and region; TCP apps greet, then echo what they receive.
 *
 * `/_demo/fail` makes an HTTP machine answer 500 for a minute, so its health check fails and
 * the dashboard shows it turn unhealthy (and the proxy route around it).
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import type { Machine } from '../catalog/types.js';

export type DemoKind = 'http' | 'tcp';

export interface DemoMachine {
  readonly id: string;
  readonly app: string;
  readonly kind: DemoKind;
  readonly port: number;
  /** `host:port` the proxy should dial. */
  readonly upstream: string;
  close(): Promise<void>;
}

export interface DemoIdentity {
  machine: Pick<Machine, 'id' | 'app' | 'region'>;
  city: string | null;
}

/** The line every demo machine introduces itself with. */
export function whoAmI({ machine, city }: DemoIdentity): string {
  return `machine ${machine.id} of app ${machine.app} in region ${machine.region}${city ? ` (${city})` : ''}`;
}

const FAIL_FOR_MS = 60_000;

function listen(server: HttpServer | TcpServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops listening and cuts open connections (a demo machine has nothing to drain). */
function closeServer(server: HttpServer | TcpServer, cut: () => void): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    cut();
  });
}

const hostPort = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/** `port` 0: a free one. */
export async function startDemoMachine(who: DemoIdentity, kind: DemoKind, host: string, port = 0, log = false): Promise<DemoMachine> {
  const me = whoAmI(who);
  const { id, app } = who.machine;
  if (kind === 'http') {
    let failUntil = 0;
    const server = createHttpServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (log) console.log(`${req.method} ${path} from ${req.socket.remoteAddress}`);
      if (path === '/_demo/fail') failUntil = Date.now() + FAIL_FOR_MS;
      if (path === '/_demo/recover') failUntil = 0;
      const failing = Date.now() < failUntil;
      const body = `${failing ? 'failing on purpose' : 'hello'} from ${me}\n${req.method} ${path}\n`;
      res.writeHead(failing ? 500 : 200, {
        'content-type': 'text/plain; charset=utf-8',
        'x-machine-id': id,
        'x-machine-region': who.machine.region,
      });
      res.end(body);
    });
    server.keepAliveTimeout = 5_000;
    const bound = await listen(server, host, port);
    return { id, app, kind, port: bound, upstream: hostPort(host, bound), close: () => closeServer(server, () => server.closeAllConnections()) };
  }
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.write(`echo from ${me}\n`);
    socket.pipe(socket);
  });
  const bound = await listen(server, host, port);
  return { id, app, kind, port: bound, upstream: hostPort(host, bound), close: () => closeServer(server, () => sockets.forEach((s) => s.destroy())) };
}

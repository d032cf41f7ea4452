// A forwarder of the HTTP/1 engine on a real loopback listener, in front of real machines
// (node:http servers or raw TCP servers that misbehave on purpose), with hooks that keep the
// books the tests check: every pick released exactly once, verdicts per machine, one `done`
// per request. Also a raw caller that reads whole responses off a socket.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { NoCapacityError, UpstreamUnreachableError, type SixpnError } from '../../src/errors.js';
import { Http1Forwarder, type CallerContext, type Connected, type ForwarderOptions, type UpstreamPool } from '../../src/proxy/http1/index.js';
import { HeadParser, INVALID, NEED_MORE } from '../../src/proxy/http1/head.js';
import { BODY, BODY_CONTINUES, BodyReader, responseBody } from '../../src/proxy/http1/framing.js';

export interface RigMachine {
  name: string;
  port: number;
  /** Requests in flight on it now (pick - release). */
  held: number;
  picks: number;
  failures: string[];
  successes: number;
}

export interface Rig {
  port: number;
  forwarder: Http1Forwarder<CallerContext, RigMachine>;
  machines: RigMachine[];
  /** The keep-alive pool of each machine (made on its first connect). */
  pools: Map<RigMachine, UpstreamPool>;
  done: { status: number; machine: string | null; id: string; method: string }[];
  denied: string[];
  logs: { level: string; msg: string; obj: object }[];
  /** Force the next picks: 'none', 'full', or a machine by name. */
  script: (string | 'none' | 'full')[];
  close(): Promise<void>;
}

export async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as AddressInfo).port;
}

/** A port with nothing listening. */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

let ids = 0;

export async function startRig(machines: { name: string; port: number }[], opts: Partial<ForwarderOptions> & { denied?: string | null } = {}): Promise<Rig> {
  const list: RigMachine[] = machines.map((m) => ({ ...m, held: 0, picks: 0, failures: [], successes: 0 }));
  const pools = new Map<RigMachine, UpstreamPool>();
  const done: Rig['done'] = [];
  const denied: string[] = [];
  const logs: Rig['logs'] = [];
  const script: Rig['script'] = [];
  const log = (level: string) => (obj: object, msg: string) => void logs.push({ level, msg, obj });
  const poolOf = (m: RigMachine): UpstreamPool => {
    let p = pools.get(m);
    if (!p) pools.set(m, (p = forwarder.newPool()));
    return p;
  };
  const dial = (m: RigMachine): Promise<net.Socket | Error> =>
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: m.port, allowHalfOpen: true, noDelay: true });
      s.once('connect', () => {
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => resolve(err));
    });
  const forwarder: Http1Forwarder<CallerContext, RigMachine> = new Http1Forwarder<CallerContext, RigMachine>(
    {
      // What the proxy's upstream layer does, in small: pick (or the scripted refusal), an idle
      // pooled connection or a dial, and on a failed connect the next machine, up to connectTries.
      async connect(_ctx, tried, gone, id) {
        let lastErr: Error | null = null;
        for (;;) {
          const forced = script.shift();
          if (forced === 'full') return new NoCapacityError('all machines are at their hard limit');
          const m = forced === 'none' ? undefined : forced ? list.find((x) => x.name === forced) : list.filter((x) => !tried.has(x)).sort((a, b) => a.held - b.held)[0];
          if (!m || tried.has(m)) return new UpstreamUnreachableError(tried.size === 0 ? 'no machine available' : 'no machine reachable', lastErr ? { cause: lastErr } : undefined);
          m.held++;
          m.picks++;
          const pool = poolOf(m);
          const idle = pool.take();
          if (idle !== null) return { m, conn: idle } satisfies Connected<RigMachine>;
          const s = await dial(m);
          if (!(s instanceof Error)) {
            if (gone()) {
              s.destroy();
              m.held--;
              return new UpstreamUnreachableError('caller went away');
            }
            return { m, conn: pool.adopt(s) };
          }
          m.failures.push((s as NodeJS.ErrnoException).code ?? s.message);
          m.held--;
          tried.add(m);
          lastErr = s;
          void id;
          if (gone() || tried.size >= (opts.connectTries ?? 3)) return new UpstreamUnreachableError('no machine reachable', { cause: s }) as SixpnError;
        }
      },
      release(m) {
        m.held--;
        if (m.held < 0) throw new Error(`machine ${m.name} released more often than picked`);
      },
      reportSuccess(m) {
        m.successes++;
      },
      reportFailure(m, err) {
        m.failures.push((err as NodeJS.ErrnoException).code ?? err.message);
      },
      denied(_ctx, id) {
        denied.push(id);
      },
      done(_ctx, m, status, id, method) {
        done.push({ status, machine: m?.name ?? null, id, method });
      },
      describe: (m) => m.name,
    },
    {
      region: 'ewr',
      requestId: () => `req${(++ids).toString(16).padStart(6, '0')}-ewr`,
      log: { info: log('info'), warn: log('warn') },
      ...opts,
    },
  );
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) =>
    forwarder.accept(s, { caller: s.remoteAddress ?? '', port: (server.address() as AddressInfo).port, denied: opts.denied ?? null }),
  );
  const port = await listen(server);
  return {
    port,
    forwarder,
    machines: list,
    pools,
    done,
    denied,
    logs,
    script,
    async close() {
      forwarder.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface RawResponse {
  status: number;
  head: string;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * A raw caller: writes bytes as given and reads responses off the socket with the engine's
 * own framing rules (responses to `methods`, in order).
 */
export class RawCaller {
  readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  closed = false;
  private waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake();
    });
    // Like a real client: the server's FIN ends the connection (the socket is half-open only
    // so that a test can half-close its own side first).
    const closed = (): void => {
      this.closed = true;
      this.wake();
    };
    socket.on('end', () => {
      closed();
      socket.end();
    });
    socket.on('close', closed);
    socket.on('error', () => undefined);
  }

  static async connect(port: number): Promise<RawCaller> {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
    return new RawCaller(s);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async more(timeoutMs: number): Promise<void> {
    if (this.closed) throw new Error(`connection closed; have ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no more bytes within ${timeoutMs} ms; have ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`)), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  write(s: string | Buffer): void {
    this.socket.write(typeof s === 'string' ? Buffer.from(s, 'latin1') : s);
  }

  /** The next response (1xx included) to a request with `method`. */
  async response(method = 'GET', timeoutMs = 5_000): Promise<RawResponse> {
    const h = new HeadParser('response', { maxHeadSize: 1 << 20, maxHeaders: 1000 });
    for (;;) {
      h.reset();
      const r = h.feed(this.buf, 0, this.buf.length);
      if (r === INVALID) throw new Error(`bad response head: ${h.reason}: ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`);
      if (r === NEED_MORE) {
        await this.more(timeoutMs);
        continue;
      }
      const headers: Record<string, string> = {};
      for (let i = 0; i < h.count; i++) headers[h.name(i).toLowerCase()] = headers[h.name(i).toLowerCase()] === undefined ? h.value(i) : `${headers[h.name(i).toLowerCase()]}, ${h.value(i)}`;
      const head = this.buf.toString('latin1', 0, r);
      const kind = responseBody(h, method);
      let end = r;
      if (kind === BODY.CLOSE) {
        while (!this.closed) await this.more(timeoutMs).catch(() => undefined);
        end = this.buf.length;
      } else if (kind !== BODY.NONE && kind !== BODY.INTERIM && kind !== BODY.SWITCH) {
        for (;;) {
          const body = new BodyReader(1 << 20);
          body.begin(kind, h.contentLength);
          const e = body.read(this.buf, r, this.buf.length);
          if (e === BODY_CONTINUES) {
            await this.more(timeoutMs);
            continue;
          }
          if (e < 0) throw new Error(`bad response body: ${body.reason}`);
          end = e;
          break;
        }
      }
      const res = { status: h.status, head, headers, body: Buffer.from(this.buf.subarray(r, end)) };
      this.buf = this.buf.subarray(end);
      return res;
    }
  }

  /** Bytes until the connection closes (what is left unread). */
  async rest(timeoutMs = 5_000): Promise<Buffer> {
    const until = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < until) await this.more(until - Date.now()).catch(() => undefined);
    const b = this.buf;
    this.buf = Buffer.alloc(0);
    return b;
  }

  /** Waits until `n` bytes are buffered (for tunnels). */
  async bytes(n: number, timeoutMs = 5_000): Promise<Buffer> {
    while (this.buf.length < n) await this.more(timeoutMs);
    const b = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(b);
  }

  async closedWithin(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (!this.closed && Date.now() < until) await this.more(until - Date.now()).catch(() => undefined);
    return this.closed;
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

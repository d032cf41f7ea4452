/**
 * Routes the admin listener serves besides the /v1 API: /healthz, /metrics, the dashboard
 * (`/`, `/dashboard`), /v1/status and its server-sent event stream /v1/status/events.
 *
 * The control server calls the handler first for every request; it answers and returns true,
 * or returns false to pass the request on. Access (see ./auth.ts and src/observe/README.md, which documents the admin listener):
 * /healthz is open and says only "ok"; /metrics is open when the admin listener binds a
 * loopback address and needs the bearer token otherwise (labels name apps and machines);
 * /v1/status and its events need the bearer token or the dashboard cookie.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NodeContext } from '../role.js';
import { CLEAR_COOKIE, closeSession, hasToken, isLoopbackHost, mayReadStatus, openSession, type Access } from './auth.js';
import { errorReply } from './http.js';
import { secretEquals } from './tokens.js';
import { watchCatalog } from '../catalog/watch.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard.js';
import { enableDefaultMetrics, gauge, registry } from '../observe/metrics.js';
import { buildStatus, RateSampler, readActive, type NodeStatus, type StatusSource } from './status.js';

export type ObserveHandler = ((req: IncomingMessage, res: ServerResponse) => boolean) & {
  /** Ends the event streams and stops the rate sampler (call before closing the server). */
  close(): void;
};

/** How often rates are sampled and pushed to open dashboards. */
export const TICK_MS = 2_000;
/** View changes are batched this long before a push, so a deploy of 50 machines is one push. */
export const DEBOUNCE_MS = 100;
/** Unsent bytes after which an event stream's reader is taken to be gone. */
const MAX_BUFFERED = 4 * 1024 * 1024;

const dashboardClients = gauge({ name: 'sixpn_dashboard_streams', help: 'Open /v1/status/events streams.' });

interface ServerLike {
  listening: boolean;
}

/** Status document, live rates and the open event streams of one node. */
class StatusHub {
  private readonly sampler = new RateSampler();
  /** Open event streams, each with the server it came in on. */
  private readonly clients = new Map<ServerResponse, ServerLike | undefined>();
  private tick: NodeJS.Timeout | null = null;
  private watch: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly src: StatusSource) {
    src.view.on('change', () => this.schedule());
    src.view.on('reset', () => this.schedule());
  }

  /** Starts sampling on first use: rates need two samples, so the first read primes it. */
  private ensureTicking(): void {
    if (this.tick || this.closed) return;
    void this.sampler.sample();
    this.tick = setInterval(() => {
      void this.sampler.sample().then(() => this.push());
    }, TICK_MS);
    this.tick.unref();
  }

  /** Rates come from the last tick; active connections are read fresh. */
  async status(): Promise<NodeStatus> {
    this.ensureTicking();
    return buildStatus(this.src, { ...this.sampler.current(), ...(await readActive()) });
  }

  private schedule(): void {
    if (this.debounce || this.clients.size === 0) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      this.push();
    }, DEBOUNCE_MS);
    this.debounce.unref();
  }

  private push(): void {
    if (this.clients.size === 0) return;
    void this.status().then((s) => {
      const frame = `event: status\ndata: ${JSON.stringify(s)}\n\n`;
      for (const res of this.clients.keys()) {
        // A client that stopped reading (a phone asleep) must not grow our memory: cut it;
        // EventSource reconnects when it wakes up.
        if (res.writableLength > MAX_BUFFERED) res.destroy();
        else res.write(frame);
      }
    });
  }

  async stream(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const first = await this.status();
    if (res.destroyed) return;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    res.write(`retry: 2000\nevent: status\ndata: ${JSON.stringify(first)}\n\n`);
    // The control server may close without ending long-lived responses: notice it stopped
    // listening and end its streams, so shutdown is not held up by an open dashboard.
    this.clients.set(res, (req.socket as unknown as { server?: ServerLike }).server);
    dashboardClients.set(this.clients.size);
    if (!this.watch) {
      this.watch = setInterval(() => {
        for (const [r, server] of this.clients) if (server && !server.listening) r.end();
      }, 250);
      this.watch.unref();
    }
    const drop = (): void => {
      this.clients.delete(res);
      dashboardClients.set(this.clients.size);
      if (this.clients.size === 0 && this.watch) {
        clearInterval(this.watch);
        this.watch = null;
      }
    };
    req.on('close', drop);
    res.on('close', drop);
  }

  private endStreams(): void {
    for (const res of [...this.clients.keys()]) res.end();
    this.clients.clear();
    dashboardClients.set(0);
  }

  close(): void {
    this.closed = true;
    if (this.tick) clearInterval(this.tick);
    if (this.watch) clearInterval(this.watch);
    if (this.debounce) clearTimeout(this.debounce);
    this.tick = this.watch = this.debounce = null;
    this.endStreams();
  }
}

function sendError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(body);
}

const unauthorized = (res: ServerResponse): void =>
  sendError(res, 401, 'SIXPN_UNAUTHORIZED', 'missing or wrong token: send "Authorization: Bearer <token>" or open /dashboard?token=<token>', {
    'www-authenticate': 'Bearer realm="sixpn"',
  });

function readBody(req: IncomingMessage, limit: number): Promise<string | null> {
  return new Promise((resolve) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (b: Buffer) => {
      size += b.length;
      // Past the limit: keep reading (and dropping) so the 413 reaches the client intact.
      if (size > limit) resolve(null);
      else chunks.push(b);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(null));
  });
}

/** The token of a session POST: the raw body, or a `token=` form field; null when its encoding is broken. */
function sessionToken(body: string): string | null {
  const text = body.trim();
  if (!text.startsWith('token=')) return text;
  try {
    return decodeURIComponent(text.slice(6).replace(/\+/g, ' '));
  } catch {
    return null;
  }
}

const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** Returns a handler that answers the request and returns true, or returns false to pass it on. */
export function observeRoutes(ctx: NodeContext): ObserveHandler {
  enableDefaultMetrics();
  watchCatalog(ctx.view, ctx.log);
  const log = ctx.log.child({ module: 'observe' });
  const access: Access = { token: ctx.config.control.token, store: ctx.store, sessionMs: ctx.config.control.dashboard_session };
  const metricsOpen = isLoopbackHost(ctx.config.control.listen.host);
  const hub = new StatusHub({
    view: ctx.view,
    regions: ctx.regions,
    node: { name: ctx.config.node.name, region: ctx.config.node.region },
    store: ctx.store.kind,
    startedAt: Date.now(),
  });

  const routes: Record<string, { methods: string[]; handle(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void | Promise<void> }> = {
    '/healthz': {
      methods: ['GET', 'HEAD'],
      handle(_req, res) {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
        res.end('ok\n');
      },
    },
    '/metrics': {
      methods: ['GET', 'HEAD'],
      async handle(req, res) {
        if (!metricsOpen && !hasToken(req, access)) return unauthorized(res);
        const text = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(text);
      },
    },
    '/dashboard': {
      methods: ['GET', 'HEAD'],
      async handle(req, res, query) {
        const token = query.get('token');
        if (token !== null) {
          // Trade the token for a session cookie and drop it from the address bar and history.
          if (access.token && secretEquals(token, access.token)) {
            res.writeHead(303, { location: '/dashboard', 'set-cookie': await openSession(req, access), 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
            res.end();
            return;
          }
          res.writeHead(401, { ...PAGE_HEADERS, 'set-cookie': CLEAR_COOKIE });
          res.end(DASHBOARD_HTML);
          return;
        }
        res.writeHead(200, PAGE_HEADERS);
        res.end(DASHBOARD_HTML);
      },
    },
    '/dashboard/session': {
      methods: ['POST', 'DELETE'],
      async handle(req, res) {
        if (req.method === 'DELETE') {
          // Logging out revokes the session: a copy of the cookie stops working too.
          await closeSession(req, access);
          res.writeHead(204, { 'set-cookie': CLEAR_COOKIE, 'cache-control': 'no-store' });
          res.end();
          return;
        }
        const body = await readBody(req, 4096);
        if (body === null) return sendError(res, 413, 'SIXPN_INVALID', 'body too large (the token is at most 4 KiB)', { connection: 'close' });
        const token = sessionToken(body);
        if (token === null) return sendError(res, 400, 'SIXPN_INVALID', 'the token form field is not valid percent-encoding');
        if (!access.token || !secretEquals(token, access.token)) return unauthorized(res);
        res.writeHead(204, { 'set-cookie': await openSession(req, access), 'cache-control': 'no-store' });
        res.end();
      },
    },
    '/v1/status': {
      methods: ['GET', 'HEAD'],
      async handle(req, res) {
        if (!(await mayReadStatus(req, access))) return unauthorized(res);
        const body = JSON.stringify(await hub.status());
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
    },
    '/v1/status/events': {
      methods: ['GET'],
      async handle(req, res) {
        if (!(await mayReadStatus(req, access))) return unauthorized(res);
        return hub.stream(req, res);
      },
    },
  };
  routes['/'] = routes['/dashboard']!;

  const handler = ((req: IncomingMessage, res: ServerResponse): boolean => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const route = routes[path];
    if (!route) return false;
    if (!route.methods.includes(req.method ?? 'GET')) {
      sendError(res, 405, 'SIXPN_INVALID', `${req.method} is not allowed on ${path}`, { allow: route.methods.join(', ') });
      return true;
    }
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    Promise.resolve()
      .then(() => route.handle(req, res, query))
      .catch((err: unknown) => {
        // A store that is down (a session cannot be opened or checked) is a 503, not a bug.
        const e = errorReply(err, 'observe');
        if (e.internal) log.error({ err, path }, 'observe route failed');
        if (!res.headersSent) sendError(res, e.status, e.code, e.code === 'SIXPN_INTERNAL' ? 'internal error' : e.message);
        else res.destroy();
      });
    return true;
  }) as ObserveHandler;
  handler.close = () => hub.close();
  return handler;
}

/**
 * Routes the admin listener serves besides the /v1 API: /healthz, /metrics, the dashboard
 * (`/`, `/dashboard`, its chart library), /v1/status and its server-sent event stream
 * /v1/status/events, the 1-second series /v1/status/series and the event feed /v1/events.
 *
 * The control server calls the handler first for every request; it answers and returns true,
 * or returns false to pass the request on. Access (see ./auth.ts and src/control/README.md, "The admin listener"):
 * /healthz is open and says only "ok"; /metrics is open when the admin listener binds a
 * loopback address and needs the bearer token otherwise (labels name apps and machines);
 * /v1/status, its events, series and the feed need the bearer token or the dashboard cookie.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NodeContext } from '../role.js';
import { CLEAR_COOKIE, closeSession, hasToken, isLoopbackHost, mayReadStatus, openSession, type Access } from './auth.js';
import { errorReply } from './http.js';
import { secretEquals } from './tokens.js';
import { watchCatalog } from '../catalog/watch.js';
import { exportCatalogGauges } from '../catalog/gauges.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard.js';
import { enableDefaultMetrics, registry } from '../observe/metrics.js';
import { SixpnError, ValidationError } from '../errors.js';
import { UPLOT_JS, UPLOT_PATH } from './assets.js';
import { parseFeedFilter } from './events.js';
import { StatusHub } from './hub.js';

export type ObserveHandler = ((req: IncomingMessage, res: ServerResponse) => boolean) & {
  /** Ends the event streams and stops the sampler (call before closing the server). */
  close(): void;
};

export { DEBOUNCE_MS, TICK_MS } from './hub.js';

function sendError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(body);
}

const unauthorized = (res: ServerResponse): void =>
  sendError(res, 401, 'SIXPN_UNAUTHORIZED', 'missing or wrong token: send "Authorization: Bearer <token>" or open /dashboard?token=<token>', {
    'www-authenticate': 'Bearer realm="sixpn"',
  });

/** A non-negative integer query parameter, or undefined when absent; anything else is bad input. */
function optionalInt(query: URLSearchParams, key: string): number | undefined {
  const v = query.get(key);
  if (v === null || v === '') return undefined;
  if (!/^\d{1,16}$/.test(v)) throw new ValidationError(`${key}: must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

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
  exportCatalogGauges(ctx.view);
  const log = ctx.log.child({ module: 'observe' });
  const access: Access = { token: ctx.config.control.token, store: ctx.store, sessionMs: ctx.config.control.dashboard_session };
  const metricsOpen = isLoopbackHost(ctx.config.control.listen.host);
  const hub = new StatusHub({
    view: ctx.view,
    regions: ctx.regions,
    node: { name: ctx.config.node.name, region: ctx.config.node.region },
    store: ctx.store.kind,
    ...(ctx.catalog ? { catalogStatus: () => ctx.catalog!.status(), catalogEvents: ctx.catalog } : {}),
    startedAt: Date.now(),
    proxy: () => ctx.roles.get('proxy'),
    log,
    hostStaleAfterMs: ctx.config.host.heartbeat_timeout,
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
        return hub.streamStatus(req, res);
      },
    },
    '/v1/status/series': {
      methods: ['GET', 'HEAD'],
      async handle(req, res, query) {
        if (!(await mayReadStatus(req, access))) return unauthorized(res);
        const since = optionalInt(query, 'since');
        const app = query.get('app') || undefined;
        const machines = query.get('machines');
        if (machines !== null && machines !== '0' && machines !== '1') throw new ValidationError(`machines: must be 0 or 1, got ${JSON.stringify(machines)}`);
        const body = JSON.stringify(hub.series({ app, since, machines: machines !== '0' }));
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
    },
    '/v1/events': {
      methods: ['GET'],
      async handle(req, res, query) {
        if (!(await mayReadStatus(req, access))) return unauthorized(res);
        const filter = parseFeedFilter(query);
        const lastId = req.headers['last-event-id'];
        let since = typeof lastId === 'string' && /^\d+$/.test(lastId) ? Number(lastId) : optionalInt(query, 'since');
        // Ahead of this feed: the node restarted and its sequence began again, so all of it is new.
        if (since !== undefined && since > hub.feed.lastSeq) since = 0;
        const limit = Math.min(optionalInt(query, 'limit') ?? 100, hub.feed.capacity);
        const follow = ['1', 'true'].includes(query.get('follow') ?? '') || (req.headers.accept ?? '').includes('text/event-stream');
        const events = hub.feed.since(since ?? 0, filter, since === undefined ? limit : hub.feed.capacity);
        if (follow) return hub.streamEvents(req, res, filter, events);
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
        res.end(JSON.stringify({ events, last_seq: hub.feed.lastSeq }));
      },
    },
    [UPLOT_PATH]: {
      methods: ['GET', 'HEAD'],
      handle(req, res) {
        // The chart library holds no data: open, like the page. Versioned URL, so cache it long.
        if (UPLOT_JS === null) return sendError(res, 404, 'SIXPN_NOT_FOUND', 'the uplot package is not installed (npm install)');
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'public, max-age=31536000, immutable', 'x-content-type-options': 'nosniff' });
        res.end(req.method === 'HEAD' ? undefined : UPLOT_JS);
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

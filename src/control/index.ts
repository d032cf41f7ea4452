/**
 * The control API role: the admin HTTP listener (`[control] listen`). Every request first goes
 * to the observability routes (dashboard, /metrics, /v1/status); the rest is the bearer-token
 * protected /v1 JSON API (./routes.ts). Without a token the role refuses to start: there is
 * no open admin API.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLoopbackHost, parseHostId } from '../addressing/index.js';
import { hostProblem } from './auth.js';
import { ConfigError } from '../errors.js';
import { counter, histogram } from '../observe/metrics.js';
import { observeRoutes } from './observe.js';
import type { NodeContext, RunningRole } from '../role.js';
import { errorReply, HttpError, readJsonBody, sendJson } from './http.js';
import { authenticator } from './tokens.js';
import { buildRoutes } from './routes.js';
import { gatewayInfoSource } from './wireguard.js';

const requestsTotal = counter({
  name: 'sixpn_control_requests_total',
  help: 'Control API requests by route pattern, method and status class',
  labelNames: ['route', 'method', 'status'] as const,
});
const requestSeconds = histogram({
  name: 'sixpn_control_request_duration_seconds',
  help: 'Control API request duration',
  labelNames: ['method'] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
});

const METHODS_WITH_BODY = new Set(['POST', 'PUT', 'PATCH']);
const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

export interface ControlRole extends RunningRole {
  /** The bound address (the port is the real one when the config said 0). */
  address(): AddressInfo;
}

export async function startControlRole(ctx: NodeContext): Promise<ControlRole> {
  const { config } = ctx;
  if (config.control.token === '') {
    throw new ConfigError('control.token: is empty; set it (or SIXPN_TOKEN) so the admin API is never open to anyone, or set control.enabled = false');
  }
  const gatewayHostId = parseHostId(config.wireguard.host_id);
  if (gatewayHostId === null) throw new ConfigError('wireguard.host_id: must be two hex hextets like "a7b:d6b"');
  const log = ctx.log.child({ module: 'control' });
  if (config.control.demo_token) log.warn('control.demo_token: the admin token is the published demo token; use a long random one (SIXPN_TOKEN) for anything real');
  const authenticate = authenticator(config.control.token, ctx.store);
  const observe = observeRoutes(ctx);
  const router = buildRoutes({
    store: ctx.store,
    hostId: ctx.hostId,
    gatewayHostId,
    gatewayInfo: gatewayInfoSource(config.wireguard),
    gatewayRole: () => ctx.roles.get('gateway'),
    view: ctx.view,
    hostStaleAfterMs: config.host.heartbeat_timeout,
    hostRole: () => ctx.roles.get('host'),
    meshRole: () => ctx.roles.get('mesh'),
  });

  let inFlight = 0;
  let idle: (() => void) | null = null;

  async function handleApi(req: IncomingMessage, res: ServerResponse, id: string, started: number): Promise<void> {
    const method = req.method ?? 'GET';
    let route = 'unmatched';
    /** Who acted, in every log line: `admin`, or the org token's id (never its secret). */
    let as = 'anonymous';
    try {
      const url = new URL(req.url ?? '/', 'http://control');
      const principal = await authenticate(req.headers.authorization);
      as = principal.kind === 'admin' ? 'admin' : `token ${principal.id}`;
      const m = router.match(method, url.pathname);
      if (m.kind === 'none') throw new HttpError(404, 'SIXPN_NOT_FOUND', `no route ${method} ${url.pathname}`);
      route = m.route;
      if (m.kind === 'method') {
        throw new HttpError(405, 'SIXPN_METHOD_NOT_ALLOWED', `${method} is not allowed on ${m.route} (allowed: ${m.allowed.join(', ')})`, { allow: m.allowed.join(', ') });
      }
      const body = METHODS_WITH_BODY.has(method) ? await readJsonBody(req) : undefined;
      const out = await m.handler({ method, principal, params: m.params, query: url.searchParams, body, id });
      if (out.stream) out.stream(res);
      else sendJson(res, out.status, out.body, { 'x-request-id': id });
      requestsTotal.inc({ route, method, status: `${Math.floor(out.status / 100)}xx` });
      log.debug({ req_id: id, as, method, route, status: out.status, ms: Date.now() - started }, 'request');
    } catch (err) {
      const e = errorReply(err, id);
      sendJson(res, e.status, { error: { code: e.code, message: e.message } }, { 'x-request-id': id, ...e.headers });
      requestsTotal.inc({ route, method, status: `${Math.floor(e.status / 100)}xx` });
      if (e.internal) log.error({ err, req_id: id, as, method, route, status: e.status }, 'request failed');
      else log.info({ req_id: id, as, method, route, status: e.status, code: e.code, reason: e.message }, 'request refused');
    } finally {
      requestSeconds.observe({ method }, (Date.now() - started) / 1000);
    }
  }

  const loopback = isLoopbackHost(config.control.listen.host);
  const server = createServer((req, res) => {
    const started = Date.now();
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomBytes(8).toString('hex');
    const misdirected = loopback ? hostProblem(req, config.control.allowed_hosts) : null;
    if (misdirected !== null) {
      log.info({ req_id: id, host: req.headers.host, url: req.url }, 'request refused: not addressed to this loopback listener');
      sendJson(res, 403, { error: { code: 'SIXPN_FORBIDDEN', message: misdirected } }, { 'x-request-id': id, connection: 'close' });
      return;
    }
    try {
      if (observe(req, res)) return;
    } catch (err) {
      log.error({ err, req_id: id, url: req.url }, 'observability route failed');
      const e = errorReply(err, id);
      sendJson(res, e.status, { error: { code: e.code, message: e.message } }, { 'x-request-id': id });
      return;
    }
    inFlight++;
    void handleApi(req, res, id, started).finally(() => {
      inFlight--;
      if (inFlight === 0) idle?.();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new ConfigError(`control.listen: cannot listen on ${config.control.listen.host}:${config.control.listen.port}: ${err.code ?? err.message}`, { cause: err })),
    );
    server.listen(config.control.listen.port, config.control.listen.host, () => resolve());
  });
  server.on('error', (err) => log.error({ err }, 'control listener error'));
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  log.info({ address: addr.address, port: addr.port }, 'control API listening');

  let closed = false;
  let streamsEnded = false;
  // The dashboard's event streams would hold connections open through a drain: end them first.
  const endStreams = (): void => {
    if (streamsEnded) return;
    streamsEnded = true;
    observe.close();
  };
  return {
    name: 'control',
    address: () => addr,
    describe: () => [`control: http://${shown}:${addr.port} (API under /v1, bearer token required)`],
    async drain(deadline) {
      endStreams();
      server.close();
      server.closeIdleConnections();
      if (inFlight === 0) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      endStreams();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

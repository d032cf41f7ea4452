/**
 * The .internal DNS role: UDP and TCP listeners on fdaa::3, on every org's `<prefix>::3` (kept in
 * step with the catalog as orgs come and go) and on `[dns] listen`, answering from per-org zones
 * and forwarding other names to `[dns] upstreams`.
 */
import { GLOBAL_DNS_ADDRESS, orgDnsAddress } from '../addressing/index.js';
import { HostLiveness } from '../catalog/liveness.js';
import { ConfigError } from '../errors.js';
import type { NodeContext, RunningRole } from '../role.js';
import { Forwarder } from './forward.js';
import { dnsListenersFailed } from './metrics.js';
import { Responder } from './responder.js';
import { DnsListener, TcpConnections } from './server.js';
import { DnsIndex } from './zone.js';

/** How often 6PN addresses that could not be bound (a port held by another resolver) are tried again. */
const RETRY_MS = 5_000;

export { resolveLocal, localZoneOf, splitTxt } from './resolve.js';
export { DnsIndex, preferHealthy } from './zone.js';
export { Responder } from './responder.js';

export interface DnsRole extends RunningRole {
  /** Address -> bound port of every listener now open. */
  listeners(): Map<string, number>;
}

export async function startDnsRole(ctx: NodeContext): Promise<DnsRole> {
  const cfg = ctx.config.dns;
  const log = ctx.log.child({ module: 'dns' });
  if (!cfg.enabled) throw new ConfigError('dns.enabled is false: the dns role cannot start');
  if (cfg.loopback_org) {
    log.warn(
      { loopback_org: cfg.loopback_org },
      `DEVELOPMENT ONLY: dns.loopback_org treats every query from loopback as a member of org ${cfg.loopback_org}; never use this on a shared host`,
    );
    if (!ctx.view.orgs.has(cfg.loopback_org)) log.warn({ loopback_org: cfg.loopback_org }, 'dns.loopback_org names an org that does not exist (yet): loopback queries are REFUSED until it does');
  }
  const liveness = new HostLiveness(ctx.view, ctx.config.host.heartbeat_timeout);
  const index = new DnsIndex(ctx.view, liveness);
  const forwarder = cfg.upstreams.length ? new Forwarder(cfg.upstreams, cfg.upstream_timeout, log) : null;
  const responder = new Responder({
    index,
    regions: ctx.regions,
    ttl: cfg.ttl,
    nodeRegion: ctx.config.node.region,
    loopbackOrg: cfg.loopback_org,
    forwarder,
    log,
  });
  const conns = new TcpConnections(cfg.max_tcp_connections, cfg.tcp_idle_timeout);
  const listeners = new Map<string, DnsListener>();
  /** 6PN addresses we could not bind; tried again every RETRY_MS (and on the next reconcile). */
  const failed = new Set<string>();
  let closed = false;
  let retry: NodeJS.Timeout | null = null;
  const retryLater = (): void => {
    dnsListenersFailed.set(failed.size);
    if (failed.size === 0 || closed || retry) return;
    retry = setTimeout(() => {
      retry = null;
      void reconcile();
    }, RETRY_MS);
    retry.unref();
  };

  const open = async (address: string, required: boolean): Promise<void> => {
    if (listeners.has(address)) return;
    const l = new DnsListener(address, cfg.port, responder, conns, log);
    listeners.set(address, l);
    try {
      await l.start();
      failed.delete(address);
      log.info({ address, port: l.port }, 'dns listening');
    } catch (err) {
      listeners.delete(address);
      const code = (err as NodeJS.ErrnoException).code;
      const hint =
        code === 'EADDRNOTAVAIL'
          ? ' (route fdaa::/16 to this host, e.g. `ip -6 route add local fdaa::/16 dev lo`, or set dns.listen_6pn = false and dns.loopback_org for development)'
          : '';
      if (required) throw new ConfigError(`dns: cannot listen on [${address}]:${cfg.port}: ${(err as Error).message}${hint}`, { cause: err });
      if (!failed.has(address)) log.warn({ address, code }, `dns: cannot listen on [${address}]:${cfg.port}: ${(err as Error).message}${hint}; tried again every ${RETRY_MS / 1000} s`);
      failed.add(address);
    }
  };

  /** The 6PN addresses we should serve now: fdaa::3 and each org's <prefix>::3. */
  const wanted6pn = (): Set<string> => {
    const s = new Set<string>();
    if (!cfg.listen_6pn) return s;
    s.add(GLOBAL_DNS_ADDRESS);
    for (const o of ctx.view.orgs.values()) s.add(orgDnsAddress(o.network_id));
    return s;
  };
  // The dev option without explicit listeners serves 127.0.0.1, which is what it is for.
  const fixed = new Set(cfg.listen.length === 0 && cfg.loopback_org ? ['127.0.0.1'] : cfg.listen);

  let reconciling: Promise<void> = Promise.resolve();
  const reconcile = (): Promise<void> =>
    (reconciling = reconciling.then(async () => {
      if (closed) return;
      const want = wanted6pn();
      for (const addr of want) if (!listeners.has(addr)) await open(addr, false);
      for (const addr of failed) if (!want.has(addr)) failed.delete(addr);
      retryLater();
      for (const [addr, l] of listeners) {
        if (!want.has(addr) && !fixed.has(addr)) {
          listeners.delete(addr);
          await l.close();
          log.info({ address: addr }, 'dns listener closed (org removed)');
        }
      }
    }).catch((err: unknown) => log.error({ err }, 'dns: reconciling the listeners with the catalog failed')));

  try {
    for (const addr of fixed) await open(addr, true);
    // Without the dev option a node that cannot serve 6PN is misconfigured: fail at start.
    for (const addr of wanted6pn()) await open(addr, !cfg.loopback_org);
  } catch (err) {
    for (const l of listeners.values()) await l.close();
    responder.close();
    index.close();
    forwarder?.close();
    throw err;
  }
  if (listeners.size === 0) {
    responder.close();
    index.close();
    forwarder?.close();
    throw new ConfigError('dns: no address to listen on (set dns.listen or dns.listen_6pn)');
  }

  retryLater();

  const onChange = (c: { kind: string }): void => {
    if (c.kind === 'org') void reconcile();
  };
  const onReset = (): void => void reconcile();
  ctx.view.on('change', onChange);
  ctx.view.on('reset', onReset);

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (retry) clearTimeout(retry);
    ctx.view.off('change', onChange);
    ctx.view.off('reset', onReset);
    await reconciling.catch(() => undefined);
    conns.closeAll();
    for (const l of listeners.values()) await l.close();
    listeners.clear();
    forwarder?.close();
    responder.close();
    index.close();
  };

  return {
    name: 'dns',
    listeners: () => new Map([...listeners].map(([a, l]) => [a, l.port])),
    describe: () => [
      ...[...listeners.values()].map((l) => `dns: [${l.address}]:${l.port} udp+tcp`),
      ...(cfg.upstreams.length ? [`dns: forwarding to ${cfg.upstreams.map((u) => `${u.host}:${u.port}`).join(', ')}`] : []),
      ...(cfg.loopback_org ? [`dns: DEVELOPMENT loopback queries answered as org ${cfg.loopback_org}`] : []),
    ],
    close,
  };
}

/**
 * The proxy's Prometheus metrics. Labels are bounded: app names, machine ids, protocol,
 * status class and selection outcome; never caller addresses or paths.
 */
import { counter, gauge, histogram, type CounterChild, type GaugeChild, type HistogramChild } from '../observe/metrics.js';

export const deniedTotal = counter({
  name: 'sixpn_proxy_denied_total',
  help: 'Callers refused by the org ACL (source outside the Flycast address owner org)',
  labelNames: ['proto'] as const,
});

/** Who knocks on whose door: the dashboard's denial events and the per-org denial alert read it. */
export const deniedByOrg = counter({
  name: 'sixpn_proxy_denied_by_org_total',
  help: 'Callers refused by the org ACL, by the org that holds the Flycast address and the caller\'s org ("" outside every org)',
  labelNames: ['org', 'caller_org'] as const,
});

export const connectionsAccepted = counter({
  name: 'sixpn_proxy_connections_accepted_total',
  help: 'Caller connections accepted on a Flycast address (after the ACL)',
  labelNames: ['app', 'proto'] as const,
});

/** Listeners that failed to open (a port taken by another program): retried until they open. */
export const listenersFailed = gauge({
  name: 'sixpn_proxy_listeners_failed',
  help: 'Flycast listening sockets this proxy wants but could not open (retried every 5 s; each proxy worker counts its own)',
});

export const activeConnections = gauge({
  name: 'sixpn_proxy_active_connections',
  help: 'Connections (TCP) or in-flight requests (HTTP) currently held on a machine',
  labelNames: ['app', 'machine'] as const,
});

export const httpRequests = counter({
  name: 'sixpn_proxy_http_requests_total',
  help: 'HTTP requests answered, by machine (empty when the proxy answered itself) and status class (1xx..5xx)',
  labelNames: ['app', 'machine', 'status_class'] as const,
});

export const upstreamConnectErrors = counter({
  name: 'sixpn_proxy_upstream_connect_errors_total',
  help: 'Failed connects to machines (refused, unreachable, connect timeout)',
  labelNames: ['app'] as const,
});

export const callerErrors = counter({
  name: 'sixpn_proxy_errors_total',
  help: 'Callers the proxy could not serve, by error code (SIXPN_NO_CAPACITY, SIXPN_UPSTREAM_UNREACHABLE, SIXPN_UPSTREAM_TIMEOUT, SIXPN_INTERNAL)',
  labelNames: ['proto', 'code'] as const,
});

export const refusedConnections = counter({
  name: 'sixpn_proxy_refused_connections_total',
  help: 'Caller connections closed at once because their source or org already holds its cap of idle connections',
  labelNames: ['cap'] as const,
});

export const selectionTotal = counter({
  name: 'sixpn_proxy_selection_total',
  help: 'Machine selections by outcome: same_region, spilled (another region), queued, refused',
  labelNames: ['outcome'] as const,
});

export const replaysTotal = counter({
  name: 'sixpn_proxy_replays_total',
  help: 'fly-replay answers from machines, by the app that asked and outcome: replayed, fallback, loop, body_too_large, forbidden, invalid, failed',
  labelNames: ['app', 'outcome'] as const,
});

export const steeredTotal = counter({
  name: 'sixpn_proxy_steered_requests_total',
  help: 'Requests with a caller routing header (fly-prefer-region, fly-force-region, fly-prefer-instance-id, fly-force-instance-id), by app and outcome: steered, refused',
  labelNames: ['app', 'outcome'] as const,
});

export const requestDuration = histogram({
  name: 'sixpn_proxy_request_duration_seconds',
  help: 'HTTP request time through the proxy, from request head to response end',
  labelNames: ['app'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
});

export const connectDuration = histogram({
  name: 'sixpn_proxy_connect_duration_seconds',
  help: 'Time to open a TCP connection to a machine (successful connects)',
  labelNames: ['app'] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
});

const STATUS_CLASS = ['1xx', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export function statusClass(status: number): string {
  return STATUS_CLASS[Math.floor(status / 100)] ?? '5xx';
}

type Inc = CounterChild;
type Obs = HistogramChild;
type Gauge1 = GaugeChild;

/**
 * Labelled children resolved once per app (and machine) instead of on every request: a child
 * is its series, so a request's counting is additions, while a labels() lookup checks the
 * label values and builds a key.
 */
export class AppMetrics {
  readonly acceptedTcp: Inc;
  readonly acceptedHttp: Inc;
  readonly connectErrors: Inc;
  readonly requestSeconds: Obs;
  readonly connectSeconds: Obs;
  private readonly byClass = new Map<string, Inc>();
  private readonly active = new Map<string, Gauge1>();

  constructor(readonly app: string) {
    this.acceptedTcp = connectionsAccepted.labels({ app, proto: 'tcp' });
    this.acceptedHttp = connectionsAccepted.labels({ app, proto: 'http' });
    this.connectErrors = upstreamConnectErrors.labels({ app });
    this.requestSeconds = requestDuration.labels({ app });
    this.connectSeconds = connectDuration.labels({ app });
  }

  /** `machine` is empty for answers the proxy gave itself (403, 502, 503 ...). */
  requests(status: number, machine = ''): Inc {
    const cls = statusClass(status);
    const key = `${machine}/${cls}`;
    let c = this.byClass.get(key);
    if (!c) this.byClass.set(key, (c = httpRequests.labels({ app: this.app, machine, status_class: cls })));
    return c;
  }

  activeOn(machine: string): Gauge1 {
    let g = this.active.get(machine);
    if (!g) this.active.set(machine, (g = activeConnections.labels({ app: this.app, machine })));
    return g;
  }

  /** A machine left the catalog: drop its series so the label set stays bounded. */
  forgetMachine(machine: string): void {
    if (this.active.delete(machine)) activeConnections.remove({ app: this.app, machine });
    for (const key of [...this.byClass.keys()]) {
      if (!key.startsWith(`${machine}/`)) continue;
      this.byClass.delete(key);
      httpRequests.remove({ app: this.app, machine, status_class: key.slice(machine.length + 1) });
    }
  }
}

const apps = new Map<string, AppMetrics>();
export function appMetrics(app: string): AppMetrics {
  let m = apps.get(app);
  if (!m) apps.set(app, (m = new AppMetrics(app)));
  return m;
}

const selection = {
  same_region: selectionTotal.labels({ outcome: 'same_region' }),
  spilled: selectionTotal.labels({ outcome: 'spilled' }),
  queued: selectionTotal.labels({ outcome: 'queued' }),
  refused: selectionTotal.labels({ outcome: 'refused' }),
};
export function selected(outcome: keyof typeof selection): void {
  selection[outcome].inc();
}

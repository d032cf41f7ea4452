/**
 * The metric names the dashboard's sampler reads from the process registry, in one place.
 *
 * The proxy-hardening work renames two proxy metrics; this file (and the recording rules in
 * config/prometheus/sixpn.rules.yml, the only rules that name raw metrics) use the new names.
 * Until that lands the proxy registers the old ones, listed in LEGACY_NAMES: the sampler falls
 * back to them. When the rename is merged, delete LEGACY_NAMES' entries.
 */
export const METRIC = {
  httpRequests: 'sixpn_proxy_http_requests_total',
  connectionsAccepted: 'sixpn_proxy_connections_accepted_total',
  activeConnections: 'sixpn_proxy_active_connections',
  requestDuration: 'sixpn_proxy_request_duration_seconds',
  connectErrors: 'sixpn_proxy_upstream_connect_errors_total',
  denied: 'sixpn_proxy_denied_total',
  deniedByOrg: 'sixpn_proxy_denied_by_org_total',
  redisConnected: 'sixpn_catalog_redis_connected',
} as const;

export type MetricName = (typeof METRIC)[keyof typeof METRIC];

/** New name -> the name registered before the proxy rename (drop at merge). */
export const LEGACY_NAMES: Readonly<Partial<Record<MetricName, string>>> = {
  sixpn_proxy_denied_total: 'sixpn_denied_total',
  sixpn_proxy_upstream_connect_errors_total: 'sixpn_upstream_connect_errors_total',
};

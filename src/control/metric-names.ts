/**
 * The metric names the dashboard's sampler reads from the process registry, in one place.
 * The recording rules in config/prometheus/sixpn.rules.yml are the only rules that name raw
 * metrics; a test holds them and this table against the names the code registers.
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

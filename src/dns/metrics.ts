/**
 * DNS metrics. Label sets are bounded: query types outside a fixed list count as "other", and
 * rcodes come from the few the server sends.
 */
import { counter, gauge, histogram, type CounterChild } from '../observe/metrics.js';

const KNOWN_QTYPES = new Set(['A', 'AAAA', 'TXT', 'SOA', 'SRV', 'PTR', 'NS', 'MX', 'CNAME', 'ANY', 'HTTPS', 'SVCB', 'CAA']);

export const dnsQueries = counter({
  name: 'sixpn_dns_queries_total',
  help: 'DNS queries answered, by query type and response code',
  labelNames: ['qtype', 'rcode'] as const,
});

export const dnsForwardErrors = counter({
  name: 'sixpn_dns_forward_errors_total',
  help: 'Upstream attempts that failed (timeout, connection error, bad answer) while forwarding',
  labelNames: ['reason'] as const,
});

export const dnsListenersFailed = gauge({
  name: 'sixpn_dns_listeners_failed',
  help: '6PN resolver addresses (fdaa::3, <org prefix>::3) this node wants but could not bind (tried again every 5 s)',
});

export const dnsDuration = histogram({
  name: 'sixpn_dns_query_duration_seconds',
  help: 'Time from receiving a query to sending its answer, by where the answer came from',
  labelNames: ['source'] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5],
});

/** Query type label: one of a fixed list, else "other" (also for unparseable queries: "none"). */
export function qtypeLabel(type: string | undefined): string {
  if (type === undefined) return 'none';
  return KNOWN_QTYPES.has(type) ? type : 'other';
}

const queryCounters = new Map<string, Map<string, CounterChild>>();

/**
 * The series of answers of this qtype label and rcode name: a cached answer holds its own, so
 * the fast path only adds; the slow path finds it here without building a label key per query
 * (both labels come from small fixed sets, and dnsQueries is never reset).
 */
export function queryCounter(qtype: string, rcode: string): CounterChild {
  let byRcode = queryCounters.get(qtype);
  if (byRcode === undefined) queryCounters.set(qtype, (byRcode = new Map()));
  let child = byRcode.get(rcode);
  if (child === undefined) byRcode.set(rcode, (child = dnsQueries.labels(qtype, rcode)));
  return child;
}

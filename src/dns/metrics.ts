/**
 * DNS metrics. Label sets are bounded: query types outside a fixed list count as "other", and
 * rcodes come from the few the server sends.
 */
import type { Counter } from 'prom-client';
import { counter, histogram } from '../observe/metrics.js';

const KNOWN_QTYPES = new Set(['A', 'AAAA', 'TXT', 'SOA', 'SRV', 'PTR', 'NS', 'MX', 'CNAME', 'ANY', 'HTTPS', 'SVCB', 'CAA']);

/**
 * Answers of the fast path are counted in plain numbers (one tally per cached answer's qtype and
 * rcode) and added to the Prometheus metrics when they are read: the hot path does `n++`.
 */
const tallies = new Map<string, { qtype: string; rcode: string; n: number }>();

export const dnsQueries = counter({
  name: 'sixpn_dns_queries_total',
  help: 'DNS queries answered, by query type and response code',
  labelNames: ['qtype', 'rcode'] as const,
  collect() {
    for (const t of tallies.values()) {
      if (t.n === 0) continue;
      this.labels(t.qtype, t.rcode).inc(t.n);
      t.n = 0;
    }
  },
});

/** The tally the fast path bumps for answers of this qtype label and rcode name. */
export function queryTally(qtype: string, rcode: string): { n: number } {
  const key = `${qtype} ${rcode}`;
  let t = tallies.get(key);
  if (!t) tallies.set(key, (t = { qtype, rcode, n: 0 }));
  return t;
}

export const dnsForwardErrors = counter({
  name: 'sixpn_dns_forward_errors_total',
  help: 'Upstream attempts that failed (timeout, connection error, bad answer) while forwarding',
  labelNames: ['reason'] as const,
});

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5];

/** Durations of fast-path answers since the last read: count, sum and per-bucket counts. */
const fast = { count: 0, sum: 0, buckets: new Float64Array(BUCKETS.length + 1) };

export const dnsDuration = histogram({
  name: 'sixpn_dns_query_duration_seconds',
  help: 'Time from receiving a query to sending its answer, by where the answer came from',
  labelNames: ['source'] as const,
  buckets: BUCKETS,
  collect() {
    if (fast.count === 0) return;
    mergeLocal(this, fast);
    fast.count = 0;
    fast.sum = 0;
    fast.buckets.fill(0);
  },
});

/** One fast-path answer that took `seconds` (source "local"). */
export function observeFast(seconds: number): void {
  fast.count++;
  fast.sum += seconds;
  let i = 0;
  while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
  fast.buckets[i]!++;
}

interface HistogramValues {
  labels: Record<string, string>;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

/**
 * Adds pending observations to the "local" series. prom-client has no bulk observe; its series
 * live in `hashMap` (prom-client 15). Should that ever change, each pending observation is
 * replayed at its bucket's bound instead (right counts, approximate sum).
 */
function mergeLocal(h: typeof dnsDuration, p: typeof fast): void {
  const find = (): HistogramValues | undefined =>
    Object.values((h as unknown as { hashMap?: Record<string, HistogramValues> }).hashMap ?? {}).find((v) => v?.labels?.source === 'local');
  let v = find();
  if (!v) {
    h.zero({ source: 'local' });
    v = find();
  }
  if (v && typeof v.sum === 'number' && v.bucketValues && BUCKETS.every((b) => typeof v.bucketValues[b] === 'number')) {
    v.count += p.count;
    v.sum += p.sum;
    for (let i = 0; i < BUCKETS.length; i++) v.bucketValues[BUCKETS[i]!]! += p.buckets[i]!;
    return;
  }
  for (let i = 0; i <= BUCKETS.length; i++) for (let k = 0; k < p.buckets[i]!; k++) h.labels('local').observe(BUCKETS[i] ?? 10);
}

/** Query type label: one of a fixed list, else "other" (also for unparseable queries: "none"). */
export function qtypeLabel(type: string | undefined): string {
  if (type === undefined) return 'none';
  return KNOWN_QTYPES.has(type) ? type : 'other';
}

type QueryCounter = ReturnType<Counter<'qtype' | 'rcode'>['labels']>;
const children = new Map<string, QueryCounter>();

/** Counts one answered query; children are cached so the hot path does not hash labels. */
export function countQuery(qtype: string, rcode: string): void {
  const key = `${qtype} ${rcode}`;
  let c = children.get(key);
  if (!c) children.set(key, (c = dnsQueries.labels(qtype, rcode)));
  c.inc();
}

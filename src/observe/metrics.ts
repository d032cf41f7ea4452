/**
 * The process's Prometheus registry. Each module defines its own metrics next to its code
 * (`sixpn_<module>_<name>_<unit>`), registered here so /metrics shows them all.
 */
import client from 'prom-client';

export const registry = new client.Registry();
let defaultsOn = false;

/** Process metrics (CPU, memory, event loop lag); called once by the node that serves /metrics. */
export function enableDefaultMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  client.collectDefaultMetrics({ register: registry });
}

/** Returns the metric registered under `name`, creating it once (modules may load twice in tests). */
export function counter<T extends string>(cfg: client.CounterConfiguration<T>): client.Counter<T> {
  return (registry.getSingleMetric(cfg.name) as client.Counter<T> | undefined) ?? new client.Counter({ ...cfg, registers: [registry] });
}

export function gauge<T extends string>(cfg: client.GaugeConfiguration<T>): client.Gauge<T> {
  return (registry.getSingleMetric(cfg.name) as client.Gauge<T> | undefined) ?? new client.Gauge({ ...cfg, registers: [registry] });
}

export function histogram<T extends string>(cfg: client.HistogramConfiguration<T>): client.Histogram<T> {
  return (registry.getSingleMetric(cfg.name) as client.Histogram<T> | undefined) ?? new client.Histogram({ ...cfg, registers: [registry] });
}

/**
 * A labelled child for the hot path (a request, a connection): `inc`/`dec` add to a plain number,
 * and the pending sum is folded into the prom-client metric when the metric is read (its
 * `collect`, run by /metrics, the dashboard sampler and `get()`), because a prom-client child
 * hashes and validates its labels on every call, which costs more than the request's own work.
 */
export class HotChild {
  n = 0;
  constructor(readonly labels: Record<string, string>) {}
  inc(v = 1): void {
    this.n += v;
  }
  dec(v = 1): void {
    this.n -= v;
  }
}

const HOT = Symbol('sixpn.hot-children');
type Foldable = { inc(labels: Record<string, string>, v: number): void; [HOT]?: Set<HotChild> };

/** Folds the pending sums of a metric's hot children into it; the `collect` of metrics that have them. */
function foldHot(this: unknown): void {
  const m = this as Foldable;
  const set = m[HOT];
  if (set === undefined) return;
  for (const c of set) {
    if (c.n === 0) continue;
    const n = c.n;
    c.n = 0;
    m.inc(c.labels, n);
  }
}

/** A counter whose children from `hotChild` cost an addition per increment. */
export function hotCounter<T extends string>(cfg: client.CounterConfiguration<T>): client.Counter<T> {
  return counter({ ...cfg, collect: foldHot });
}

/** A gauge whose children from `hotChild` cost an addition per change. */
export function hotGauge<T extends string>(cfg: client.GaugeConfiguration<T>): client.Gauge<T> {
  return gauge({ ...cfg, collect: foldHot });
}

/** A hot child of a metric made by hotCounter / hotGauge (kept on the metric, so every copy of a module shares it). */
export function hotChild(metric: client.Counter<string> | client.Gauge<string>, labels: Record<string, string>): HotChild {
  const m = metric as unknown as Foldable;
  const set = (m[HOT] ??= new Set());
  const c = new HotChild(labels);
  set.add(c);
  m.inc(labels, 0); // the series exists from its first use, as with a prom-client child
  return c;
}

/** Stops folding a hot child (its series is being removed); what it still held is dropped. */
export function dropHotChild(metric: client.Counter<string> | client.Gauge<string>, c: HotChild): void {
  (metric as unknown as Foldable)[HOT]?.delete(c);
}

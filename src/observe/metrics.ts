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

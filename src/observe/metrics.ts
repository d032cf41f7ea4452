/**
 * The process's Prometheus registry. Each module defines its own metrics next to its code
 * (`sixpn_<module>_<name>_<unit>`), registered here so /metrics shows them all. The registry
 * itself is ./metrics/registry.ts (why sixpn has its own: ./README.md, "Metrics").
 */
import { registerProcessMetrics } from './metrics/process.js';
import { Registry, type Counter, type CounterConfig, type Gauge, type GaugeConfig, type Histogram, type HistogramConfig } from './metrics/registry.js';

export type { Counter, CounterChild, Gauge, GaugeChild, Histogram, HistogramChild, LabelValues, MetricData, Sample } from './metrics/registry.js';
export { Registry, REMOTE_TIMEOUT_MS, type RemoteSource } from './metrics/registry.js';
export { exposition } from './metrics/exposition.js';
export { mergeSnapshots, type FamilySnapshot, type RegistrySnapshot } from './metrics/snapshot.js';

export const registry = new Registry();
let defaultsOn = false;

/** Process metrics (CPU, memory, event loop lag); called once by the node that serves /metrics. */
export function enableDefaultMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  registerProcessMetrics(registry);
}

/** Returns the metric registered under `name`, creating it once (modules may load twice in tests). */
export function counter<T extends string = never>(cfg: CounterConfig<T>): Counter<T> {
  return registry.counter(cfg);
}

export function gauge<T extends string = never>(cfg: GaugeConfig<T>): Gauge<T> {
  return registry.gauge(cfg);
}

export function histogram<T extends string = never>(cfg: HistogramConfig<T>): Histogram<T> {
  return registry.histogram(cfg);
}

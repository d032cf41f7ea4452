/**
 * sixpn's Prometheus registry: counters, gauges and histograms whose labelled children are the
 * series themselves, so that a count on the hot path (a proxied request bumps about five) is an
 * addition to a number field, with no label hashing and no allocation.
 *
 *   const requests = registry.counter({ name: 'sixpn_x_requests_total', help: '...', labelNames: ['app'] as const });
 *   const web = requests.labels('web'); // once, where the app becomes known
 *   web.inc();                          // per request
 *
 * A series exists from the first labels() (or inc/set/observe with a label object) until
 * remove() or reset(); a child held across either is detached (it counts into nothing that is
 * read), so ask labels() again after them. Reading is where the work goes: collect() hooks, the
 * exposition (./exposition.ts) and the plain-data snapshot that other processes' registries
 * can be merged with (./snapshot.ts).
 *
 * A registry may also sum in the series of other processes (remote sources: a proxy worker's,
 * seen from the primary) on every read that is not this process's own snapshot().
 */
import { exposition } from './exposition.js';
import { encodeNumber, keyOf, mergeSnapshots, numberOf, type FamilySnapshot, type GaugeMerge, type NonFinite, type RegistrySnapshot } from './snapshot.js';

export type MetricType = 'counter' | 'gauge' | 'histogram';
export type LabelValue = string | number;
/** Every label of the metric, by name: an unknown one is an error (at run time, one left out is the empty value). */
export type LabelValues<T extends string> = Readonly<Record<T, LabelValue>>;

/** One sample as get() reports it: the shape prom-client's get() had, which the dashboard sampler reads. */
export interface Sample {
  readonly labels: Readonly<Record<string, LabelValue>>;
  readonly value: number;
  /** Histograms: `<name>_bucket` (with an `le` label), `<name>_sum`, `<name>_count`. */
  readonly metricName?: string;
}

export interface MetricData {
  name: string;
  help: string;
  type: MetricType;
  values: Sample[];
}

interface BaseConfig<T extends string, M> {
  name: string;
  help: string;
  labelNames?: readonly T[];
  /** Runs before each read (scrape, get(), snapshot) with `this` = the metric: set computed values here. */
  collect?: (this: M) => void | Promise<void>;
}

export type CounterConfig<T extends string> = BaseConfig<T, Counter<T>>;
export interface GaugeConfig<T extends string> extends BaseConfig<T, Gauge<T>> {
  /** How snapshots of several processes add up (./snapshot.ts): `sum` unless said otherwise. */
  merge?: GaugeMerge;
}
export interface HistogramConfig<T extends string> extends BaseConfig<T, Histogram<T>> {
  /** Upper bounds, ascending; `+Inf` is implicit. */
  buckets?: readonly number[];
}

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
/** prom-client's defaults, for histograms defined without buckets. */
const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A programming error in a metric's definition or use: thrown where the call is. */
function fail(metric: string, message: string): Error {
  return new Error(`metric ${metric}: ${message}`);
}

export interface CounterChild {
  inc(value?: number): void;
}
export interface GaugeChild {
  inc(value?: number): void;
  dec(value?: number): void;
  set(value: number): void;
}
export interface HistogramChild {
  observe(value: number): void;
}

class CounterSeries implements CounterChild, Sample {
  value = 0;
  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly metric: string,
  ) {}

  inc(value?: number): void {
    if (value === undefined) this.value++;
    else if (value >= 0 && value < Infinity) this.value += value;
    else throw fail(this.metric, `a counter only goes up by a finite amount, got ${value}`);
  }
}

class GaugeSeries implements GaugeChild, Sample {
  value = 0;
  constructor(readonly labels: Readonly<Record<string, string>>) {}

  inc(value = 1): void {
    this.value += value;
  }

  dec(value = 1): void {
    this.value -= value;
  }

  set(value: number): void {
    this.value = value;
  }
}

class HistogramSeries implements HistogramChild {
  /** Observations per bucket (not cumulative), the last one above every bound; their total is the count. */
  readonly counts: Float64Array;
  sum = 0;
  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: Float64Array,
    private readonly metric: string,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    // NaN fails both comparisons.
    if (!(value > -Infinity && value < Infinity)) throw fail(this.metric, `cannot observe ${value}`);
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
  }
}

/** A level of a metric's label tree: label value -> next level, or the series at the last label. */
type Level<S> = Map<string, Level<S> | S>;

/**
 * What every metric keeps: its series in creation order (the order they are read in) and a
 * tree of Maps with one level per label, so that finding a label set's series hashes its
 * values (strings V8 has usually hashed already) and builds no key.
 */
abstract class Metric<T extends string, S extends { readonly labels: Readonly<Record<string, string>> }> {
  abstract readonly type: MetricType;
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly T[];
  protected readonly series = new Set<S>();
  private readonly tree: Level<S> = new Map();
  /** The one series of a metric without labels. */
  private single: S | undefined;
  private readonly collector: ((this: never) => void | Promise<void>) | undefined;

  constructor(cfg: BaseConfig<T, never>) {
    if (typeof cfg.name !== 'string' || !METRIC_NAME.test(cfg.name)) throw new Error(`metric name ${JSON.stringify(cfg.name)} is not valid (want [a-zA-Z_:][a-zA-Z0-9_:]*)`);
    this.name = cfg.name;
    if (typeof cfg.help !== 'string' || cfg.help === '') throw fail(cfg.name, 'help text is missing');
    this.help = cfg.help;
    const names = cfg.labelNames ?? [];
    for (const [i, l] of names.entries()) {
      if (typeof l !== 'string' || !LABEL_NAME.test(l)) throw fail(cfg.name, `label name ${JSON.stringify(l)} is not valid (want [a-zA-Z_][a-zA-Z0-9_]*)`);
      if (l.startsWith('__')) throw fail(cfg.name, `label name "${l}" is reserved (names starting with __ are Prometheus' own)`);
      if (names.indexOf(l) !== i) throw fail(cfg.name, `label "${l}" is listed twice`);
    }
    this.labelNames = Object.freeze([...names]);
    if (cfg.collect !== undefined && typeof cfg.collect !== 'function') throw fail(cfg.name, 'collect must be a function');
    this.collector = cfg.collect;
  }

  protected abstract create(labels: Readonly<Record<string, string>>): S;

  /**
   * The series of one label set, created on first use: `labels({ app: 'web' })` or
   * `labels('web')` in labelNames order. A label left out (or undefined) is the empty value:
   * to Prometheus the two are the same series.
   */
  labels(values: LabelValues<T>): S;
  labels(...values: LabelValue[]): S;
  labels(...args: unknown[]): S {
    const values = this.valuesOf(args);
    if (values.length === 0) return this.unlabelled();
    let level = this.tree;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      let next = level.get(values[i]!) as Level<S> | undefined;
      if (!next) level.set(values[i]!, (next = new Map()));
      level = next;
    }
    const known = level.get(values[last]!) as S | undefined;
    if (known) return known;
    const labels: Record<string, string> = {};
    for (let i = 0; i < values.length; i++) labels[this.labelNames[i]!] = values[i]!;
    const s = this.create(Object.freeze(labels));
    level.set(values[last]!, s);
    this.series.add(s);
    return s;
  }

  /** Drops a label set's series (a machine left): the label set stays bounded. */
  remove(values: LabelValues<T>): void;
  remove(...values: LabelValue[]): void;
  remove(...args: unknown[]): void {
    const values = this.valuesOf(args);
    if (values.length === 0) {
      if (this.single) this.series.delete(this.single);
      this.single = undefined;
      return;
    }
    const path: Level<S>[] = [this.tree];
    for (let i = 0; i < values.length - 1; i++) {
      const next = path[i]!.get(values[i]!) as Level<S> | undefined;
      if (!next) return;
      path.push(next);
    }
    const s = path[path.length - 1]!.get(values[values.length - 1]!) as S | undefined;
    if (!s) return;
    this.series.delete(s);
    // Prune the levels left empty, deepest first.
    for (let i = path.length - 1; i >= 0; i--) {
      path[i]!.delete(values[i]!);
      if (i === 0 || path[i]!.size > 0) break;
    }
  }

  /** Drops every series (a metric without labels starts again from zero). */
  reset(): void {
    this.series.clear();
    this.tree.clear();
    this.single = undefined;
  }

  /** Runs the metric's collect hook; a promise only when the hook is asynchronous. */
  collect(): void | Promise<void> {
    return this.collector?.call(this as never);
  }

  /** The samples after collecting, shaped as prom-client's get() (counters and gauges hand out their series objects). */
  async get(): Promise<MetricData> {
    await this.collect();
    return { name: this.name, help: this.help, type: this.type, values: this.samples() };
  }

  protected abstract samples(): Sample[];

  /** Plain data of every series; call collect() first. */
  abstract snapshot(): FamilySnapshot;

  /** What a snapshot says about the metric besides its type and series. */
  protected head(): { name: string; help: string; labelNames: string[] } {
    return { name: this.name, help: this.help, labelNames: [...this.labelNames] };
  }

  /** The series of a metric-level call: `inc(labels, n)` names it, `inc(n)` means the only one. */
  protected seriesOf(a: unknown): S {
    return typeof a === 'object' && a !== null ? this.labels(a as LabelValues<T>) : this.unlabelled();
  }

  /** The series to read; a metric without labels always has its one (0 until counted). */
  protected current(): IterableIterator<S> {
    if (this.labelNames.length === 0) this.unlabelled();
    return this.series.values();
  }

  /** Series of a metric without labels, made on first use and again after reset(). */
  protected unlabelled(): S {
    if (this.single) return this.single;
    if (this.labelNames.length > 0) throw fail(this.name, `has labels [${this.labelNames.join(', ')}]: pass them`);
    this.single = this.create(Object.freeze({}));
    this.series.add(this.single);
    return this.single;
  }

  /** One call's label values in labelNames order, checked: positional, or an object whose every key is a label. */
  private valuesOf(args: unknown[]): string[] {
    const names = this.labelNames;
    const obj = args.length === 1 && typeof args[0] === 'object' && args[0] !== null ? (args[0] as Record<string, unknown>) : null;
    if (obj) {
      for (const k in obj) if (!names.includes(k as T)) throw fail(this.name, `label "${k}" is not one of its labels [${names.join(', ')}]`);
    } else if (args.length !== names.length) {
      throw fail(this.name, `takes ${names.length} label values [${names.join(', ')}], got ${args.length}`);
    }
    const out = new Array<string>(names.length);
    for (let i = 0; i < names.length; i++) out[i] = this.valueOf(names[i]!, obj ? obj[names[i]!] : args[i]);
    return out;
  }

  private valueOf(label: string, v: unknown): string {
    if (typeof v === 'string') return v;
    if (typeof v === 'number') return String(v);
    if (v === undefined) return '';
    throw fail(this.name, `label "${label}" must be a string or a number, got ${v === null ? 'null' : typeof v}`);
  }
}

/** Counters and gauges: one number per series, handed out as is by get(). */
abstract class Scalar<T extends string, S extends CounterSeries | GaugeSeries> extends Metric<T, S> {
  protected samples(): Sample[] {
    return [...this.current()];
  }

  protected scalarSeries(): { labels: Readonly<Record<string, string>>; value: number | NonFinite }[] {
    return [...this.current()].map((s) => ({ labels: s.labels, value: encodeNumber(s.value) }));
  }
}

export class Counter<T extends string = never> extends Scalar<T, CounterSeries> {
  readonly type = 'counter';

  constructor(cfg: CounterConfig<T>) {
    super(cfg as BaseConfig<T, never>);
  }

  protected create(labels: Readonly<Record<string, string>>): CounterSeries {
    return new CounterSeries(labels, this.name);
  }

  inc(value?: number): void;
  inc(labels: LabelValues<T>, value?: number): void;
  inc(a?: number | LabelValues<T>, b?: number): void {
    this.seriesOf(a).inc(typeof a === 'object' ? b : a);
  }

  snapshot(): FamilySnapshot {
    return { ...this.head(), type: 'counter', series: this.scalarSeries() };
  }
}

export class Gauge<T extends string = never> extends Scalar<T, GaugeSeries> {
  readonly type = 'gauge';
  readonly merge: GaugeMerge;

  constructor(cfg: GaugeConfig<T>) {
    super(cfg as BaseConfig<T, never>);
    if (cfg.merge !== undefined && !['sum', 'min', 'max'].includes(cfg.merge)) throw fail(cfg.name, `merge must be sum, min or max, got ${JSON.stringify(cfg.merge)}`);
    this.merge = cfg.merge ?? 'sum';
  }

  protected create(labels: Readonly<Record<string, string>>): GaugeSeries {
    return new GaugeSeries(labels);
  }

  set(value: number): void;
  set(labels: LabelValues<T>, value: number): void;
  set(a: number | LabelValues<T>, b?: number): void {
    this.seriesOf(a).set(typeof a === 'object' ? b! : a);
  }

  inc(value?: number): void;
  inc(labels: LabelValues<T>, value?: number): void;
  inc(a?: number | LabelValues<T>, b?: number): void {
    this.seriesOf(a).inc(typeof a === 'object' ? b : a);
  }

  dec(value?: number): void;
  dec(labels: LabelValues<T>, value?: number): void;
  dec(a?: number | LabelValues<T>, b?: number): void {
    this.seriesOf(a).dec(typeof a === 'object' ? b : a);
  }

  snapshot(): FamilySnapshot {
    return { ...this.head(), type: 'gauge', ...(this.merge === 'sum' ? {} : { merge: this.merge }), series: this.scalarSeries() };
  }
}

export class Histogram<T extends string = never> extends Metric<T, HistogramSeries> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  private readonly bounds: Float64Array;

  constructor(cfg: HistogramConfig<T>) {
    super(cfg as BaseConfig<T, never>);
    if (this.labelNames.includes('le' as T)) throw fail(cfg.name, 'label "le" is reserved for histogram buckets');
    const buckets = cfg.buckets ?? DEFAULT_BUCKETS;
    if (buckets.length === 0) throw fail(cfg.name, 'needs at least one bucket');
    for (const [i, b] of buckets.entries()) {
      if (typeof b !== 'number' || !Number.isFinite(b)) throw fail(cfg.name, `bucket ${b} is not a finite number (+Inf is implicit)`);
      if (i > 0 && !(b > buckets[i - 1]!)) throw fail(cfg.name, `buckets must ascend strictly: ${buckets[i - 1]} then ${b}`);
    }
    this.buckets = Object.freeze([...buckets]);
    this.bounds = Float64Array.from(buckets);
  }

  protected create(labels: Readonly<Record<string, string>>): HistogramSeries {
    return new HistogramSeries(labels, this.bounds, this.name);
  }

  observe(value: number): void;
  observe(labels: LabelValues<T>, value: number): void;
  observe(a: number | LabelValues<T>, b?: number): void {
    this.seriesOf(a).observe(typeof a === 'object' ? b! : a);
  }

  protected samples(): Sample[] {
    return histogramSamples(this.name, this.buckets, this.current());
  }

  snapshot(): FamilySnapshot {
    const series = [...this.current()].map((s) => ({ labels: s.labels, counts: Array.from(s.counts), sum: s.sum }));
    return { ...this.head(), type: 'histogram', buckets: [...this.buckets], series };
  }
}

/** A histogram's series as get() gives them: per series, cumulative `_bucket` samples with `le` first (a number, then "+Inf"), `_sum`, `_count`. */
function histogramSamples(name: string, buckets: readonly number[], series: Iterable<{ readonly labels: Readonly<Record<string, string>>; readonly counts: ArrayLike<number>; readonly sum: number }>): Sample[] {
  const out: Sample[] = [];
  const bucket = `${name}_bucket`;
  for (const s of series) {
    let acc = 0;
    for (let i = 0; i < buckets.length; i++) {
      acc += s.counts[i]!;
      out.push({ labels: { le: buckets[i]!, ...s.labels }, value: acc, metricName: bucket });
    }
    acc += s.counts[buckets.length]!;
    out.push({ labels: { le: '+Inf', ...s.labels }, value: acc, metricName: bucket });
    out.push({ labels: s.labels, value: s.sum, metricName: `${name}_sum` });
    out.push({ labels: s.labels, value: acc, metricName: `${name}_count` });
  }
  return out;
}

export type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

/**
 * The series of other processes, summed into every read of a registry but its own snapshot()
 * (src/proxy/worker-reports.ts: the primary's view of a proxy worker).
 */
export interface RemoteSource {
  /**
   * Their snapshots now, of the metrics named (all without `names`; extra ones are ignored).
   * `signal` aborts when the read stops waiting for it.
   */
  read(names: readonly string[] | undefined, signal: AbortSignal): Promise<RegistrySnapshot[]>;
  /**
   * What counts for the source in a read it failed or was late for (its last answer, say).
   * Without it the source is left out of that read.
   */
  stale?(names: readonly string[] | undefined): RegistrySnapshot[];
}

/** How long a read waits for a remote source unless it was added with another time. */
export const REMOTE_TIMEOUT_MS = 500;

/** A source's snapshots, or what it has instead (its stale ones, else none) once it failed or `ms` passed. */
async function readRemote(source: RemoteSource, ms: number, names: readonly string[] | undefined): Promise<RegistrySnapshot[]> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => {
      resolve(null);
      abort.abort();
    }, ms);
  });
  try {
    const got = await Promise.race([source.read(names, abort.signal), late]);
    // A source may settle as it is aborted: that is still a late one.
    if (got && !abort.signal.aborted) return got;
  } catch {
    // A failed source counts like a late one: a read of this process's metrics never fails for it.
  } finally {
    clearTimeout(timer);
  }
  return source.stale?.(names) ?? [];
}

/** A counter's or gauge's sample handed out by Registry.samples() for series merged from several processes. */
interface MergedSample {
  readonly labels: Readonly<Record<string, string>>;
  value: number;
}

/** The metrics of one process, in the order they were defined (the order /metrics lists them). */
export class Registry {
  readonly contentType = CONTENT_TYPE;
  private readonly metricsByName = new Map<string, AnyMetric>();
  /** Remote sources and how long a read waits for each. */
  private readonly remotes = new Map<RemoteSource, number>();
  /** Per metric, the objects samples() hands out for merged series, by label key. */
  private readonly handedOut = new Map<string, Map<string, MergedSample>>();

  /** The counter named `cfg.name`, defined once: a module loaded twice gets the same one. */
  counter<T extends string = never>(cfg: CounterConfig<T>): Counter<T> {
    return this.define(cfg, 'counter', () => new Counter(cfg)) as Counter<T>;
  }

  gauge<T extends string = never>(cfg: GaugeConfig<T>): Gauge<T> {
    return this.define(cfg, 'gauge', () => new Gauge(cfg)) as Gauge<T>;
  }

  histogram<T extends string = never>(cfg: HistogramConfig<T>): Histogram<T> {
    const h = this.define(cfg, 'histogram', () => new Histogram(cfg)) as Histogram<T>;
    if (cfg.buckets && cfg.buckets.join() !== h.buckets.join()) throw fail(cfg.name, `is already defined with buckets [${h.buckets.join(', ')}]`);
    return h;
  }

  /** The metric of this process: its get() has this process's series only (Registry.samples() adds the remote ones). */
  getSingleMetric(name: string): AnyMetric | undefined {
    return this.metricsByName.get(name);
  }

  /**
   * Adds a source whose series every read sums in (metrics(), samples(), merged()); a read waits
   * for it at most `timeoutMs`. Returns the function that removes it.
   */
  addRemote(source: RemoteSource, timeoutMs = REMOTE_TIMEOUT_MS): () => void {
    this.remotes.set(source, timeoutMs);
    return () => void this.remotes.delete(source);
  }

  /** Every series, this process's and its remote sources' summed, in the text format (0.0.4). */
  async metrics(): Promise<string> {
    return exposition(await this.merged());
  }

  /**
   * The samples of the named metrics, this process's and its remote sources' summed, in get()'s
   * shape; a name no process has is left out. Counters and gauges come as one object per series
   * that is the same on every read (the dashboard sampler keeps its readings by object): the
   * series itself without remote sources, else an object this registry keeps up to date.
   */
  async samples(names: readonly string[]): Promise<Map<string, Sample[]>> {
    const out = new Map<string, Sample[]>();
    if (this.remotes.size === 0) {
      for (const n of names) {
        const m = this.metricsByName.get(n);
        if (m) out.set(n, (await m.get()).values);
      }
      return out;
    }
    for (const f of await this.merged(names)) if (names.includes(f.name)) out.set(f.name, this.samplesOf(f));
    return out;
  }

  /** This process's snapshot (of the metrics named) merged with every remote source's: one round trip to each, in parallel. */
  async merged(names?: readonly string[]): Promise<RegistrySnapshot> {
    const mine = this.snapshot(names && ((n) => names.includes(n)));
    if (this.remotes.size === 0) return mine;
    const theirs = Promise.all([...this.remotes].map(([source, ms]) => readRemote(source, ms, names)));
    const [own, remote] = await Promise.all([mine, theirs]);
    return mergeSnapshots([own, ...remote.flat()]);
  }

  /** A merged family's samples; a counter's or gauge's series keep their object from read to read. */
  private samplesOf(f: FamilySnapshot): Sample[] {
    if (f.type === 'histogram') return histogramSamples(f.name, f.buckets, f.series);
    let kept = this.handedOut.get(f.name);
    if (!kept) this.handedOut.set(f.name, (kept = new Map()));
    const seen = new Set<string>();
    const out: Sample[] = [];
    for (const s of f.series) {
      const key = keyOf(f.labelNames, s.labels);
      let x = kept.get(key);
      if (!x) kept.set(key, (x = { labels: s.labels, value: 0 }));
      x.value = numberOf(s.value);
      seen.add(key);
      out.push(x);
    }
    // Series no process has any more (a machine left) let go of their object.
    for (const key of kept.keys()) if (!seen.has(key)) kept.delete(key);
    return out;
  }

  /**
   * This process's series (JSON-serialisable), of the metrics `want` accepts (all without it),
   * after running their collect hooks: what a proxy worker sends to the primary.
   */
  async snapshot(want?: (name: string) => boolean): Promise<RegistrySnapshot> {
    const metrics = want ? [...this.metricsByName.values()].filter((m) => want(m.name)) : [...this.metricsByName.values()];
    const pending: Promise<void>[] = [];
    for (const m of metrics) {
      const p = m.collect();
      if (p) pending.push(p);
    }
    if (pending.length > 0) await Promise.all(pending);
    return metrics.map((m) => m.snapshot());
  }

  /** Drops every series of every metric. */
  resetMetrics(): void {
    for (const m of this.metricsByName.values()) m.reset();
  }

  private define(cfg: BaseConfig<string, never>, type: MetricType, make: () => AnyMetric): AnyMetric {
    const known = this.metricsByName.get(cfg.name);
    if (!known) {
      const m = make();
      this.metricsByName.set(m.name, m);
      return m;
    }
    if (known.type !== type) throw fail(cfg.name, `is already defined as a ${known.type}`);
    const labels = cfg.labelNames ?? [];
    if (labels.join() !== known.labelNames.join()) throw fail(cfg.name, `is already defined with labels [${known.labelNames.join(', ')}]`);
    return known;
  }
}

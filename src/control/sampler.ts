/**
 * Samples the proxy's own metrics once a second into the dashboard's series (./series.ts):
 * per app (requests/s, or connections/s for TCP apps; 4xx, 5xx and connect errors per second;
 * p50/p99 latency; active connections), per machine, per app and region, and for the node.
 *
 * The proxy's per-request code is not involved: it keeps counting what it always counted, and
 * the control role reads the registry here, once a second (with proxy workers, the primary's
 * registry sums theirs in: src/proxy/worker-reports.ts). A routing change (a
 * machine stopped, turned unhealthy...) closes the current point early (`cut()`), so a chart
 * shows the step where it happened and the page reacts within about a second.
 */
import { EventEmitter } from 'node:events';
import type { CatalogView } from '../catalog/view.js';
import { registry } from '../observe/metrics.js';
import { METRIC, type MetricName } from './metric-names.js';
import { SeriesStore, WINDOW_POINTS } from './series.js';

/** The point interval. */
export const SAMPLE_MS = 1000;
/** A routing change closes the current point this long after it at the soonest... */
export const CUT_DELAY_MS = 100;
/** ...once the machines it concerns have no work in flight, or this long after it at the latest... */
const CUT_DRAIN_MS = 1_000;
/** ...unless the current point is younger than this (a deploy of 50 machines is not 50 points). */
const MIN_POINT_MS = 250;

export const APP_COLUMNS = ['rate', 'errors_4xx', 'errors_5xx', 'errors_connect', 'p50_ms', 'p99_ms', 'active'] as const;
export const MACHINE_COLUMNS = ['rate', 'errors_4xx', 'errors_5xx', 'active'] as const;
export const REGION_COLUMNS = ['rate', 'active'] as const;
export const NODE_COLUMNS = ['rate', 'denied'] as const;

/**
 * Series ceilings. A point is 4 bytes per column, 900 of them per series: at most about 7 MB
 * of apps, 29 MB of machines and 7 MB of app regions. Series exist only for what this node's
 * proxy served in the last 15 minutes.
 */
export const MAX_APP_SERIES = 500;
export const MAX_MACHINE_SERIES = 2000;
export const MAX_REGION_SERIES = 1000;

export interface Sample {
  labels: Record<string, string | number | undefined>;
  value: number;
  metricName?: string;
}

/**
 * The samples of several metrics, this node's: with proxy workers the primary's registry sums
 * theirs in (one round trip to each per call, so read together what is read together).
 */
export async function readMetrics<const N extends readonly MetricName[]>(names: N): Promise<{ [K in keyof N]: Sample[] }> {
  const got = await registry.samples(names);
  return names.map((n) => got.get(n) ?? []) as { [K in keyof N]: Sample[] };
}

/** The samples of one metric; [] when absent. */
export async function readMetric(name: MetricName): Promise<Sample[]> {
  return (await readMetrics([name]))[0];
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Caller denials by the org that owns the address and the caller's org ("" outside every org). */
export interface DenialCount {
  org: string;
  caller_org: string;
  count: number;
}

export interface Tick {
  at: number;
  /** Denials since the previous point, by org pair. */
  denied: DenialCount[];
  /** The Redis catalog connection (1 up, 0 down); null with the embedded store. */
  storeConnected: number | null;
}

/**
 * The value a histogram's q-quantile has within its buckets, interpolating linearly inside
 * the bucket as Prometheus' histogram_quantile does; NaN when the buckets are empty.
 * `les` ascend (the last may be Infinity), `cumulative[i]` counts observations <= les[i].
 */
export function bucketQuantile(q: number, les: readonly number[], cumulative: readonly number[]): number {
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (!(total > 0)) return NaN;
  const rank = q * total;
  for (let i = 0; i < les.length; i++) {
    const c = cumulative[i]!;
    if (c < rank) continue;
    const upper = les[i]!;
    const lower = i === 0 ? 0 : les[i - 1]!;
    if (upper === Infinity) return lower;
    const below = i === 0 ? 0 : cumulative[i - 1]!;
    const inBucket = c - below;
    return inBucket > 0 ? lower + ((upper - lower) * (rank - below)) / inBucket : upper;
  }
  return les[les.length - 1] === Infinity ? (les[les.length - 2] ?? NaN) : les[les.length - 1]!;
}

/** What the sampler keeps per registry series: its labels, parsed once, and its last value. */
interface Slot {
  app: string;
  /** `app/machine`, or '' when the series names no machine. */
  machine: string;
  cls: string;
  prev: number;
}

/**
 * Counter readings between points, without building a string per series per second.
 * The registry's get() hands out its own series objects (counters and gauges), so each gets a
 * slot once; a series seen for the first time after priming started from zero.
 */
class Readings {
  private readonly slots = new WeakMap<object, Slot>();
  private readonly named = new Map<string, number>();
  /** Cumulative bucket counts per app at the previous point. */
  private readonly buckets = new Map<string, number[]>();
  primed = false;

  slot(s: Sample): Slot {
    let x = this.slots.get(s);
    if (!x) {
      const app = s.labels.app === undefined ? '' : String(s.labels.app);
      const m = s.labels.machine;
      x = { app, machine: m === undefined || m === '' ? '' : `${app}/${m}`, cls: String(s.labels.status_class ?? ''), prev: this.primed ? 0 : s.value };
      this.slots.set(s, x);
    }
    return x;
  }

  /** Increase since the previous point; a counter that went down restarted from zero. */
  delta(s: Sample): number {
    const x = this.slot(s);
    const d = s.value >= x.prev ? s.value - x.prev : s.value;
    x.prev = s.value;
    return d;
  }

  /** The same for a value kept by name (a sum over series). */
  deltaOf(key: string, value: number): number {
    const old = this.named.get(key) ?? (this.primed ? 0 : value);
    this.named.set(key, value);
    return value >= old ? value - old : value;
  }

  /** Per-bucket increases of an app's histogram (cumulative in, cumulative out). */
  bucketDeltas(app: string, cumulative: number[]): number[] {
    const old = this.buckets.get(app);
    this.buckets.set(app, cumulative);
    if (!old || old.length !== cumulative.length) return this.primed ? cumulative : cumulative.map(() => 0);
    // The +Inf bucket went down: the series was reset, count it from zero.
    if (cumulative[cumulative.length - 1]! < old[old.length - 1]!) return cumulative;
    return cumulative.map((v, i) => v - old[i]!);
  }
}

/** Per-app sums of one point. */
interface AppAcc {
  req: number;
  e4: number;
  e5: number;
  conn: number;
  connErr: number;
  active: number;
  /** Some request of it named its machine: per-machine rates are real. */
  perMachine: boolean;
  http: boolean;
}

/** Per-machine sums of one point. */
interface MachineAcc {
  req: number;
  e4: number;
  e5: number;
  active: number;
}

/** `_bucket` samples of a histogram as cumulative counts per app, les ascending (the registry lists them in order). */
function bucketsByApp(values: Sample[]): { les: number[]; byApp: Map<string, number[]> } {
  const byApp = new Map<string, number[]>();
  let les: number[] | null = null;
  const first: number[] = [];
  for (const s of values) {
    if (s.metricName !== undefined && !s.metricName.endsWith('_bucket')) continue;
    const app = s.labels.app;
    const le = s.labels.le;
    if (app === undefined || le === undefined) continue;
    let list = byApp.get(String(app));
    if (!list) byApp.set(String(app), (list = []));
    list.push(s.value);
    if (les === null && byApp.size === 1) first.push(le === '+Inf' ? Infinity : Number(le));
    else if (les === null) les = first;
  }
  return { les: les ?? first, byApp };
}

export interface SamplerEvents {
  tick: [Tick];
  /** The first failed sample of a streak. */
  failed: [unknown];
  /** The first good sample after a streak of failed ones. */
  recovered: [];
}

export class LiveSampler extends EventEmitter<SamplerEvents> {
  readonly store = new SeriesStore(WINDOW_POINTS, SAMPLE_MS);
  readonly apps = this.store.family(APP_COLUMNS, MAX_APP_SERIES);
  /** Keyed `app/machine`. */
  readonly machines = this.store.family(MACHINE_COLUMNS, MAX_MACHINE_SERIES);
  /** Keyed `app/region`. */
  readonly regions = this.store.family(REGION_COLUMNS, MAX_REGION_SERIES);
  readonly node = this.store.family(NODE_COLUMNS, 1);
  /** Apps measured in requests (HTTP); the others in connections. */
  readonly httpApps = new Set<string>();
  /** Milliseconds the last sample took (reported in /v1/status/series). */
  lastCostMs = 0;

  private readonly readings = new Readings();
  /** `app/machine` of each catalog machine, kept while the machine object is current. */
  private readonly machineKeys = new WeakMap<object, string>();
  /** `app/region` keys. */
  private readonly regionKeys = new Map<string, Map<string, string>>();
  private lastAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private cutTimer: NodeJS.Timeout | null = null;
  private readonly draining = new Set<string>();
  private busy = false;
  private failing = false;
  private closed = false;

  constructor(private readonly view: CatalogView) {
    super();
  }

  /** Primes the counters now and takes a point every SAMPLE_MS from then on. */
  start(): void {
    if (this.timer || this.closed) return;
    this.run();
  }

  /**
   * Closes the current point after a routing change and restarts the clock from it. The point
   * ends when the machines concerned (`app/machine` keys) have finished what was in flight on
   * them, so the next one holds only traffic routed the new way: a stopped machine's next
   * point is zero.
   */
  cut(machines: readonly string[] = []): void {
    for (const m of machines) this.draining.add(m);
    if (this.cutTimer || this.closed || !this.timer) return;
    const since = Date.now();
    const check = (): void => {
      this.cutTimer = null;
      void this.inFlight().then((busy) => {
        if (this.closed) return;
        if (busy && Date.now() - since < CUT_DRAIN_MS) {
          this.cutTimer = setTimeout(check, 25);
          this.cutTimer.unref();
          return;
        }
        this.draining.clear();
        if (Date.now() - this.lastAt >= MIN_POINT_MS) this.run();
      });
    };
    this.cutTimer = setTimeout(check, CUT_DELAY_MS);
    this.cutTimer.unref();
  }

  /** Whether a machine being cut still holds connections or requests. */
  private async inFlight(): Promise<boolean> {
    if (this.draining.size === 0) return false;
    for (const s of await readMetric(METRIC.activeConnections)) {
      if (s.value > 0 && this.draining.has(`${s.labels.app}/${s.labels.machine}`)) return true;
    }
    return false;
  }

  private run(): void {
    if (this.busy || this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.busy = true;
    const at = Date.now();
    this.sample(at)
      .then(
        () => {
          if (this.failing) this.emit('recovered');
          this.failing = false;
        },
        (err: unknown) => {
          // Said once per streak: a sampler failing every second would otherwise go silent
          // (dashboards show no rates) or flood the log.
          if (!this.failing) this.emit('failed', err);
          this.failing = true;
          // The next try a second from this one, not at once: the counters it read are spent.
          this.lastAt = at;
        },
      )
      .finally(() => {
        this.busy = false;
        if (this.closed) return;
        this.timer = setTimeout(() => this.run(), Math.max(0, this.lastAt + SAMPLE_MS - Date.now()));
        this.timer.unref();
      });
  }

  private machineKey(m: { id: string; app: string }): string {
    let k = this.machineKeys.get(m);
    if (k === undefined) this.machineKeys.set(m, (k = `${m.app}/${m.id}`));
    return k;
  }

  private regionKey(app: string, region: string): string {
    let byRegion = this.regionKeys.get(app);
    if (!byRegion) this.regionKeys.set(app, (byRegion = new Map()));
    let k = byRegion.get(region);
    if (k === undefined) byRegion.set(region, (k = `${app}/${region}`));
    return k;
  }

  /** Reads the registry and writes one point at `now` (the first call only primes the counters). */
  async sample(now = Date.now()): Promise<void> {
    const t0 = performance.now();
    const [reqs, conns, active, connErrs, hist, denied, deniedByOrg, redis] = await readMetrics([
      METRIC.httpRequests,
      METRIC.connectionsAccepted,
      METRIC.activeConnections,
      METRIC.connectErrors,
      METRIC.requestDuration,
      METRIC.denied,
      METRIC.deniedByOrg,
      METRIC.redisConnected,
    ]);
    const r = this.readings;
    const dt = (now - this.lastAt) / 1000;
    const primed = r.primed && dt > 0;

    // Increases since the previous point, summed per app and per machine.
    const apps = new Map<string, AppAcc>();
    const machines = new Map<string, MachineAcc>();
    const app = (name: string): AppAcc => {
      let a = apps.get(name);
      if (!a) apps.set(name, (a = { req: 0, e4: 0, e5: 0, conn: 0, connErr: 0, active: 0, perMachine: false, http: false }));
      return a;
    };
    const machine = (key: string): MachineAcc => {
      let m = machines.get(key);
      if (!m) machines.set(key, (m = { req: 0, e4: 0, e5: 0, active: 0 }));
      return m;
    };
    for (const s of reqs) {
      const x = r.slot(s);
      if (x.app === '') continue;
      const d = r.delta(s);
      const a = app(x.app);
      a.http = true;
      a.req += d;
      if (x.cls === '4xx') a.e4 += d;
      else if (x.cls === '5xx') a.e5 += d;
      if (x.machine === '') continue;
      a.perMachine = true;
      const m = machine(x.machine);
      m.req += d;
      if (x.cls === '4xx') m.e4 += d;
      else if (x.cls === '5xx') m.e5 += d;
    }
    for (const s of conns) {
      const x = r.slot(s);
      if (x.app !== '') app(x.app).conn += r.delta(s);
    }
    for (const s of connErrs) {
      const x = r.slot(s);
      if (x.app !== '') app(x.app).connErr += r.delta(s);
    }
    for (const s of active) {
      const x = r.slot(s);
      if (x.app === '') continue;
      app(x.app).active += s.value;
      if (x.machine !== '') machine(x.machine).active += s.value;
    }
    // A big fleet's sample takes tens of ms: let the proxy's sockets in between its phases.
    await yieldToLoop();
    const { les, byApp: buckets } = bucketsByApp(hist);
    const deniedTotal = r.deltaOf('denied', denied.reduce((n, s) => n + s.value, 0));
    const denials: DenialCount[] = [];
    for (const s of deniedByOrg) {
      const d = r.delta(s);
      if (d > 0) denials.push({ org: String(s.labels.org ?? ''), caller_org: String(s.labels.caller_org ?? ''), count: d });
    }

    if (primed) {
      this.store.begin(now);
      let nodeRate = 0;
      const written = new Set<string>();
      for (const [name, a] of apps) {
        if (a.http) this.httpApps.add(name);
        let p50 = NaN;
        let p99 = NaN;
        const cum = buckets.get(name);
        if (cum) {
          const d = r.bucketDeltas(name, cum);
          p50 = bucketQuantile(0.5, les, d) * 1000;
          p99 = bucketQuantile(0.99, les, d) * 1000;
        }
        const rate = (a.http ? a.req : a.conn) / dt;
        nodeRate += rate;
        this.apps.set(name, [rate, a.http ? a.e4 / dt : NaN, a.http ? a.e5 / dt : NaN, a.connErr / dt, p50, p99, a.active]);
        // Every machine the catalog gives a served app, so one that gets nothing shows 0, not a gap,
        // and its region's sums (the catalog says where each machine is).
        const perRegion = new Map<string, [number, number]>();
        for (const m of this.view.machinesOf(name)) {
          const key = this.machineKey(m);
          const acc = machines.get(key);
          const mRate = a.perMachine ? (acc?.req ?? 0) / dt : NaN;
          this.machines.set(key, [mRate, a.perMachine ? (acc?.e4 ?? 0) / dt : NaN, a.perMachine ? (acc?.e5 ?? 0) / dt : NaN, acc?.active ?? 0]);
          written.add(key);
          let agg = perRegion.get(m.region);
          if (!agg) perRegion.set(m.region, (agg = [a.perMachine ? 0 : NaN, 0]));
          if (!Number.isNaN(mRate)) agg[0] += mRate;
          agg[1] += acc?.active ?? 0;
        }
        for (const [region, v] of perRegion) this.regions.set(this.regionKey(name, region), v);
      }
      await yieldToLoop();
      // Machines the proxy still reports that the catalog no longer has: their last traffic.
      for (const [key, m] of machines) {
        if (written.has(key)) continue;
        const a = apps.get(key.slice(0, key.indexOf('/')));
        const per = a?.perMachine ?? false;
        this.machines.set(key, [per ? m.req / dt : NaN, per ? m.e4 / dt : NaN, per ? m.e5 / dt : NaN, m.active]);
      }
      this.node.set('node', [nodeRate, deniedTotal / dt]);
    } else for (const [name, cum] of buckets) r.bucketDeltas(name, cum);

    const storeConnected = redis.length ? (redis[0]!.value ?? null) : null;
    r.primed = true;
    this.lastAt = now;
    this.lastCostMs = performance.now() - t0;
    if (primed) this.emit('tick', { at: now, denied: denials, storeConnected });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.cutTimer) clearTimeout(this.cutTimer);
    this.timer = this.cutTimer = null;
    this.removeAllListeners();
  }
}

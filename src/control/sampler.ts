/**
 * Samples the proxy's own metrics once a second into the dashboard's series (./series.ts):
 * per app (requests/s, or connections/s for TCP apps; 4xx, 5xx and connect errors per second;
 * p50/p99 latency; active connections), per machine, per app and region, and for the node.
 *
 * The proxy's per-request code is not involved: it keeps counting what it always counted, and
 * the control role reads the process registry here, once a second. A routing change (a
 * machine stopped, turned unhealthy...) closes the current point early (`cut()`), so a chart
 * shows the step where it happened and the page reacts within about a second.
 */
import { EventEmitter } from 'node:events';
import type { CatalogView } from '../catalog/view.js';
import { registry } from '../observe/metrics.js';
import { LEGACY_NAMES, METRIC, type MetricName } from './metric-names.js';
import { SeriesStore, WINDOW_POINTS } from './series.js';

/** The point interval. */
export const SAMPLE_MS = 1000;
/** A routing change closes the current point this long after it, so work in flight lands first... */
export const CUT_DELAY_MS = 100;
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

/** The samples of one metric, under its name or the name it had before a rename; [] when absent. */
export async function readMetric(name: MetricName): Promise<Sample[]> {
  const legacy = LEGACY_NAMES[name];
  const m = registry.getSingleMetric(name) ?? (legacy === undefined ? undefined : registry.getSingleMetric(legacy));
  if (!m) return [];
  return (await m.get()).values as Sample[];
}

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

/** Counter readings of the previous point, turned into per-second rates or plain deltas. */
class Deltas {
  private prev = new Map<string, number>();
  private next = new Map<string, number>();
  primed = false;

  /** Increase since the previous point; a counter that went down restarted from zero. */
  delta(key: string, value: number): number {
    this.next.set(key, value);
    if (!this.primed) return NaN;
    const old = this.prev.get(key) ?? 0;
    return value >= old ? value - old : value;
  }

  commit(): void {
    this.prev = this.next;
    this.next = new Map();
    this.primed = true;
  }
}

const add = (map: Map<string, number>, key: string, v: number): void => {
  map.set(key, (map.get(key) ?? 0) + v);
};

interface HistogramReading {
  les: number[];
  cumulative: number[];
}

/** `_bucket` samples of a histogram grouped by app, les ascending. */
function bucketsByApp(values: Sample[]): Map<string, HistogramReading> {
  const tmp = new Map<string, Map<number, number>>();
  for (const s of values) {
    if (s.metricName !== undefined && !s.metricName.endsWith('_bucket')) continue;
    const app = s.labels.app;
    const le = s.labels.le;
    if (app === undefined || le === undefined) continue;
    let m = tmp.get(String(app));
    if (!m) tmp.set(String(app), (m = new Map()));
    const bound = le === '+Inf' ? Infinity : Number(le);
    m.set(bound, (m.get(bound) ?? 0) + s.value);
  }
  const out = new Map<string, HistogramReading>();
  for (const [app, m] of tmp) {
    const les = [...m.keys()].sort((a, b) => a - b);
    out.set(app, { les, cumulative: les.map((l) => m.get(l)!) });
  }
  return out;
}

export interface SamplerEvents {
  tick: [Tick];
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

  private readonly counters = new Deltas();
  private lastAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private cutTimer: NodeJS.Timeout | null = null;
  private busy = false;
  private closed = false;

  constructor(private readonly view: CatalogView) {
    super();
  }

  /** Primes the counters now and takes a point every SAMPLE_MS from then on. */
  start(): void {
    if (this.timer || this.closed) return;
    this.run();
  }

  /** Closes the current point soon (after a routing change) and restarts the clock from it. */
  cut(): void {
    if (this.cutTimer || this.closed || !this.timer) return;
    this.cutTimer = setTimeout(() => {
      this.cutTimer = null;
      if (Date.now() - this.lastAt < MIN_POINT_MS) return;
      this.run();
    }, CUT_DELAY_MS);
    this.cutTimer.unref();
  }

  private run(): void {
    if (this.busy || this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.busy = true;
    this.sample(Date.now())
      .catch(() => undefined)
      .finally(() => {
        this.busy = false;
        if (this.closed) return;
        this.timer = setTimeout(() => this.run(), Math.max(0, this.lastAt + SAMPLE_MS - Date.now()));
        this.timer.unref();
      });
  }

  /** Reads the registry and writes one point at `now` (the first call only primes the counters). */
  async sample(now = Date.now()): Promise<void> {
    const t0 = performance.now();
    const [reqs, conns, active, connErrs, hist, denied, deniedByOrg, redis] = await Promise.all([
      readMetric(METRIC.httpRequests),
      readMetric(METRIC.connectionsAccepted),
      readMetric(METRIC.activeConnections),
      readMetric(METRIC.connectErrors),
      readMetric(METRIC.requestDuration),
      readMetric(METRIC.denied),
      readMetric(METRIC.deniedByOrg),
      readMetric(METRIC.redisConnected),
    ]);
    const dt = (now - this.lastAt) / 1000;
    const c = this.counters;
    const primed = c.primed && dt > 0;
    const rate = (key: string, v: number): number => {
      const d = c.delta(key, v);
      return primed ? d / dt : NaN;
    };

    // Requests by app and machine, and by status class.
    const appReq = new Map<string, number>();
    const app4 = new Map<string, number>();
    const app5 = new Map<string, number>();
    const mReq = new Map<string, number>();
    const m4 = new Map<string, number>();
    const m5 = new Map<string, number>();
    for (const s of reqs) {
      if (s.labels.app === undefined) continue;
      const app = String(s.labels.app);
      const machine = s.labels.machine === undefined || s.labels.machine === '' ? '' : `${app}/${s.labels.machine}`;
      const cls = s.labels.status_class;
      add(appReq, app, s.value);
      if (machine) add(mReq, machine, s.value);
      if (cls === '4xx') {
        add(app4, app, s.value);
        if (machine) add(m4, machine, s.value);
      } else if (cls === '5xx') {
        add(app5, app, s.value);
        if (machine) add(m5, machine, s.value);
      }
    }
    const byApp = (values: Sample[]): Map<string, number> => {
      const out = new Map<string, number>();
      for (const s of values) if (s.labels.app !== undefined) add(out, String(s.labels.app), s.value);
      return out;
    };
    const appConn = byApp(conns);
    const appConnErr = byApp(connErrs);
    const appActive = byApp(active);
    const mActive = new Map<string, number>();
    for (const s of active) if (s.labels.app !== undefined && s.labels.machine) add(mActive, `${s.labels.app}/${s.labels.machine}`, s.value);
    const buckets = bucketsByApp(hist);

    if (primed) this.store.begin(now);
    const apps = new Set([...appReq.keys(), ...appConn.keys(), ...appActive.keys()]);
    let nodeRate = 0;
    for (const app of apps) {
      const http = appReq.has(app);
      if (http) this.httpApps.add(app);
      const reqRate = rate(`r ${app}`, appReq.get(app) ?? 0);
      const connRate = rate(`c ${app}`, appConn.get(app) ?? 0);
      const e4 = rate(`4 ${app}`, app4.get(app) ?? 0);
      const e5 = rate(`5 ${app}`, app5.get(app) ?? 0);
      const ec = rate(`x ${app}`, appConnErr.get(app) ?? 0);
      let p50 = NaN;
      let p99 = NaN;
      const h = buckets.get(app);
      if (h) {
        const d = h.les.map((le, i) => c.delta(`h ${app} ${le}`, h.cumulative[i]!));
        if (primed) {
          p50 = bucketQuantile(0.5, h.les, d) * 1000;
          p99 = bucketQuantile(0.99, h.les, d) * 1000;
        }
      }
      const r = http ? reqRate : connRate;
      if (!Number.isNaN(r)) nodeRate += r;
      if (primed) this.apps.set(app, [r, http ? e4 : NaN, http ? e5 : NaN, ec, p50, p99, appActive.get(app) ?? 0]);
    }

    // Machines, and their sums per region of the app (the catalog says where each one is).
    // Every machine the catalog gives a served app, so one that gets nothing shows 0, not a gap.
    const machineKeys = new Set([...mReq.keys(), ...mActive.keys()]);
    for (const app of apps) for (const m of this.view.machinesOf(app)) machineKeys.add(`${app}/${m.id}`);
    // Only apps whose requests carry the machine have per-machine rates (no made-up zeros).
    const perMachine = new Set([...mReq.keys()].map((k) => k.slice(0, k.indexOf('/'))));
    const machineRate = new Map<string, number>();
    for (const key of machineKeys) {
      const app = key.slice(0, key.indexOf('/'));
      const http = perMachine.has(app);
      const r = http ? rate(`mr ${key}`, mReq.get(key) ?? 0) : NaN;
      const e4 = http ? rate(`m4 ${key}`, m4.get(key) ?? 0) : NaN;
      const e5 = http ? rate(`m5 ${key}`, m5.get(key) ?? 0) : NaN;
      machineRate.set(key, r);
      if (primed) this.machines.set(key, [r, e4, e5, mActive.get(key) ?? 0]);
    }
    if (primed) {
      for (const app of apps) {
        const perRegion = new Map<string, [number, number]>();
        for (const m of this.view.machinesOf(app)) {
          const key = `${app}/${m.id}`;
          let agg = perRegion.get(m.region);
          if (!agg) perRegion.set(m.region, (agg = [perMachine.has(app) ? 0 : NaN, 0]));
          const r = machineRate.get(key);
          if (r !== undefined && !Number.isNaN(r)) agg[0] += r;
          agg[1] += mActive.get(key) ?? 0;
        }
        for (const [region, v] of perRegion) this.regions.set(`${app}/${region}`, v);
      }
      const deniedTotal = denied.reduce((n, s) => n + s.value, 0);
      this.node.set('node', [nodeRate, rate('denied', deniedTotal)]);
    } else {
      c.delta('denied', denied.reduce((n, s) => n + s.value, 0));
    }

    const denials: DenialCount[] = [];
    for (const s of deniedByOrg) {
      const org = String(s.labels.org ?? '');
      const callerOrg = String(s.labels.caller_org ?? '');
      const d = c.delta(`d ${org} ${callerOrg}`, s.value);
      if (d > 0) denials.push({ org, caller_org: callerOrg, count: d });
    }
    const storeConnected = redis.length ? (redis[0]!.value ?? null) : null;

    c.commit();
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

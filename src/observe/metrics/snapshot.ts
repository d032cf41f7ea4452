/**
 * Registry snapshots: every series of a process as plain data that survives JSON (what a proxy
 * worker can send to the primary over node:cluster IPC), and the merge of several into one
 * that ./exposition.ts renders as a single /metrics.
 *
 *   const text = exposition(mergeSnapshots([await registry.snapshot(), ...fromWorkers]));
 *
 * Per metric name and label set, counters and histogram buckets, sums and counts add up;
 * gauges add up too unless the metric says otherwise (`merge: 'max'` for a lag, `'min'` for a
 * start time), because most of them count things each process holds.
 */

export type GaugeMerge = 'sum' | 'min' | 'max';
/** JSON has no NaN or Infinity: a gauge holding one carries it as Prometheus spells it. */
export type NonFinite = 'NaN' | '+Inf' | '-Inf';
type Labels = Readonly<Record<string, string>>;

export interface ScalarFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labelNames: string[];
  /** Gauges only, when not `sum`. */
  merge?: GaugeMerge;
  series: { labels: Labels; value: number | NonFinite }[];
}

export interface HistogramFamily {
  name: string;
  help: string;
  type: 'histogram';
  labelNames: string[];
  /** Upper bounds, ascending; `+Inf` is implicit. */
  buckets: number[];
  /** `counts`: observations per bucket, not cumulative, one more than `buckets` (above every bound). */
  series: { labels: Labels; counts: number[]; sum: number }[];
}

export type FamilySnapshot = ScalarFamily | HistogramFamily;
export type RegistrySnapshot = FamilySnapshot[];

const NON_FINITE: Record<NonFinite, number> = { NaN: NaN, '+Inf': Infinity, '-Inf': -Infinity };

export function numberOf(v: number | NonFinite): number {
  return typeof v === 'number' ? v : NON_FINITE[v];
}

export function spellNonFinite(v: number): NonFinite {
  return Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf';
}

export function encodeNumber(v: number): number | NonFinite {
  return Number.isFinite(v) ? v : spellNonFinite(v);
}

/** The key of a label set, in the family's label order (length-prefixed: no value can fake another). */
export function keyOf(labelNames: readonly string[], labels: Labels): string {
  let key = '';
  for (const l of labelNames) {
    const v = labels[l] ?? '';
    key += `${v.length}:${v}`;
  }
  return key;
}

function sameShape(a: FamilySnapshot, b: FamilySnapshot): string | null {
  if (a.type !== b.type) return `a ${a.type} in one snapshot and a ${b.type} in another`;
  if (a.labelNames.join() !== b.labelNames.join()) return `labels [${a.labelNames.join(', ')}] in one snapshot and [${b.labelNames.join(', ')}] in another`;
  if (a.type === 'histogram' && b.type === 'histogram' && a.buckets.join() !== b.buckets.join()) {
    return `buckets [${a.buckets.join(', ')}] in one snapshot and [${b.buckets.join(', ')}] in another`;
  }
  return null;
}

interface ScalarAcc {
  family: ScalarFamily;
  series: Map<string, { labels: Labels; value: number }>;
}
interface HistogramAcc {
  family: HistogramFamily;
  series: Map<string, { labels: Labels; counts: number[]; sum: number }>;
}

/**
 * One snapshot holding the series of all of them, metrics in first-seen order. The same metric
 * name with another type, label names or buckets is a programming error and throws.
 */
export function mergeSnapshots(snapshots: readonly RegistrySnapshot[]): RegistrySnapshot {
  const accs = new Map<string, ScalarAcc | HistogramAcc>();
  for (const snapshot of snapshots) {
    for (const f of snapshot) {
      let acc = accs.get(f.name);
      if (!acc) {
        acc = { family: f, series: new Map() } as ScalarAcc | HistogramAcc;
        accs.set(f.name, acc);
      } else {
        const why = sameShape(acc.family, f);
        if (why) throw new Error(`metric ${f.name}: cannot merge ${why}`);
      }
      if (f.type === 'histogram') addHistogram(acc as HistogramAcc, f);
      else addScalar(acc as ScalarAcc, f);
    }
  }
  return [...accs.values()].map(({ family, series }) => {
    if (family.type === 'histogram') return { ...family, series: [...(series as HistogramAcc['series']).values()] };
    return { ...family, series: [...(series as ScalarAcc['series']).values()].map((s) => ({ labels: s.labels, value: encodeNumber(s.value) })) };
  });
}

function addScalar(acc: ScalarAcc, f: ScalarFamily): void {
  const how = f.type === 'gauge' ? (acc.family.merge ?? 'sum') : 'sum';
  for (const s of f.series) {
    const key = keyOf(f.labelNames, s.labels);
    const v = numberOf(s.value);
    const known = acc.series.get(key);
    if (!known) acc.series.set(key, { labels: s.labels, value: v });
    else known.value = how === 'sum' ? known.value + v : how === 'max' ? Math.max(known.value, v) : Math.min(known.value, v);
  }
}

function addHistogram(acc: HistogramAcc, f: HistogramFamily): void {
  for (const s of f.series) {
    if (s.counts.length !== f.buckets.length + 1) throw new Error(`metric ${f.name}: a series has ${s.counts.length} bucket counts for ${f.buckets.length} buckets (want one more)`);
    const key = keyOf(f.labelNames, s.labels);
    const known = acc.series.get(key);
    if (!known) {
      acc.series.set(key, { labels: s.labels, counts: [...s.counts], sum: s.sum });
      continue;
    }
    for (let i = 0; i < s.counts.length; i++) known.counts[i]! += s.counts[i]!;
    known.sum += s.sum;
  }
}

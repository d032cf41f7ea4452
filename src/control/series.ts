/**
 * The dashboard's memory: the last 15 minutes of 1-second points, bounded.
 *
 * One ring of sample times shared by every series; each series is one Float32Array holding
 * its columns for every slot of the ring, so a point costs no allocation and the whole store
 * has a fixed ceiling (families cap how many series they keep). A series that stayed zero or
 * empty for the whole window is dropped, so machines that no longer get traffic cost nothing.
 *
 * ```ts
 * const store = new SeriesStore(900);
 * const apps = store.family(['rate', 'active'], 1000);
 * store.begin(Date.now());
 * apps.set('hello', [12.5, 3]);
 * apps.read('hello', 0); // { rate: [12.5], active: [3] }
 * ```
 */

/** 15 minutes of 1-second points. */
export const WINDOW_POINTS = 900;

export class SeriesFamily<C extends string> {
  private readonly rows = new Map<string, { data: Float32Array; lastUsed: number }>();
  /** Series refused because the family was full (reported, so a cut-off is visible). */
  refused = 0;

  constructor(
    private readonly store: SeriesStore,
    readonly columns: readonly C[],
    readonly maxSeries: number,
  ) {}

  get size(): number {
    return this.rows.size;
  }

  /** Bytes held by this family's points. */
  get bytes(): number {
    let n = 0;
    for (const row of this.rows.values()) n += row.data.byteLength;
    return n;
  }

  keys(): IterableIterator<string> {
    return this.rows.keys();
  }

  has(key: string): boolean {
    return this.rows.has(key);
  }

  /** Writes the point of the current slot; NaN means "no value". Returns false when full. */
  set(key: string, values: ArrayLike<number>): boolean {
    let row = this.rows.get(key);
    if (!row) {
      if (this.rows.size >= this.maxSeries) {
        this.refused++;
        return false;
      }
      row = { data: new Float32Array(this.store.capacity * this.columns.length).fill(NaN), lastUsed: this.store.tick };
      this.rows.set(key, row);
    }
    const base = this.store.slot * this.columns.length;
    for (let c = 0; c < this.columns.length; c++) {
      const v = values[c] ?? NaN;
      row.data[base + c] = v;
      if (v !== 0 && !Number.isNaN(v)) row.lastUsed = this.store.tick;
    }
    return true;
  }

  /**
   * The mean of one column over the points of the last `windowMs`, each weighted by the time
   * it covers (so a rate column gives the rate over the window); NaN when it has no value there.
   */
  mean(key: string, column: C, windowMs: number): number {
    const row = this.rows.get(key);
    if (!row) return NaN;
    const c = this.columns.indexOf(column);
    let sum = 0;
    let weight = 0;
    for (const [s, dt] of this.store.spans(this.store.lastTime - windowMs)) {
      const v = row.data[s * this.columns.length + c]!;
      if (Number.isNaN(v)) continue;
      sum += v * dt;
      weight += dt;
    }
    return weight > 0 ? sum / weight : NaN;
  }

  /**
   * The columns of one series for the points newer than `since` (epoch ms), aligned with
   * `store.times(since)`; null where there was no value. Null when the series is unknown.
   */
  read(key: string, since: number, columns: readonly C[] = this.columns): Record<C, (number | null)[]> | null {
    const row = this.rows.get(key);
    if (!row) return null;
    const slots = this.store.slotsSince(since);
    const out = {} as Record<C, (number | null)[]>;
    for (const col of columns) {
      const c = this.columns.indexOf(col);
      out[col] = slots.map((s) => {
        const v = row.data[s * this.columns.length + c]!;
        return Number.isNaN(v) ? null : round(v);
      });
    }
    return out;
  }

  delete(key: string): void {
    this.rows.delete(key);
  }

  /** Called when the ring moves on: clears the new slot, drops series idle for a whole window. */
  advance(): void {
    const base = this.store.slot * this.columns.length;
    for (const [key, row] of this.rows) {
      if (this.store.tick - row.lastUsed >= this.store.capacity) {
        this.rows.delete(key);
        continue;
      }
      row.data.fill(NaN, base, base + this.columns.length);
    }
  }
}

export class SeriesStore {
  private readonly ring: Float64Array;
  private readonly families: SeriesFamily<string>[] = [];
  /** Ring index of the newest point. */
  slot = -1;
  /** Points kept (at most capacity). */
  count = 0;
  /** Points ever begun: the age of a series is counted in these. */
  tick = 0;

  constructor(
    readonly capacity = WINDOW_POINTS,
    readonly stepMs = 1000,
  ) {
    this.ring = new Float64Array(capacity);
  }

  family<C extends string>(columns: readonly C[], maxSeries: number): SeriesFamily<C> {
    const f = new SeriesFamily<C>(this, columns, maxSeries);
    this.families.push(f as unknown as SeriesFamily<string>);
    return f;
  }

  /** Bytes held by every family's points (the ring of times included). */
  get bytes(): number {
    return this.ring.byteLength + this.families.reduce((n, f) => n + f.bytes, 0);
  }

  /** Starts the point of time `t` (epoch ms, increasing); every series is empty in it until set. */
  begin(t: number): void {
    this.slot = (this.slot + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
    this.tick++;
    this.ring[this.slot] = t;
    for (const f of this.families) f.advance();
  }

  /** Time of the newest point (0 when none). */
  get lastTime(): number {
    return this.count === 0 ? 0 : this.ring[this.slot]!;
  }

  /** Ring indexes of the points newer than `since`, oldest first. */
  slotsSince(since: number): number[] {
    const out: number[] = [];
    for (let i = this.count - 1; i >= 0; i--) {
      const s = (this.slot - i + this.capacity) % this.capacity;
      if (this.ring[s]! > since) out.push(s);
    }
    return out;
  }

  /** Ring indexes of the points newer than `since` with the time each covers (ms since the one before). */
  spans(since: number): [number, number][] {
    const oldest = (this.slot - this.count + 1 + this.capacity) % this.capacity;
    return this.slotsSince(since).map((s) => {
      // The oldest point kept has nothing before it: take it to cover one usual interval.
      const covered = s === oldest ? 0 : this.ring[s]! - this.ring[(s - 1 + this.capacity) % this.capacity]!;
      return [s, covered > 0 ? covered : this.stepMs];
    });
  }

  /** Times (epoch ms) of the points newer than `since`, oldest first. */
  times(since: number): number[] {
    return this.slotsSince(since).map((s) => this.ring[s]!);
  }
}

/** Float32 noise off: three significant decimals are all a chart needs. */
function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/**
 * Machine selection for the Flycast proxy: nearest region with room, then least outstanding
 * work inside it, ties at random. Pure and allocation-light (no I/O, time and randomness are
 * injectable) so that it is unit-testable and benchmarkable on its own.
 *
 * Index per app: machines grouped by region; inside a region, candidate machines sit in
 * buckets by their outstanding count (bucket[n] = machines with n in flight), so the least
 * loaded machine is found in O(1) instead of scanning the app. A pick walks the app's regions
 * nearest first (at most 35), checking only each region's lowest bucket. The index is fed
 * incrementally (`upsert`/`remove`, or `attachToView` for a CatalogView), never rebuilt per pick.
 *
 * A pick acquires: the machine's counter is raised at once, so concurrent callers never push
 * a machine above its hard limit; `release` lowers it. Counters survive catalog updates.
 */
import type { CatalogView } from '../catalog/view.js';
import type { CatalogChange, Machine } from '../catalog/types.js';
import { PassiveEjector, type PassiveOptions } from './passive.js';

/** What the balancer needs from the region table. */
export interface RegionOrder {
  nearestFirst(from: string): readonly string[];
}

export interface BalancerOptions {
  /** The proxy's own region: picks start there. */
  region: string;
  regions: RegionOrder;
  /** Ramp-up window (ms) for a machine re-admitted after being unhealthy; 0 turns it off. */
  slowStartMs: number;
  passive: PassiveOptions;
  random?: () => number;
  now?: () => number;
}

export interface Limits {
  soft_limit: number;
  hard_limit: number;
}

export type PickOutcome = 'same_region' | 'spilled';

/** A machine passive ejection keeps out, until an epoch ms. */
export interface Ejection {
  app: string;
  machine: string;
  until: number;
}

/** One machine in the index; handed to the caller by `pick` and given back to `release`. */
export class Slot {
  /** Requests or connections in flight to this machine through this balancer. */
  outstanding = 0;
  /** Picks ever made of it (a counter, not a clock: autostop's idle tracker compares samples). */
  picks = 0;
  /** Position in its region's bucket, -1 when not a candidate. */
  pos = -1;
  /** Where `pos` points: the bucket index (== outstanding while indexed). */
  bucket = -1;
  /** Epoch ms until which passive ejection keeps it out; 0 when not ejected. */
  ejectedUntil = 0;
  /** Epoch ms at which a slow start began (health went unhealthy -> healthy); 0 for none. */
  slowStartAt = 0;
  /** False once the machine left the catalog; its in-flight counts still drain through release. */
  live = true;
  /** How the last pick reached it (only meaningful right after `pick`). */
  outcome: PickOutcome = 'same_region';
  constructor(
    public machine: Machine,
    public group: RegionGroup,
  ) {}
}

class RegionGroup {
  /** bucket[n]: candidates with n outstanding. */
  readonly buckets: Slot[][] = [];
  /** Lowest non-empty bucket; equals buckets.length when there is no candidate. */
  min = 0;
  size = 0;
  constructor(
    readonly code: string,
    readonly rank: number,
  ) {}

  add(s: Slot): void {
    const n = s.outstanding;
    while (this.buckets.length <= n) this.buckets.push([]);
    const b = this.buckets[n]!;
    s.bucket = n;
    s.pos = b.length;
    b.push(s);
    this.size++;
    if (this.size === 1 || n < this.min) this.min = n;
  }

  delete(s: Slot): void {
    const b = this.buckets[s.bucket]!;
    const last = b.pop()!;
    if (last !== s) {
      b[s.pos] = last;
      last.pos = s.pos;
    }
    s.pos = -1;
    s.bucket = -1;
    this.size--;
    if (this.size === 0) this.min = this.buckets.length;
    else while (this.buckets[this.min]!.length === 0) this.min++;
  }

  /** Re-files an indexed slot after its outstanding count moved by one. */
  move(s: Slot): void {
    this.delete(s);
    this.add(s);
  }
}

class AppIndex {
  readonly slots = new Map<string, Slot>();
  readonly groups = new Map<string, RegionGroup>();
  /** Groups nearest first (only regions where the app has machines). */
  order: RegionGroup[] = [];
  /** Ejected slots of this app, to re-admit when their time is up. */
  readonly ejected: Slot[] = [];
  nextReadmit = Number.POSITIVE_INFINITY;
  candidates = 0;
}

export class Balancer {
  private readonly apps = new Map<string, AppIndex>();
  private readonly slotsById = new Map<string, Slot>();
  private readonly rank: Map<string, number>;
  private readonly random: () => number;
  private readonly now: () => number;
  readonly ejector: PassiveEjector;
  /**
   * Called after a release (`all` false: one unit is free) or when a candidate appeared (`all`
   * true: every queued caller may try again).
   */
  onCapacity: ((app: string, all: boolean) => void) | null = null;
  /**
   * Called when a machine is ejected, or taken back before its time (health, removal); not when
   * an ejection runs out, which its `until` says in advance. A proxy worker tells the primary.
   */
  onEjections: (() => void) | null = null;

  constructor(private readonly opts: BalancerOptions) {
    this.rank = new Map(opts.regions.nearestFirst(opts.region).map((c, i) => [c, i]));
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.ejector = new PassiveEjector(opts.passive);
  }

  get region(): string {
    return this.opts.region;
  }

  private app(name: string): AppIndex {
    let a = this.apps.get(name);
    if (!a) this.apps.set(name, (a = new AppIndex()));
    return a;
  }

  private group(a: AppIndex, region: string): RegionGroup {
    let g = a.groups.get(region);
    if (!g) {
      g = new RegionGroup(region, this.rank.get(region) ?? Number.MAX_SAFE_INTEGER);
      a.groups.set(region, g);
      a.order = [...a.groups.values()].sort((x, y) => x.rank - y.rank || (x.code < y.code ? -1 : 1));
    }
    return g;
  }

  /** Hosts whose heartbeat stopped: their machines are no candidates (see setHostReachable). */
  private readonly downHosts = new Set<string>();

  private eligible(m: Machine): boolean {
    return m.state === 'started' && m.health.status !== 'unhealthy' && (m.host === undefined || !this.downHosts.has(m.host));
  }

  /**
   * A host went silent (false) or came back (true): its machines leave or rejoin the candidates
   * at once, counters kept. Rare (a host's heartbeat), so it walks the index.
   */
  setHostReachable(host: string, reachable: boolean): void {
    if (reachable ? !this.downHosts.delete(host) : this.downHosts.has(host)) return;
    if (!reachable) this.downHosts.add(host);
    const touched = new Set<string>();
    for (const s of this.slotsById.values()) {
      if (s.machine.host !== host) continue;
      const a = this.app(s.machine.app);
      this.unindex(a, s);
      this.index(a, s);
      if (s.pos >= 0) touched.add(s.machine.app);
    }
    for (const app of touched) this.onCapacity?.(app, true);
  }

  private index(a: AppIndex, s: Slot): void {
    if (s.pos >= 0 || !s.live || s.ejectedUntil > 0 || !this.eligible(s.machine)) return;
    s.group.add(s);
    a.candidates++;
  }

  private unindex(a: AppIndex, s: Slot): void {
    if (s.pos < 0) return;
    s.group.delete(s);
    a.candidates--;
  }

  /** Adds or updates a machine (from a catalog change). */
  upsert(m: Machine): void {
    const old = this.slotsById.get(m.id);
    if (old && old.machine.app !== m.app) this.remove(m.id);
    const a = this.app(m.app);
    let s = this.slotsById.get(m.id);
    if (!s) {
      s = new Slot(m, this.group(a, m.region));
      this.slotsById.set(m.id, s);
      a.slots.set(m.id, s);
    } else {
      this.unindex(a, s);
      const was = s.machine.health.status;
      const readmitted = was === 'unhealthy' && m.health.status === 'healthy';
      if (readmitted && this.opts.slowStartMs > 0) s.slowStartAt = m.health.changed_at;
      if (readmitted && s.ejectedUntil > 0) {
        // The active checker vouches for it again: end a passive ejection now, not when its
        // (doubling) timer runs out; slow start still keeps the first traffic gentle.
        s.ejectedUntil = 0;
        const i = a.ejected.indexOf(s);
        if (i >= 0) a.ejected.splice(i, 1);
        this.ejector.forget(m.id);
        this.onEjections?.();
      }
      if (m.health.status === 'unhealthy') s.slowStartAt = 0;
      s.machine = m;
      if (s.group.code !== m.region) s.group = this.group(a, m.region);
    }
    this.index(a, s);
    if (s.pos >= 0) this.onCapacity?.(m.app, true);
  }

  /** Drops a machine (deleted from the catalog); in-flight work still releases cleanly. */
  remove(id: string): void {
    const s = this.slotsById.get(id);
    if (!s) return;
    const a = this.app(s.machine.app);
    this.unindex(a, s);
    s.live = false;
    a.slots.delete(id);
    const i = a.ejected.indexOf(s);
    if (i >= 0) a.ejected.splice(i, 1);
    this.slotsById.delete(id);
    this.ejector.forget(id);
    if (i >= 0) this.onEjections?.();
  }

  /** Replaces the whole index (view reset), keeping counters of machines that remain. */
  reset(machines: Iterable<Machine>): void {
    const keep = new Set<string>();
    for (const m of machines) {
      keep.add(m.id);
      this.upsert(m);
    }
    for (const id of [...this.slotsById.keys()]) if (!keep.has(id)) this.remove(id);
  }

  /** Candidate machines of an app right now (started, not unhealthy, not ejected). */
  candidateCount(app: string): number {
    const a = this.apps.get(app);
    if (!a) return 0;
    this.readmit(a, this.now());
    return a.candidates;
  }

  slot(id: string): Slot | undefined {
    return this.slotsById.get(id);
  }

  private readmit(a: AppIndex, now: number): void {
    if (now < a.nextReadmit) return;
    let next = Number.POSITIVE_INFINITY;
    for (let i = a.ejected.length - 1; i >= 0; i--) {
      const s = a.ejected[i]!;
      if (s.ejectedUntil <= now) {
        s.ejectedUntil = 0;
        a.ejected[i] = a.ejected[a.ejected.length - 1]!;
        a.ejected.pop();
        this.index(a, s);
      } else if (s.ejectedUntil < next) next = s.ejectedUntil;
    }
    a.nextReadmit = next;
  }

  /**
   * Picks and acquires a machine of `app`, or returns null when none has room (the caller
   * queues when `candidateCount` > 0, else fails). `exclude` skips machines already tried
   * for this caller (connect retries).
   */
  pick(app: string, limits: Limits, exclude?: ReadonlySet<Slot> | null, avoidTriedRegions = false, steer?: Steer | null): Slot | null {
    if (steer) return this.pickSteered(app, limits, steer, exclude);
    // A caller's last try avoids regions where its earlier tries failed: when a whole region
    // has just died (before any health verdict), the tries would otherwise all go to its dead
    // machines. When no other region has room, the normal pick still runs.
    if (avoidTriedRegions && exclude && exclude.size > 0) {
      const s = this.pickFrom(app, limits, exclude, true);
      if (s) return s;
    }
    return this.pickFrom(app, limits, exclude ?? null, false);
  }

  private pickFrom(app: string, limits: Limits, exclude: ReadonlySet<Slot> | null, skipTriedRegions: boolean): Slot | null {
    const a = this.apps.get(app);
    if (!a || (a.candidates === 0 && a.ejected.length === 0)) return null;
    const now = this.now();
    this.readmit(a, now);
    const order = a.order;
    let spill: RegionGroup | null = null;
    for (let i = 0; i < order.length; i++) {
      const g = order[i]!;
      if (g.min >= limits.hard_limit) continue;
      if (skipTriedRegions && triedIn(g, exclude!)) continue;
      if (g.min < limits.soft_limit) {
        const s = this.pickIn(g, limits.soft_limit, now, exclude);
        if (s) return this.acquire(s, g);
      }
      if (spill === null) spill = g;
    }
    if (spill === null) return null;
    // Every region is at soft_limit: the nearest region with room under hard_limit.
    for (let i = 0; i < order.length; i++) {
      const g = order[i]!;
      if (g.min >= limits.hard_limit) continue;
      if (skipTriedRegions && triedIn(g, exclude!)) continue;
      const s = this.pickIn(g, limits.hard_limit, now, exclude);
      if (s) return this.acquire(s, g);
    }
    return null;
  }

  /**
   * The least loaded candidate in `g` under `limit`, ties at random. A slow-starting machine is
   * passed over with probability 1 - elapsed/window while another candidate exists.
   */
  private pickIn(g: RegionGroup, limit: number, now: number, exclude: ReadonlySet<Slot> | null | undefined): Slot | null {
    let fallback: Slot | null = null;
    let skipped = 0;
    const end = Math.min(limit, g.buckets.length);
    for (let n = g.min; n < end; n++) {
      const b = g.buckets[n]!;
      const len = b.length;
      if (len === 0) continue;
      const start = len === 1 ? 0 : Math.floor(this.random() * len);
      for (let k = 0; k < len; k++) {
        const s = b[(start + k) % len]!;
        if (exclude && exclude.has(s)) continue;
        if (s.slowStartAt > 0) {
          const elapsed = now - s.slowStartAt;
          if (elapsed >= this.opts.slowStartMs || elapsed < 0) s.slowStartAt = 0;
          else if (this.random() * this.opts.slowStartMs >= elapsed) {
            if (fallback === null) fallback = s;
            // Bounded: a region full of slow starters takes one of them rather than scanning.
            if (++skipped < 8) continue;
            return fallback;
          }
        }
        return s;
      }
    }
    return fallback;
  }

  private acquire(s: Slot, g: RegionGroup): Slot {
    s.outstanding++;
    s.picks++;
    if (s.pos >= 0) g.move(s);
    s.outcome = g.rank === 0 ? 'same_region' : 'spilled';
    return s;
  }

  /**
   * A pick under a steering constraint (Fly's routing headers and fly-replay): the named
   * machine first when it is a candidate under `hard_limit`; then the named regions in the
   * order given (soft limit first, then hard limit, as a normal pick does across regions);
   * then, unless the constraint forces, the normal pick. Returns null when nothing allowed
   * has room; `steerCandidates` tells "full" (wait) from "none" (fail) apart.
   */
  pickSteered(app: string, limits: Limits, steer: Steer, exclude?: ReadonlySet<Slot> | null): Slot | null {
    const a = this.apps.get(app);
    if (!a) return null;
    const now = this.now();
    this.readmit(a, now);
    const ex = exclude ?? null;
    if (steer.machine !== null) {
      const s = a.slots.get(steer.machine);
      if (s && s.pos >= 0 && s.outstanding < limits.hard_limit && !(ex && ex.has(s))) return this.acquire(s, s.group);
      if (steer.forceMachine) return null;
    }
    const regions = steer.regions;
    if (regions !== null) {
      for (let pass = 0; pass < 2; pass++) {
        const limit = pass === 0 ? limits.soft_limit : limits.hard_limit;
        for (let i = 0; i < regions.length; i++) {
          const g = a.groups.get(regions[i]!);
          if (!g || g.min >= limit) continue;
          const s = this.pickIn(g, limit, now, ex);
          if (s) return this.acquire(s, g);
        }
      }
      if (steer.forceRegions) return null;
    }
    return this.pickFrom(app, limits, ex, false);
  }

  /**
   * Candidates a steered pick may still take (started, not unhealthy, not ejected, not
   * excluded), whatever their load: > 0 means "wait for a release", 0 means "none there".
   */
  steerCandidates(app: string, steer: Steer, exclude?: ReadonlySet<Slot> | null): number {
    const a = this.apps.get(app);
    if (!a) return 0;
    this.readmit(a, this.now());
    if (steer.machine !== null && steer.forceMachine) {
      const s = a.slots.get(steer.machine);
      return s && s.pos >= 0 && !exclude?.has(s) ? 1 : 0;
    }
    if (steer.regions === null || !steer.forceRegions) return a.candidates - countIndexed(exclude);
    let n = 0;
    for (const r of steer.regions) {
      const g = a.groups.get(r);
      if (!g) continue;
      n += g.size;
      if (exclude) for (const s of exclude) if (s.group === g && s.pos >= 0) n--;
    }
    return n;
  }

  /** Gives back what `pick` acquired. */
  release(s: Slot): void {
    if (s.outstanding === 0) return;
    s.outstanding--;
    if (s.pos >= 0) s.group.move(s);
    if (s.live) this.onCapacity?.(s.machine.app, false);
  }

  /** A connect to the machine failed; may eject it (returns the ejection ms, 0 if not). */
  reportFailure(s: Slot): number {
    if (!s.live) return 0;
    const a = this.app(s.machine.app);
    const now = this.now();
    const ms = this.ejector.failure(s.machine.app, s.machine.id, a.slots.size, now);
    if (ms > 0) {
      this.unindex(a, s);
      s.ejectedUntil = now + ms;
      a.ejected.push(s);
      if (s.ejectedUntil < a.nextReadmit) a.nextReadmit = s.ejectedUntil;
      this.onEjections?.();
    }
    return ms;
  }

  reportSuccess(s: Slot): void {
    this.ejector.success(s.machine.id);
  }

  /** Machines passive ejection keeps out right now, with when each comes back (for the dashboard's event feed). */
  ejectedMachines(): Ejection[] {
    const now = this.now();
    const out: Ejection[] = [];
    for (const [app, a] of this.apps) for (const s of a.ejected) if (s.ejectedUntil > now) out.push({ app, machine: s.machine.id, until: s.ejectedUntil });
    return out;
  }

  /** Machines of an app with their counters (for metrics and the dashboard). */
  *slotsOf(app: string): Iterable<Slot> {
    const a = this.apps.get(app);
    if (a) yield* a.slots.values();
  }
}

/**
 * A steering constraint on a pick. `machine`: a machine id to take when it has room
 * (`forceMachine`: nothing else). `regions`: regions to try in this order (`forceRegions`:
 * nowhere else). Both null: a normal pick.
 */
export interface Steer {
  machine: string | null;
  forceMachine: boolean;
  regions: readonly string[] | null;
  forceRegions: boolean;
}

function countIndexed(set: ReadonlySet<Slot> | null | undefined): number {
  if (!set) return 0;
  let n = 0;
  for (const s of set) if (s.pos >= 0) n++;
  return n;
}

/** True when one of the caller's tried machines is in `g` (a retry set holds a few slots). */
function triedIn(g: RegionGroup, tried: ReadonlySet<Slot>): boolean {
  for (const s of tried) if (s.group === g) return true;
  return false;
}

/** Keeps `balancer` in step with `view`; returns a function that detaches it. */
export function attachToView(balancer: Balancer, view: CatalogView): () => void {
  balancer.reset(view.machines.values());
  const onChange = (c: CatalogChange): void => {
    if (c.kind !== 'machine') return;
    if (c.op === 'put') balancer.upsert(c.value);
    else balancer.remove(c.key);
  };
  const onReset = (): void => balancer.reset(view.machines.values());
  view.on('change', onChange);
  view.on('reset', onReset);
  return () => {
    view.off('change', onChange);
    view.off('reset', onReset);
  };
}

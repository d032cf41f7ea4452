/**
 * Passive ejection: the proxy reports connect outcomes; a machine whose connects fail
 * `consecutiveFailures` times in a row is ejected from this node's rotation for a time that
 * doubles on each repeat (up to `maxEjectionMs`).
 *
 * Panic threshold: never more than `maxEjectionPercent` of an app's machines are ejected at
 * once; past that a failing machine stays in rotation, because sending traffic to all machines
 * beats sending it to none. Local to one node and pure (time is passed in): no I/O here.
 */

export interface PassiveOptions {
  consecutiveFailures: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  maxEjectionPercent: number;
}

interface MachineRecord {
  app: string;
  failures: number;
  /** How many times it has been ejected recently; drives the doubling. */
  ejections: number;
  ejectedUntil: number;
}

export class PassiveEjector {
  private readonly records = new Map<string, MachineRecord>();
  private readonly ejectedByApp = new Map<string, Set<string>>();

  constructor(private readonly opts: PassiveOptions) {}

  private record(app: string, id: string): MachineRecord {
    let r = this.records.get(id);
    if (!r) this.records.set(id, (r = { app, failures: 0, ejections: 0, ejectedUntil: 0 }));
    return r;
  }

  /** Drops ejections that have expired for `app` (so the panic count is current). */
  private sweep(app: string, now: number): Set<string> {
    let set = this.ejectedByApp.get(app);
    if (!set) this.ejectedByApp.set(app, (set = new Set()));
    for (const id of set) {
      const r = this.records.get(id);
      if (!r || r.ejectedUntil <= now) set.delete(id);
    }
    return set;
  }

  /**
   * Records a failed connect to `id` (of `app`, which has `appSize` machines). Returns the
   * ejection time in ms when this failure ejected the machine, else 0.
   */
  failure(app: string, id: string, appSize: number, now: number): number {
    const r = this.record(app, id);
    if (r.ejectedUntil > now) return 0;
    // A machine that stayed clean for a whole max ejection period starts over.
    if (r.ejections > 0 && r.ejectedUntil > 0 && now - r.ejectedUntil > this.opts.maxEjectionMs) r.ejections = 0;
    r.failures++;
    if (r.failures < this.opts.consecutiveFailures) return 0;
    const ejected = this.sweep(app, now);
    const allowed = Math.floor((appSize * this.opts.maxEjectionPercent) / 100);
    if (ejected.size + 1 > allowed) return 0;
    const ms = Math.min(this.opts.maxEjectionMs, this.opts.baseEjectionMs * 2 ** r.ejections);
    r.ejections++;
    r.failures = 0;
    r.ejectedUntil = now + ms;
    ejected.add(id);
    return ms;
  }

  /** A connect to `id` succeeded: its run of failures ends. */
  success(id: string): void {
    const r = this.records.get(id);
    if (r) r.failures = 0;
  }

  isEjected(id: string, now: number): boolean {
    const r = this.records.get(id);
    return r !== undefined && r.ejectedUntil > now;
  }

  /** Machine ids of `app` ejected at `now`. */
  ejected(app: string, now: number): string[] {
    return [...this.sweep(app, now)];
  }

  /** Forget a machine (removed from the catalog). */
  forget(id: string): void {
    const r = this.records.get(id);
    if (r) this.ejectedByApp.get(r.app)?.delete(id);
    this.records.delete(id);
  }
}

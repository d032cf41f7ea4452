/**
 * One timer for every timeout of the engine: connections set a `deadline` number (ms, the
 * performance.now() clock) instead of arming a timer each, and a single interval sweeps them.
 * Moving a deadline is then an assignment, which matters on paths that touch it per chunk.
 * Timeouts fire up to one tick late.
 */

export interface Timed {
  /** When onDeadline is due (Infinity: never). */
  deadline: number;
  onDeadline(now: number): void;
}

export class Deadlines {
  private readonly items = new Set<Timed>();
  private readonly timer: NodeJS.Timeout;

  constructor(readonly tickMs: number) {
    this.timer = setInterval(() => this.sweep(), tickMs);
    this.timer.unref();
  }

  add(t: Timed): void {
    this.items.add(t);
  }

  delete(t: Timed): void {
    this.items.delete(t);
  }

  get size(): number {
    return this.items.size;
  }

  sweep(): void {
    const now = performance.now();
    for (const t of this.items) if (t.deadline <= now) t.onDeadline(now);
  }

  close(): void {
    clearInterval(this.timer);
    this.items.clear();
  }
}

/**
 * One timer wheel for every timeout of the proxy (HTTP connections, pooled machine connections,
 * TCP splices, the capacity queue, connect timeouts): items carry a `deadline` number (ms, the
 * performance.now() clock) instead of arming a timer each, and a single interval turns the wheel.
 *
 * A hashed wheel with lazy re-filing: an item sits in the slot of the tick its deadline fell in
 * when it was filed; moving a deadline later is a plain assignment (the item is re-filed when
 * its old slot comes round and the deadline is not due yet), so paths that push a deadline per
 * chunk pay nothing. Moving a deadline earlier must be told (`moved`), which re-files in O(1).
 * A tick looks only at its own slot, so 10,000 idle connections cost a handful of checks per tick,
 * not a scan. Timeouts fire up to one tick late. `now` is the time of the last tick: a cheap clock
 * for paths that only need to know roughly when they last saw a byte.
 */

/** Filed state of an item: not on this wheel / on it with no deadline / in slot `wAt & mask`. */
const OFF = -2;
const UNFILED = -1;

/** What the wheel turns; extend it (the fields are the wheel's intrusive list). */
export abstract class Timed {
  /** When onDeadline is due (Infinity: never). */
  deadline = Infinity;
  /** @internal the tick it is filed under, or OFF / UNFILED */
  wAt = OFF;
  /** @internal */
  wNext: Timed | null = null;
  /** @internal */
  wPrev: Timed | null = null;
  abstract onDeadline(now: number): void;
}

export class Deadlines {
  private readonly slots: (Timed | null)[];
  private readonly mask: number;
  private cursor: number;
  private count = 0;
  private readonly timer: NodeJS.Timeout;
  /** The time of the last tick (performance.now() clock). */
  now: number;

  constructor(
    readonly tickMs: number,
    slotCount = 512,
  ) {
    let n = 1;
    while (n < slotCount) n <<= 1;
    this.slots = new Array<Timed | null>(n).fill(null);
    this.mask = n - 1;
    this.now = performance.now();
    this.cursor = Math.floor(this.now / tickMs);
    this.timer = setInterval(() => this.sweep(), tickMs);
    this.timer.unref();
  }

  /** Puts `t` on the wheel (its current deadline counts). */
  add(t: Timed): void {
    if (t.wAt !== OFF) return this.moved(t);
    this.count++;
    t.wAt = UNFILED;
    this.file(t);
  }

  delete(t: Timed): void {
    if (t.wAt === OFF) return;
    this.unlink(t);
    t.wAt = OFF;
    this.count--;
  }

  /** `t.deadline` moved earlier (or from Infinity): re-file it now. Later moves need no call. */
  moved(t: Timed): void {
    if (t.wAt === OFF) return;
    if (t.wAt === UNFILED) return this.file(t);
    if (this.tickOf(t.deadline) < t.wAt) {
      this.unlink(t);
      this.file(t);
    }
  }

  get size(): number {
    return this.count;
  }

  private tickOf(deadline: number): number {
    const k = Math.ceil(deadline / this.tickMs);
    return k <= this.cursor ? this.cursor + 1 : k;
  }

  private file(t: Timed): void {
    if (t.deadline === Infinity) {
      t.wAt = UNFILED;
      return;
    }
    const k = this.tickOf(t.deadline);
    const i = k & this.mask;
    t.wAt = k;
    const head = this.slots[i]!;
    t.wPrev = null;
    t.wNext = head;
    if (head !== null) head.wPrev = t;
    this.slots[i] = t;
  }

  private unlink(t: Timed): void {
    if (t.wAt < 0) return;
    const i = t.wAt & this.mask;
    if (t.wPrev !== null) t.wPrev.wNext = t.wNext;
    else this.slots[i] = t.wNext;
    if (t.wNext !== null) t.wNext.wPrev = t.wPrev;
    t.wNext = t.wPrev = null;
    t.wAt = UNFILED;
  }

  /** Turns the wheel up to now: due items get onDeadline, the others are re-filed. */
  sweep(): void {
    const now = performance.now();
    this.now = now;
    const target = Math.floor(now / this.tickMs);
    // A stalled loop may have missed many ticks: one turn covers every slot once.
    let steps = Math.min(target - this.cursor, this.slots.length);
    if (steps <= 0) return;
    if (target - this.cursor > this.slots.length) this.cursor = target - this.slots.length;
    while (steps-- > 0) {
      this.cursor++;
      const i = this.cursor & this.mask;
      let t: Timed | null = this.slots[i]!;
      this.slots[i] = null;
      while (t !== null) {
        const next: Timed | null = t.wNext;
        t.wNext = t.wPrev = null;
        t.wAt = UNFILED;
        if (t.deadline <= now) {
          t.onDeadline(now);
          // onDeadline may have deleted it, filed it again (moved) or pushed its deadline on.
          if (t.wAt === UNFILED) this.file(t);
        } else this.file(t);
        t = next;
      }
    }
  }

  /** Stops the wheel; items are forgotten (they must not be used with it again). */
  close(): void {
    clearInterval(this.timer);
    for (let i = 0; i < this.slots.length; i++) {
      let t: Timed | null = this.slots[i]!;
      while (t !== null) {
        const next: Timed | null = t.wNext;
        t.wNext = t.wPrev = null;
        t.wAt = OFF;
        t = next;
      }
      this.slots[i] = null;
    }
    this.count = 0;
  }
}

/**
 * The bounded wait for a machine when every candidate of an app is at its hard limit
 * (`[proxy] max_queue` callers in all, each for up to `queue_timeout`).
 *
 * Waiters queue per app in arrival order and are woken one per freed unit (`wake`, called when
 * the balancer reports capacity). A wake must never be lost: a waiter whose caller went away is
 * skipped and the wake goes to the next one, and a woken waiter that finds its caller gone before
 * it could use the unit passes the wake on (`wake` again). Timeouts ride the proxy's timer wheel.
 */
import { Timed, type Deadlines } from './http1/deadlines.js';

class Waiter extends Timed {
  /** Set once settled (woken, timed out or dropped). */
  done = false;
  constructor(
    readonly queue: CapacityQueue,
    readonly app: string,
    readonly gone: () => boolean,
    readonly resolve: (woken: boolean) => void,
  ) {
    super();
  }

  onDeadline(): void {
    this.queue.settle(this, false);
  }
}

export class CapacityQueue {
  private readonly byApp = new Map<string, Waiter[]>();
  /** Callers waiting now, all apps. */
  size = 0;

  constructor(
    private readonly wheel: Deadlines,
    readonly maxWaiting: number,
  ) {}

  /** Whether another caller may queue now. */
  get hasRoom(): boolean {
    return this.size < this.maxWaiting;
  }

  /** Callers of `app` waiting now. */
  waiting(app: string): number {
    return this.byApp.get(app)?.length ?? 0;
  }

  /**
   * Waits for a wake on `app`: true when woken (try to pick again), false when `timeoutMs` ran
   * out (Infinity: no timeout). `front`: a waiter that was woken but lost the race for the unit
   * goes back to the head of the line.
   */
  wait(app: string, gone: () => boolean, timeoutMs: number, front = false): Promise<boolean> {
    return new Promise((resolve) => {
      const w = new Waiter(this, app, gone, resolve);
      let list = this.byApp.get(app);
      if (!list) this.byApp.set(app, (list = []));
      if (front) list.unshift(w);
      else list.push(w);
      this.size++;
      if (timeoutMs !== Infinity) {
        w.deadline = performance.now() + timeoutMs;
        this.wheel.add(w);
      }
    });
  }

  /** One unit of `app` is free: the first waiter whose caller is still there gets it. */
  wake(app: string): void {
    const list = this.byApp.get(app);
    if (!list) return;
    while (list.length > 0) {
      const w = list[0]!;
      const live = !w.gone();
      this.settle(w, live);
      if (live) return;
    }
  }

  /** Wakes every waiter of `app` (its set of machines changed: each may try again). */
  wakeAll(app: string): void {
    const list = this.byApp.get(app);
    if (!list) return;
    for (const w of [...list]) this.settle(w, !w.gone());
  }

  /** @internal */
  settle(w: Waiter, woken: boolean): void {
    if (w.done) return;
    w.done = true;
    this.wheel.delete(w);
    const list = this.byApp.get(w.app);
    if (list) {
      const i = list.indexOf(w);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.byApp.delete(w.app);
    }
    this.size--;
    w.resolve(woken);
  }
}

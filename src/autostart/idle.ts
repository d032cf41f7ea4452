/**
 * Which machines this node has seen traffic on: sampled from the balancer's own counters (its
 * `outstanding` and `picks` per machine) once per autostop sweep, so the data path pays nothing
 * for it (no clock read, no allocation, no store call per connection or request).
 *
 * A machine counts as active at a sample when work is in flight on it or it was picked since
 * the sample before; its activity time is then that sample's time. A machine first sampled is
 * taken as active when the tracker started, so that a node that just came up does not stop
 * machines it has never watched.
 */

/** What the tracker reads of a machine's balancer slot. */
export interface SlotCounts {
  readonly outstanding: number;
  readonly picks: number;
}

export interface Activity {
  /** Epoch ms of the last sample that found it in use. */
  at: number;
  /** In use at this sample (in flight now, or picked since the last one). */
  busy: boolean;
}

export class IdleTracker {
  private readonly seen = new Map<string, { picks: number; at: number }>();

  constructor(
    private readonly slotOf: (id: string) => SlotCounts | undefined,
    private readonly since: number,
  ) {}

  sample(id: string, now: number): Activity {
    const s = this.slotOf(id);
    const picks = s?.picks ?? 0;
    let e = this.seen.get(id);
    if (!e) this.seen.set(id, (e = { picks, at: this.since }));
    const busy = (s !== undefined && s.outstanding > 0) || picks !== e.picks;
    e.picks = picks;
    if (busy) e.at = now;
    return { at: e.at, busy };
  }

  /** Work in flight on it from this node right now. */
  inFlight(id: string): number {
    return this.slotOf(id)?.outstanding ?? 0;
  }

  /** Drops machines no longer in the catalog. */
  keepOnly(ids: ReadonlySet<string>): void {
    for (const id of this.seen.keys()) if (!ids.has(id)) this.seen.delete(id);
  }
}

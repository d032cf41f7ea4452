/**
 * Drop accounting for packet filters (the gateway's and the host's nftables tables): turns the
 * filter's cumulative per-source counters into increments of a `{org}` metric, and into one log
 * line per source and minute with the count since the last one, so that a flood is visible
 * without flooding the log.
 */
import type { Counter } from './metrics.js';
import type { Logger } from './log.js';

export const DROP_LOG_EVERY_MS = 60_000;

export class DropLog<W extends { org: string }> {
  private readonly seen = new Map<string, number>();
  private readonly logged = new Map<string, { at: number; unlogged: number }>();

  constructor(
    private readonly metric: Counter<'org'>,
    private readonly log: Logger,
    private readonly message: string,
    private readonly everyMs = DROP_LOG_EVERY_MS,
  ) {}

  /** `who(name)`: what the log line says about a counter's source; undefined skips the counter. */
  account(counters: Map<string, number>, who: (name: string) => W | undefined, now = Date.now()): void {
    for (const [name, packets] of counters) {
      const w = who(name);
      if (!w) continue;
      const prev = this.seen.get(name) ?? 0;
      // A counter that went down was made anew (its source left and came back): count from zero.
      const delta = packets >= prev ? packets - prev : packets;
      this.seen.set(name, packets);
      let e = this.logged.get(name);
      if (!e) this.logged.set(name, (e = { at: 0, unlogged: 0 }));
      if (delta > 0) {
        this.metric.inc({ org: w.org }, delta);
        e.unlogged += delta;
      }
      if (e.unlogged > 0 && now - e.at >= this.everyMs) {
        this.log.warn({ ...w, dropped: e.unlogged } as Record<string, unknown>, this.message);
        e.at = now;
        e.unlogged = 0;
      }
    }
    for (const name of this.seen.keys()) if (!counters.has(name)) this.seen.delete(name);
  }
}

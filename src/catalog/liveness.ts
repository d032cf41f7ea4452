/**
 * Which hosts are reachable, judged by their heartbeats as this node sees them arrive: a host
 * that stopped heartbeating for `timeoutMs` (its agent died, or its link is cut, which also cuts
 * it from the catalog) or that shut down (`down`) is unreachable, and its machines with it. The
 * proxy leaves them out of its picks and DNS out of its answers; both come back with the next
 * heartbeat.
 *
 * Time is this node's own: a heartbeat counts when it arrives here, so two servers' clocks
 * need not agree (only the first sight of a host, in a snapshot, trusts its timestamp). When no
 * host at all has heartbeated within the timeout, the fault is this node's view of the catalog
 * (the store unreachable), not every host at once: nothing is declared unreachable then, so a
 * catalog outage never empties every answer.
 *
 * ```ts
 * const live = new HostLiveness(view, 6_000);
 * live.on('change', (host, reachable) => balancer.setHostReachable(host, reachable));
 * live.reachable(machine.host); // true for machines no host runs
 * ```
 */
import { EventEmitter } from 'node:events';
import type { CatalogChange, Host } from './types.js';
import type { CatalogView } from './view.js';

export interface HostLivenessEvents {
  /** A host became unreachable (`false`) or reachable again (`true`). */
  change: [host: string, reachable: boolean];
}

export class HostLiveness extends EventEmitter<HostLivenessEvents> {
  /** Local time a heartbeat of each host last arrived. */
  private readonly seen = new Map<string, number>();
  private readonly beats = new Map<string, number>();
  private readonly down = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  private readonly onChange = (c: CatalogChange): void => {
    if (c.kind !== 'host') return;
    if (c.op === 'put') this.saw(c.value, false);
    else {
      this.seen.delete(c.key);
      this.beats.delete(c.key);
    }
    this.evaluate();
  };
  private readonly onReset = (): void => this.seed();

  constructor(
    private readonly view: CatalogView,
    readonly timeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
    view.on('change', this.onChange);
    view.on('reset', this.onReset);
    this.seed();
    // A quarter of the timeout: a dead host is seen within 1.25 timeouts.
    this.timer = setInterval(() => this.evaluate(), Math.max(50, Math.min(1_000, Math.floor(timeoutMs / 4))));
    this.timer.unref();
  }

  /** False for a machine's host that stopped heartbeating; true for machines no host runs. */
  reachable(host: string | undefined): boolean {
    return host === undefined || !this.down.has(host);
  }

  /** Hosts unreachable now. */
  unreachable(): ReadonlySet<string> {
    return this.down;
  }

  private saw(h: Host, first: boolean): void {
    const before = this.beats.get(h.name);
    if (before === h.heartbeat_at && !first) return;
    this.beats.set(h.name, h.heartbeat_at);
    const now = this.now();
    // First sight (a snapshot): trust the host's own clock, once; later beats count on arrival.
    this.seen.set(h.name, first || before === undefined ? Math.min(now, h.heartbeat_at) : now);
  }

  private seed(): void {
    this.seen.clear();
    this.beats.clear();
    for (const h of this.view.hosts.values()) this.saw(h, true);
    this.evaluate();
  }

  private evaluate(): void {
    const now = this.now();
    let anyFresh = false;
    for (const h of this.view.hosts.values()) {
      if (h.state === 'up' && now - (this.seen.get(h.name) ?? 0) <= this.timeoutMs) {
        anyFresh = true;
        break;
      }
    }
    for (const h of this.view.hosts.values()) {
      const isDown = h.state === 'down' || (anyFresh && now - (this.seen.get(h.name) ?? 0) > this.timeoutMs);
      if (isDown === this.down.has(h.name)) continue;
      if (isDown) this.down.add(h.name);
      else this.down.delete(h.name);
      this.emit('change', h.name, !isDown);
    }
    for (const name of [...this.down]) {
      if (this.view.hosts.has(name)) continue;
      this.down.delete(name);
      this.emit('change', name, true);
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.view.off('change', this.onChange);
    this.view.off('reset', this.onReset);
    this.removeAllListeners();
  }
}

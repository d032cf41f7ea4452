/**
 * What the primary of a node with proxy workers (./workers.ts) knows of them, so that the node
 * reports as one: each worker slot (index) is a remote source of the primary's registry (its
 * metric series, asked for when the registry is read) and holds the passive ejections its
 * worker last told (read by the event feed).
 *
 * Counters must not go backwards in the node's view: Prometheus' rate() and the dashboard
 * sampler take a drop for a reset and count the whole total again. So a slot keeps, besides
 * the live worker's last answer, the counters and histograms of the workers that held it before
 * and exited (each one's last answer), and a restarted worker counts from 0 on top of that
 * base. Counts a worker made after its last answer die with it. Its gauges are not kept: its
 * connections ended with it. A worker late for a read counts with its last answer (stale() to
 * the registry) rather than not at all, for the same reason.
 */
import type { Ejection } from '../balancer/index.js';
import { mergeSnapshots, type FamilySnapshot, type RegistrySnapshot, type RemoteSource } from '../observe/metrics.js';

type Names = readonly string[] | undefined;

/** The families of `map` that `names` asks for (all without it), as one snapshot. */
function pick(map: ReadonlyMap<string, FamilySnapshot>, names: Names): RegistrySnapshot {
  if (!names) return [...map.values()];
  const out: RegistrySnapshot = [];
  for (const n of names) {
    const f = map.get(n);
    if (f) out.push(f);
  }
  return out;
}

export class WorkerSlot implements RemoteSource {
  /** Machines the live worker's passive ejection keeps out, as it last told. */
  ejections: readonly Ejection[] = [];
  /** Sends the live worker a metrics request; null while no worker holds the slot. */
  private ask: ((id: number, names: Names) => void) | null = null;
  /** Counters and histograms of the workers that held the slot and exited, summed. */
  private readonly base = new Map<string, FamilySnapshot>();
  /** The live worker's newest answer for each family. */
  private readonly last = new Map<string, FamilySnapshot>();
  private readonly waiting = new Map<number, (snap: RegistrySnapshot | null) => void>();
  private next = 0;

  /** A worker took the slot; `ask` sends it `{ t: 'metrics', id, names }`. */
  attach(ask: (id: number, names: Names) => void): void {
    this.ask = ask;
  }

  /** The worker's answer to request `id`; one that came too late still is its newest answer. */
  answer(id: number, snap: RegistrySnapshot): void {
    for (const f of snap) this.last.set(f.name, f);
    const done = this.waiting.get(id);
    this.waiting.delete(id);
    done?.(snap);
  }

  /** The worker exited: its counters and histograms join the base, and reads waiting for it end. */
  detach(): void {
    this.ask = null;
    for (const f of this.last.values()) {
      if (f.type === 'gauge') continue;
      const b = this.base.get(f.name);
      this.base.set(f.name, b ? mergeSnapshots([[b], [f]])[0]! : f);
    }
    this.last.clear();
    this.ejections = [];
    for (const done of this.waiting.values()) done(null);
    this.waiting.clear();
  }

  /**
   * The base and the live worker's answer. The base is taken when the answer is in: a worker
   * that exits before answering is in it by then, one that answered and exits later is not yet.
   */
  read(names: Names, signal: AbortSignal): Promise<RegistrySnapshot[]> {
    const ask = this.ask;
    if (!ask) return Promise.resolve([pick(this.base, names)]);
    const id = ++this.next;
    return new Promise((resolve) => {
      const done = (snap: RegistrySnapshot | null): void => resolve(snap ? [pick(this.base, names), snap] : [pick(this.base, names)]);
      this.waiting.set(id, done);
      signal.addEventListener(
        'abort',
        () => {
          if (this.waiting.delete(id)) done(null);
        },
        { once: true },
      );
      ask(id, names);
    });
  }

  stale(names: Names): RegistrySnapshot[] {
    return [pick(this.base, names), pick(this.last, names)];
  }

  /** A machine left the catalog: its series leave what the slot keeps, as they leave the worker's registry. */
  forgetMachine(id: string): void {
    for (const map of [this.base, this.last]) {
      for (const [name, f] of map) {
        if (!f.labelNames.includes('machine')) continue;
        const series = (f.series as { labels: Readonly<Record<string, string>> }[]).filter((s) => s.labels.machine !== id);
        if (series.length !== f.series.length) map.set(name, { ...f, series } as FamilySnapshot);
      }
    }
  }
}

/**
 * The machines some worker's passive ejection keeps out at `now`, one entry each. Workers eject
 * on their own failed connects, so two may hold the same machine out: the entry keeps the latest
 * `until`, because the machine is back in the node's rotation only once the last worker takes it
 * back, and that is when the event feed should say so.
 */
export function unionEjections(slots: Iterable<WorkerSlot>, now: number): Ejection[] {
  const byMachine = new Map<string, Ejection>();
  for (const slot of slots) {
    for (const e of slot.ejections) {
      if (e.until <= now) continue;
      const key = `${e.app}/${e.machine}`;
      const known = byMachine.get(key);
      if (!known || e.until > known.until) byMachine.set(key, e);
    }
  }
  return [...byMachine.values()];
}

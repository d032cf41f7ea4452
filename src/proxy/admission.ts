/**
 * How many caller connections with no request in flight one source address, and one org, may
 * hold open at once (`[proxy] max_idle_per_source`, `max_idle_per_org`).
 *
 * An idle connection costs the proxy a descriptor and a little memory while it serves nobody;
 * without a bound, one caller (or one org's many addresses) could hold enough of them that
 * everyone else is refused by the process's descriptor limit. A new connection over either
 * cap is refused at once; connections that go idle after a request are counted but never cut,
 * so a caller that keeps its connections busy is not harmed. Callers outside every org share
 * one org bucket. Pure bookkeeping: the HTTP path calls it per connection state change.
 */

/** The org bucket of callers that belong to no org. */
export const NO_ORG = 'outside';

export type Refusal = 'source' | 'org';

export class IdleCaps {
  private readonly bySource = new Map<string, number>();
  private readonly byOrg = new Map<string, number>();

  constructor(
    readonly perSource: number,
    readonly perOrg: number,
  ) {}

  /**
   * Counts one more idle connection of `source` in `org`. A new connection (`admit`) over a cap
   * is not counted and the cap it hit is returned; a connection going idle again is always counted.
   */
  enter(source: string, org: string, admit: boolean): Refusal | null {
    const s = this.bySource.get(source) ?? 0;
    const o = this.byOrg.get(org) ?? 0;
    if (admit) {
      if (s >= this.perSource) return 'source';
      if (o >= this.perOrg) return 'org';
    }
    this.bySource.set(source, s + 1);
    this.byOrg.set(org, o + 1);
    return null;
  }

  leave(source: string, org: string): void {
    dec(this.bySource, source);
    dec(this.byOrg, org);
  }

  /** Idle connections now counted for a source and an org (for tests and status). */
  count(source: string, org: string): { source: number; org: number } {
    return { source: this.bySource.get(source) ?? 0, org: this.byOrg.get(org) ?? 0 };
  }
}

function dec(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

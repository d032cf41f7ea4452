/**
 * The verdict logic of active checks, pure (time is passed in): per check, `fall` failures in
 * a row turn it unhealthy and `rise` passes in a row turn it healthy; nothing counts against a
 * machine before its grace period has passed since it (re)started. A machine's verdict joins
 * its checks: unhealthy if any check is, healthy once every check is, otherwise none yet.
 */
import type { HealthStatus } from '../catalog/types.js';

export interface Verdict {
  status: 'healthy' | 'unhealthy';
  reason: string;
}

export class CheckTracker {
  status: HealthStatus = 'unknown';
  successes = 0;
  failures = 0;
  /** Reason of the last result that counted (shown when the verdict changes). */
  reason = 'no check has run yet';

  constructor(
    private readonly fall: number,
    private readonly rise: number,
    /** Epoch ms before which failures do not count (machine start + grace_period). */
    private readonly graceEnd: number,
  ) {}

  /** Records one check result; returns the check's status afterwards. */
  record(ok: boolean, reason: string, now: number): HealthStatus {
    if (ok) {
      this.failures = 0;
      if (this.successes < this.rise) this.successes++;
      if (now < this.graceEnd) return this.status;
      this.reason = reason;
      if (this.status !== 'healthy' && this.successes >= this.rise) this.status = 'healthy';
      return this.status;
    }
    // A booting machine refusing connections is expected: it neither counts nor gets a verdict,
    // but it does end a run of passes, so that a flapping start is not called healthy.
    this.successes = 0;
    if (now < this.graceEnd) return this.status;
    this.reason = reason;
    if (this.failures < this.fall) this.failures++;
    if (this.status !== 'unhealthy' && this.failures >= this.fall) this.status = 'unhealthy';
    return this.status;
  }
}

/** The machine's verdict from its checks' trackers, or null while there is none yet. */
export function machineVerdict(checks: readonly { tracker: CheckTracker; label: string }[]): Verdict | null {
  let healthy = 0;
  for (const c of checks) {
    if (c.tracker.status === 'unhealthy') {
      return { status: 'unhealthy', reason: checks.length > 1 ? `${c.label}: ${c.tracker.reason}` : c.tracker.reason };
    }
    if (c.tracker.status === 'healthy') healthy++;
  }
  if (healthy === 0 || healthy < checks.length) return null;
  const only = checks[0];
  return { status: 'healthy', reason: checks.length === 1 && only ? only.tracker.reason : `${checks.length} checks passing` };
}

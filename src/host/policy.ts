/**
 * The restart policy, pure: what a host does when a machine's process exits on its own, and
 * how long it waits first.
 *
 *   always      restart, whatever the exit code (Fly's default for `fly machine run`)
 *   on-failure  restart after a non-zero exit or a signal, up to max_retries in a row; then failed
 *   no          never; the machine is stopped
 *
 * Restarts in a row wait `base * 2^(n-1)` (n = 1, 2, ...), capped at `max`; a machine that
 * stayed up for `resetAfter` starts counting from zero again, so a crash once a day is not
 * punished like a crash loop.
 */
import type { MachineConfig, MachineExit } from '../catalog/types.js';

export interface Backoff {
  baseMs: number;
  maxMs: number;
  resetAfterMs: number;
}

export type ExitDecision =
  | { action: 'restart'; restarts: number; delayMs: number; reason: string }
  | { action: 'stop'; restarts: number; reason: string }
  | { action: 'fail'; restarts: number; reason: string };

export function describeExit(e: Pick<MachineExit, 'exit_code' | 'signal'>): string {
  if (e.signal) return `killed by ${e.signal}`;
  if (e.exit_code === null) return 'exited (code unknown)';
  return `exited with code ${e.exit_code}`;
}

export function backoffDelay(n: number, b: Pick<Backoff, 'baseMs' | 'maxMs'>): number {
  if (n <= 1) return Math.min(b.baseMs, b.maxMs);
  return Math.min(b.maxMs, b.baseMs * 2 ** Math.min(n - 1, 30));
}

/**
 * @param restartsSoFar restarts in a row before this exit
 * @param upForMs how long the process that just exited ran
 */
export function decideOnExit(restart: MachineConfig['restart'], exit: Pick<MachineExit, 'exit_code' | 'signal'>, restartsSoFar: number, upForMs: number, b: Backoff): ExitDecision {
  const prior = upForMs >= b.resetAfterMs ? 0 : restartsSoFar;
  const what = describeExit(exit);
  const failed = exit.signal !== null || exit.exit_code !== 0;
  if (restart.policy === 'no') return { action: 'stop', restarts: prior, reason: `${what}; restart policy no` };
  if (restart.policy === 'on-failure') {
    if (!failed) return { action: 'stop', restarts: prior, reason: `${what}; restart policy on-failure` };
    if (prior >= restart.max_retries) return { action: 'fail', restarts: prior, reason: `${what}; gave up after ${prior} restarts in a row (on-failure, max_retries ${restart.max_retries})` };
  }
  const n = prior + 1;
  const delayMs = backoffDelay(n, b);
  return { action: 'restart', restarts: n, delayMs, reason: `${what}; restart ${n} in ${delayMs} ms (${restart.policy})` };
}

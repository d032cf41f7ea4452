// The restart policy as a table: what a host does when a machine's process exits on its own.
import { describe, expect, it } from 'vitest';
import { backoffDelay, decideOnExit } from '../../../src/host/policy.js';

const b = { baseMs: 500, maxMs: 30_000, resetAfterMs: 60_000 };
const code = (n: number) => ({ exit_code: n, signal: null });
const sig = (s: string) => ({ exit_code: null, signal: s });

describe('decideOnExit', () => {
  it.each([
    // policy, max_retries, exit, restarts so far, up for ms -> action, restarts, delay
    ['always', 10, code(0), 0, 1000, 'restart', 1, 500],
    ['always', 10, code(1), 3, 1000, 'restart', 4, 4000],
    ['always', 10, sig('SIGKILL'), 20, 1000, 'restart', 21, 30_000],
    ['always', 10, code(1), 7, 120_000, 'restart', 1, 500], // stayed up long enough: counting starts over
    ['on-failure', 10, code(0), 2, 1000, 'stop', 2, null],
    ['on-failure', 10, code(3), 2, 1000, 'restart', 3, 2000],
    ['on-failure', 10, sig('SIGSEGV'), 0, 1000, 'restart', 1, 500],
    ['on-failure', 10, code(3), 10, 1000, 'fail', 10, null],
    ['on-failure', 0, code(3), 0, 1000, 'fail', 0, null],
    ['no', 10, code(1), 0, 1000, 'stop', 0, null],
    ['no', 10, sig('SIGKILL'), 0, 1000, 'stop', 0, null],
  ] as const)('%s (max %d) after %o with %d restarts, up %d ms: %s', (policy, max, exit, so_far, up, action, restarts, delay) => {
    const d = decideOnExit({ policy, max_retries: max }, exit, so_far, up, b);
    expect(d.action).toBe(action);
    expect(d.restarts).toBe(restarts);
    if (delay !== null) expect(d.action === 'restart' && d.delayMs).toBe(delay);
    expect(d.reason).toMatch(exit.signal ? new RegExp(`killed by ${exit.signal}`) : new RegExp(`exited with code ${exit.exit_code}`));
  });
});

describe('backoffDelay', () => {
  it('doubles from the base up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, b))).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(backoffDelay(1000, b)).toBe(30_000);
  });
});

import { describe, expect, it } from 'vitest';
import { CheckTracker, machineVerdict } from '../../../src/health/tracker.js';

type Step = [ok: boolean, at: number, expected: 'unknown' | 'healthy' | 'unhealthy'];

/** Runs a tracker (fall, rise, grace end) through steps, checking the status after each. */
function runTable(fall: number, rise: number, graceEnd: number, steps: Step[]): void {
  const t = new CheckTracker(fall, rise, graceEnd);
  steps.forEach(([ok, at, expected], i) => {
    expect(t.record(ok, ok ? 'http 200' : 'http 503', at), `step ${i} (${ok ? 'pass' : 'fail'} at ${at})`).toBe(expected);
  });
}

describe('CheckTracker: fall / rise', () => {
  const P = true;
  const F = false;
  const cases: { name: string; fall: number; rise: number; steps: Step[] }[] = [
    { name: 'unknown -> healthy after rise passes', fall: 3, rise: 2, steps: [[P, 1, 'unknown'], [P, 2, 'healthy'], [P, 3, 'healthy']] },
    { name: 'unknown -> unhealthy after fall failures', fall: 3, rise: 2, steps: [[F, 1, 'unknown'], [F, 2, 'unknown'], [F, 3, 'unhealthy']] },
    {
      name: 'healthy -> unhealthy needs fall failures in a row',
      fall: 3,
      rise: 2,
      steps: [[P, 1, 'unknown'], [P, 2, 'healthy'], [F, 3, 'healthy'], [F, 4, 'healthy'], [P, 5, 'healthy'], [F, 6, 'healthy'], [F, 7, 'healthy'], [F, 8, 'unhealthy']],
    },
    {
      name: 'unhealthy -> healthy needs rise passes in a row',
      fall: 1,
      rise: 3,
      steps: [[F, 1, 'unhealthy'], [P, 2, 'unhealthy'], [P, 3, 'unhealthy'], [F, 4, 'unhealthy'], [P, 5, 'unhealthy'], [P, 6, 'unhealthy'], [P, 7, 'healthy']],
    },
    { name: 'fall 1 rise 1 follows every result', fall: 1, rise: 1, steps: [[P, 1, 'healthy'], [F, 2, 'unhealthy'], [P, 3, 'healthy'], [F, 4, 'unhealthy']] },
    {
      name: 'a long run of failures does not need more passes to recover',
      fall: 2,
      rise: 2,
      steps: [[F, 1, 'unknown'], [F, 2, 'unhealthy'], [F, 3, 'unhealthy'], [F, 4, 'unhealthy'], [F, 5, 'unhealthy'], [P, 6, 'unhealthy'], [P, 7, 'healthy']],
    },
  ];
  for (const c of cases) it(c.name, () => runTable(c.fall, c.rise, 0, c.steps));
});

describe('CheckTracker: grace period', () => {
  it('ignores failures before the grace period ends', () => {
    runTable(1, 2, 1000, [[false, 100, 'unknown'], [false, 500, 'unknown'], [false, 999, 'unknown'], [false, 1000, 'unhealthy']]);
  });
  it('gives no healthy verdict before the grace period ends, then counts the passes it saw', () => {
    runTable(3, 2, 1000, [[true, 100, 'unknown'], [true, 500, 'unknown'], [true, 900, 'unknown'], [true, 1000, 'healthy']]);
  });
  it('a failure during grace still ends a run of passes', () => {
    runTable(3, 2, 1000, [[true, 100, 'unknown'], [false, 500, 'unknown'], [true, 1000, 'unknown'], [true, 1100, 'healthy']]);
  });
  it('a failure during grace does not count towards fall', () => {
    runTable(2, 2, 1000, [[false, 900, 'unknown'], [false, 1000, 'unknown'], [false, 1100, 'unhealthy']]);
  });
});

describe('machineVerdict', () => {
  const tracker = (status: 'unknown' | 'healthy' | 'unhealthy', reason: string): { tracker: CheckTracker; label: string } => {
    const t = new CheckTracker(1, 1, 0);
    if (status !== 'unknown') t.record(status === 'healthy', reason, 1);
    return { tracker: t, label: status === 'healthy' ? 'tcp :8080' : 'http GET /healthz :8080' };
  };
  it.each([
    { checks: [['unknown', '']], want: null },
    { checks: [['healthy', 'http 200']], want: { status: 'healthy', reason: 'http 200' } },
    { checks: [['unhealthy', 'http 503']], want: { status: 'unhealthy', reason: 'http 503' } },
    { checks: [['healthy', 'tcp connect ok'], ['unknown', '']], want: null },
    { checks: [['healthy', 'tcp connect ok'], ['healthy', 'http 200']], want: { status: 'healthy', reason: '2 checks passing' } },
    { checks: [['healthy', 'tcp connect ok'], ['unhealthy', 'http 500']], want: { status: 'unhealthy', reason: 'http GET /healthz :8080: http 500' } },
    { checks: [['unknown', ''], ['unhealthy', 'timeout after 300ms']], want: { status: 'unhealthy', reason: 'http GET /healthz :8080: timeout after 300ms' } },
  ] as const)('$checks -> $want', ({ checks, want }) => {
    expect(machineVerdict(checks.map(([s, r]) => tracker(s, r)))).toEqual(want);
  });
});

/**
 * `sixpn doctor`: checks that this host has what each role its config enables needs, and
 * says what to do about what is missing.
 *
 * The checks are a table (./checks.ts): each names the roles it is for, may narrow itself to
 * the config (`applies`), and returns ok / warn / fail with a detail and, when not ok, a fix.
 * A new need (the WireGuard mesh, the host agent) is one more entry.
 *
 * ```ts
 * const report = await runDoctor(CHECKS, { config, roles: enabledRoles(config) });
 * process.exitCode = report.failed ? 1 : 0;
 * ```
 */
import type { Config } from '../config/index.js';
import type { RoleName } from '../role.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  status: CheckStatus;
  /** What was found, in one line. */
  detail: string;
  /** What to do about it (when not ok). */
  fix?: string;
}

export interface DoctorContext {
  config: Readonly<Config>;
  /** The roles this host would run (`sixpn up` with this config). */
  roles: readonly RoleName[];
}

export interface DoctorCheck {
  id: string;
  title: string;
  /** The roles that need it: it runs when one of them is enabled ('any': always). */
  roles: readonly RoleName[] | 'any';
  /** Narrows it further by config; when false it is reported as skipped with `skipWhy`. */
  applies?(c: Readonly<Config>): boolean;
  skipWhy?(c: Readonly<Config>): string;
  run(ctx: DoctorContext): Promise<CheckResult>;
}

export interface DoctorLine extends CheckResult {
  id: string;
  title: string;
}

export interface DoctorReport {
  lines: DoctorLine[];
  failed: number;
  warned: number;
}

/** How long one check may take before it counts as failed (a store that never answers). */
export const CHECK_TIMEOUT_MS = 5_000;

function withTimeout(p: Promise<CheckResult>, ms: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => resolve({ status: 'fail', detail: `no answer within ${ms / 1000} s` }), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Runs the checks that concern `ctx.roles`, in table order; a check that throws fails with its message. */
export async function runDoctor(checks: readonly DoctorCheck[], ctx: DoctorContext, timeoutMs = CHECK_TIMEOUT_MS): Promise<DoctorReport> {
  const lines: DoctorLine[] = [];
  for (const check of checks) {
    if (check.roles !== 'any' && !check.roles.some((r) => ctx.roles.includes(r))) continue;
    let result: CheckResult;
    if (check.applies && !check.applies(ctx.config)) result = { status: 'skip', detail: check.skipWhy?.(ctx.config) ?? 'not needed with this config' };
    else {
      result = await withTimeout(
        check.run(ctx).catch((err: unknown): CheckResult => ({ status: 'fail', detail: (err as Error).message ?? String(err) })),
        timeoutMs,
      );
    }
    lines.push({ id: check.id, title: check.title, ...result });
  }
  return { lines, failed: lines.filter((l) => l.status === 'fail').length, warned: lines.filter((l) => l.status === 'warn').length };
}

const MARK: Record<CheckStatus, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

/** The report as people read it: one line per check, its fix under it, a verdict at the end. */
export function renderReport(r: DoctorReport): string {
  const width = Math.max(...r.lines.map((l) => l.title.length), 10);
  let out = '';
  for (const l of r.lines) {
    out += `  ${MARK[l.status].padEnd(4)}  ${l.title.padEnd(width)}  ${l.detail}\n`;
    if (l.fix && l.status !== 'ok' && l.status !== 'skip') out += `  ${''.padEnd(4)}  ${''.padEnd(width)}  fix: ${l.fix}\n`;
  }
  const verdict = r.failed
    ? `${r.failed} check${r.failed === 1 ? '' : 's'} failed${r.warned ? `, ${r.warned} warning${r.warned === 1 ? '' : 's'}` : ''}`
    : r.warned
      ? `all checks passed, ${r.warned} warning${r.warned === 1 ? '' : 's'}`
      : 'all checks passed';
  return `${out}${verdict}\n`;
}

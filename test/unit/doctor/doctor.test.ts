import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/index.js';
import { renderReport, runDoctor, type DoctorCheck } from '../../../src/doctor/index.js';
import { CHECKS } from '../../../src/doctor/checks.js';

const config = parseConfig({ control: { token: 'x'.repeat(20) } }, {});

const check = (id: string, roles: DoctorCheck['roles'], run: DoctorCheck['run'], more: Partial<DoctorCheck> = {}): DoctorCheck => ({ id, title: id, roles, run, ...more });

describe('runDoctor', () => {
  it('runs the checks of the enabled roles in table order; a throw or a hang is a failure', async () => {
    const table: DoctorCheck[] = [
      check('always', 'any', async () => ({ status: 'ok', detail: 'fine' })),
      check('gw', ['gateway'], async () => ({ status: 'fail', detail: 'never run' })),
      check('proxy-only', ['proxy'], async () => ({ status: 'warn', detail: 'hmm', fix: 'do x' })),
      check('throws', ['proxy', 'dns'], async () => {
        throw new Error('boom');
      }),
      check('hangs', ['dns'], () => new Promise(() => undefined)),
      check('skipped', 'any', async () => ({ status: 'fail', detail: 'never run' }), { applies: () => false, skipWhy: () => 'not with this config' }),
    ];
    const r = await runDoctor(table, { config, roles: ['proxy', 'dns'] }, 50);
    expect(r.lines.map((l) => [l.id, l.status, l.detail])).toEqual([
      ['always', 'ok', 'fine'],
      ['proxy-only', 'warn', 'hmm'],
      ['throws', 'fail', 'boom'],
      ['hangs', 'fail', 'no answer within 0.05 s'],
      ['skipped', 'skip', 'not with this config'],
    ]);
    expect(r).toMatchObject({ failed: 2, warned: 1 });
    const text = renderReport(r);
    expect(text).toMatch(/^ {2}WARN {2}proxy-only +hmm\n {2}.* fix: do x\n/m);
    expect(text.trimEnd().split('\n').at(-1)).toBe('2 checks failed, 1 warning');
  });

  it('has one entry per need, each naming its roles, and a fix for every failure it reports', async () => {
    const ids = CHECKS.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining(['flycast-route', 'nonlocal-bind', 'tun', 'wireguard-go', 'nft', 'store', 'control-port', 'dns-port']));
    // A config whose gateway tools do not exist: every failure says what to do.
    const broken = parseConfig({ control: { token: '' }, wireguard: { enabled: true, wireguard_go: '/nonexistent/wireguard-go', wg: '/nonexistent/wg', nft: '/nonexistent/nft' } }, {});
    const r = await runDoctor(CHECKS, { config: broken, roles: ['gateway', 'control'] });
    const failed = r.lines.filter((l) => l.status === 'fail');
    expect(failed.map((l) => l.id)).toEqual(expect.arrayContaining(['control-token', 'wireguard-go', 'wg', 'nft']));
    for (const l of failed) expect(l.fix, l.id).toBeTruthy();
    expect(r.lines.find((l) => l.id === 'wireguard-go')!.fix).toContain('apt-get install wireguard-go');
  });
});

/**
 * `sixpn status` and `sixpn events` against a real control API process: the flyctl-style
 * app block and machines table (HEALTH CHECKS "1 total, 1 passing", HOST "-" until machines
 * carry one), --json, --watch redrawing after a stop, and --follow printing health and
 * machine events as they happen (resuming with Last-Event-ID is tested at the API:
 * test/unit/control/live-routes.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControl, type TestControl } from '../harness/control.js';
import { runSixpn, startSixpn, type Proc } from '../harness/procs.js';

let c: TestControl;
let env: NodeJS.ProcessEnv;
const sixpn = (args: string[]) => runSixpn(args, { env });
const follow = (args: string[]): Proc => startSixpn(args, { env });

beforeAll(async () => {
  c = await startControl();
  env = { ...process.env, SIXPN_API_URL: c.url, SIXPN_TOKEN: c.token };
  const ok = (r: { status: number; body: unknown }) => expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
  ok(await c.api('POST', '/v1/orgs', { name: 'acme', network_id: 0x18 }));
  ok(
    await c.api('POST', '/v1/apps', {
      name: 'web',
      org: 'acme',
      services: [{ protocol: 'http', internal_port: 8080, ports: [{ port: 80, handlers: ['http'] }], http_checks: [{ path: '/' }] }],
    }),
  );
  ok(await c.api('POST', '/v1/apps/web/machines', { id: 'a1a1a1a1000001', region: 'ams', upstream: '127.0.0.1:9' }));
  ok(await c.api('POST', '/v1/apps/web/machines', { id: 'b2b2b2b2000002', region: 'ord', upstream: '127.0.0.1:9' }));
  ok(await c.api('POST', '/v1/apps/web/ips', { type: 'private_v6' }));
  ok(await c.api('PATCH', '/v1/machines/a1a1a1a1000001', { health: { status: 'healthy', reason: 'http 200' } }));
});

afterAll(async () => {
  await c?.stop();
});

describe('sixpn status', () => {
  it('shows the app, its Flycast address and a machines table', async () => {
    await c.api('PATCH', '/v1/machines/b2b2b2b2000002', { health: { status: 'unhealthy', reason: 'http 503' } });
    const r = await sixpn(['status', '--app', 'web']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [app, machines] = r.stdout.split('\nMachines\n');
    expect(app).toBe(['App', '  Name     = web', '  Owner    = acme', '  Hostname = web.internal', '  Services = http 80 -> 8080', '  Flycast  = fdaa:0:18:0:1::3', ''].join('\n'));
    const rows = machines!.trimEnd().split('\n').map((l) => l.split('\t').map((s) => s.trim()));
    expect(rows[0]).toEqual(['ID', 'REGION', 'STATE', 'HEALTH CHECKS', 'HOST', 'UPDATED']);
    // Nearest region to the node (ams) first.
    expect(rows[1]).toEqual(['a1a1a1a1000001', 'ams', 'started', '1 total, 1 passing', '-', 'just now']);
    expect(rows[2]).toEqual(['b2b2b2b2000002', 'ord', 'started', '1 total, 1 critical', '-', 'just now']);
    expect(r.stdout).toMatch(/\nFailing checks\n {2}b2b2b2b2000002 \(ord\): http 503, since just now\n$/);
  });

  it('answers --json, and an unknown app with exit 4', async () => {
    const j = JSON.parse((await sixpn(['status', '--app', 'web', '--json'])).stdout);
    expect(j).toMatchObject({ name: 'web', org: 'acme', flycast: [{ address: 'fdaa:0:18:0:1::3', org: 'acme' }] });
    expect(j.machines.map((m: any) => [m.id, m.checks, m.host])).toEqual([
      ['a1a1a1a1000001', { total: 1, status: 'passing' }, null],
      ['b2b2b2b2000002', { total: 1, status: 'critical' }, null],
    ]);
    const r = await sixpn(['status', '--app', 'nope']);
    expect(r.code).toBe(4);
    expect(r.stderr).toBe('Error: app nope not found\n');
    const missing = await sixpn(['status']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('Error: sixpn status needs --app APP\n');
  });

  it('--watch prints the app again when it changes', async () => {
    const p = follow(['status', '--app', 'web', '--watch']);
    try {
      await p.waitForLine(/^a1a1a1a1000001\s+ams\s+started/, 5000);
      const t0 = Date.now();
      expect((await c.api('POST', '/v1/machines/a1a1a1a1000001/stop')).status).toBe(200);
      await p.waitForLine(/^a1a1a1a1000001\s+ams\s+stopped/, 3000);
      expect(Date.now() - t0).toBeLessThan(2000);
      // A pipe gets each change once, not a copy every 2 s.
      await new Promise((r) => setTimeout(r, 2500));
      expect(p.output().match(/^App$/gm)).toHaveLength(2);
    } finally {
      await p.stop();
      await c.api('POST', '/v1/machines/a1a1a1a1000001/start');
    }
  });
});

describe('sixpn events', () => {
  it('lists what happened, filtered by kind', async () => {
    const r = await sixpn(['events', '--app', 'web', '--kind', 'health']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toContainEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z health web\[b2b2b2b2000002\] ord \[warn\] machine b2b2b2b2000002 of web unhealthy: http 503 \(was unknown\)$/));
    expect(lines.every((l) => / health /.test(l))).toBe(true);
    const bad = await sixpn(['events', '--kind', 'nope']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^Error: kind "nope" is not an event kind/);
  });

  it('--follow prints health and machine events as they happen, one JSON object a line with --json', async () => {
    const p = follow(['events', '--app', 'web', '--follow', '--json']);
    try {
      // The recent history comes first.
      await p.waitForLine(/"kind":"health"/, 5000);
      const t0 = Date.now();
      await c.api('PATCH', '/v1/machines/b2b2b2b2000002', { health: { status: 'healthy', reason: 'http 200' } });
      const line = await p.waitForLine(/healthy: http 200 \(was unhealthy\)/, 3000);
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(JSON.parse(line)).toMatchObject({ kind: 'health', app: 'web', machine: 'b2b2b2b2000002', region: 'ord', level: 'info', data: { from: 'unhealthy', to: 'healthy' } });
      await c.api('POST', '/v1/machines/b2b2b2b2000002/stop');
      expect(JSON.parse(await p.waitForLine(/stopped \(was started\)/, 3000))).toMatchObject({ kind: 'machine', data: { from: 'started', to: 'stopped' } });
    } finally {
      await p.stop();
    }
  });
});

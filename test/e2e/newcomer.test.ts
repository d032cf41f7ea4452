/**
 * A newcomer's first run, end to end: clone the committed repository, `npm ci`, `npm start`,
 * then run every command the start-up banner prints (curl through the Flycast development
 * mapping, the refused cross-org curl, dig, the CLI, /metrics, the dashboard link), then
 * Ctrl-C (SIGINT to the process group, as a terminal does) and check a clean exit 0 with no
 * process left behind.
 *
 * `npm ci --prefer-offline` takes ~25 s with a warm npm cache; when it cannot run (no cache,
 * no network) the test copies the repository's node_modules and builds instead, and says so.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCommand, ROOT } from '../harness/env.js';
import { run, start, type Proc } from '../harness/procs.js';

interface Printed {
  what: string;
  run: string;
}

/** The `try:` block of the banner: `  <what>  <command>` lines (comments and Ctrl-C skipped). */
function parseTry(output: string): Printed[] {
  const lines = output.split('\n');
  const at = lines.findIndex((l) => /^\s*try:\s*$/.test(l));
  if (at < 0) return [];
  const out: Printed[] = [];
  for (const l of lines.slice(at + 1)) {
    const m = /^\s+([a-z]+)\s{2,}(.+)$/.exec(l);
    if (!m) {
      if (/^\s+#/.test(l)) continue;
      break;
    }
    if (m[1] === 'stop') break;
    out.push({ what: m[1]!, run: m[2]! });
  }
  return out;
}

/** Pids of live processes whose command line mentions `dir`. */
function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)) pids.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** What `nc HOST PORT` shows for one line typed: the greeting, then the line echoed. */
function tcpEcho(host: string, port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    let got = '';
    s.setTimeout(3000, () => s.destroy(new Error(`no echo; got ${JSON.stringify(got)}`)));
    s.on('data', (b) => {
      got += b.toString();
      if (got.includes('\n') && !got.includes(line)) s.write(`${line}\n`);
      if (got.includes(`${line}\n`)) {
        s.end();
        resolve(got);
      }
    });
    s.on('error', reject);
  });
}

const sh = (cmd: string, cwd: string) => run('sh', ['-c', cmd], { cwd, timeoutMs: 15_000 });

describe.skipIf(!hasCommand('git') || !hasCommand('npm'))('newcomer: clone, npm ci, npm start, the printed commands work', () => {
  let dir: string;
  let app: Proc | null = null;
  let installedWith = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-newcomer-'));
    // SIXPN_NEWCOMER_REPO: clone another repository (a snapshot of a working tree, say).
    execFileSync('git', ['clone', '-q', process.env.SIXPN_NEWCOMER_REPO ?? ROOT, join(dir, 'sixpn')]);
    dir = join(dir, 'sixpn');
    const ci = await run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir, timeoutMs: 90_000 });
    if (ci.code === 0) {
      installedWith = 'npm ci --prefer-offline';
    } else {
      // No npm cache and no registry: same dependencies, copied; then what `prepare` would do.
      cpSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), { recursive: true, verbatimSymlinks: true });
      const build = await run('npm', ['run', 'build'], { cwd: dir, timeoutMs: 60_000 });
      expect(build.code, build.stdout + build.stderr).toBe(0);
      installedWith = `copied node_modules (npm ci failed: ${ci.stderr.split('\n').find((l) => l.includes('ERR')) ?? ci.code})`;
    }
  }, 150_000);

  afterAll(async () => {
    if (app && app.child.exitCode === null) {
      try {
        process.kill(-app.child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(join(dir, '..'), { recursive: true, force: true });
  });

  it('starts, every printed command works, and Ctrl-C exits 0 leaving nothing behind', async () => {
    console.log(`newcomer: installed with ${installedWith}`);
    // detached: its own process group, so SIGINT reaches npm and node as a terminal's Ctrl-C does.
    app = start('npm', ['start'], { cwd: dir, detached: true, env: { ...process.env, SIXPN_TOKEN: '', LOG_LEVEL: '' } });
    await app.waitForLine(/^\s+stop\s+Ctrl-C/, 30_000);
    const printed = parseTry(app.output());
    const kinds = printed.map((p) => p.what);
    expect(kinds).toEqual(expect.arrayContaining(['dashboard', 'curl', 'tcp', 'refused', 'dns', 'cli', 'failover', 'restore', 'run', 'hosts', 'logs', 'metrics']));

    for (const p of printed) {
      switch (p.what) {
        case 'dashboard': {
          const r = await fetch(p.run, { redirect: 'manual' });
          expect(r.status, p.run).toBe(303);
          const cookie = r.headers.get('set-cookie')!.split(';')[0]!;
          const page = await fetch(new URL(r.headers.get('location')!, p.run));
          expect(await page.text()).toContain('sixpn dashboard');
          const status = await (await fetch(new URL('/v1/status', p.run), { headers: { cookie } })).json();
          expect(status.totals.machines).toBeGreaterThanOrEqual(5);
          break;
        }
        case 'curl': {
          // A few times: the proxy picks machines (nearest region first); each says who it is.
          const r = await sh(p.run, dir);
          expect(r.code, `${p.run}: ${r.stderr}`).toBe(0);
          expect(r.stdout).toMatch(/^hello from machine [0-9a-f]+ of app hello in region [a-z]{3}/);
          break;
        }
        case 'scale': {
          // sleepy scales to zero: whether its machine is up yet or stopped, the request is answered by it.
          const r = await sh(p.run, dir);
          expect(r.code, `${p.run}: ${r.stderr}`).toBe(0);
          expect(r.stdout).toMatch(/^hello from machine [0-9a-f]+ of app sleepy in region ewr/);
          break;
        }
        case 'refused': {
          const r = await sh(p.run, dir);
          expect(r.stdout, p.run).toMatch(/forbidden|not a member/i);
          expect(r.stdout).not.toMatch(/hello from machine/);
          break;
        }
        case 'tcp': {
          const m = /^nc (\S+) (\d+)$/.exec(p.run);
          expect(m, p.run).not.toBeNull();
          // nc is not installed everywhere: the same exchange over a socket.
          const got = await tcpEcho(m![1]!, Number(m![2]), 'hi from a newcomer');
          expect(got).toMatch(/^echo from machine [0-9a-f]+ of app echo in region [a-z]{3}/);
          expect(got).toContain('hi from a newcomer\n');
          break;
        }
        case 'dns': {
          if (!hasCommand('dig')) break;
          const r = await sh(p.run, dir);
          expect(r.code, `${p.run}: ${r.stderr}`).toBe(0);
          if (p.run.includes('_apps.internal')) expect(r.stdout).toMatch(/"[^"]*hello[^"]*"/);
          else expect(r.stdout.trim().split('\n').every((l) => l.startsWith('fdaa:0:18:'))).toBe(true);
          expect(r.stdout).not.toContain('billing'); // another org's app
          break;
        }
        case 'cli': {
          const r = await sh(p.run, dir);
          expect(r.code, `${p.run}: ${r.stdout}${r.stderr}`).toBe(0);
          expect(r.stdout).toContain('fdaa:0:18:0:1::3');
          break;
        }
        case 'failover': {
          // The nearest (ewr) machine stops; the next request is answered from another region.
          const r = await sh(p.run, dir);
          expect(r.code, `${p.run}: ${r.stdout}${r.stderr}`).toBe(0);
          expect(r.stdout).toMatch(/hello from machine [0-9a-f]+ of app hello in region (?!ewr)[a-z]{3}/);
          break;
        }
        case 'restore': {
          const r = await sh(p.run, dir);
          expect(r.code, `${p.run}: ${r.stdout}${r.stderr}`).toBe(0);
          // (Which machine answers next is the balancer's call: slow start ramps a restarted one up.)
          const status = await (await fetch('http://127.0.0.1:4280/v1/status', { headers: { authorization: 'Bearer demo-token' } })).json();
          // (sleepy scales to zero: its machine is started or stopped by traffic, not by this.)
          const machines = status.orgs.flatMap((o: any) => o.apps).filter((a: any) => a.name !== 'sleepy').flatMap((a: any) => a.regions).flatMap((g: any) => g.machines);
          expect(machines.filter((m: any) => m.state === 'started')).toHaveLength(machines.length);
          break;
        }
        case 'run': {
          // A host (the laptop, local driver) starts a machine of hello; it answers through Flycast.
          const r = await sh(p.run, dir);
          expect(r.code, `${p.run}: ${r.stdout}${r.stderr}`).toBe(0);
          expect(r.stdout).toMatch(/^Machine [0-9a-f]+ of hello is started on host demo in ewr at fdaa:0:18:[0-9a-f:]+ \(upstream 127\.0\.0\.1:\d+\)$/m);
          break;
        }
        case 'hosts': {
          const r = await sh(p.run, dir);
          expect(r.code, `${p.run}: ${r.stdout}${r.stderr}`).toBe(0);
          // two machines: the one `run` started and sleepy's
          expect(r.stdout).toMatch(/^demo\s+ewr\s+[0-9a-f]+:[0-9a-f]+\s+up\s+local\s+2\s/m);
          break;
        }
        case 'logs': {
          const r = await sh(p.run, dir);
          expect(r.code, `${p.run}: ${r.stdout}${r.stderr}`).toBe(0);
          expect(r.stdout).toMatch(/app\[[0-9a-f]+\] ewr \[sixpn\] LOCAL DRIVER: no network isolation/);
          expect(r.stdout).toMatch(/app\[[0-9a-f]+\] ewr \[info\] demo machine [0-9a-f]+ of hello serving http on 127\.0\.0\.1:\d+/);
          break;
        }
        case 'metrics': {
          const r = await sh(p.run, dir);
          expect(r.code, p.run).toBe(0);
          expect(r.stdout).toMatch(/^sixpn_catalog_changes_total/m);
          expect(r.stdout).toMatch(/^sixpn_proxy_http_requests_total\{app="hello"/m);
          break;
        }
        default:
          throw new Error(`the banner prints a command this test does not know: ${p.what} ${p.run}`);
      }
    }

    process.kill(-app.child.pid!, 'SIGINT');
    const code = await Promise.race([app.exited, new Promise((r) => setTimeout(() => r('still running after 15 s'), 15_000))]);
    expect(code, app.output().slice(-2000)).toBe(0);
    expect(app.output()).toMatch(/draining and shutting down/);
    await new Promise((r) => setTimeout(r, 200));
    expect(processesIn(dir)).toEqual([]);
    // The ports are free again.
    const again = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:4280/healthz'], { timeoutMs: 5000 });
    expect(again.stdout).toBe('000');
  }, 90_000);
});

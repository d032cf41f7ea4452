/**
 * The catalog survives its store (issue 18), with real processes: a redis-server, two nodes
 * sharing it (`sixpn up` with the Flycast proxy in front of two real machine processes, and
 * `sixpn control`), a steady HTTP load through Flycast, and the CLI.
 *
 * Redis is killed and comes back empty: not one proxied request fails, both nodes go
 * `diverged` and say so (error log line, metric, /v1/status, the dashboard's banner in Chromium,
 * live on an open page and on one opened while diverged, whose session is checked against the
 * node's last good view,
 * CLI exit 69 naming what to do),
 * writes are refused; `sixpn catalog restore --from-snapshot` puts the catalog back, both nodes
 * resume, and a change made then reaches the other node. A node started while Redis is down
 * serves its snapshot; one without a snapshot refuses to start and says why. Export and import
 * round-trip exactly.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { startControl, type TestControl } from '../harness/control.js';
import { addLoopbackAddress, IN_NETNS, removeLoopbackAddress } from '../harness/env.js';
import { acmeWebSeedToml, sectionsToml } from '../harness/health-config.js';
import { startMachines, type TestMachine } from '../harness/health-machines.js';
import { freePort, sleep, waitFor } from '../harness/net.js';
import { runSixpn } from '../harness/procs.js';
import { RedisServer } from '../harness/redis.js';
import { failed, SteadyLoad } from '../harness/steady-load.js';

const CALLER = 'fdaa:0:18:0:ca11::2';
const FLYCAST = 'fdaa:0:18:0:1::3';
const HOST_ID = parseHostId('a7b:7d')!;
const CATALOG = 'snapshot_interval = "100ms"\nidentity_check_interval = "500ms"';

const seed = (machines: TestMachine[]): string =>
  [sectionsToml({ proxy: { connect_timeout: '500ms' }, dns: { enabled: false } }), acmeWebSeedToml({ machines, flycast: true })].join('\n');

const cli = (node: TestControl, args: string[]) => runSixpn(args, { env: { ...process.env, SIXPN_API_URL: node.url, SIXPN_TOKEN: node.token } });
const catalogOf = async (node: TestControl) => (await node.api('GET', '/v1/status')).body.catalog as { state: string; identity: string; store_identity: string | null; message: string | null };

describe.skipIf(!IN_NETNS)('the catalog survives its store', () => {
  let redis: RedisServer;
  let machines: TestMachine[] = [];
  let a: TestControl;
  let b: TestControl;
  let browser: BrowserContext | null = null;
  const others: TestControl[] = [];
  const keptDirs: string[] = [];
  const report: string[] = [];

  beforeAll(async () => {
    redis = await new RedisServer(await freePort()).start();
    machines = await startMachines(['d1000001aaaa01', 'd1000002aaaa02'].map((id, i) => ({ id, name: `ams-${i + 1}`, region: 'ams', host: machineAddress(0x18, HOST_ID, id), port: 8080 })));
    addLoopbackAddress(CALLER);
    a = await startControl({ command: 'up', redisUrl: redis.url, namespace: 'dur', nodeToml: 'name = "node-a"', catalogToml: CATALOG, extraToml: seed(machines) });
    b = await startControl({ redisUrl: redis.url, namespace: 'dur', nodeToml: 'name = "node-b"', catalogToml: CATALOG });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    for (const n of [a, b, ...others]) await n?.stop();
    await Promise.all(machines.map((m) => m.stop()));
    await redis?.stop();
    removeLoopbackAddress(CALLER);
    for (const d of keptDirs) rmSync(d, { recursive: true, force: true });
    if (report.length) console.log(`catalog durability figures:\n  ${report.join('\n  ')}`);
  });

  const snapshotOf = (n: TestControl) => join(n.dir, 'data/catalog-snapshot.json');

  it('Redis restarted empty under load: zero failed requests, loud on every surface, restore brings writes back everywhere', async () => {
    for (const n of [a, b]) await waitFor(() => existsSync(snapshotOf(n)) && readFileSync(snapshotOf(n), 'utf8').includes('"web"'), { what: `${n.dir} snapshot`, timeoutMs: 10_000 });
    const before = await catalogOf(a);
    expect(before.state).toBe('ok');
    expect((await catalogOf(b)).identity).toBe(before.identity);

    const load = new SteadyLoad(`http://[${FLYCAST}]:80`, { localAddress: CALLER, concurrency: 4, timeoutMs: 3_000 });
    load.start();
    await waitFor(() => load.samples.length >= 100, { what: '100 requests' });
    // The dashboard of node a, open before the wipe (its banner must appear live).
    browser = await chromium.launchPersistentContext(join(a.dir, 'profile'), {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page: Page = await browser.newPage();
    // What the page saw, for the message when the banner does not come (a flake seen in full CI runs).
    const pageLog: string[] = [];
    page.on('console', (m) => pageLog.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => pageLog.push(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
    page.on('response', (r) => {
      if (!r.ok()) pageLog.push(`response ${r.status()}: ${r.url()}`);
    });
    await page.goto(`${a.url}/dashboard?token=${a.token}`);
    await page.locator('[data-app="web"]').first().waitFor({ timeout: 10_000 });
    expect(await page.locator('#catalogbanner').isHidden()).toBe(true);
    const tWipe = Date.now();
    await redis.kill();
    redis.wipe();
    await redis.start();
    for (const n of [a, b]) await waitFor(async () => (await catalogOf(n)).state === 'diverged', { what: 'diverged', timeoutMs: 10_000 });
    const noticed = Date.now() - tWipe;
    await sleep(1_000); // keep serving under load while diverged

    for (const n of [a, b]) {
      const c = await catalogOf(n);
      expect(c.store_identity).toBeNull();
      expect(c.message).toMatch(/came back empty.*keeps serving its last good view \(1 orgs, 1 apps, 2 machines\).*sixpn catalog restore --from-snapshot.*sixpn catalog adopt/);
      // The error line in the node's log.
      const line = n.proc.output().split('\n').find((l) => l.includes('"level":50') && l.includes('came back empty'));
      expect(line, 'error log line').toBeDefined();
      const metrics = (await n.api('GET', '/metrics')).body as string;
      expect(metrics).toMatch(/sixpn_catalog_state\{state="diverged"\} 1/);
      expect(metrics).toMatch(/sixpn_catalog_state\{state="ok"\} 0/);
      // The view is kept: the status still shows the app and its machines.
      const st = (await n.api('GET', '/v1/status')).body;
      expect(st.totals).toMatchObject({ orgs: 1, apps: 1, machines: 2 });
    }
    // The dashboard banner, pushed to the open page.
    try {
      await page.locator('#catalogbanner:not([hidden])').waitFor({ timeout: 10_000 });
    } catch (err) {
      const streams = /sixpn_dashboard_streams \S+/.exec((await a.api('GET', '/metrics')).body as string)?.[0];
      const seen = { live: await page.locator('#livetext').textContent(), node: await page.locator('#nodeinfo').textContent(), streams, pageLog, warnings: a.proc.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-10) };
      throw new Error(`no catalog banner on node a's dashboard: ${JSON.stringify(seen)}`, { cause: err });
    }
    expect(await page.locator('#catalogbanner').textContent()).toMatch(/Catalog diverged: writes are refused.*came back empty.*sixpn catalog restore/);
    // A dashboard opened now (its session checked while the store holds another catalog) shows
    // the banner too: the session is checked against the node's last good view, not refused.
    const late = await browser.newPage();
    await late.goto(`${a.url}/dashboard`);
    await late.locator('#catalogbanner:not([hidden])').waitFor({ timeout: 10_000 });
    await late.close();
    const cookie = (await browser.cookies(a.url)).find((c) => c.name === 'sixpn_dashboard');
    expect(cookie, 'dashboard session cookie').toBeDefined();
    const bySession = await fetch(`${a.url}/v1/status`, { headers: { cookie: `sixpn_dashboard=${cookie!.value}` } });
    expect(bySession.status).toBe(200);
    expect(((await bySession.json()) as { catalog: { state: string } }).catalog.state).toBe('diverged');
    expect(await page.locator('[data-app="web"]').count()).toBeGreaterThan(0);
    const refused = await cli(b, ['apps', 'create', 'api', '--org', 'acme']);
    expect(refused.code).toBe(69);
    expect(refused.stderr).toMatch(/^Error: the catalog store .* came back empty.*sixpn catalog restore/);
    // `catalog status` says the same and exits non-zero.
    const status = await cli(a, ['catalog', 'status']);
    expect(status.code).toBe(69);
    expect(status.stdout).toMatch(/State: +diverged/);

    const restore = await cli(a, ['catalog', 'restore', '--from-snapshot']);
    expect(restore.stderr).toBe('');
    expect(restore.code).toBe(0);
    const tRestore = Date.now();
    for (const n of [a, b]) await waitFor(async () => (await catalogOf(n)).state === 'ok', { what: 'ok again', timeoutMs: 10_000 });
    expect((await catalogOf(b)).identity).toBe(before.identity);
    const resumed = Date.now() - tRestore;
    await page.locator('#catalogbanner[hidden]').waitFor({ state: 'attached', timeout: 10_000 });

    const create = await cli(b, ['apps', 'create', 'api', '--org', 'acme']);
    expect(create.stderr).toBe('');
    expect(create.code).toBe(0);
    await waitFor(async () => ((await a.api('GET', '/v1/status')).body.orgs[0].apps as { name: string }[]).some((x) => x.name === 'api'), { what: 'api on node a', timeoutMs: 5_000 });
    const machinesBack = (await b.api('GET', '/v1/apps/web/machines')).body as unknown[];
    expect(machinesBack).toHaveLength(2);

    await load.stop();
    const after = load.between(tWipe);
    report.push(`wiped Redis: noticed by both nodes in ${noticed} ms, ${after.filter(failed).length}/${after.length} proxied requests failed, writes back on both ${resumed} ms after restore`);
    expect(load.samples.filter(failed)).toEqual([]);
    expect(after.length).toBeGreaterThan(100);
  }, 90_000);

  it('export and import round-trip exactly', async () => {
    const file = join(a.dir, 'backup.json');
    const exp = await cli(a, ['catalog', 'export', '--output', file]);
    expect(exp.code).toBe(0);
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    expect(doc.apps.map((x: { name: string }) => x.name).sort()).toEqual(['api', 'web']);
    // A fresh catalog (another namespace) takes the document and keeps its own identity.
    const fresh = await startControl({ redisUrl: redis.url, namespace: 'dur-copy', catalogToml: CATALOG });
    others.push(fresh);
    const imp = await cli(fresh, ['catalog', 'import', file]);
    expect(imp.stderr).toBe('');
    expect(imp.code).toBe(0);
    const again = (await fresh.api('GET', '/v1/catalog/export')).body;
    const strip = (d: Record<string, unknown>) => ({ ...d, identity: null, written_at: 0 });
    expect(strip(again)).toEqual(strip(doc));
    expect(again.identity.id).not.toBe(doc.identity.id);
    // Importing into a catalog that is not empty changes nothing.
    const twice = await cli(fresh, ['catalog', 'import', file]);
    expect(twice.code).toBe(5);
    expect(twice.stderr).toMatch(/^Error: .*not empty|holds/);
  }, 60_000);

  it('a node started while Redis is down serves its snapshot and takes writes once Redis is back; without a snapshot it refuses to start', async () => {
    await b.proc.stop();
    await redis.kill();
    keptDirs.push(b.dir);
    b = await startControl({ dir: b.dir, redisUrl: redis.url, namespace: 'dur', nodeToml: 'name = "node-b"', catalogToml: CATALOG });
    const c = await catalogOf(b);
    expect(c.state).toBe('snapshot');
    expect(c.message).toMatch(/unreachable.*serves catalog .* from its snapshot/);
    expect(b.proc.output()).toMatch(/serves catalog .* from its snapshot/);
    const st = (await b.api('GET', '/v1/status')).body;
    expect(st.totals).toMatchObject({ orgs: 1, apps: 2, machines: 2 });
    const refused = await cli(b, ['apps', 'create', 'later', '--org', 'acme']);
    expect(refused.code).toBe(69);

    // No snapshot, no store: no start, and the message says why.
    const bare = await runSixpn(['control', '--config', await bareConfig(redis.port)], { timeoutMs: 20_000 });
    expect(bare.code).not.toBe(0);
    expect(bare.stderr).toMatch(/no snapshot of the catalog .* so it does not start/);

    await redis.start(); // its append-only file brings the catalog back
    await waitFor(async () => (await catalogOf(b)).state === 'ok', { what: 'b ok', timeoutMs: 10_000 });
    const create = await cli(b, ['apps', 'create', 'later', '--org', 'acme']);
    expect(create.code).toBe(0);
    await waitFor(async () => ((await a.api('GET', '/v1/status')).body.orgs[0].apps as { name: string }[]).some((x) => x.name === 'later'), { what: 'later on node a', timeoutMs: 5_000 });
  }, 60_000);
});

async function bareConfig(port: number): Promise<string> {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-bare-'));
  const file = join(dir, 'node.toml');
  const ctl = await freePort();
  writeFileSync(file, `[catalog]\nstore = "redis"\nredis_url = "redis://127.0.0.1:${port}"\nnamespace = "dur"\n[control]\nlisten = "127.0.0.1:${ctl}"\ntoken = "test-token-0123456789"\n`);
  setTimeout(() => rmSync(dir, { recursive: true, force: true }), 30_000).unref();
  return file;
}

/**
 * The health dashboard in real headless Chromium (Debian's, driven by playwright-core): a
 * node with the demo machines, the control API and the health checker; the page shows a
 * machine, the machine is stopped through the API, the page shows it stopped within 2 s; under
 * steady load through the Flycast proxy, a stopped machine's request rate falls to zero and
 * its region's share of the app's traffic moves to the next region within 2 s.
 * Also: catalog strings are shown as text (no script from a hostile reason), the sign-in form
 * works without a link, and screenshots on a laptop and a phone viewport land in test/out/
 * (or $SIXPN_SCREENSHOTS).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { startControlRole, type ControlRole } from '../../src/control/index.js';
import { startDemoRole } from '../../src/demo/index.js';
import { startHealthRole } from '../../src/health/index.js';
import { startNode, type RunningNode } from '../../src/node.js';
import { startProxyRole } from '../../src/proxy/index.js';
import { hasCommand, ROOT } from '../harness/env.js';
import { freePort } from '../harness/net.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const TOKEN = 'dashboard-e2e-token';
const MACHINE = 'e286d4c2a17d89';
const SHOTS = process.env.SIXPN_SCREENSHOTS ?? join(ROOT, 'test/out');
/** The hello machine in the next region (iad) after ewr. */
const NEXT = '1781973f22d958';

/** Console errors and uncaught exceptions of a page (a CSP violation is one). */
function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  return problems;
}

describe.skipIf(!hasCommand(CHROMIUM))('dashboard in headless Chromium', () => {
  let dir: string;
  let node: RunningNode;
  let api: string;
  let ctx: BrowserContext;
  let helloUrl: string;

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'sixpn-dash-'));
    // The demo config, on free ports with an in-memory catalog.
    const [hello, echo, billing] = [await freePort(), await freePort(), await freePort()];
    helloUrl = `http://127.0.0.1:${hello}/`;
    const toml = readFileSync(join(ROOT, 'config/demo.toml'), 'utf8')
      .replace('listen_port = 10080', `listen_port = ${hello}`)
      .replace('listen_port = 10007', `listen_port = ${echo}`)
      .replace('listen_port = 10081', `listen_port = ${billing}`)
      .replace('listen = "127.0.0.1:4280"', 'listen = "127.0.0.1:0"')
      .replace('path = "../data/demo-catalog.json"', 'path = ""')
      .replace('token = "demo-token"', `token = "${TOKEN}"`)
      .replace('pretty = true', 'pretty = false')
      .replace('level = "info"', 'level = "warn"');
    writeFileSync(join(dir, 'sixpn.toml'), toml);
    node = await startNode(loadConfig(join(dir, 'sixpn.toml'), {}), ['demo', 'control', 'health', 'proxy'], {
      demo: startDemoRole,
      control: startControlRole,
      health: startHealthRole,
      proxy: startProxyRole,
    });
    const addr = (node.ctx.roles.get('control') as ControlRole).address();
    api = `http://127.0.0.1:${addr.port}`;
    ctx = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1366, height: 900 },
    });
  });

  // Each open dashboard holds an event stream, and Chromium keeps at most 6 connections per
  // host: pages left open by earlier tests (or by a failed one) would starve a later page's load.
  afterEach(async () => {
    const first = ctx.pages()[0];
    for (const p of ctx.pages()) if (p !== first) await p.close();
  });

  afterAll(async () => {
    await ctx?.close();
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('charts a machine stopped under load: its rate falls to zero and its region\'s share moves within 2 s', async () => {
    const page = await ctx.newPage();
    const problems = watchProblems(page);
    // Steady load: four callers back to back through the Flycast address.
    let running = true;
    let served = 0;
    const worker = async (): Promise<void> => {
      while (running) {
        const r = await fetch(helloUrl).catch(() => null);
        if (r) {
          await r.arrayBuffer();
          if (r.status === 200) served++;
        }
      }
    };
    const workers = [worker(), worker(), worker(), worker()];
    try {
      await page.goto(`${api}/dashboard?token=${TOKEN}`);
      const rate = page.locator(`[data-machine-id="${MACHINE}"] .rate .v`);
      const ewrShare = page.locator('[data-app="hello"] [data-region="ewr"] .share');
      const iadShare = page.locator('[data-app="hello"] [data-region="iad"] .share');
      await expect.poll(async () => Number(await rate.textContent()), { timeout: 8000 }).toBeGreaterThan(5);
      await expect.poll(() => ewrShare.textContent(), { timeout: 3000 }).toBe('100%');
      // The charts are drawn by the node's own uPlot, once the app's history has arrived (its
      // own request, which can trail the live figures on a busy machine).
      expect(await page.evaluate(() => typeof (window as unknown as { uPlot?: unknown }).uPlot)).toBe('function');
      await expect.poll(() => page.locator('[data-app="hello"] [data-chart="rate"] canvas').count(), { timeout: 5000 }).toBe(1);
      await expect.poll(() => page.locator('[data-app="hello"] [data-chart="share"] canvas').count(), { timeout: 5000 }).toBe(1);

      const t0 = Date.now();
      const r = await fetch(`${api}/v1/machines/${MACHINE}/stop`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      expect(r.status).toBe(200);
      await expect.poll(() => rate.textContent(), { timeout: 3000, intervals: [20] }).toBe('0');
      const rateZeroAfter = Date.now() - t0;
      await expect.poll(() => ewrShare.textContent(), { timeout: 3000, intervals: [20] }).toBe('0%');
      const shareMovedAfter = Date.now() - t0;
      expect(await iadShare.textContent()).toBe('100%');
      expect(Number(await page.locator(`[data-machine-id="${NEXT}"] .rate .v`).textContent())).toBeGreaterThan(5);
      // The node-wide region view moved too (ewr has no other HTTP traffic).
      expect(await page.locator('[data-region-row="ewr"] .share').textContent()).toBe('0%');
      console.log(`dashboard: stopped machine's rate shown 0 after ${rateZeroAfter} ms, ewr share 0% after ${shareMovedAfter} ms (${served} requests served)`);
      expect(rateZeroAfter).toBeLessThan(2000);
      expect(shareMovedAfter).toBeLessThan(2000);
      // The event feed says what happened.
      await page.locator(`#feed li[data-kind="machine"][data-machine="${MACHINE}"]`).waitFor({ timeout: 2000 });
      await page.waitForTimeout(1500); // a little history after the step, for the screenshot
      await page.screenshot({ path: join(SHOTS, 'sixpn-dashboard-failover.png'), fullPage: true });
    } finally {
      running = false;
      await Promise.all(workers);
      const back = await fetch(`${api}/v1/machines/${MACHINE}/start`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      expect(back.status).toBe(200);
    }
    await page.locator(`[data-machine-id="${MACHINE}"][data-state="started"]`).waitFor({ timeout: 2000 });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('shows a passive ejection by the proxy in the event feed', async () => {
    const page = await ctx.newPage();
    await page.goto(`${api}/dashboard`);
    await page.locator(`[data-machine-id="${MACHINE}"]`).waitFor({ timeout: 5000 });
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const before = (await (await fetch(`${api}/v1/machines/${MACHINE}`, { headers })).json()) as { upstream: string };
    const dead = await freePort(); // nothing listens there
    try {
      const r = await fetch(`${api}/v1/machines/${MACHINE}`, { method: 'PATCH', headers, body: JSON.stringify({ upstream: `127.0.0.1:${dead}` }) });
      expect(r.status).toBe(200);
      // Callers still get answers (the proxy tries the next machine); the failed connects eject it.
      for (let i = 0; i < 10; i++) expect((await fetch(helloUrl)).status).toBe(200);
      await page.locator(`#feed li[data-kind="ejection"][data-machine="${MACHINE}"]`).waitFor({ timeout: 3000 });
      const feed = await (await fetch(`${api}/v1/events?kind=ejection&machine=${MACHINE}`, { headers })).json();
      expect(feed.events[0]).toMatchObject({ kind: 'ejection', level: 'warn', app: 'hello', org: 'demo', region: 'ewr', data: { ejected: true } });
      expect(feed.events[0].message).toMatch(/^machine e286d4c2a17d89 of hello ejected from this node's rotation for [\d.]+s after failed connects$/);
    } finally {
      await fetch(`${api}/v1/machines/${MACHINE}`, { method: 'PATCH', headers, body: JSON.stringify({ upstream: before.upstream }) });
    }
    await page.close();
  });

  it('shows a machine, then shows it stopped within 2 s of the API stopping it', async () => {
    const page = await ctx.newPage();
    const problems = watchProblems(page);
    await page.goto(`${api}/dashboard?token=${TOKEN}`);
    expect(new URL(page.url()).search).toBe(''); // the token left the address bar
    const row = page.locator(`[data-machine-id="${MACHINE}"]`);
    await row.waitFor({ timeout: 5000 });
    expect(await row.getAttribute('data-state')).toBe('started');
    // The health checker turns the demo machines healthy (rise = 1, checks every 3 s).
    await page.locator(`[data-machine-id="${MACHINE}"][data-health="healthy"]`).waitFor({ timeout: 8000 });
    await page.locator('.live.on').waitFor({ timeout: 2000 });
    // Traffic through the Flycast proxy shows up as a request rate on the app.
    for (let i = 0; i < 40; i++) expect((await fetch(helloUrl)).status).toBe(200);
    const rate = page.locator('[data-app="hello"] .stats span:nth-child(2) b');
    await expect.poll(async () => Number(await rate.textContent()), { timeout: 6000 }).toBeGreaterThan(0);
    // A 5xx answer shows as an error rate on the app (the demo machine fails on purpose).
    expect((await fetch(`${helloUrl}_demo/fail`)).status).toBe(500);
    await page.locator('[data-app="hello"] .stats .errs').waitFor({ timeout: 6000 });
    await page.screenshot({ path: join(SHOTS, 'sixpn-dashboard-laptop.png'), fullPage: true });

    const t0 = Date.now();
    const r = await fetch(`${api}/v1/machines/${MACHINE}/stop`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(r.status).toBe(200);
    await page.locator(`[data-machine-id="${MACHINE}"][data-state="stopped"]`).waitFor({ timeout: 2000 });
    const shownAfter = Date.now() - t0;
    console.log(`dashboard: machine shown stopped ${shownAfter} ms after the API call`);
    expect(shownAfter).toBeLessThan(2000);
    expect(await row.locator('.badge.state').textContent()).toBe('stopped');
    expect(problems).toEqual([]);
  });

  it('shows a hostile health reason as text and runs no script from it', async () => {
    const page = await ctx.newPage();
    await page.goto(`${api}/dashboard`);
    await page.locator(`[data-machine-id="${MACHINE}"]`).waitFor({ timeout: 5000 });
    const evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
    const r = await fetch(`${api}/v1/machines/${MACHINE}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ health: { status: 'unhealthy', reason: evil } }),
    });
    expect(r.status).toBe(200);
    const reason = page.locator(`[data-machine-id="${MACHINE}"] .reason`);
    await expect.poll(() => reason.textContent(), { timeout: 2000 }).toBe(evil);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.locator('#orgs img, #orgs script').count()).toBe(0);
  });

  it('asks for the token without the link, and the form signs in', async () => {
    await ctx.clearCookies();
    const page = await ctx.newPage();
    await page.goto(`${api}/dashboard`);
    await page.locator('#login').waitFor({ state: 'visible', timeout: 5000 });
    expect(await page.locator('[data-machine-id]').count()).toBe(0);
    await page.fill('#token', 'wrong-token');
    await page.click('#loginform button');
    await expect.poll(() => page.locator('#loginerr').textContent(), { timeout: 2000 }).toContain('not accepted');
    await page.fill('#token', TOKEN);
    await page.click('#loginform button');
    await page.locator(`[data-machine-id="${MACHINE}"]`).waitFor({ timeout: 5000 });
  });

  it('lists an org\'s WireGuard peers', async () => {
    const page = await ctx.newPage();
    await page.goto(`${api}/dashboard`);
    await page.locator(`[data-machine-id="${MACHINE}"]`).waitFor({ timeout: 5000 });
    // Straight into the catalog: the API's peer route wants a gateway key, not the point here.
    await node.ctx.store.createPeer({ name: 'alice-laptop', org: 'demo', region: 'ewr', public_key: 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=' }, { gatewayHostId: 0x0a7b0d6b });
    const peer = page.locator('[data-org="demo"] [data-peer="alice-laptop"]');
    await peer.waitFor({ timeout: 2000 });
    expect(await peer.textContent()).toMatch(/alice-laptop.*ewr.*fdaa:0:18:/);
  });

  it('shows the hosts and where each machine runs', async () => {
    const page = await ctx.newPage();
    await page.goto(`${api}/dashboard`);
    await page.locator(`[data-machine-id="${MACHINE}"]`).waitFor({ timeout: 5000 });
    await node.ctx.store.registerHost({ name: 'ewr-1', region: 'ewr', host_id: 0x0b000001, driver: 'netns', session: 'dash' }, { reservedHostIds: [], staleAfterMs: 6000 });
    await node.ctx.store.registerMachine({ id: 'f1000000000001', app: 'hello', region: 'ewr', host: 'ewr-1', config: { cmd: ['true'] } }, { hostId: 0 });
    const host = page.locator('#hosts [data-host="ewr-1"]');
    await host.waitFor({ timeout: 2000 });
    expect(await host.textContent()).toMatch(/ewr-1 ewr · up · 0\/1 started · host id b00:1/);
    const row = page.locator('[data-machine-id="f1000000000001"]');
    await row.waitFor({ timeout: 2000 });
    expect(await row.getAttribute('data-host')).toBe('ewr-1');
    expect(await row.getAttribute('data-state')).toBe('created');
    expect(await row.locator('.addr').textContent()).toMatch(/fdaa:0:18:b00:1:f100:0:2 {2}on ewr-1$/);
    await node.ctx.store.removeMachine('f1000000000001');
    await node.ctx.store.removeHost('ewr-1');
  });

  it('lets go of its stream in a background tab, so six hidden dashboards do not block a seventh, and catches up when shown', async () => {
    const streams = async (): Promise<number> => {
      const text = await (await fetch(`${api}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
      return Number(/^sixpn_dashboard_streams (\d+)$/m.exec(text)?.[1] ?? NaN);
    };
    // The pages of earlier tests are closed; their streams end on the node soon after.
    await expect.poll(streams, { timeout: 3000 }).toBe(0);
    // Six live dashboards hold all six connections Chromium allows to one host.
    const pages: Page[] = [];
    const problems: string[] = [];
    for (let i = 0; i < 6; i++) {
      const p = await ctx.newPage();
      problems.push(...watchProblems(p));
      await p.goto(`${api}/dashboard?token=${TOKEN}`);
      await p.locator('.live.on').waitFor({ timeout: 5000 });
      pages.push(p);
    }
    await expect.poll(streams, { timeout: 3000 }).toBe(6);
    // The tabs go to the background. Headless Chromium shows every page, so the page is told
    // it is hidden the way a browser tells it: document.hidden and a visibilitychange event.
    const setHidden = (p: Page, hidden: boolean): Promise<void> =>
      p.evaluate((h) => {
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
        document.dispatchEvent(new Event('visibilitychange'));
      }, hidden);
    for (const p of pages) await setHidden(p, true);
    await expect.poll(streams, { timeout: 8000, interval: 100 }).toBe(0);
    expect(await pages[0]!.locator('#livetext').textContent()).toBe('paused');
    expect(await pages[0]!.locator('.live.idle').count()).toBe(1); // grey, not the red of a broken stream
    // A seventh tab loads and goes live.
    const seventh = await ctx.newPage();
    problems.push(...watchProblems(seventh));
    await seventh.goto(`${api}/dashboard`, { timeout: 5000 });
    await seventh.locator(`[data-machine-id="${MACHINE}"]`).waitFor({ timeout: 5000 });
    await seventh.locator('.live.on').waitFor({ timeout: 5000 });
    // A tab shown again follows the stream again and shows traffic sent while it was paused.
    await setHidden(pages[0]!, false);
    await pages[0]!.locator('.live.on').waitFor({ timeout: 5000 });
    await expect.poll(streams, { timeout: 3000 }).toBe(2);
    const rate = pages[0]!.locator('[data-app="hello"] .stats span:nth-child(2) b');
    const until = Date.now() + 8000;
    let seen = 0;
    while (Date.now() < until && !(seen > 0)) {
      for (let i = 0; i < 20; i++) await (await fetch(helloUrl)).arrayBuffer();
      seen = Number(await rate.textContent());
    }
    expect(seen).toBeGreaterThan(0);
    // A tab opened in the background loads, follows, and lets go like the others.
    const background = await ctx.newPage();
    problems.push(...watchProblems(background));
    await background.addInitScript(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    });
    await background.goto(`${api}/dashboard`);
    await background.locator(`[data-machine-id="${MACHINE}"]`).waitFor({ timeout: 5000 });
    await background.locator('#livetext', { hasText: 'paused' }).waitFor({ timeout: 8000 });
    await expect.poll(streams, { timeout: 3000 }).toBe(2);
    expect(problems).toEqual([]);
  });

  it('fits a phone screen, in the dark theme too', async () => {
    const page = await ctx.newPage();
    await page.setViewportSize({ width: 390, height: 844 });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.goto(`${api}/dashboard`);
    await page.locator(`[data-machine-id="${MACHINE}"]`).waitFor({ timeout: 5000 });
    // Nothing wider than the screen: no sideways scrolling on a phone.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(SHOTS, 'sixpn-dashboard-phone.png'), fullPage: true });
  });
});

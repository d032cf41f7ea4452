// The proxy benchmark's helpers: the HAProxy config it generates is accepted by `haproxy -c` and
// serves traffic, the sixpn TOML it generates loads and seeds the Flycast addresses it predicts,
// and the load generators report what really went through.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHostId } from '../../../src/addressing/index.js';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { seedCatalog } from '../../../src/catalog/seed.js';
import { loadConfig } from '../../../src/config/index.js';
import { CLI, hasCommand, IN_NETNS } from '../../harness/env.js';
import { existsSync } from 'node:fs';
// @ts-expect-error plain .mjs helpers shared with bench/ (no type declarations)
import { startBackends } from '../../../bench/lib/backends.mjs';
// @ts-expect-error plain .mjs helpers shared with bench/ (no type declarations)
import { checkHaproxyConfig, haproxyConfig, startHaproxy } from '../../../bench/lib/haproxy.mjs';
// @ts-expect-error plain .mjs helpers shared with bench/ (no type declarations)
import { openIdleConnections, runAutocannon, runTcpBulk, runTcpRate, startAutocannon } from '../../../bench/lib/load.mjs';
// @ts-expect-error plain .mjs helpers shared with bench/ (no type declarations)
import { freePort } from '../../harness/spawn.mjs';
// @ts-expect-error plain .mjs helpers shared with bench/ (no type declarations)
import { routeCallerSource, sixpnConfig, startSixpnProxy, unrouteCallerSource } from '../../../bench/lib/sixpn.mjs';

const HAVE_HAPROXY = hasCommand('haproxy');

describe('haproxyConfig', () => {
  it.skipIf(!HAVE_HAPROXY)('is accepted by haproxy -c, with HTTP, TCP, IPv6 binds and health checks', () => {
    const text = haproxyConfig({
      services: [
        { name: 'web', mode: 'http', bind: '127.0.0.1:18080', servers: ['127.0.0.1:18081', '[::1]:18082'], serverOptions: 'check inter 1s fall 2 rise 2', lines: ['option httpchk GET /'] },
        { name: 'sink', mode: 'tcp', bind: '[::1]:18090', servers: ['127.0.0.1:18091'] },
      ],
    });
    expect(text).toContain('balance leastconn');
    expect(text).toContain('http-reuse always');
    const r = checkHaproxyConfig(text);
    expect(r.output).toMatch(/valid/i);
    expect(r.ok).toBe(true);
  });

  it.skipIf(!HAVE_HAPROXY)('a broken config is reported by haproxy -c, not accepted', () => {
    const r = checkHaproxyConfig('listen x\n  mode http\n  bind 127.0.0.1:1\n  balance nosuchalgo\n');
    expect(r.ok).toBe(false);
  });

  it('refuses names and addresses that would inject config lines', () => {
    expect(() => haproxyConfig({ services: [{ name: 'web\n  bind 0.0.0.0:80', mode: 'http', bind: '127.0.0.1:1', servers: ['127.0.0.1:2'] }] })).toThrow(/section name/);
    expect(() => haproxyConfig({ services: [{ name: 'web', mode: 'http', bind: '127.0.0.1:1', servers: ['127.0.0.1:2 backup'] }] })).toThrow(/host:port/);
    expect(() => haproxyConfig({ services: [{ name: 'web', mode: 'udp', bind: '127.0.0.1:1', servers: ['127.0.0.1:2'] }] })).toThrow(/mode/);
  });
});

describe('sixpnConfig', () => {
  it('loads as a sixpn config and seeds the Flycast addresses it predicts', async () => {
    const { text, apps } = sixpnConfig({
      networkId: 0x18,
      apps: [
        {
          name: 'web',
          protocol: 'http',
          port: 80,
          servers: ['127.0.0.1:9001', '127.0.0.1:9002'],
          checks: ['[[apps.services.http_checks]]', 'interval = "1s"', 'timeout = "500ms"', 'path = "/"'],
        },
        { name: 'sink', protocol: 'tcp', port: 5000, servers: ['127.0.0.1:9003'] },
      ],
    });
    const dir = mkdtempSync(join(tmpdir(), 'sixpn-bench-test-'));
    try {
      const file = join(dir, 'proxy.toml');
      writeFileSync(file, text);
      const { config } = loadConfig(file, {});
      expect(config.proxy.mode).toBe('per-address');
      expect(config.catalog.path).toBe('');
      expect(config.machines.map((m) => m.upstream)).toEqual(['127.0.0.1:9001', '127.0.0.1:9002', '127.0.0.1:9003']);
      expect(config.apps.find((a) => a.name === 'web')?.services[0]?.protocol).toBe('http');
      expect(config.apps.find((a) => a.name === 'web')?.services[0]?.http_checks).toMatchObject([{ interval: 1000, timeout: 500, path: '/' }]);
      expect(config.health.enabled).toBe(false);

      const store = await MemoryStore.open({ regions: ['ewr'] });
      try {
        await seedCatalog(store, { orgs: config.orgs, apps: config.apps, machines: config.machines, ips: config.ips }, parseHostId(config.node.host_id)!);
        const snap = await store.snapshot();
        const byApp = Object.fromEntries(snap.flycast.map((f) => [f.app, f.address]));
        expect(apps.map((a: { name: string; flycast: string }) => [a.name, a.flycast])).toEqual([
          ['web', byApp.web],
          ['sink', byApp.sink],
        ]);
        expect(byApp.web).toBe('fdaa:0:18:0:1::3');
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('backends, load generators and HAProxy together', () => {
  type Backends = { list: { address: string; port: number }[]; stop(): Promise<unknown> };
  let http: Backends;
  let sink: Backends;
  let echo: Backends;
  beforeAll(async () => {
    [http, sink, echo] = await Promise.all([
      startBackends({ count: 2, kind: 'http' }),
      startBackends({ count: 1, kind: 'sink' }),
      startBackends({ count: 1, kind: 'echo' }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([http?.stop(), sink?.stop(), echo?.stop()]);
  });

  it('TCP bulk is confirmed byte for byte by the sink', async () => {
    const r = await runTcpBulk({ host: '127.0.0.1', port: sink.list[0]!.port, bytes: 8 * 2 ** 20 + 123 });
    expect(r.confirmed).toBe(8 * 2 ** 20 + 123);
    expect(r.mbPerSec).toBeGreaterThan(0);
  });

  it('short connections and idle connections are counted only when a byte came back', async () => {
    const port = echo.list[0]!.port;
    const rate = await runTcpRate({ host: '127.0.0.1', port, durationMs: 500, concurrency: 4 });
    expect(rate.connections).toBeGreaterThan(10);
    expect(rate.errors).toBe(0);
    const idle = await openIdleConnections({ host: '127.0.0.1', port, count: 50, concurrency: 10 });
    expect(idle.opened).toBe(50);
    await idle.close();
    const dead = await freePort();
    const refused = await runTcpRate({ host: '127.0.0.1', port: dead, durationMs: 300, concurrency: 2 });
    expect(refused.connections).toBe(0);
    expect(refused.errors).toBeGreaterThan(0);
  });

  it('a started load reports a per-second timeline and stops early on request', async () => {
    const seen: { ok: number }[] = [];
    const load = startAutocannon({ url: `http://${http.list[0]!.address}/`, connections: 2, duration: 30, samples: true, onSample: (x: { ok: number }) => seen.push(x) });
    await new Promise((r) => setTimeout(r, 2_300));
    load.stop();
    const r = await load.result;
    expect(seen.length).toBeGreaterThanOrEqual(1);
    expect(seen[0]!.ok).toBeGreaterThan(0);
    expect(r.samples.length).toBe(seen.length);
    expect(r.total2xx).toBeGreaterThanOrEqual(seen.reduce((a, x) => a + x.ok, 0));
    expect(r.p99).toBeGreaterThanOrEqual(r.p50);
  });

  it.skipIf(!HAVE_HAPROXY)('HAProxy from the generated config balances HTTP over the backends and passes TCP', async () => {
    const web = await freePort();
    const tcp = await freePort();
    const ha = await startHaproxy({
      services: [
        { name: 'web', mode: 'http', bind: `127.0.0.1:${web}`, servers: http.list.map((b) => b.address) },
        { name: 'sink', mode: 'tcp', bind: `127.0.0.1:${tcp}`, servers: sink.list.map((b) => b.address) },
      ],
    });
    try {
      const r = await runAutocannon({ url: `http://127.0.0.1:${web}/`, connections: 4, duration: 1 });
      expect(r.total2xx).toBeGreaterThan(50);
      expect(r.non2xx + r.errors).toBe(0);
      // Both backends served some of it (leastconn over 4 connections).
      const stats = await Promise.all(http.list.map(async (b) => (await (await fetch(`http://${b.address}/__stats`)).json()) as { requests: number }));
      for (const s of stats) expect(s.requests).toBeGreaterThan(1);
      const bulk = await runTcpBulk({ host: '127.0.0.1', port: tcp, bytes: 4 * 2 ** 20 });
      expect(bulk.confirmed).toBe(4 * 2 ** 20);
    } finally {
      await ha.stop();
    }
  });
});

describe.skipIf(!IN_NETNS || !existsSync(CLI))('sixpn proxy started from the generated TOML', () => {
  it('serves autocannon (which cannot bind) as a member of the org through the routed source address', async () => {
    // An org of its own, and the route removed afterwards: other test files share this namespace.
    const networkId = 0xbe7c;
    const http = await startBackends({ count: 2, kind: 'http' });
    try {
      routeCallerSource({ networkId });
      const { text, apps } = sixpnConfig({ networkId, apps: [{ name: 'web', protocol: 'http', port: 80, servers: http.list.map((b: { address: string }) => b.address) }] });
      const flycast = apps[0].flycast as string;
      const proxy = await startSixpnProxy(text, { listen: [{ host: flycast, port: 80 }] });
      try {
        const r = await runAutocannon({ url: `http://[${flycast}]:80/`, connections: 2, duration: 1 });
        expect(r.total2xx).toBeGreaterThan(20);
        expect(r.non2xx + r.errors).toBe(0);
      } finally {
        expect(await proxy.stop()).toBe(0);
      }
    } finally {
      unrouteCallerSource({ networkId });
      await http.stop();
    }
  });
});

// The two other ways the proxy listens: `routed` (one socket per port on `::`, app found from
// the destination address) and the development mapping (loopback port -> Flycast address, with
// machines reached through their `upstream` on loopback).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { IN_NETNS } from '../harness/env.js';
import { appToml, closeCallerAgents, httpFrom, orgsToml, proxyNodeToml, readAll, startProxyNode, tcpFrom, type ProxyNode } from '../harness/flycast.js';
import { startHttpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { createServer, type Server } from 'node:net';
import { freePort, waitFor } from '../harness/net.js';
import { request } from 'undici';

const HOST = parseHostId('a7b:7d')!;
const NET = 0x1e;
const INSIDER = 'fdaa:0:1e:a7b:7d:0:ca11:1';
const OUTSIDER = 'fdaa:0:1f:a7b:7d:0:ca11:1';
const WEB_ID = '10000001';
const WEB_IP = 'fdaa:0:1e:0:1::3';
// Unusual ports: a routed listener on [::]:P takes port P for every address in the namespace.
const P1 = 10080;
const P2 = 10081;

const base = (proxy: string, machine: string): string =>
  `${proxyNodeToml({ proxy })}
${orgsToml({ modes: NET, stranger: NET + 1 })}
${appToml({ name: 'web', org: 'modes', protocol: 'http', internalPort: 8080, ports: [P1, P2], machines: [{ id: WEB_ID, extra: machine }] })}`;

describe.skipIf(!IN_NETNS)('flycast proxy: routed mode (e2e)', () => {
  let proxy: ProxyNode;
  let web: TestMachine;

  beforeAll(async () => {
    web = await startHttpMachine({ id: WEB_ID, host: machineAddress(NET, HOST, WEB_ID), port: 8080 });
    proxy = await startProxyNode(base('mode = "routed"', ''));
  });
  afterAll(async () => {
    await closeCallerAgents();
    await proxy?.stop();
    await stopMachines([web].filter(Boolean));
  });

  it('serves every port of the app from one socket per port, the app found by destination address', async () => {
    expect(proxy.banner).toContain(`proxy: [${WEB_IP}]:${P1} -> web (http) via [::]:${P1} (routed)`);
    expect(proxy.banner).toContain(`proxy: [${WEB_IP}]:${P2} -> web (http) via [::]:${P2} (routed)`);
    for (const port of [P1, P2]) {
      const r = await httpFrom(INSIDER, `http://[${WEB_IP}]:${port}/headers`);
      expect(r.status).toBe(200);
      expect((JSON.parse(r.text) as { headers: Record<string, string> }).headers['fly-forwarded-port']).toBe(String(port));
    }
  });

  it('still applies the org ACL', async () => {
    const r = await httpFrom(OUTSIDER, `http://[${WEB_IP}]:${P1}/`);
    expect(r.status).toBe(403);
  });

  it('closes connections to an address that is not a Flycast address', async () => {
    const s = await tcpFrom(INSIDER, 'fdaa:0:1e:0:1::99', P1);
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await readAll(s)).toEqual({ data: '', closed: true });
  });
});

describe.skipIf(!IN_NETNS)('flycast proxy: development mapping (e2e)', () => {
  let proxy: ProxyNode;
  let web: TestMachine;
  let trusted: number;
  let anonymous: number;

  beforeAll(async () => {
    web = await startHttpMachine({ id: WEB_ID, host: '127.0.0.1' });
    [trusted, anonymous] = [await freePort(), await freePort()];
    const cfg = `mode = "dev"
dev_mappings = [
  { listen_port = ${trusted}, flycast = "${WEB_IP}", port = ${P1}, as_caller = "${INSIDER}" },
  { listen_port = ${anonymous}, flycast = "${WEB_IP}", port = ${P1} },
]`;
    proxy = await startProxyNode(base(cfg, `upstream = "127.0.0.1:${web.port}"`));
  });
  afterAll(async () => {
    await proxy?.stop();
    await stopMachines([web].filter(Boolean));
  });

  it('logs each mapping loudly as a development mapping', () => {
    expect(proxy.proc.output()).toMatch(new RegExp(`DEVELOPMENT MAPPING: 127\\.0\\.0\\.1:${trusted} -> \\[${WEB_IP}\\]:${P1}; every caller is treated as ${INSIDER}`));
    expect(proxy.banner).toContain(`proxy: 127.0.0.1:${trusted} -> web (http) [development mapping to [${WEB_IP}]:${P1}]`);
  });

  it('forwards a loopback caller as its as_caller to the machine upstream', async () => {
    const r = await request(`http://127.0.0.1:${trusted}/headers`);
    expect(r.statusCode).toBe(200);
    const h = ((await r.body.json()) as { headers: Record<string, string> }).headers;
    expect(h['fly-client-ip']).toBe(INSIDER);
    expect((await web.stats()).requests).toBe(1);
  });

  it('refuses callers of a mapping without as_caller', async () => {
    const r = await request(`http://127.0.0.1:${anonymous}/`);
    expect(r.statusCode).toBe(403);
    expect(await r.body.text()).toMatch(/development mapping without as_caller/);
  });
});

describe.skipIf(!IN_NETNS)('flycast proxy: a listener whose port another program holds (e2e)', () => {
  let proxy: ProxyNode;
  let web: TestMachine;
  let blocker: Server;
  let taken: number;
  let free: number;
  let admin: number;
  const failedGauge = async (): Promise<number> => {
    const text = await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text();
    return Number(/^sixpn_proxy_listeners_failed (\d+)$/m.exec(text)?.[1] ?? NaN);
  };

  beforeAll(async () => {
    web = await startHttpMachine({ id: WEB_ID, host: '127.0.0.1' });
    [taken, free, admin] = [await freePort(), await freePort(), await freePort()];
    blocker = createServer((s) => s.end('not the proxy\n'));
    await new Promise<void>((r) => blocker.listen(taken, '127.0.0.1', r));
    const cfg = `mode = "dev"
dev_mappings = [
  { listen_port = ${taken}, flycast = "${WEB_IP}", port = ${P1}, as_caller = "${INSIDER}" },
  { listen_port = ${free}, flycast = "${WEB_IP}", port = ${P1}, as_caller = "${INSIDER}" },
]`;
    const toml = base(cfg, `upstream = "127.0.0.1:${web.port}"`).replace('[control]\nenabled = false', `[control]\nenabled = true\nlisten = "127.0.0.1:${admin}"\ntoken = "test-token-0123456789"\n[demo]\nenabled = false\n[wireguard]\nenabled = false`);
    proxy = await startProxyNode(toml, {}, 'up');
  });
  afterAll(async () => {
    await proxy?.stop();
    blocker?.close();
    await stopMachines([web].filter(Boolean));
  });

  it('says so once, serves the other addresses, and opens it by itself once the port is free', async () => {
    const said = (): number => proxy.proc.output().split(`cannot listen on flycast address`).length - 1;
    expect(proxy.proc.output()).toMatch(new RegExp(`"listen":"127\\.0\\.0\\.1:${taken}","code":"EADDRINUSE"`));
    expect((await request(`http://127.0.0.1:${free}/`)).statusCode).toBe(200);
    expect(await failedGauge()).toBe(1);
    // Tried again every 5 s, said once.
    await new Promise((r) => setTimeout(r, 5_500));
    expect(said()).toBe(1);
    await new Promise<void>((r) => blocker.close(() => r()));
    const t0 = Date.now();
    await waitFor(async () => (await request(`http://127.0.0.1:${taken}/headers`)).statusCode === 200, { timeoutMs: 8_000, what: 'the mapping to open once its port was free' });
    console.log(`proxy-modes: the listener opened ${Date.now() - t0} ms after its port was freed`);
    expect(await failedGauge()).toBe(0);
    expect(said()).toBe(1);
  });
});

describe.skipIf(!IN_NETNS)('flycast proxy: metrics on the admin listener (e2e)', () => {
  let node: ProxyNode;
  let web: TestMachine;
  let admin: number;

  beforeAll(async () => {
    web = await startHttpMachine({ id: WEB_ID, host: machineAddress(NET, HOST, WEB_ID), port: 8080 });
    admin = await freePort();
    const toml = base('', '').replace('[control]\nenabled = false', `[control]\nenabled = true\nlisten = "127.0.0.1:${admin}"\ntoken = "test-token-0123456789"\n[demo]\nenabled = false\n[wireguard]\nenabled = false`);
    node = await startProxyNode(toml, {}, 'up');
  });
  afterAll(async () => {
    await closeCallerAgents();
    await node?.stop();
    await stopMachines([web].filter(Boolean));
  });

  it('counts accepted, denied, answered and selected on /metrics with bounded labels', async () => {
    expect((await httpFrom(INSIDER, `http://[${WEB_IP}]:${P1}/`)).status).toBe(200);
    expect((await httpFrom(OUTSIDER, `http://[${WEB_IP}]:${P1}/`)).status).toBe(403);
    const text = await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text();
    expect(text).toContain('sixpn_proxy_denied_total{proto="http"} 1');
    expect(text).toContain('sixpn_proxy_connections_accepted_total{app="web",proto="http"} 1');
    expect(text).toContain(`sixpn_proxy_http_requests_total{app="web",machine="${WEB_ID}",status_class="2xx"} 1`);
    // the 403 was the proxy's own answer: no machine
    expect(text).toContain('sixpn_proxy_http_requests_total{app="web",machine="",status_class="4xx"} 1');
    expect(text).toContain('sixpn_proxy_selection_total{outcome="same_region"} 1');
    expect(text).toContain(`sixpn_proxy_active_connections{app="web",machine="${WEB_ID}"} 0`);
    expect(text).toMatch(/sixpn_proxy_request_duration_seconds_count\{app="web"\} 1/);
    expect(text).not.toContain(INSIDER);
    expect(text).not.toContain(OUTSIDER);
  });
});

// `[proxy] workers = 2`: two worker processes share the Flycast listeners (node:cluster), each
// with its share of every hard_limit, so the node as a whole never goes above it. Real processes:
// the sixpn node, its workers, an HTTP and a TCP machine, callers from the org's address.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { IN_NETNS } from '../harness/env.js';
import { appToml, closeCallerAgents, httpFrom, orgsToml, proxyNodeToml, readLines, startProxyNode, tcpFrom, type ProxyNode } from '../harness/flycast.js';
import { startHttpMachine, startTcpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { sleep, waitFor } from '../harness/net.js';

const HOST = parseHostId('a7b:7d')!;
const NET = 0x2e;
const INSIDER = 'fdaa:0:2e:a7b:7d:0:ca11:1';
const addr = (id: string): string => machineAddress(NET, HOST, id);
const WEB_ID = '2e000001';
const ECHO_ID = '2e000002';
const WEB_IP = 'fdaa:0:2e:0:1::3';
const ECHO_IP = 'fdaa:0:2e:0:1::4';

/** Child processes of `pid` (the workers). */
function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

describe.skipIf(!IN_NETNS)('flycast proxy with workers = 2 (e2e)', () => {
  let proxy: ProxyNode;
  let web: TestMachine;
  let echo: TestMachine;

  beforeAll(async () => {
    [web, echo] = await Promise.all([
      startHttpMachine({ id: WEB_ID, host: addr(WEB_ID), port: 8080 }),
      startTcpMachine({ id: ECHO_ID, host: addr(ECHO_ID), port: 7000, greet: true }),
    ]);
    // No queue: a caller over its worker's share is refused at once, so the counts are exact.
    const toml = `${proxyNodeToml({ proxy: 'workers = 2\nqueue_timeout = "0s"' })}
${orgsToml({ workers: NET })}
${appToml({ name: 'web', org: 'workers', protocol: 'http', internalPort: 8080, ports: [80], concurrency: '{ type = "requests", soft_limit = 5, hard_limit = 5 }', machines: [{ id: WEB_ID }] })}
${appToml({ name: 'echo', org: 'workers', protocol: 'tcp', internalPort: 7000, ports: [7000], concurrency: '{ type = "connections", soft_limit = 3, hard_limit = 3 }', machines: [{ id: ECHO_ID }] })}
`;
    proxy = await startProxyNode(toml);
  });

  afterAll(async () => {
    await closeCallerAgents();
    await proxy?.stop();
    await stopMachines([web, echo].filter(Boolean));
  });

  it('runs two worker processes that both serve', async () => {
    expect(children(proxy.proc.child.pid!)).toHaveLength(2);
    expect(proxy.banner).toContain('2 workers');
    const r = await httpFrom(INSIDER, `http://[${WEB_IP}]/`);
    expect(r.status).toBe(200);
    expect(r.text).toBe(`${WEB_ID}\n`);
  });

  it('holds hard_limit for the node as a whole: 20 concurrent requests, exactly 5 served at once, the rest 503', async () => {
    await web.resetStats();
    const replies = await Promise.all(Array.from({ length: 20 }, () => httpFrom(INSIDER, `http://[${WEB_IP}]/sleep?ms=1000`)));
    const ok = replies.filter((r) => r.status === 200).length;
    const full = replies.filter((r) => r.status === 503).length;
    const s = await web.stats();
    // Never above hard_limit on the machine, whatever the workers did.
    expect(s.maxActiveRequests).toBeLessThanOrEqual(5);
    // One worker's share is at most 3 (5 = 3 + 2): 5 served means both workers served theirs.
    expect(ok).toBe(5);
    expect(full).toBe(15);
    // Released: the next request is served again.
    expect((await httpFrom(INSIDER, `http://[${WEB_IP}]/`)).status).toBe(200);
  });

  it('holds a TCP service hard_limit (3) across workers: the 4th..8th connections are closed unserved', async () => {
    const socks = await Promise.all(Array.from({ length: 8 }, () => tcpFrom(INSIDER, ECHO_IP, 7000)));
    const greeted = await Promise.all(socks.map((s) => readLines(s, 1, 1_500).then(() => true, () => false)));
    expect(greeted.filter(Boolean).length).toBe(3);
    await waitFor(async () => (await echo.stats()).active === 3, { what: '3 connections on the echo machine' });
    expect((await echo.stats()).maxActive).toBeLessThanOrEqual(3);
    for (const s of socks) s.destroy();
    await sleep(200);
  });

  it('drains and exits 0 on SIGTERM, workers included', async () => {
    const pid = proxy.proc.child.pid!;
    const kids = children(pid);
    expect(await proxy.stop()).toBe(0);
    for (const k of kids) expect(() => process.kill(k, 0)).toThrow();
    proxy = undefined as unknown as ProxyNode;
  });
});

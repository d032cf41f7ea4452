// Callers that open HTTP connections to a Flycast address and then hold them without asking
// anything cannot tie up the proxy's descriptors: a 408 or 400 frees the socket at once even if
// the caller never closes, outsiders are gone within a few seconds, and one source address (or
// one org) holds at most max_idle_per_source (max_idle_per_org) idle connections while the
// owning org's callers keep being served. Counted from the outside: the proxy process's open
// sockets (/proc) and what each caller socket sees.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { IN_NETNS } from '../harness/env.js';
import { appToml, closeCallerAgents, httpFrom, orgsToml, proxyNodeToml, readAll, socketCount, startProxyNode, tcpFrom, type ProxyNode } from '../harness/flycast.js';
import { startHttpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { sleep, waitFor } from '../harness/net.js';

const HOST = parseHostId('a7b:7d')!;
const OWNER = 0x3a;
const EVIL = 0x3b;
const WEB_ID = '3a000001';
const WEB_IP = 'fdaa:0:3a:0:1::3';
const insider = (n: number): string => `fdaa:0:3a:a7b:7d:0:ca11:${n.toString(16)}`;
const outsider = (n: number): string => `fdaa:0:3b:a7b:7d:0:bad:${n.toString(16)}`;
const PER_SOURCE = 40;
const PER_ORG = 120;

/** A caller connection that only watches for the proxy to close it (it never closes itself). */
interface Held {
  socket: net.Socket;
  data: () => string;
  closedAt: number | null;
}

async function hold(from: string): Promise<Held> {
  const socket = await tcpFrom(from, WEB_IP, 80);
  const h: Held = { socket, data: () => data, closedAt: null };
  let data = '';
  socket.on('data', (b: Buffer) => (data += b.toString('latin1')));
  socket.on('error', () => undefined);
  // The caller's end stays open: only the proxy can free the connection.
  const closed = (): void => {
    h.closedAt ??= Date.now();
  };
  socket.once('end', closed);
  socket.once('close', closed);
  return h;
}

const open = (hs: Held[]): number => hs.filter((h) => h.closedAt === null).length;

describe.skipIf(!IN_NETNS)('flycast proxy: idle and denied callers holding connections (e2e)', () => {
  let proxy: ProxyNode;
  let web: TestMachine;
  let pid: number;
  let baseline: number;

  beforeAll(async () => {
    web = await startHttpMachine({ id: WEB_ID, host: machineAddress(OWNER, HOST, WEB_ID), port: 8080 });
    const toml = `${proxyNodeToml({ proxy: `header_timeout = "6s"\nmax_idle_per_source = ${PER_SOURCE}\nmax_idle_per_org = ${PER_ORG}` })}
${orgsToml({ owner: OWNER, evil: EVIL })}
${appToml({ name: 'web', org: 'owner', protocol: 'http', internalPort: 8080, ports: [80], machines: [{ id: WEB_ID }] })}`;
    proxy = await startProxyNode(toml);
    pid = proxy.proc.child.pid!;
    expect((await httpFrom(insider(1), `http://[${WEB_IP}]/`)).status).toBe(200);
    await closeCallerAgents();
    await sleep(200);
    baseline = await socketCount(pid);
  });

  afterAll(async () => {
    await closeCallerAgents();
    await proxy?.stop();
    await stopMachines([web].filter(Boolean));
  });

  it('frees the socket right after a 408 or a 400 although the caller keeps its side open', async () => {
    const slow: Held[] = [];
    const bad: Held[] = [];
    for (let i = 0; i < 50; i++) {
      const s = await hold(insider(0x100 + (i % 5)));
      s.socket.write('GET / HTTP/1.1\r\nHost: a\r\n'); // half a head
      slow.push(s);
      const b = await hold(insider(0x200 + (i % 5)));
      b.socket.write('GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n'); // malformed
      bad.push(b);
    }
    await waitFor(() => open(bad) === 0, { timeoutMs: 2_000, what: 'every malformed request answered and closed' });
    for (const b of bad) expect(b.data()).toMatch(/^HTTP\/1\.1 400 /);
    await waitFor(() => open(slow) === 0, { timeoutMs: 10_000, what: 'every slow caller answered 408 and closed' });
    for (const s of slow) expect(s.data()).toMatch(/^HTTP\/1\.1 408 /);
    const last = Math.max(...slow.map((s) => s.closedAt!));
    // The proxy keeps a closed connection for reading at most 1 s (a lingering close), not until the caller goes.
    await waitFor(async () => (await socketCount(pid)) <= baseline + 2, { timeoutMs: 3_000, what: `proxy sockets back to ${baseline}` });
    expect(Date.now() - last).toBeLessThan(3_000);
    for (const h of [...slow, ...bad]) h.socket.destroy();
  });

  it('holds at most the caps of idle outsider connections, closes the rest at once and the admitted ones within seconds, while insiders are served', async () => {
    let served = 0;
    let failed = 0;
    let running = true;
    const insiders = (async () => {
      while (running) {
        const r = await httpFrom(insider(0x300), `http://[${WEB_IP}]/`).catch(() => null);
        if (r?.status === 200) served++;
        else failed++;
        await sleep(20);
      }
    })();
    const t0 = Date.now();
    // 300 from one outsider address (over max_idle_per_source), then 300 from 30 more of its org (over max_idle_per_org).
    const one = await Promise.all(Array.from({ length: 300 }, () => hold(outsider(1))));
    const many = await Promise.all(Array.from({ length: 300 }, (_, i) => hold(outsider(0x10 + (i % 30)))));
    const opened = Date.now() - t0;
    const all = [...one, ...many];
    // Refused ones are closed as soon as the proxy accepts them, the admitted (denied) ones 2 s
    // later: once the proxy has caught up, no more than the caps are left (well before the 6 s
    // header_timeout, the only thing that closed them before), and it holds no more sockets.
    await waitFor(() => open(one) <= PER_SOURCE && open(all) <= PER_ORG, { timeoutMs: 3_000, what: `at most ${PER_SOURCE} from one address and ${PER_ORG} in all left open` });
    const sockets = await socketCount(pid);
    console.log(`opened 600 outsider connections in ${opened} ms; then open: ${open(one)} from one address, ${open(all)} in all; proxy sockets ${sockets} (baseline ${baseline})`);
    // Insiders on keep-alive connections plus at most the org's cap of outsiders.
    expect(sockets).toBeLessThanOrEqual(baseline + PER_ORG + 10);
    // Denied callers never hold a connection for more than a few seconds (header_timeout is 6 s).
    await waitFor(() => open(all) === 0, { timeoutMs: 5_000, what: 'every outsider connection closed by the proxy' });
    running = false;
    await insiders;
    expect(failed).toBe(0);
    expect(served).toBeGreaterThan(20);
    expect(proxy.proc.output()).toMatch(/connection refused: its source address already holds max_idle_per_source idle connections/);
    expect(proxy.proc.output()).toMatch(/connection refused: its org already holds max_idle_per_org idle connections/);
    for (const h of all) h.socket.destroy();
  });

  it('caps one insider address the same way without harming the other callers of its org', async () => {
    const mine = await Promise.all(Array.from({ length: 100 }, () => hold(insider(0x400))));
    // The admitted ones stay until header_timeout (6 s); the others are closed once accepted.
    await waitFor(() => open(mine) <= PER_SOURCE, { timeoutMs: 3_000, what: `at most ${PER_SOURCE} left open` });
    expect(open(mine)).toBe(PER_SOURCE);
    for (let i = 0; i < 10; i++) expect((await httpFrom(insider(0x401), `http://[${WEB_IP}]/`)).status).toBe(200);
    // A held connection that finally asks something is served like any other.
    const still = mine.find((h) => h.closedAt === null)!;
    const got = readAll(still.socket, 3_000);
    still.socket.write('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    expect((await got).data).toMatch(/^HTTP\/1\.1 200 /);
    for (const h of mine) h.socket.destroy();
  });
});

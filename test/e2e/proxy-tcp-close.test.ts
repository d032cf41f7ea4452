// How TCP connections through the Flycast proxy end: a caller's FIN that arrives before the
// machine is connected (a port scanner, `nc -z`, a TCP health probe) must reach the machine and
// free the slot; half-closes pass in both directions, before and after the machine is
// connected. A contract for any proxy engine: raw sockets and `nc` against a real process.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { hasCommand, IN_NETNS } from '../harness/env.js';
import { appToml, metricSum, orgsToml, proxyNodeToml, readAll, readLines, startProxyNode, tcpFrom, type ProxyNode } from '../harness/flycast.js';
import { startTcpMachine, stopMachines, type TestMachine } from '../harness/machines.js';
import { freePort, sleep, waitFor } from '../harness/net.js';
import { run } from '../harness/procs.js';

const HOST = parseHostId('a7b:7d')!;
const NET = 0x2c;
const INSIDER = 'fdaa:0:2c:a7b:7d:0:ca11:1';
const addr = (id: string): string => machineAddress(NET, HOST, id);
const ECHO_ID = '2c000001';
const FIN_ID = '2c000002';
const SOLO_ID = '2c000003';
const ECHO_IP = 'fdaa:0:2c:0:1::3';
const FIN_IP = 'fdaa:0:2c:0:1::4';
const SOLO_IP = 'fdaa:0:2c:0:1::5';

const tcpApp = (name: string, id: string, port: number, concurrency: string): string =>
  appToml({ name, org: 'closers', protocol: 'tcp', internalPort: port, ports: [port], concurrency, machines: [{ id }] });

/** Connects from the insider address and closes at once, as `nc -z` or a port scanner does. */
function touch(host: string, port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: INSIDER });
    s.once('connect', () => s.destroy());
    s.once('error', () => undefined);
    s.once('close', () => resolve());
  });
}

describe.skipIf(!IN_NETNS)('flycast proxy: TCP half-close and early FIN (e2e)', () => {
  let proxy: ProxyNode;
  let echo: TestMachine;
  let fin: TestMachine;
  let solo: TestMachine;
  let admin: number;
  const active = (app: string): Promise<number> => metricSum(admin, 'sixpn_proxy_active_connections', { app });

  beforeAll(async () => {
    [echo, fin, solo] = await Promise.all([
      startTcpMachine({ id: ECHO_ID, host: addr(ECHO_ID), port: 7000, greet: true }),
      startTcpMachine({ id: FIN_ID, host: addr(FIN_ID), port: 7001, finFirst: true }),
      startTcpMachine({ id: SOLO_ID, host: addr(SOLO_ID), port: 7002, greet: true }),
    ]);
    admin = await freePort();
    const toml = `${proxyNodeToml({ admin, proxy: 'queue_timeout = "5s"' })}
${orgsToml({ closers: NET })}
${tcpApp('echo', ECHO_ID, 7000, '{ type = "connections", soft_limit = 40, hard_limit = 50 }')}
${tcpApp('fin', FIN_ID, 7001, '{ type = "connections", soft_limit = 40, hard_limit = 50 }')}
${tcpApp('solo', SOLO_ID, 7002, '{ type = "connections", soft_limit = 1, hard_limit = 1 }')}
`;
    proxy = await startProxyNode(toml, {}, 'up');
  });

  afterAll(async () => {
    await proxy?.stop();
    await stopMachines([echo, fin, solo].filter(Boolean));
  });

  it('moves 48 MiB both ways intact through the splice while the caller stalls its reads (back-pressure, reused read buffers)', async () => {
    // Bulk through the splice reads machine bytes into reused buffers: a write that is left
    // queued must never see its bytes overwritten by the next read. A caller that stops reading
    // for a while makes writes queue; the bytes that come back must be the bytes sent.
    const payload = randomBytes(48 * 2 ** 20);
    const s = await tcpFrom(INSIDER, ECHO_IP, 7000);
    const got: Buffer[] = [];
    let bytes = 0;
    s.on('data', (b: Buffer) => {
      got.push(b);
      bytes += b.length;
      if (bytes > 8 * 2 ** 20 && bytes < 9 * 2 ** 20) {
        s.pause();
        setTimeout(() => s.resume(), 300);
      }
    });
    const ended = new Promise<void>((r) => s.once('end', () => r()));
    for (let off = 0; off < payload.length; off += 1 << 20) {
      if (!s.write(payload.subarray(off, off + (1 << 20)))) await new Promise((r) => s.once('drain', r));
    }
    s.end();
    await ended;
    const all = Buffer.concat(got);
    const greeting = Buffer.from(`${ECHO_ID}\n`);
    expect(all.subarray(0, greeting.length).equals(greeting)).toBe(true);
    const echoed = all.subarray(greeting.length);
    expect(echoed.length).toBe(payload.length);
    expect(createHash('sha256').update(echoed).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
    s.destroy();
  }, 60_000);

  it('passes on a FIN that arrived while the caller waited for a machine (with and without data)', async () => {
    // The only slot is taken, so both callers below end their side long before a machine is dialed.
    const holder = await tcpFrom(INSIDER, SOLO_IP, 7002);
    expect(await readLines(holder, 1)).toEqual([SOLO_ID]);
    await solo.resetStats();
    const withData = await tcpFrom(INSIDER, SOLO_IP, 7002);
    const bare = await tcpFrom(INSIDER, SOLO_IP, 7002);
    const gotData = readAll(withData, 5_000);
    const gotBare = readAll(bare, 5_000);
    withData.end('early\n');
    bare.end();
    await sleep(300);
    holder.destroy();
    // Each gets the machine's greeting, its own bytes echoed, and the machine's FIN.
    expect(await gotData).toEqual({ data: `${SOLO_ID}\nearly\n`, closed: true });
    expect(await gotBare).toEqual({ data: `${SOLO_ID}\n`, closed: true });
    expect((await solo.stats()).eofs).toBe(3); // the holder's FIN too
    await waitFor(async () => (await active('solo')) === 0, { timeoutMs: 1_000, what: 'solo slot free' });
  });

  it('passes on a caller half-close after the machine is connected: the answer still comes back', async () => {
    const s = await tcpFrom(INSIDER, ECHO_IP, 7000);
    expect(await readLines(s, 1)).toEqual([ECHO_ID]);
    const rest = readAll(s);
    s.end('ping\n');
    expect(await rest).toEqual({ data: 'ping\n', closed: true });
  });

  it('gives each of 20 callers that half-close at once with no data the machine FIN', async () => {
    await echo.resetStats();
    const results = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const s = await tcpFrom(INSIDER, ECHO_IP, 7000);
        const got = readAll(s, 5_000);
        s.end();
        return got;
      }),
    );
    for (const r of results) expect(r).toEqual({ data: `${ECHO_ID}\n`, closed: true });
    expect((await echo.stats()).eofs).toBe(20);
  });

  it('passes on a machine half-close: the caller reads its FIN and can still send', async () => {
    await fin.resetStats();
    const s = await tcpFrom(INSIDER, FIN_IP, 7001);
    const first = await readAll(s, 5_000);
    expect(first).toEqual({ data: `${FIN_ID}\n`, closed: true });
    expect(s.writable).toBe(true);
    const closed = new Promise((r) => s.once('close', r));
    s.end('after-fin');
    await closed;
    await waitFor(async () => (await fin.stats()).eofs === 1, { timeoutMs: 2_000, what: 'machine saw the caller FIN' });
    expect((await fin.stats()).bytesIn).toBe('after-fin'.length);
    await waitFor(async () => (await active('fin')) === 0, { timeoutMs: 1_000, what: 'fin slot free' });
  });

  it('frees every slot within a second after 10,000 connect/close cycles, and real callers are served', { timeout: 180_000 }, async () => {
    await echo.resetStats();
    // The callers are paced so that the proxy's accept backlog stays under 300 connections:
    // "within a second" is then about leaks, not about how far behind a busy proxy is.
    let started = 0;
    let reached = 0;
    let progressAt = Date.now();
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const now = (await echo.stats()).connections;
        if (now > reached) progressAt = Date.now();
        reached = now;
        await sleep(50);
      }
    })();
    const worker = async (): Promise<void> => {
      while (started < 10_000) {
        if (started - reached > 300) {
          // Slots pinned at hard_limit: the machine sees no new connection any more.
          if (Date.now() - progressAt > 5_000) throw new Error(`the machine stopped seeing connections after ${reached} of ${started} cycles`);
          await sleep(10);
          continue;
        }
        started++;
        await touch(ECHO_IP, 7000);
      }
    };
    try {
      await Promise.all(Array.from({ length: 25 }, worker));
    } finally {
      polling = false;
      await poll;
    }
    if (hasCommand('nc')) for (let i = 0; i < 5; i++) expect((await run('nc', ['-z', '-s', INSIDER, ECHO_IP, '7000'])).code).toBe(0);
    await waitFor(async () => (await active('echo')) === 0 && (await echo.stats()).active === 0, { timeoutMs: 1_000, what: 'no connection left on the echo machine' });
    // hard_limit is 50: a leak of slots would refuse these.
    for (let i = 0; i < 60; i++) {
      const s = await tcpFrom(INSIDER, ECHO_IP, 7000);
      expect(await readLines(s, 1)).toEqual([ECHO_ID]);
      s.destroy();
    }
  });
});

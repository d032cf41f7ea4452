/**
 * Throws 100,000+ random and mutated DNS messages over UDP, and garbage, lying length prefixes
 * and half-open floods over TCP, at a real `sixpn dns` process; then a normal dig must still get
 * the right answer over UDP and TCP, and the process must still be running.
 */
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress } from '../../src/addressing/index.js';
import { dig } from '../harness/dig.js';
import { bases, fuzzPacket, rng } from '../harness/dns-fuzz.js';
import { IN_NETNS } from '../harness/env.js';
import { freePort, sleep } from '../harness/net.js';
import { run, type Proc } from '../harness/procs.js';
import { startSixpnNode, type SixpnNode } from '../harness/sixpn-node.js';

const SERVER = 'fdaa::3';
const HOST = 0x0a7b007d;
const MEMBER = machineAddress(0x18, HOST, 'aaaaaaaa0001');
const TOTAL_UDP = 100_000;
const RATE = 10_000;

describe.skipIf(!IN_NETNS)('dns: fuzzing the real server', () => {
  let sixpn: SixpnNode;
  let node: Proc;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    const deadUpstream = await freePort();
    sixpn = await startSixpnNode(
      'dns',
      `[node]\nregion = "ewr"\n[catalog]\npath = ""\n[log]\nlevel = "error"\n` +
        `[dns]\nport = ${port}\nupstreams = ["127.0.0.1:${deadUpstream}"]\nupstream_timeout = "200ms"\nmax_tcp_connections = 50\ntcp_idle_timeout = "1s"\n` +
        `[[orgs]]\nname = "acme"\nnetwork_id = 24\n[[apps]]\nname = "web"\norg = "acme"\n` +
        `[[machines]]\nid = "aaaaaaaa0001"\napp = "web"\nregion = "ewr"\n[[machines]]\nid = "bbbbbbbb0002"\napp = "web"\nregion = "ams"\n`,
    );
    node = sixpn.proc;
  }, 30_000);

  afterAll(async () => {
    await sixpn?.stop();
  });

  const expectHealthy = async (): Promise<void> => {
    const udp = await dig(SERVER, port, 'web.internal', 'AAAA', { source: MEMBER });
    expect(udp.status).toBe('NOERROR');
    expect(udp.records.map((r) => r.data).sort()).toEqual([MEMBER, machineAddress(0x18, HOST, 'bbbbbbbb0002')].sort());
    const tcp = await dig(SERVER, port, 'vms.web.internal', 'TXT', { source: MEMBER, extra: ['+tcp'] });
    expect(tcp.records.map((r) => r.data)).toEqual(['aaaaaaaa0001,bbbbbbbb0002']);
    expect(node.child.exitCode).toBeNull();
  };

  it(`survives ${TOTAL_UDP} random and mutated UDP messages`, async () => {
    const r = rng(0x5eed);
    const base = bases();
    const sockets = [MEMBER, MEMBER, MEMBER, 'fdaa:0:77::9'].map((addr) => {
      // a big receive buffer: the test process, busy sending, must not drop the answers
      const s = createSocket({ type: 'udp6', recvBufferSize: 4 << 20 });
      s.bind(0, addr);
      return s;
    });
    let answers = 0;
    for (const s of sockets) s.on('message', () => answers++);
    await Promise.all(sockets.map((s) => new Promise((res) => s.once('listening', res))));
    let sent = 0;
    const t0 = Date.now();
    while (sent < TOTAL_UDP) {
      const batch: Promise<void>[] = [];
      for (let i = 0; i < 500 && sent < TOTAL_UDP; i++, sent++) {
        const s = sockets[sent % sockets.length]!;
        batch.push(new Promise((res) => s.send(fuzzPacket(r, base), port, SERVER, () => res())));
      }
      await Promise.all(batch);
      // Pace by the server's answers, not the clock: the next batch goes once this one's answers
      // have stopped coming (no answer for 5 ms), so a loaded machine slows the test down
      // instead of the kernel dropping datagrams; and never faster than RATE/s.
      let seen = -1;
      for (let waited = 0; seen !== answers && waited < 500; waited += 5) {
        seen = answers;
        await sleep(5);
      }
      const ahead = sent / RATE - (Date.now() - t0) / 1000;
      if (ahead > 0) await sleep(ahead * 1000);
    }
    await sleep(500);
    for (const s of sockets) s.close();
    // most messages have a readable id and get an rcode (responses and runts are dropped)
    console.log(`dns-fuzz: ${answers} answers to ${TOTAL_UDP} messages in ${Date.now() - t0} ms`);
    expect(answers).toBeGreaterThan(TOTAL_UDP * 0.8);
    await expectHealthy();
  }, 60_000);

  it('survives lying length prefixes, garbage and a half-open flood over TCP', async () => {
    const r = rng(0xbeef);
    const base = bases();
    const socks: Socket[] = [];
    const open = (): Promise<Socket> =>
      new Promise((res) => {
        const s = connect({ host: SERVER, port, localAddress: MEMBER });
        s.on('error', () => undefined);
        s.resume(); // read answers, so that the server's close is seen
        s.on('connect', () => res(s));
        s.on('close', () => res(s));
        socks.push(s);
      });
    for (let i = 0; i < 300; i++) {
      const s = await open();
      const kind = i % 4;
      if (kind === 0) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(1000 + i);
        s.write(Buffer.concat([len, Buffer.alloc(10, 7)])); // says 1000+, sends 10
      } else if (kind === 1) {
        s.write(Buffer.from(Array.from({ length: 1 + Math.floor(r() * 3000) }, () => Math.floor(r() * 256))));
      } else if (kind === 2) {
        for (let j = 0; j < 20; j++) {
          const m = fuzzPacket(r, base);
          const len = Buffer.alloc(2);
          len.writeUInt16BE(m.length);
          s.write(Buffer.concat([len, m]));
        }
      } // kind 3: half-open, sends nothing
    }
    // the flood is still open (cap 50, idle 1 s): a real client must get through
    await expectHealthy();
    await sleep(1_500); // idle timeout closes what is left
    // counted on the server side of the connections, by the kernel
    const ss = await run('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], { stdio: ['ignore', 'pipe', 'pipe'] });
    const stillOpen = socks.filter((s) => !s.destroyed && s.readyState === 'open').length;
    for (const s of socks) s.destroy();
    expect(ss.stdout.trim()).toBe('');
    expect(stillOpen).toBe(0);
    await expectHealthy();
  }, 30_000);
});

/**
 * DNS protocol edges against a real `sixpn dns`, asked by the real `dig` (issue 11 item 10):
 * EDNS versions and duplicate OPT records, zone transfer requests, and answers too large for
 * UDP with an org of 2,000 machines (over TCP an answer that fits 64 KiB comes back whole).
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { join } from 'node:path';
import * as packet from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/catalog/memory.js';
import type { CatalogSnapshot } from '../../src/catalog/types.js';
import { dig } from '../harness/dig.js';
import { IN_NETNS } from '../harness/env.js';
import { freePort } from '../harness/net.js';
import { startSixpnNode, type SixpnNode } from '../harness/sixpn-node.js';
import { regionTable } from '../unit/dns/fixture.js';

const HOST = 0x0a7b007d;
const MANY = 2000;

describe.skipIf(!IN_NETNS)('dns: protocol edges with dig', () => {
  let node: SixpnNode;
  let port: number;
  let snap: CatalogSnapshot;
  let asker: string;
  const q = (name: string, type: string, extra: string[] = []) => dig('fdaa::3', port, name, type, { source: asker, extra });

  beforeAll(async () => {
    port = await freePort();
    const toml = `[node]\nregion = "ewr"\n[catalog]\npath = "catalog.json"\n[log]\nlevel = "warn"\n[dns]\nport = ${port}\n`;
    node = await startSixpnNode('dns', toml, async (dir) => {
      const store = await MemoryStore.open({ path: join(dir, 'catalog.json'), regions: regionTable().codes });
      await store.createOrg({ name: 'acme', network_id: 0x18 });
      await store.createApp({ name: 'web', org: 'acme' });
      await store.createApp({ name: 'big', org: 'acme' });
      await store.registerMachine({ id: 'aaaaaaaa0001', app: 'web', region: 'ewr' }, { hostId: HOST });
      await Promise.all(Array.from({ length: MANY }, (_, i) => store.registerMachine({ id: (0x10000000 + i).toString(16), app: 'big', region: 'ewr' }, { hostId: HOST })));
      snap = await store.snapshot();
      await store.close();
    });
    asker = snap.machines.find((m) => m.id === 'aaaaaaaa0001')!.address;
  }, 60_000);

  afterAll(async () => {
    await node?.stop();
  });

  it('answers EDNS version 1 with BADVERS and an OPT record of version 0', async () => {
    const r = await q('web.internal', 'AAAA', ['+edns=1', '+noednsnegotiation']);
    expect(r.status, r.raw).toBe('BADVERS');
    expect(r.raw).toMatch(/EDNS: version: 0/);
    expect(r.records).toEqual([]);
    // Version 0 still works, and so does a query without EDNS.
    expect((await q('web.internal', 'AAAA', ['+edns=0'])).records).toHaveLength(1);
    expect((await q('web.internal', 'AAAA', ['+noedns'])).records).toHaveLength(1);
  });

  /** Sends raw query bytes from the asker's address and returns the reply's bytes. */
  async function raw(msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer> {
    if (transport === 'tcp') {
      return new Promise((resolve, reject) => {
        const s = connect({ host: 'fdaa::3', port, localAddress: asker });
        const len = Buffer.alloc(2);
        len.writeUInt16BE(msg.length);
        let buf = Buffer.alloc(0);
        s.on('connect', () => s.write(Buffer.concat([len, msg])));
        s.on('data', (b: Buffer) => {
          buf = Buffer.concat([buf, b]);
          if (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
            s.destroy();
            resolve(buf.subarray(2, buf.readUInt16BE(0) + 2));
          }
        });
        s.on('error', reject);
        setTimeout(() => reject(new Error('no reply')), 3000);
      });
    }
    const sock = createSocket('udp6');
    try {
      await new Promise<void>((r) => sock.bind({ address: asker, port: 0 }, r));
      return await new Promise<Buffer>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no reply')), 3000);
        sock.once('message', (m) => {
          clearTimeout(t);
          resolve(m);
        });
        sock.send(msg, port, 'fdaa::3');
      });
    } finally {
      sock.close();
    }
  }
  const header = (b: Buffer) => ({ id: b.readUInt16BE(0), rcode: b.readUInt16BE(2) & 0xf, qd: b.readUInt16BE(4), an: b.readUInt16BE(6), ns: b.readUInt16BE(8) });

  it('answers a query with two OPT records with FORMERR', async () => {
    const opt = { type: 'OPT' as const, name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] };
    const msg = packet.encode({ id: 4242, type: 'query', flags: packet.RECURSION_DESIRED, questions: [{ name: 'web.internal', type: 'AAAA', class: 'IN' }], additionals: [opt, opt] });
    for (const transport of ['udp', 'tcp'] as const) {
      expect(header(await raw(msg, transport))).toMatchObject({ id: 4242, rcode: 1, an: 0 });
    }
  });

  it.each([
    ['AXFR over TCP', 'internal', 'AXFR', []],
    ['IXFR over TCP', 'internal', 'IXFR=1', []],
    ['IXFR over UDP', 'internal', 'IXFR=1', ['+notcp']],
    ['AXFR of an app name', 'web.internal', 'AXFR', []],
    ['AXFR of a forwarded name', 'example.test', 'AXFR', []],
  ])('refuses a zone transfer (%s) instead of answering with an SOA', async (_what, name, type, extra) => {
    const r = await q(name, type, extra);
    expect(r.raw).toMatch(/status: REFUSED|Transfer failed/);
    expect(r.raw).not.toMatch(/\tSOA\t/);
    expect(r.records).toEqual([]);
  });

  it('answers AXFR and IXFR (with its SOA in the authority section) with REFUSED over UDP and TCP', async () => {
    const soa = { name: 'internal', type: 'SOA' as const, class: 'IN' as const, ttl: 0, data: { mname: 'a', rname: 'b', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 1 } };
    const axfr = packet.encode({ id: 7, type: 'query', questions: [{ name: 'internal', type: 'AXFR', class: 'IN' }] });
    const ixfr = packet.encode({ id: 8, type: 'query', questions: [{ name: 'internal', type: 'IXFR', class: 'IN' }], authorities: [soa] });
    for (const transport of ['udp', 'tcp'] as const) {
      expect(header(await raw(axfr, transport))).toEqual({ id: 7, rcode: 5, qd: 1, an: 0, ns: 0 });
      expect(header(await raw(ixfr, transport))).toEqual({ id: 8, rcode: 5, qd: 1, an: 0, ns: 0 });
    }
  });

  it(`sends ${MANY} AAAA records over TCP whole: the answer fits 64 KiB`, async () => {
    const r = await q('big.internal', 'AAAA', ['+tcp']);
    expect(r.status).toBe('NOERROR');
    expect(r.flags).not.toContain('tc');
    expect(r.records).toHaveLength(MANY);
    const want = snap.machines.filter((m) => m.app === 'big').map((m) => m.address).sort();
    expect(r.records.map((x) => x.data).sort()).toEqual(want);
    // Over UDP it is truncated, and dig gets it all by retrying over TCP.
    const udp = await q('big.internal', 'AAAA');
    expect(udp.raw).toMatch(/retrying in TCP mode/);
    expect(udp.records).toHaveLength(MANY);
  });

  it('sends as many records as fit, with TC, when a TCP answer cannot fit 64 KiB', async () => {
    const r = await q('_instances.internal', 'TXT', ['+tcp']);
    expect(r.status).toBe('NOERROR');
    expect(r.flags).toContain('tc');
    // Each record ~90 bytes: 64 KiB holds about 700 of the 2,001.
    expect(r.records.length).toBeGreaterThan(500);
    expect(r.records.length).toBeLessThan(MANY);
    const all = new Set(snap.machines.map((m) => `instance=${m.id},app=${m.app},ip=${m.address},region=${m.region}`));
    for (const rec of r.records) expect(all.has(rec.data), rec.data).toBe(true);
  });
});

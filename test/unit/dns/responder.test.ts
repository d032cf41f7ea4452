import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as packet from 'dns-packet';
import type { MemoryStore } from '../../../src/catalog/memory.js';
import { registry } from '../../../src/observe/metrics.js';
import type { Responder } from '../../../src/dns/responder.js';
import { dnsResponder, HOST, type DnsResponderFixture } from './fixture.js';

let dns: DnsResponderFixture;
let store: MemoryStore;
let responder: Responder;
const ACME = 'fdaa:0:18::99';
const BETA = 'fdaa:0:19::99';

beforeAll(async () => {
  dns = await dnsResponder('beta');
  ({ store, responder } = dns);
});
afterAll(() => dns?.close());

function query(name: string, type = 'AAAA', extra: Partial<packet.Packet> = {}): Buffer {
  return packet.encode({ id: 4242, type: 'query', flags: packet.RECURSION_DESIRED, questions: [{ name, type: type as 'AAAA', class: 'IN' }], ...extra });
}
function ask(msg: Buffer, source = ACME, transport: 'udp' | 'tcp' = 'udp'): packet.Packet & { rcode?: string; flag_aa?: boolean; flag_rd?: boolean; flag_tc?: boolean } {
  const out = responder.answer(msg, source, transport);
  if (!out || out instanceof Promise) throw new Error('expected a synchronous answer');
  return packet.decode(out) as packet.Packet & { rcode?: string; flag_aa?: boolean; flag_rd?: boolean; flag_tc?: boolean };
}

describe('Responder', () => {
  it('answers a member with AA, RD echoed, id kept, from the cache the second time', () => {
    for (let i = 0; i < 2; i++) {
      const r = ask(query('web.internal'));
      expect(r.id).toBe(4242);
      expect(r.rcode).toBe('NOERROR');
      expect(r.flag_aa).toBe(true);
      expect(r.flag_rd).toBe(true);
      expect(r.answers).toHaveLength(2);
    }
    const other = query('web.internal');
    other.writeUInt16BE(7, 0);
    expect(ask(other).id).toBe(7);
  });

  it('refuses askers outside every org, for local and forwarded names', () => {
    for (const src of ['10.0.0.1', 'fd00::1', 'fdaa::5', '::1'.replace('::1', '2001:db8::1'), 'fdaa:0:77::1']) {
      expect(ask(query('web.internal'), src).rcode).toBe('REFUSED');
      expect(ask(query('example.com', 'A'), src).rcode).toBe('REFUSED');
    }
  });

  it('keeps orgs apart: beta gets NXDOMAIN for acme names', () => {
    const r = ask(query('web.internal'), BETA);
    expect(r.rcode).toBe('NXDOMAIN');
    expect(r.authorities?.[0]?.type).toBe('SOA');
  });

  it('the dev option maps loopback to its org', () => {
    expect(ask(query('db.internal'), '127.0.0.1').rcode).toBe('NOERROR');
    expect(ask(query('db.internal'), '::1').rcode).toBe('NOERROR');
    expect(ask(query('web.internal'), '::1').rcode).toBe('NXDOMAIN');
  });

  it('answers FORMERR/NOTIMP/REFUSED with the id for bad queries', () => {
    const q = query('web.internal');
    const noQuestion = packet.encode({ id: 99, type: 'query', questions: [] });
    expect(ask(noQuestion).rcode).toBe('FORMERR');
    expect(ask(noQuestion).id).toBe(99);
    const two = packet.encode({ id: 98, type: 'query', questions: [{ name: 'a.internal', type: 'A' }, { name: 'b.internal', type: 'A' }] });
    expect(ask(two).rcode).toBe('FORMERR');
    const notify = Buffer.from(q);
    notify.writeUInt16BE(0x2000 | 0x0100, 2); // opcode 4 NOTIFY
    expect(ask(notify).rcode).toBe('NOTIMP');
    expect(ask(q.subarray(0, q.length - 3)).rcode).toBe('FORMERR'); // truncated question
    expect(ask(q.subarray(0, 7)).rcode).toBe('FORMERR'); // shorter than a header
    const ch = packet.encode({ id: 1, type: 'query', questions: [{ name: 'version.bind', type: 'TXT', class: 'CH' }] });
    expect(ask(ch).rcode).toBe('REFUSED');
  });

  it('a label with a dot inside is not the name it looks like, and the question comes back byte for byte', () => {
    const header = Buffer.from(query('x.internal').subarray(0, 12));
    const odd = Buffer.concat([header, Buffer.from([12]), Buffer.from('web.internal'), Buffer.from([0, 0, 28, 0, 1])]);
    const out = responder.answer(odd, ACME, 'udp') as Buffer;
    expect((packet.decode(out) as { rcode?: string }).rcode).toBe('NXDOMAIN');
    expect(out.subarray(12, odd.length).equals(odd.subarray(12))).toBe(true);
    const mixed = query('wEb.InTeRnAl');
    const reply = responder.answer(mixed, ACME, 'udp') as Buffer;
    expect(reply.subarray(12, mixed.length).equals(mixed.subarray(12))).toBe(true);
  });

  it('FORMERR for a compression pointer loop; drops responses and runts', () => {
    const loop = Buffer.from(query('x.internal').subarray(0, 12));
    loop.writeUInt16BE(1, 4);
    const body = Buffer.from([0xc0, 12, 0, 28, 0, 1]); // name is a pointer to itself
    expect(ask(Buffer.concat([loop, body])).rcode).toBe('FORMERR');
    const resp = Buffer.from(query('web.internal'));
    resp.writeUInt16BE(0x8000, 2);
    expect(responder.answer(resp, ACME, 'udp')).toBeNull();
    expect(responder.answer(Buffer.from([1, 2]), ACME, 'udp')).toBeNull();
  });

  it('truncates UDP answers over 512 bytes (or the EDNS size) and not TCP ones', async () => {
    await store.createApp({ name: 'big', org: 'acme' });
    for (let i = 0; i < 20; i++) await store.registerMachine({ id: `1000${String(i).padStart(4, '0')}aaaa`, app: 'big', region: 'ewr' }, { hostId: HOST });
    const udp = ask(query('big.internal'));
    expect(udp.flag_tc).toBe(true);
    expect(udp.answers).toHaveLength(0);
    const edns = ask(query('big.internal', 'AAAA', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as packet.Answer] }));
    expect(edns.flag_tc).toBe(false); // 20 * 40 bytes fit in 1232
    expect(edns.answers).toHaveLength(20);
    const tcp = ask(query('big.internal'), ACME, 'tcp');
    expect(tcp.flag_tc).toBe(false);
    expect(tcp.answers).toHaveLength(20);
  });

  it('cached answers follow catalog changes', async () => {
    expect(ask(query('api.internal')).answers).toHaveLength(1);
    await store.updateMachine('eeeeeeee0005', { state: 'stopped' });
    expect(ask(query('api.internal')).answers).toHaveLength(0);
    await store.updateMachine('eeeeeeee0005', { state: 'started' });
    expect(ask(query('api.internal')).answers).toHaveLength(1);
  });

  it('counts queries by bounded qtype and rcode', async () => {
    ask(query('web.internal', 'UNKNOWN_65000' as 'AAAA'));
    const text = await registry.metrics();
    expect(text).toMatch(/sixpn_dns_queries_total\{qtype="AAAA",rcode="NOERROR"\} \d+/);
    expect(text).toMatch(/sixpn_dns_queries_total\{qtype="other",rcode="NOERROR"\} \d+/);
    expect(text).toMatch(/sixpn_dns_queries_total\{qtype="none",rcode="FORMERR"\} \d+/);
  });
});

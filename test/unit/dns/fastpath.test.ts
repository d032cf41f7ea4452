// The DNS fast path: which queries it takes (a table: anything unusual goes the full way), and
// that its answers are the full path's answers (same records, the question's own bytes and
// case, id, RD, EDNS), scoped per org, fresh after changes and counted in the metrics.
import * as packet from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryStore } from '../../../src/catalog/memory.js';
import { scanQuery } from '../../../src/dns/fastpath.js';
import type { Responder } from '../../../src/dns/responder.js';
import { registry } from '../../../src/observe/metrics.js';
import { dnsResponder, type DnsResponderFixture } from './fixture.js';

const ACME = 'fdaa:0:18::99';
const BETA = 'fdaa:0:19::99';

function query(name: string, type = 'AAAA', extra: Partial<packet.Packet> = {}): Buffer {
  return packet.encode({ id: 4242, type: 'query', flags: packet.RECURSION_DESIRED, questions: [{ name, type: type as 'AAAA', class: 'IN' }], ...extra });
}

const opt = (o: Partial<{ udpPayloadSize: number; ednsVersion: number; options: { code: number; data: Buffer }[] }> = {}): packet.Answer =>
  ({ type: 'OPT', name: '.', udpPayloadSize: 1232, ...o }) as packet.Answer;

describe('scanQuery: what the fast path takes', () => {
  const raw = (q: Buffer, f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(q);
    f(b);
    return b;
  };
  it.each([
    ['a plain AAAA question', query('web.internal'), true],
    ['TXT, mixed case', query('VmS.wEb.InTeRnAl', 'TXT'), true],
    ['EDNS version 0 without options', query('web.internal', 'AAAA', { additionals: [opt()] }), true],
    ['EDNS version 1', query('web.internal', 'AAAA', { additionals: [opt({ ednsVersion: 1 })] }), false],
    ['EDNS with an option (cookie)', query('web.internal', 'AAAA', { additionals: [opt({ options: [{ code: 10, data: Buffer.alloc(8, 1) }] })] }), false],
    ['two OPT records', query('web.internal', 'AAAA', { additionals: [opt(), opt()] }), false],
    ['AXFR', query('internal', 'AXFR'), false],
    ['IXFR', query('internal', 'IXFR'), false],
    ['ANY', query('web.internal', 'ANY'), false],
    ['class CH', packet.encode({ id: 1, type: 'query', questions: [{ name: 'version.bind', type: 'TXT', class: 'CH' }] }), false],
    ['a NOTIFY', raw(query('web.internal'), (b) => b.writeUInt16BE(0x2000, 2)), false],
    ['a response', raw(query('web.internal'), (b) => b.writeUInt16BE(0x8000, 2)), false],
    ['an answer record in a query', raw(query('web.internal'), (b) => b.writeUInt16BE(1, 6)), false],
    ['two questions', raw(query('web.internal'), (b) => b.writeUInt16BE(2, 4)), false],
    ['bytes after the question', Buffer.concat([query('web.internal'), Buffer.from([0])]), false],
    ['a cut-off question', query('web.internal').subarray(0, 20), false],
    ['a compressed name', Buffer.concat([query('x.internal').subarray(0, 12), Buffer.from([0xc0, 12, 0, 28, 0, 1])]), false],
    ['a label with a dot inside', Buffer.concat([query('x.internal').subarray(0, 12), Buffer.from([12]), Buffer.from('web.internal'), Buffer.from([0, 0, 28, 0, 1])]), false],
    ['the root name', query('.', 'SOA'), false],
  ])('%s: %s', (_name, msg, taken) => {
    expect(scanQuery(msg) !== null).toBe(taken);
  });
});

describe('DNS fast path answers', () => {
  let dns: DnsResponderFixture;
  let store: MemoryStore;
  let responder: Responder;

  beforeAll(async () => {
    dns = await dnsResponder('');
    ({ store, responder } = dns);
  });
  afterAll(() => dns?.close());

  const answer = (msg: Buffer, source = ACME, transport: 'udp' | 'tcp' = 'udp'): Buffer => {
    const out = responder.answer(msg, source, transport);
    if (!(out instanceof Buffer)) throw new Error('expected a synchronous answer');
    return out;
  };
  type Decoded = packet.Packet & { rcode?: string; flag_rd?: boolean; flag_aa?: boolean };
  const decode = (b: Buffer): Decoded => packet.decode(b) as Decoded;

  it.each([
    ['web.internal', 'AAAA'],
    ['ewr.web.internal', 'AAAA'],
    ['vms.web.internal', 'TXT'],
    ['_apps.internal', 'TXT'],
    ['_instances.internal', 'TXT'],
    ['web.flycast', 'AAAA'],
    ['nope.internal', 'AAAA'],
    ['web.internal', 'TXT'],
    ['internal', 'SOA'],
  ])('answers %s %s the same from its template as the first time, for every spelling', (name, type) => {
    const first = decode(answer(query(name, type)));
    const mixed = name.replace(/[a-z]/g, (c, i: number) => (i % 2 ? c.toUpperCase() : c));
    for (const spelling of [name, mixed]) {
      const q = query(spelling, type);
      q.writeUInt16BE(0xbeef, 0);
      const out = answer(q);
      expect(out.subarray(12, q.length).equals(q.subarray(12))).toBe(true); // the question, byte for byte
      const d = decode(out);
      expect(d.id).toBe(0xbeef);
      expect([d.rcode, d.flag_aa, d.flag_rd]).toEqual([first.rcode, true, true]);
      expect(d.answers?.map((a) => ({ ...a, name: a.name.toLowerCase() }))).toEqual(first.answers?.map((a) => ({ ...a, name: a.name.toLowerCase() })));
      expect(d.authorities).toEqual(first.authorities);
      for (const a of d.answers ?? []) expect(a.name).toBe(spelling); // records about the name carry the asked case
    }
  });

  it('echoes RD as asked and adds OPT only for EDNS queries', () => {
    answer(query('api.internal'));
    const noRd = packet.encode({ id: 7, type: 'query', flags: 0, questions: [{ name: 'api.internal', type: 'AAAA', class: 'IN' }] });
    expect(decode(answer(noRd)).flag_rd).toBe(false);
    expect(decode(answer(query('api.internal'))).additionals).toEqual([]);
    const edns = decode(answer(query('api.internal', 'AAAA', { additionals: [opt({ udpPayloadSize: 4096 })] })));
    expect(edns.additionals).toHaveLength(1);
    expect(edns.additionals?.[0]).toMatchObject({ type: 'OPT', udpPayloadSize: 1232 });
  });

  it('keeps each org to its own answers', () => {
    expect(decode(answer(query('web.internal'))).rcode).toBe('NOERROR');
    expect(decode(answer(query('web.internal'))).rcode).toBe('NOERROR');
    expect(decode(answer(query('web.internal'), BETA)).rcode).toBe('NXDOMAIN');
    expect(decode(answer(query('db.internal'), BETA)).rcode).toBe('NOERROR');
    expect(decode(answer(query('db.internal'))).rcode).toBe('NXDOMAIN');
    expect(decode(answer(query('web.internal'), '2001:db8::1')).rcode).toBe('REFUSED');
  });

  it('follows zone changes at once', async () => {
    const data = (): string[] => (decode(answer(query('vms.api.internal', 'TXT'))).answers ?? []).map((a) => String(a.data));
    const before = data();
    expect(data()).toEqual(before); // now from the template
    await store.registerMachine({ id: '9999999900aa', app: 'api', region: 'fra' }, { hostId: 0x0a7b007d });
    expect(data()).toEqual(['9999999900aa,eeeeeeee0005']);
    await store.removeMachine('9999999900aa');
    expect(data()).toEqual(before);
  });

  it('counts its answers in sixpn_dns_queries_total and the duration histogram', async () => {
    const count = async (re: RegExp): Promise<number> => Number(re.exec(await registry.metrics())?.[1] ?? 0);
    const queries = /^sixpn_dns_queries_total\{qtype="TXT",rcode="NOERROR"\} (\d+)/m;
    const durations = /^sixpn_dns_query_duration_seconds_count\{source="local"\} (\d+)/m;
    answer(query('regions.web.internal', 'TXT'));
    const q0 = await count(queries);
    const d0 = await count(durations);
    for (let i = 0; i < 50; i++) answer(query('regions.web.internal', 'TXT'));
    expect(await count(queries)).toBe(q0 + 50);
    expect(await count(durations)).toBe(d0 + 50);
    expect(await registry.metrics()).toMatch(/^sixpn_dns_query_duration_seconds_bucket\{le="0.0001",source="local"\} \d+/m);
  });
});

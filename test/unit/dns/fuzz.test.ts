import { describe, expect, it } from 'vitest';
import * as packet from 'dns-packet';
import { createRootLogger } from '../../../src/observe/log.js';
import { Responder } from '../../../src/dns/responder.js';
import { DnsIndex } from '../../../src/dns/zone.js';
import { bases, fuzzPacket, rng } from '../../harness/dns-fuzz.js';
import { dnsFixture } from './fixture.js';

describe('Responder under fuzz (in process)', () => {
  it('never throws, and every answer it sends decodes and carries the query id', async () => {
    const { store, view, regions } = await dnsFixture();
    const index = new DnsIndex(view);
    const responder = new Responder({ index, regions, ttl: 5, nodeRegion: 'ewr', loopbackOrg: '', forwarder: null, log: createRootLogger({ level: 'silent', pretty: false }) });
    const r = rng(42);
    const base = bases();
    const rcodes = new Map<string, number>();
    let dropped = 0;
    for (let i = 0; i < 20_000; i++) {
      const msg = fuzzPacket(r, base);
      const out = responder.answer(msg, i % 5 ? 'fdaa:0:18::99' : 'fdaa:0:77::1', i % 2 ? 'udp' : 'tcp');
      expect(out).not.toBeInstanceOf(Promise); // no forwarder: nothing is asynchronous
      if (out === null) {
        dropped++;
        continue;
      }
      const buf = out as Buffer;
      expect(buf.readUInt16BE(0)).toBe(msg.readUInt16BE(0));
      const rcode = (packet.decode(buf) as { rcode?: string }).rcode ?? '?';
      rcodes.set(rcode, (rcodes.get(rcode) ?? 0) + 1);
    }
    expect(rcodes.get('FORMERR')).toBeGreaterThan(1000);
    expect(rcodes.get('NXDOMAIN')).toBeGreaterThan(1000);
    expect(rcodes.get('NOERROR')).toBeGreaterThan(200);
    expect(dropped).toBeLessThan(4000);
    responder.close();
    index.close();
    view.close();
    await store.close();
  });
});

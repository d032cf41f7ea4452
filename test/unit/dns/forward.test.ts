import { createSocket, type Socket } from 'node:dgram';
import * as packet from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Forwarder } from '../../../src/dns/forward.js';
import { createRootLogger } from '../../../src/observe/log.js';
import { startDnsStub, type DnsStub } from '../../harness/dns-stub.js';

const log = createRootLogger({ level: 'silent', pretty: false });
const query = (name: string, id = 777): Buffer => packet.encode({ id, type: 'query', flags: packet.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] });

describe('Forwarder (real UDP/TCP upstreams on loopback)', () => {
  let stub: DnsStub;
  let silent: Socket;
  let liar: Socket;
  let silentPort: number;
  let liarPort: number;

  beforeAll(async () => {
    stub = await startDnsStub('127.0.0.1', { 'example.test': ['192.0.2.1'] });
    silent = createSocket('udp4'); // takes queries, never answers
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
    silentPort = silent.address().port;
    // answers every query at once with the right id but another question (a spoof attempt)
    liar = createSocket('udp4');
    liar.on('message', (msg, r) => {
      const q = packet.decode(msg);
      liar.send(packet.encode({ id: q.id, type: 'response', questions: [{ name: 'evil.test', type: 'A' }], answers: [{ name: 'evil.test', type: 'A', data: '6.6.6.6' }] }), r.port, r.address);
    });
    await new Promise<void>((r) => liar.bind(0, '127.0.0.1', r));
    liarPort = liar.address().port;
  });
  afterAll(async () => {
    await stub.close();
    silent.close();
    liar.close();
  });

  it('answers with the client id from the first upstream that answers', async () => {
    const fwd = new Forwarder([{ host: '127.0.0.1', port: silentPort }, { host: '127.0.0.1', port: stub.port }], 200, log);
    const t0 = Date.now();
    const answer = packet.decode(await fwd.udp(query('example.test', 4321)));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190); // waited out the silent one
    expect(answer.id).toBe(4321);
    expect(answer.answers?.map((a) => (a as { data: unknown }).data)).toEqual(['192.0.2.1']);
    fwd.close();
  });

  it('ignores an answer to another question, then fails when no upstream is left', async () => {
    const fwd = new Forwarder([{ host: '127.0.0.1', port: liarPort }], 200, log);
    await expect(fwd.udp(query('example.test'))).rejects.toThrow(/all upstreams failed.*timed out/);
    fwd.close();
  });

  it('forwards over TCP', async () => {
    const fwd = new Forwarder([{ host: '127.0.0.1', port: stub.port }], 500, log);
    const answer = packet.decode(await fwd.tcp(query('example.test', 9)));
    expect(answer.id).toBe(9);
    expect(answer.answers?.map((a) => (a as { data: unknown }).data)).toEqual(['192.0.2.1']);
    expect(stub.seen).toContain('tcp example.test');
    fwd.close();
  });
});

import { describe, expect, it } from 'vitest';
import { RawCaller, startRig } from '../../harness/http1-rig.js';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { CatalogView } from '../../../src/catalog/view.js';
import type { Machine, Service } from '../../../src/catalog/types.js';
import { CallerAcl } from '../../../src/proxy/acl.js';
import { BAD_UPSTREAM, dialTarget, findTarget, isConnectError } from '../../../src/proxy/core.js';
import { proxyHeaderV1, proxyHeaderV2 } from '../../../src/proxy/proxyproto.js';
import { statusClass } from '../../../src/proxy/metrics.js';

async function view(): Promise<CatalogView> {
  const store = await MemoryStore.open({ regions: ['ewr', 'iad'] });
  await store.createOrg({ name: 'acme', network_id: 0x18 });
  await store.createOrg({ name: 'other', network_id: 0x30 });
  await store.createApp({
    name: 'web',
    org: 'acme',
    services: [
      { protocol: 'http', internal_port: 8080, ports: [{ port: 80 }] },
      { protocol: 'tcp', internal_port: 5432, ports: [{ port: 5432, handlers: ['proxy_proto'] }] },
      { protocol: 'tcp', internal_port: 9000, ports: [{ port: 443, handlers: ['tls', 'http'] }] },
    ],
  });
  await store.allocateFlycast('web'); // fdaa:0:18:0:1::3 in acme
  await store.allocateFlycast('web', 'other'); // fdaa:0:30:0:1::3, shared into org other
  return CatalogView.open(store);
}

describe('proxy ACL', () => {
  it.each([
    // caller, flycast owner org, allow rules, expected (null = allowed)
    ['fdaa:0:18:a7b:7d:0:1:2', 'acme', [], null],
    ['fdaa:0:30:a7b:7d:0:1:2', 'acme', [], 'caller fdaa:0:30:a7b:7d:0:1:2 is not a member of org acme'],
    ['fdaa:0:30:a7b:7d:0:1:2', 'other', [], null],
    ['fdaa:0:18::1', 'other', [], 'caller fdaa:0:18::1 is not a member of org other'],
    ['10.0.0.5', 'acme', [], 'caller 10.0.0.5 is not inside any org network'],
    ['::ffff:10.0.0.5', 'acme', [], 'caller ::ffff:10.0.0.5 is not inside any org network'],
    ['fdaa::5', 'acme', [], 'caller fdaa::5 is not inside any org network'],
    ['2001:db8::1', 'acme', [], 'caller 2001:db8::1 is not inside any org network'],
    ['10.0.0.5', 'acme', [{ cidr: '10.0.0.0/8', org: 'acme' }], null],
    ['::ffff:10.0.0.5', 'acme', [{ cidr: '10.0.0.0/8', org: 'acme' }], null],
    ['10.0.0.5', 'acme', [{ cidr: '10.0.0.0/8', org: 'other' }], 'caller 10.0.0.5 is not a member of org acme'],
    ['192.168.1.1', 'acme', [{ cidr: '10.0.0.0/8', org: 'acme' }], 'caller 192.168.1.1 is not inside any org network'],
    ['fdaa:0:18::1', 'gone', [], 'flycast address belongs to unknown org gone'],
  ] as const)('%s -> flycast of %s (allow %j)', async (caller, org, allow, want) => {
    const v = await view();
    expect(new CallerAcl(allow).check(caller, org, v)).toBe(want);
  });

  it('rejects a bad allow CIDR naming the key', () => {
    expect(() => new CallerAcl([{ cidr: 'ten/8', org: 'acme' }])).toThrow(/proxy\.allow\[0\]\.cidr/);
  });
});

describe('proxy targets', () => {
  it.each([
    ['fdaa:0:18:0:1::3', 80, 'web', true],
    ['fdaa:0:18:0:1::3', 5432, 'web', false],
    ['fdaa:0:18:0:1::3', 443, 'web', false], // tls: passed through, not terminated
    ['fdaa:0:30:0:1::3', 80, 'web', true],
    ['fdaa:0:18:0:1::3', 81, null, null],
    ['fdaa:0:18:0:1::9', 80, null, null],
  ] as const)('[%s]:%s -> %s (http %s)', async (addr, port, app, http) => {
    const t = findTarget(await view(), addr, port);
    expect(t?.app.name ?? null).toBe(app);
    expect(t ? t.http : null).toBe(http);
  });

  it.each([
    [{ address: 'fdaa:0:18:a7b:7d:1:2:2' }, { host: 'fdaa:0:18:a7b:7d:1:2:2', port: 8080 }],
    [{ address: 'fdaa:0:18:a7b:7d:1:2:2', upstream: '127.0.0.1:9001' }, { host: '127.0.0.1', port: 9001 }],
    [{ address: 'fdaa:0:18:a7b:7d:1:2:2', upstream: '[::1]:9002' }, { host: '::1', port: 9002 }],
  ])('dials %j at %j', (m, want) => {
    expect(dialTarget(m as Machine, { internal_port: 8080 } as Service)).toEqual(want);
  });

  it.each([
    ['ECONNREFUSED', true],
    ['UND_ERR_CONNECT_TIMEOUT', true],
    ['ETIMEDOUT', true],
    ['ENOTFOUND', true],
    [BAD_UPSTREAM, true],
    ['ECONNRESET', false],
    ['UND_ERR_HEADERS_TIMEOUT', false],
    [undefined, false],
  ])('connect error %s -> retry %s', (code, want) => {
    expect(isConnectError(code ? Object.assign(new Error('x'), { code }) : new Error('x'))).toBe(want);
  });

  it.each([
    [101, '1xx'],
    [204, '2xx'],
    [308, '3xx'],
    [403, '4xx'],
    [504, '5xx'],
    [999, '5xx'],
  ])('status %s is class %s', (s, c) => expect(statusClass(s)).toBe(c));
});

// The proxy answers these itself (the HTTP/1 engine, on a real socket); no machine is picked.
describe('requests the proxy answers itself', () => {
  const fields = (n: number): string => Array.from({ length: n }, (_, i) => `x-${i}: v\r\n`).join('');
  it.each([
    ['a plain request', 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', null],
    ['an absolute URL', 'GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n', null],
    ['HTTP/0.9', 'GET /\r\n\r\n', 400],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
    ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['an authority target', 'GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['two Host headers', 'GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n', 400],
    ['as many fields as allowed', `GET / HTTP/1.1\r\nHost: a\r\n${fields(15)}\r\n`, null],
    ['one field too many', `GET / HTTP/1.1\r\nHost: a\r\n${fields(16)}\r\n`, 400],
  ])('%s -> %s', async (_name, bytes, status) => {
    const r = await startRig([], { maxHeaders: 16 });
    r.script.push('none');
    const c = await RawCaller.connect(r.port);
    try {
      c.write(bytes);
      const res = await c.response();
      // Past the checks a request goes to the pick, which has no machine: 502.
      expect(res.status).toBe(status ?? 502);
      expect(r.machines).toHaveLength(0);
    } finally {
      c.destroy();
      await r.close();
    }
  });
});

describe('PROXY protocol headers', () => {
  const v6 = { srcAddress: 'fdaa:0:18:a7b:7d:0:ca11:1', srcPort: 40000, dstAddress: 'fdaa:0:18:0:1::3', dstPort: 5432 };
  const v4 = { srcAddress: '::ffff:10.1.2.3', srcPort: 1234, dstAddress: '10.9.9.9', dstPort: 80 };

  it.each([
    [v6, 'PROXY TCP6 fdaa:0:18:a7b:7d:0:ca11:1 fdaa:0:18:0:1::3 40000 5432\r\n'],
    [v4, 'PROXY TCP4 10.1.2.3 10.9.9.9 1234 80\r\n'],
    [{ ...v4, dstAddress: 'fdaa:0:18:0:1::3' }, 'PROXY TCP6 ::ffff:a01:203 fdaa:0:18:0:1::3 1234 80\r\n'],
  ])('v1 %j', (e, want) => {
    expect(proxyHeaderV1(e).toString('latin1')).toBe(want);
  });

  it('v2 over IPv6: signature, version/command, family, length, addresses, ports', () => {
    const b = proxyHeaderV2(v6);
    expect(b.subarray(0, 12).toString('hex')).toBe('0d0a0d0a000d0a515549540a');
    expect([b[12], b[13], b.readUInt16BE(14), b.length]).toEqual([0x21, 0x21, 36, 52]);
    expect(b.subarray(16, 32).toString('hex')).toBe('fdaa00000018' + '0a7b007d0000ca110001');
    expect(b.subarray(32, 48).toString('hex')).toBe('fdaa0000001800000001000000000003');
    expect([b.readUInt16BE(48), b.readUInt16BE(50)]).toEqual([40000, 5432]);
  });

  it('v2 over IPv4', () => {
    const b = proxyHeaderV2(v4);
    expect([b[13], b.readUInt16BE(14), b.length]).toEqual([0x11, 12, 28]);
    expect([...b.subarray(16, 24)]).toEqual([10, 1, 2, 3, 10, 9, 9, 9]);
    expect([b.readUInt16BE(24), b.readUInt16BE(26)]).toEqual([1234, 80]);
  });
});

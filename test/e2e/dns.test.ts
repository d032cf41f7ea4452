/**
 * The .internal resolver end to end: `sixpn up` (control API + DNS) on fdaa::3 and the orgs'
 * <prefix>::3 inside the test namespace, asked by the real `dig` from machine and peer
 * addresses of two orgs, with a local stub upstream for forwarded names.
 */
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/catalog/memory.js';
import type { CatalogSnapshot } from '../../src/catalog/types.js';
import { dig } from '../harness/dig.js';
import { startDnsStub, type DnsStub } from '../harness/dns-stub.js';
import { IN_NETNS } from '../harness/env.js';
import { freePort, waitFor } from '../harness/net.js';
import { startSixpnNode, type SixpnNode } from '../harness/sixpn-node.js';
import { regionTable } from '../unit/dns/fixture.js';

const HOST = 0x0a7b007d;
const GATEWAY = 0x0a7b0d6b;
const TOKEN = 'dns-e2e-token-0123456789';
const key = (n: number): string => Buffer.alloc(32, n).toString('base64');

describe.skipIf(!IN_NETNS)('dns: .internal over real sockets with dig', () => {
  let node: SixpnNode;
  let stub: DnsStub;
  let port: number;
  let controlPort: number;
  let snap: CatalogSnapshot;
  const addr = (id: string): string => snap.machines.find((m) => m.id === id)!.address;
  const peer = (name: string): string => snap.peers.find((p) => p.name === name)!.address;

  beforeAll(async () => {
    stub = await startDnsStub('127.0.0.1', { 'example.test': ['192.0.2.1'], 'big.example.test': ['192.0.2.2', '192.0.2.3'] }, ['big.example.test']);
    port = await freePort();
    controlPort = await freePort();
    const toml =
      `[node]\nregion = "ewr"\n[catalog]\npath = "catalog.json"\n[control]\nlisten = "127.0.0.1:${controlPort}"\ntoken = "${TOKEN}"\n` +
      `[proxy]\nenabled = false\n[health]\nenabled = false\n[log]\nlevel = "warn"\n` +
      `[dns]\nport = ${port}\nupstreams = ["127.0.0.1:${stub.port}"]\nupstream_timeout = "300ms"\n`;
    node = await startSixpnNode('up', toml, async (dir) => {
      // Peers cannot be seeded from a config file: build the catalog file the node will open.
      const store = await MemoryStore.open({ path: join(dir, 'catalog.json'), regions: regionTable().codes });
      await store.createOrg({ name: 'acme', network_id: 0x18 });
      await store.createOrg({ name: 'beta', network_id: 0x19 });
      await store.createApp({ name: 'web', org: 'acme' });
      await store.createApp({ name: 'big', org: 'acme' });
      await store.createApp({ name: 'db', org: 'beta' });
      await store.registerMachine({ id: 'aaaaaaaa0001', app: 'web', region: 'ewr' }, { hostId: HOST });
      await store.registerMachine({ id: 'bbbbbbbb0002', app: 'web', region: 'ord' }, { hostId: HOST });
      await store.registerMachine({ id: 'cccccccc0003', app: 'web', region: 'ams' }, { hostId: HOST });
      await store.registerMachine({ id: 'ffffffff0006', app: 'db', region: 'fra' }, { hostId: HOST });
      for (let i = 0; i < 40; i++) await store.registerMachine({ id: `1000${String(i).padStart(4, '0')}`, app: 'big', region: 'ewr' }, { hostId: HOST });
      await store.createPeer({ name: 'laptop', org: 'acme', region: 'lhr', public_key: key(1) }, { gatewayHostId: GATEWAY });
      await store.createPeer({ name: 'interactive-x1', org: 'acme', region: 'ewr', public_key: key(2) }, { gatewayHostId: GATEWAY });
      await store.createPeer({ name: 'ci', org: 'beta', region: 'iad', public_key: key(3) }, { gatewayHostId: GATEWAY });
      await store.allocateFlycast('web');
      await store.allocateFlycast('web', 'beta');
      snap = await store.snapshot();
      await store.close();
    });
  }, 30_000);

  afterAll(async () => {
    await node?.stop();
    await stub?.close().catch(() => undefined);
  });

  const askers = [
    ['machine of acme', () => addr('aaaaaaaa0001'), 'ewr'],
    ['peer of acme', () => peer('laptop'), 'lhr'],
  ] as const;

  describe.each(askers)('asked from a %s', (_what, source, region) => {
    const inst = (id: string): string => {
      const m = snap.machines.find((x) => x.id === id)!;
      return `instance=${id},app=${m.app},ip=${m.address},region=${m.region}`;
    };
    const bigIds = (): string[] => snap.machines.filter((m) => m.app === 'big').map((m) => m.id);
    const rows: [string, string, () => string[]][] = [
      ['web.internal', 'AAAA', () => [addr('aaaaaaaa0001'), addr('bbbbbbbb0002'), addr('cccccccc0003')]],
      ['ord.web.internal', 'AAAA', () => [addr('bbbbbbbb0002')]],
      ['global.web.internal', 'AAAA', () => [addr('aaaaaaaa0001'), addr('bbbbbbbb0002'), addr('cccccccc0003')]],
      // nearest to the asker: ewr machine for the ewr machine, ams for the laptop in lhr
      ['top1.nearest.of.web.internal', 'AAAA', () => [addr(region === 'ewr' ? 'aaaaaaaa0001' : 'cccccccc0003')]],
      ['bbbbbbbb0002.vm.web.internal', 'AAAA', () => [addr('bbbbbbbb0002')]],
      ['vms.web.internal', 'TXT', () => ['aaaaaaaa0001,bbbbbbbb0002,cccccccc0003']],
      ['regions.web.internal', 'TXT', () => ['ams,ewr,ord']],
      ['_apps.internal', 'TXT', () => ['big,web']],
      ['_peer.internal', 'TXT', () => ['laptop']],
      ['laptop._peer.internal', 'AAAA', () => [peer('laptop')]],
      ['_instances.internal', 'TXT', () => [...bigIds(), 'aaaaaaaa0001', 'bbbbbbbb0002', 'cccccccc0003'].map(inst).sort()],
      ['web.flycast', 'AAAA', () => snap.flycast.filter((f) => f.org === 'acme').map((f) => f.address)],
    ];

    it.each(rows)('%s %s', async (name, type, want) => {
      for (const server of ['fdaa::3', 'fdaa:0:18::3']) {
        const r = await dig(server, port, name, type, { source: source() });
        expect(r.status, r.raw).toBe('NOERROR');
        expect(r.flags).toContain('aa');
        expect(r.records.map((x) => x.data).sort()).toEqual(want().sort());
        expect(r.records.every((x) => x.ttl === 5 && x.type === type)).toBe(true);
      }
    });
  });

  it.each(['web.internal', 'vms.web.internal', 'cccccccc0003.vm.web.internal', 'laptop._peer.internal', 'bbbbbbbb0002.vm.web.internal', 'regions.web.internal'])(
    'beta asking %s gets NXDOMAIN with an SOA',
    async (name) => {
      const r = await dig('fdaa::3', port, name, 'AAAA', { source: addr('ffffffff0006') });
      expect(r.status).toBe('NXDOMAIN');
      expect(r.authority.join('\n')).toMatch(/\tSOA\t/);
    },
  );

  it('beta sees its own app and its share of web.flycast; names are case-insensitive', async () => {
    const db = await dig('fdaa:0:19::3', port, 'DB.Internal', 'AAAA', { source: peer('ci') });
    expect(db.records.map((r) => [r.name, r.data])).toEqual([['DB.Internal.', addr('ffffffff0006')]]);
    const fc = await dig('fdaa::3', port, 'web.flycast', 'AAAA', { source: addr('ffffffff0006') });
    expect(fc.records.map((r) => r.data)).toEqual(snap.flycast.filter((f) => f.org === 'beta').map((f) => f.address));
    expect((await dig('fdaa::3', port, '_apps.internal', 'TXT', { source: addr('ffffffff0006') })).records.map((r) => r.data)).toEqual(['db']);
    expect((await dig('fdaa::3', port, '_peer.internal', 'TXT', { source: peer('ci') })).records.map((r) => r.data)).toEqual(['ci']);
  });

  it('NODATA for an existing name of another type', async () => {
    const r = await dig('fdaa::3', port, 'web.internal', 'TXT', { source: addr('aaaaaaaa0001') });
    expect(r.status).toBe('NOERROR');
    expect(r.records).toEqual([]);
    expect(r.authority.join('\n')).toMatch(/\tSOA\t/);
  });

  it('REFUSED from outside every org, also for forwarded names', async () => {
    for (const [name, type] of [['web.internal', 'AAAA'], ['example.test', 'A']] as const) {
      expect((await dig('fdaa::3', port, name, type, { source: '::1' })).status).toBe('REFUSED');
      expect((await dig('fdaa::3', port, name, type, { source: 'fdaa:0:77::5' })).status).toBe('REFUSED');
    }
  });

  it('answers over TCP, and a truncated UDP answer makes dig retry over TCP', async () => {
    const tcp = await dig('fdaa::3', port, 'web.internal', 'AAAA', { source: addr('aaaaaaaa0001'), extra: ['+tcp'] });
    expect(tcp.records).toHaveLength(3);
    // 40 AAAA records (about 1,150 bytes with name compression) fit EDNS's 1232 but not 512.
    const ignored = await dig('fdaa::3', port, 'big.internal', 'AAAA', { source: addr('aaaaaaaa0001'), extra: ['+ignore', '+noedns'] });
    expect(ignored.flags).toContain('tc');
    expect(ignored.records).toHaveLength(0);
    expect((await dig('fdaa::3', port, 'big.internal', 'AAAA', { source: addr('aaaaaaaa0001'), extra: ['+ignore'] })).records).toHaveLength(40);
    const retried = await dig('fdaa::3', port, 'big.internal', 'AAAA', { source: addr('aaaaaaaa0001'), extra: ['+noedns'] });
    expect(retried.raw).toMatch(/retrying in TCP mode/);
    expect(retried.records).toHaveLength(40);
  });

  it('a machine stopped through the API leaves the answers within 1 s', async () => {
    const res = await fetch(`http://127.0.0.1:${controlPort}/v1/machines/bbbbbbbb0002/stop`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    const t0 = Date.now();
    await waitFor(async () => !(await dig('fdaa::3', port, 'web.internal', 'AAAA', { source: addr('aaaaaaaa0001') })).records.some((r) => r.data === addr('bbbbbbbb0002')), {
      timeoutMs: 3_000,
      everyMs: 50,
      what: 'stopped machine to leave web.internal',
    });
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect((await dig('fdaa::3', port, 'vms.web.internal', 'TXT', { source: addr('aaaaaaaa0001') })).records[0]?.data).toBe('aaaaaaaa0001,cccccccc0003');
    await fetch(`http://127.0.0.1:${controlPort}/v1/machines/bbbbbbbb0002/start`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  });

  it("listens on a new org's <prefix>::3 while the org exists", async () => {
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${controlPort}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    expect((await api('POST', '/v1/orgs', { name: 'gamma', network_id: 0x20 })).status).toBe(201);
    const r = await waitFor(async () => {
      const a = await dig('fdaa:0:20::3', port, '_apps.internal', 'TXT', { source: 'fdaa:0:20::9' });
      return a.status === 'NOERROR' ? a : null;
    }, { timeoutMs: 3_000, what: 'gamma listener' });
    expect(r.records).toEqual([]); // no apps yet: NODATA
    expect((await api('DELETE', '/v1/orgs/gamma')).status).toBeLessThan(300);
    await waitFor(async () => (await dig('fdaa:0:20::3', port, '_apps.internal', 'TXT', { source: 'fdaa:0:20::9', extra: ['+tcp'] })).status.startsWith('no answer'), {
      timeoutMs: 3_000,
      what: 'gamma listener to close',
    });
  });

  it("says once that a new org's <prefix>::3 port is held by another program, and listens once it is free", async () => {
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${controlPort}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const failedGauge = async (): Promise<number> => {
      const text = await (await api('GET', '/metrics')).text();
      return Number(/^sixpn_dns_listeners_failed (\d+)$/m.exec(text)?.[1] ?? NaN);
    };
    const said = (): number => node.proc.output().split('dns: cannot listen on [fdaa:0:21::3]').length - 1;
    // Another resolver holds delta's address before delta exists.
    const blocker = createSocket('udp6');
    await new Promise<void>((r) => blocker.bind({ address: 'fdaa:0:21::3', port, exclusive: true }, r));
    try {
      expect((await api('POST', '/v1/orgs', { name: 'delta', network_id: 0x21 })).status).toBe(201);
      await waitFor(() => said() === 1, { timeoutMs: 3_000, what: 'the warning' });
      expect(await failedGauge()).toBe(1);
      // The other addresses keep answering.
      expect((await dig('fdaa::3', port, 'web.internal', 'AAAA', { source: addr('aaaaaaaa0001') })).status).toBe('NOERROR');
      await new Promise((r) => setTimeout(r, 5_500)); // one retry, still held: not said again
      expect(said()).toBe(1);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
    const t0 = Date.now();
    await waitFor(async () => (await dig('fdaa:0:21::3', port, '_apps.internal', 'TXT', { source: 'fdaa:0:21::9' })).status === 'NOERROR', {
      timeoutMs: 8_000,
      what: "delta's listener once its port was free",
    });
    console.log(`dns: delta's <prefix>::3 listener opened ${Date.now() - t0} ms after its port was freed`);
    expect(await failedGauge()).toBe(0);
    expect(said()).toBe(1);
    expect((await api('DELETE', '/v1/orgs/delta')).status).toBeLessThan(300);
  });

  it('forwards other names to the upstream (truncated UDP retried over TCP), SERVFAIL once it is down', async () => {
    const src = addr('aaaaaaaa0001');
    const a = await dig('fdaa::3', port, 'example.test', 'A', { source: src });
    expect(a.status).toBe('NOERROR');
    expect(a.records.map((r) => r.data)).toEqual(['192.0.2.1']);
    const big = await dig('fdaa::3', port, 'big.example.test', 'A', { source: src });
    expect(big.raw).toMatch(/retrying in TCP mode/);
    expect(big.records.map((r) => r.data)).toEqual(['192.0.2.2', '192.0.2.3']);
    expect(stub.seen).toEqual(expect.arrayContaining(['udp example.test', 'udp big.example.test', 'tcp big.example.test']));
    await stub.close();
    const down = await dig('fdaa::3', port, 'example.test', 'A', { source: src });
    expect(down.status).toBe('SERVFAIL');
    // the local zone does not depend on the upstream
    expect((await dig('fdaa::3', port, 'web.internal', 'AAAA', { source: src })).status).toBe('NOERROR');
  });

  it('counts queries and forwarding failures in /metrics', async () => {
    const text = await (await fetch(`http://127.0.0.1:${controlPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? 0);
    expect(value(/^sixpn_dns_queries_total\{qtype="AAAA",rcode="NOERROR"\} (\d+)/m)).toBeGreaterThan(10);
    expect(value(/^sixpn_dns_queries_total\{qtype="AAAA",rcode="NXDOMAIN"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^sixpn_dns_queries_total\{qtype="A",rcode="SERVFAIL"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^sixpn_dns_forward_errors_total\{reason="error"\} (\d+)/m) + value(/^sixpn_dns_forward_errors_total\{reason="timeout"\} (\d+)/m)).toBeGreaterThan(0);
    expect(text).toMatch(/^sixpn_dns_query_duration_seconds_count\{source="local"\} \d+/m);
  });
});

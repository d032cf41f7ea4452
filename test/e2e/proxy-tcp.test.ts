// TCP services through the Flycast proxy with real servers as machines: PostgreSQL (queried
// with psql), Redis (ioredis), and HAProxy as a PROXY protocol v1/v2 receiver that reports the
// caller address it parsed. The caller's 6PN address is put on lo so clients that cannot bind
// a source (psql, ioredis) still come from inside the org.
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { addLoopbackAddress, hasCommand, IN_NETNS, removeLoopbackAddress } from '../harness/env.js';
import { appToml, orgsToml, proxyNodeToml, rawHttp, startProxyNode, type ProxyNode } from '../harness/flycast.js';
import { waitFor } from '../harness/net.js';
import { run as runWithStdin, start, type Proc } from '../harness/procs.js';
import net from 'node:net';

/** `run` without a stdin pipe: these tools never read it, and writing to it could EPIPE. */
const run = (cmd: string, args: string[], opts: { timeoutMs?: number } = {}): ReturnType<typeof runWithStdin> =>
  runWithStdin(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });

const HOST = parseHostId('a7b:7d')!;
const NET = 0x1c;
const INSIDER = 'fdaa:0:1c:a7b:7d:0:ca11:1';
const addr = (id: string): string => machineAddress(NET, HOST, id);
const PG_ID = 'f0000001';
const REDIS_ID = 'f0000002';
const PP1_ID = 'f0000003';
const PP2_ID = 'f0000004';
const PG_IP = 'fdaa:0:1c:0:1::3';
const REDIS_IP = 'fdaa:0:1c:0:1::4';
const PP1_IP = 'fdaa:0:1c:0:1::5';
const PP2_IP = 'fdaa:0:1c:0:1::6';
const PG_BIN = '/usr/lib/postgresql/15/bin';

const tcpApp = (name: string, id: string, port: number, extra = ''): string =>
  appToml({ name, org: 'tcporg', protocol: 'tcp', internalPort: port, ports: [[port, extra]], machines: [{ id }] });

const TOML = `${proxyNodeToml()}
${orgsToml({ tcporg: NET })}
${tcpApp('pg', PG_ID, 5432)}
${tcpApp('cache', REDIS_ID, 6379)}
${tcpApp('ppv1', PP1_ID, 9001, `, handlers = ["proxy_proto"], proxy_proto_options = { version = "v1" }`)}
${tcpApp('ppv2', PP2_ID, 9002, `, handlers = ["proxy_proto"], proxy_proto_options = { version = "v2" }`)}
`;

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

const haveTools = hasCommand('haproxy') && hasCommand('psql') && hasCommand('redis-server') && hasCommand('runuser');

describe.skipIf(!IN_NETNS || !haveTools)('flycast proxy: TCP with real servers (e2e)', () => {
  let proxy: ProxyNode;
  let dir: string;
  let redis: Proc;
  let haproxy: Proc;

  beforeAll(async () => {
    addLoopbackAddress(INSIDER);
    dir = mkdtempSync(join(tmpdir(), 'sixpn-proxy-tcp-'));
    chownSync(dir, Number((await run('id', ['-u', 'postgres'])).stdout.trim()), Number((await run('id', ['-g', 'postgres'])).stdout.trim()));
    const data = join(dir, 'pg');
    const initdb = await run('runuser', ['-u', 'postgres', '--', `${PG_BIN}/initdb`, '-D', data, '-U', 'postgres', '--auth=trust', '-N'], { timeoutMs: 60_000 });
    if (initdb.code !== 0) throw new Error(`initdb failed: ${initdb.stderr}`);
    writeFileSync(join(data, 'pg_hba.conf'), 'local all all trust\nhost all all ::/0 trust\n');
    const pgStart = run('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, '-D', data, '-w', '-l', join(dir, 'pg.log'), '-o', `-c listen_addresses='${addr(PG_ID)}' -p 5432 -k ${dir} -c fsync=off`, 'start'], { timeoutMs: 60_000 });

    redis = start('redis-server', ['--bind', addr(REDIS_ID), '--port', '6379', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--dir', dir]);
    const hcfg = join(dir, 'haproxy.cfg');
    const report = 'lf-string "src=%[src] sport=%[src_port] dst=%[dst] dport=%[dst_port]\\n"';
    writeFileSync(
      hcfg,
      `defaults
  mode http
  timeout connect 2s
  timeout client 5s
  timeout server 5s
frontend v1
  bind [${addr(PP1_ID)}]:9001 accept-proxy
  http-request return status 200 content-type text/plain ${report}
frontend v2
  bind [${addr(PP2_ID)}]:9002 accept-proxy
  http-request return status 200 content-type text/plain ${report}
`,
    );
    haproxy = start('haproxy', ['-db', '-f', hcfg]);
    const pg = await pgStart;
    if (pg.code !== 0) throw new Error(`pg_ctl start failed: ${pg.stderr}${pg.stdout}`);
    await waitFor(() => portOpen(addr(REDIS_ID), 6379), { what: 'redis machine' });
    await waitFor(() => portOpen(addr(PP1_ID), 9001), { what: 'haproxy machine' });
    proxy = await startProxyNode(TOML);
  });

  afterAll(async () => {
    await proxy?.stop();
    await haproxy?.stop();
    await redis?.stop();
    if (dir) {
      await run('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, '-D', join(dir, 'pg'), '-m', 'immediate', 'stop']);
      rmSync(dir, { recursive: true, force: true });
    }
    removeLoopbackAddress(INSIDER);
  });

  it('runs psql against PostgreSQL through a Flycast address', async () => {
    const sql = "create table t(n int); insert into t select generate_series(1, 1000); select count(*), sum(n) from t; select inet_client_addr() is not null as via_proxy;";
    const r = await run('psql', ['-h', PG_IP, '-p', '5432', '-U', 'postgres', '-d', 'postgres', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql], { timeoutMs: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('1000|500500');
  });

  it('serves a Redis client through another Flycast address', async () => {
    const client = new Redis({ host: REDIS_IP, port: 6379, family: 6, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      await client.set('k', 'v'.repeat(100_000));
      expect(await client.get('k')).toHaveLength(100_000);
      const p = client.pipeline();
      for (let i = 0; i < 500; i++) p.incr('n');
      await p.exec();
      expect(await client.get('n')).toBe('500');
    } finally {
      client.disconnect();
    }
  });

  it.each([
    ['v1', PP1_IP, 9001],
    ['v2', PP2_IP, 9002],
  ])('sends a PROXY protocol %s header that HAProxy parses into the caller address', async (_v, ip, port) => {
    const out = await rawHttp(INSIDER, ip, port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 200/);
    const m = /src=(\S+) sport=(\d+) dst=(\S+) dport=(\d+)/.exec(out);
    expect(m).not.toBeNull();
    expect(m![1]).toBe(INSIDER);
    expect(Number(m![2])).toBeGreaterThan(0);
    expect(m![3]).toBe(ip);
    expect(m![4]).toBe(String(port));
  });
});

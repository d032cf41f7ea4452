/**
 * `sixpn doctor` on real hosts: the test namespace (Flycast range routed to lo,
 * ip_nonlocal_bind set, /dev/net/tun, wireguard-go, wg, nft) passes; a fresh namespace without
 * the route and the sysctl fails with the commands that fix it; a taken port, a Redis that is
 * down and a key file others can read fail too, each with its fix, and the exit code says so.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, IN_NETNS } from '../harness/env.js';
import { freePort } from '../harness/net.js';
import { run, runSixpn } from '../harness/procs.js';
import { startRedis, type TestRedis } from '../harness/redis.js';

interface Line {
  id: string;
  status: string;
  detail: string;
  fix?: string;
}

describe.skipIf(!IN_NETNS)('sixpn doctor', () => {
  let dir: string;
  let redis: TestRedis;

  const config = async (extra: string, catalog = 'path = "catalog.json"'): Promise<string> => {
    const file = join(dir, `node-${Math.random().toString(36).slice(2, 8)}.toml`);
    writeFileSync(
      file,
      [
        '[node]',
        'region = "ams"',
        '[catalog]',
        catalog,
        '[control]',
        `listen = "127.0.0.1:${await freePort()}"`,
        'token = "doctor-e2e-token-0123456789"',
        '[dns]',
        `port = ${await freePort()}`,
        'listen = ["127.0.0.1"]',
        'listen_6pn = true',
        '[wireguard]',
        'enabled = true',
        `listen_port = ${await freePort()}`,
        'state_file = "gateway.json"',
        extra,
      ].join('\n'),
    );
    return file;
  };
  const byId = (stdout: string): Map<string, Line> => new Map((JSON.parse(stdout).lines as Line[]).map((l) => [l.id, l]));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-doctor-'));
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes on a host prepared for the proxy, DNS and the gateway', async () => {
    const file = await config('', `store = "redis"\nredis_url = "${redis.url}"`);
    const r = await runSixpn(['doctor', '--config', file]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sixpn doctor: node sixpn, roles health, proxy, dns, gateway, control \(/);
    for (const title of ['route for the Flycast range', 'ip_nonlocal_bind', '/dev/net/tun', 'CAP_NET_ADMIN', 'wireguard-go', 'wg \\(wireguard-tools\\)', 'nft \\(nftables\\)', 'catalog store', 'DNS listen ports', 'WireGuard UDP port']) {
      expect(r.stdout).toMatch(new RegExp(`^ {2}ok {4}${title} `, 'm'));
    }
    expect(r.stdout).toMatch(/catalog store +redis at redis:\/\/127\.0\.0\.1:\d+ answers PONG/);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('all checks passed');
  });

  it('fails without the Flycast route and ip_nonlocal_bind, and says how to fix both', async () => {
    const file = await config('');
    // A fresh network namespace: loopback up, nothing else.
    const r = await run('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec "${process.execPath}" "${CLI}" doctor --config "${file}" --json`]);
    expect(r.code, r.stderr).toBe(1);
    const lines = byId(r.stdout);
    expect(lines.get('flycast-route')).toMatchObject({ status: 'fail', fix: expect.stringContaining('ip -6 route add local fdaa::/16 dev lo') });
    expect(lines.get('nonlocal-bind')).toMatchObject({ status: 'fail', detail: expect.stringContaining('net.ipv6.ip_nonlocal_bind = 0'), fix: expect.stringContaining('sysctl -w net.ipv6.ip_nonlocal_bind=1') });
    expect(lines.get('tun')?.status).toBe('ok');
  });

  it('fails on a taken port, a Redis that is down and a key file others can read', async () => {
    const taken: Server = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
    try {
      const deadRedis = `redis://127.0.0.1:${await freePort()}`;
      const file = await config('', `store = "redis"\nredis_url = "${deadRedis}"`);
      writeFileSync(file, readFileSync(file, 'utf8').replace(/listen = "127\.0\.0\.1:\d+"/, `listen = "127.0.0.1:${port}"`));
      writeFileSync(join(dir, 'gateway.json'), '{}', { mode: 0o644 });
      const text = await runSixpn(['doctor', '--config', file]);
      expect(text.code).toBe(1);
      expect(text.stdout).toMatch(new RegExp(`FAIL {2}control listen port +admin listener 127\\.0\\.0\\.1:${port} is in use \\(tcp EADDRINUSE\\)\\n +fix: stop what listens there`));
      expect(text.stdout).toMatch(/FAIL {2}catalog store +redis at redis:\/\/127\.0\.0\.1:\d+: .*\n +fix: start redis-server there, or set \[catalog\] redis_url/);
      expect(text.stdout).toMatch(/FAIL {2}gateway key file +.*gateway\.json holds the private key and is mode 0644\n +fix: chmod 600 /);
      expect(text.stdout.trimEnd().split('\n').at(-1)).toBe('3 checks failed');
    } finally {
      taken.close();
      rmSync(join(dir, 'gateway.json'), { force: true });
    }
  });

  it('refuses a bad config with exit 78, naming the key', async () => {
    const file = join(dir, 'bad.toml');
    writeFileSync(file, '[control]\ntokn = "x"\n');
    const r = await runSixpn(['doctor', '--config', file]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/^Error: .*control: unknown key\(s\) "tokn"/);
  });
});

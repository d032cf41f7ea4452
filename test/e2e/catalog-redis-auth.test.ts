/**
 * Redis as users run it, with real servers: a password (`requirepass`), an ACL user, and TLS
 * (`rediss://`, certificates made with openssl for this run). A node with the right
 * credentials serves and writes; a wrong password or a CA that does not match fails at start
 * with a message that names the store (its password shown as ***) and the cause.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControl, type TestControl } from '../harness/control.js';
import { freePort } from '../harness/net.js';
import { runSixpn } from '../harness/procs.js';
import { RedisServer } from '../harness/redis.js';

const PASSWORD = 'pa55-word/with:odd@chars';
const enc = encodeURIComponent;

/** A CA and a server certificate for 127.0.0.1 signed by it, plus a second, unrelated CA. */
function makeCerts(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  for (const ca of ['ca', 'other-ca']) {
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=sixpn test ${ca}`);
  }
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  execFileSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1\\n" > san.ext'], { cwd: dir });
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
}

/** Starts `sixpn control` on a config and expects it to fail at start; returns its stderr. */
async function failsToStart(url: string, catalogToml = ''): Promise<{ code: number; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-auth-'));
  try {
    const port = await freePort();
    const file = join(dir, 'node.toml');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, `[catalog]\nstore = "redis"\nredis_url = "${url}"\n${catalogToml}\n[control]\nlisten = "127.0.0.1:${port}"\ntoken = "test-token-0123456789"\n`);
    const r = await runSixpn(['control', '--config', file], { timeoutMs: 20_000 });
    return { code: r.code, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('Redis with a password, an ACL user and TLS', () => {
  const certs = mkdtempSync(join(tmpdir(), 'sixpn-certs-'));
  let secured: RedisServer;
  let tls: RedisServer;
  let tlsPort = 0;
  const nodes: TestControl[] = [];

  beforeAll(async () => {
    makeCerts(certs);
    secured = await new RedisServer(await freePort(), ['--requirepass', PASSWORD, '--user', 'sixpn', 'on', `>${PASSWORD}`, '~*', '&*', '+@all']).start();
    tlsPort = await freePort();
    tls = await new RedisServer(await freePort(), [
      '--port', '0', '--tls-port', String(tlsPort),
      '--tls-cert-file', join(certs, 'server.pem'), '--tls-key-file', join(certs, 'server.key'),
      '--tls-ca-cert-file', join(certs, 'ca.pem'), '--tls-auth-clients', 'no', '--requirepass', PASSWORD,
    ]).start();
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) await n.stop();
    await secured?.stop();
    await tls?.stop();
    rmSync(certs, { recursive: true, force: true });
  });

  it('serves and writes with the password, and with the ACL user', async () => {
    for (const [ns, auth] of [['pw', `:${enc(PASSWORD)}`], ['acl', `sixpn:${enc(PASSWORD)}`]] as const) {
      const n = await startControl({ redisUrl: `redis://${auth}@127.0.0.1:${secured.port}`, namespace: ns });
      nodes.push(n);
      expect((await n.api('POST', '/v1/orgs', { name: 'acme', network_id: 24 })).status).toBe(201);
      expect((await n.api('GET', '/v1/orgs/acme')).status).toBe(200);
      expect(n.proc.output()).not.toContain(PASSWORD);
    }
  }, 60_000);

  it('refuses to start with a wrong password, naming the store without the password', async () => {
    const r = await failsToStart(`redis://:wrong-secret@127.0.0.1:${secured.port}`);
    expect(r.code, r.stderr).toBe(69);
    expect(r.stderr).toMatch(/redis:\/\/:\*\*\*@127\.0\.0\.1:\d+/);
    expect(r.stderr).toMatch(/WRONGPASS|invalid password|NOAUTH/i);
    expect(r.stderr).not.toContain('wrong-secret');
  }, 30_000);

  it('serves over TLS with the CA; a CA that did not sign the server fails with the reason', async () => {
    const n = await startControl({ redisUrl: `rediss://:${enc(PASSWORD)}@127.0.0.1:${tlsPort}`, namespace: 'tls', catalogToml: `redis_tls_ca = "${join(certs, 'ca.pem')}"` });
    nodes.push(n);
    expect((await n.api('POST', '/v1/orgs', { name: 'acme', network_id: 24 })).status).toBe(201);
    expect((await n.api('GET', '/v1/orgs')).body).toEqual([expect.objectContaining({ name: 'acme' })]);

    const wrong = await failsToStart(`rediss://:${enc(PASSWORD)}@127.0.0.1:${tlsPort}`, `redis_tls_ca = "${join(certs, 'other-ca.pem')}"`);
    expect(wrong.code, wrong.stderr).toBe(69);
    expect(wrong.stderr).toMatch(/rediss:\/\/:\*\*\*@127\.0\.0\.1/);
    expect(wrong.stderr).toMatch(/certificate/i);

    const plain = await failsToStart(`redis://:${enc(PASSWORD)}@127.0.0.1:${tlsPort}`, `redis_tls_ca = "${join(certs, 'ca.pem')}"`);
    expect(plain.code, plain.stderr).toBe(78);
    expect(plain.stderr).toMatch(/catalog\.redis_tls_ca: .*not rediss:\/\//);
  }, 60_000);
});

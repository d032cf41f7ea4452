import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpCheckSchema } from '../../../src/catalog/types.js';
import { httpCheck, tcpCheck } from '../../../src/health/checks.js';
import { hasCommand } from '../../harness/env.js';
import { freePort } from '../../harness/net.js';
import { start } from '../../harness/procs.js';

const check = (c: Record<string, unknown> = {}) => httpCheckSchema.parse(c);

function listen(server: Server | http.Server | https.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

const seen: { method: string; url: string; headers: IncomingMessage['headers'] }[] = [];
let httpPort = 0;
const httpServer = http.createServer((req: IncomingMessage, res: ServerResponse) => {
  seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
  const m = /^\/status\/(\d+)$/.exec(req.url ?? '');
  if (req.url === '/hang') return; // accepts, never answers
  res.writeHead(m ? Number(m[1]) : 200, m?.[1] === '302' ? { location: '/' } : {});
  res.end('body that the check does not need');
});
let tcpPort = 0;
const tcpServer = createServer((s) => s.end());

beforeAll(async () => {
  httpPort = await listen(httpServer);
  tcpPort = await listen(tcpServer);
});
afterAll(async () => {
  httpServer.closeAllConnections();
  await new Promise((r) => httpServer.close(r));
  await new Promise((r) => tcpServer.close(r));
});

describe('tcpCheck', () => {
  it('passes when the port accepts', async () => {
    expect(await tcpCheck({ host: '127.0.0.1', port: tcpPort }, 1000)).toEqual({ ok: true, reason: 'tcp connect ok' });
  });
  it('fails "refused" on a closed port', async () => {
    const port = await freePort();
    expect(await tcpCheck({ host: '127.0.0.1', port }, 1000)).toEqual({ ok: false, reason: 'tcp connect refused' });
  });
  it('fails "timeout" when the handshake never completes (frozen process, full accept queue)', async () => {
    const port = await freePort();
    const frozen = start(process.execPath, ['-e', `require('net').createServer().listen({port:${port},host:'127.0.0.1',backlog:1},()=>console.log('ready'))`]);
    await frozen.waitForLine(/ready/);
    frozen.child.kill('SIGSTOP');
    const fillers: Socket[] = [];
    try {
      // Fill the accept queue of the stopped process; after that the kernel drops new SYNs.
      for (let i = 0; i < 4; i++) fillers.push(connect({ host: '127.0.0.1', port }).on('error', () => undefined));
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      expect(await tcpCheck({ host: '127.0.0.1', port }, 300)).toEqual({ ok: false, reason: 'tcp connect timeout after 300ms' });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    } finally {
      for (const s of fillers) s.destroy();
      frozen.child.kill('SIGKILL');
      await frozen.exited;
    }
  });
});

describe('httpCheck', () => {
  const target = () => ({ host: '127.0.0.1', port: httpPort });
  it.each([
    [200, true],
    [204, true],
    [302, true],
    [404, false],
    [500, false],
    [503, false],
  ])('status %i -> ok %s', async (status, ok) => {
    expect(await httpCheck(target(), check({ path: `/status/${status}` }), 1000)).toEqual({ ok, reason: `http ${status}` });
  });

  it('sends the method, path and headers of the check', async () => {
    seen.length = 0;
    const r = await httpCheck(target(), check({ method: 'HEAD', path: '/status/200', headers: { 'X-Check': 'yes', Host: 'web.internal' } }), 1000);
    expect(r.ok).toBe(true);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'HEAD', url: '/status/200', headers: { 'x-check': 'yes', host: 'web.internal', 'user-agent': 'sixpn-health/1' } });
  });

  it('fails "timeout" when the machine accepts but never answers', async () => {
    const t0 = Date.now();
    expect(await httpCheck(target(), check({ path: '/hang' }), 200)).toEqual({ ok: false, reason: 'http timeout after 200ms' });
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('fails, without throwing, when the check itself cannot be sent', async () => {
    const bad = await httpCheck(target(), check({ headers: { 'x-bad': 'a\nb' } }), 1000);
    expect(bad.ok).toBe(false);
    expect(bad.reason).toMatch(/^http check cannot run: /);
    const spaced = await httpCheck(target(), check({ path: '/a b' }), 1000);
    expect(spaced.reason).toMatch(/^http check cannot run: /);
    expect((await tcpCheck({ host: '127.0.0.1', port: 99_999 }, 1000)).reason).toMatch(/^tcp check cannot run: /);
  });

  it('fails "refused" on a closed port', async () => {
    const port = await freePort();
    expect(await httpCheck({ host: '127.0.0.1', port }, check(), 1000)).toEqual({ ok: false, reason: 'http connect refused' });
  });

  it('fails when the connection is reset before a response', async () => {
    const rude = createServer((s) => s.resetAndDestroy());
    const port = await listen(rude);
    try {
      expect(await httpCheck({ host: '127.0.0.1', port }, check(), 1000)).toEqual({ ok: false, reason: 'http connection reset' });
    } finally {
      await new Promise((r) => rude.close(r));
    }
  });
});

describe.skipIf(!hasCommand('openssl'))('httpCheck over https', () => {
  let dir = '';
  let server: https.Server;
  let port = 0;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-health-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=machine', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
    server = https.createServer({ key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) }, (_req, res) => res.end('ok'));
    port = await listen(server);
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });
  it('passes with tls_skip_verify on a self-signed certificate', async () => {
    expect(await httpCheck({ host: '127.0.0.1', port }, check({ protocol: 'https', tls_skip_verify: true }), 1000)).toEqual({ ok: true, reason: 'http 200' });
  });
  it('fails on a self-signed certificate without tls_skip_verify', async () => {
    const r = await httpCheck({ host: '127.0.0.1', port }, check({ protocol: 'https' }), 1000);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/^https /);
  });
});

/**
 * How the CLI finds the control API (flags, env, config file) and what it makes of answers
 * and failures, against a real local HTTP server.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, resolveEndpoint, urlForListen } from '../../../src/cli/client.js';
import { exitCodeFor } from '../../../src/errors.js';

describe('resolveEndpoint', () => {
  let dir = '';
  let file = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-cli-'));
    file = join(dir, 'node.toml');
    writeFileSync(file, '[control]\nlisten = "[::]:4999"\ntoken = "from-file-0123456789"\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prefers flags, then env, then the config file', async () => {
    expect(await resolveEndpoint({ api: 'http://a:1/', token: 't', config: file, env: { SIXPN_API_URL: 'http://b:2', SIXPN_TOKEN: 'e' } })).toEqual({ url: 'http://a:1', token: 't' });
    expect(await resolveEndpoint({ config: file, env: { SIXPN_API_URL: 'http://b:2', SIXPN_TOKEN: 'e' } })).toEqual({ url: 'http://b:2', token: 'e' });
    expect(await resolveEndpoint({ config: file, env: {} })).toEqual({ url: 'http://[::1]:4999', token: 'from-file-0123456789' });
  });

  it('says how to give a token when there is none', async () => {
    await expect(resolveEndpoint({ env: {} })).rejects.toMatchObject({ code: 'SIXPN_UNAUTHORIZED', message: expect.stringMatching(/--token/) });
  });

  it('refuses a URL that is not http(s)', async () => {
    await expect(resolveEndpoint({ api: 'ftp://x', token: 't', env: {} })).rejects.toMatchObject({ code: 'SIXPN_INVALID' });
    await expect(resolveEndpoint({ api: 'not a url', token: 't', env: {} })).rejects.toMatchObject({ code: 'SIXPN_INVALID' });
  });

  it('maps wildcard listen addresses to loopback', () => {
    expect(urlForListen({ host: '0.0.0.0', port: 80 })).toBe('http://127.0.0.1:80');
    expect(urlForListen({ host: '::', port: 80 })).toBe('http://[::1]:80');
    expect(urlForListen({ host: 'fdaa::1', port: 80 })).toBe('http://[fdaa::1]:80');
  });
});

describe('ApiClient', () => {
  let server: Server;
  let url = '';
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/ok') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"x":1}');
      if (req.url === '/gone') return void res.writeHead(404).end('{"error":{"code":"SIXPN_NOT_FOUND","message":"app x not found"}}');
      if (req.url === '/html') return void res.writeHead(502).end('<html>bad gateway</html>');
      res.writeHead(204).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('returns JSON bodies and undefined for 204', async () => {
    const c = new ApiClient({ url, token: 't' });
    expect(await c.call('GET', '/ok')).toEqual({ x: 1 });
    expect(await c.call('DELETE', '/nothing')).toBeUndefined();
    await c.close();
  });

  it('turns error bodies into errors with the server code and exit code', async () => {
    const c = new ApiClient({ url, token: 't' });
    const err = await c.call('GET', '/gone').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SIXPN_NOT_FOUND', status: 404, message: 'app x not found' });
    expect(exitCodeFor(err)).toBe(4);
    const html = await c.call('GET', '/html').catch((e: unknown) => e);
    expect(html).toMatchObject({ status: 502, message: 'HTTP 502 from GET /html' });
    await c.close();
  });

  it('reports an unreachable API as exit 69', async () => {
    const c = new ApiClient({ url: 'http://127.0.0.1:1', token: 't' });
    const err = await c.call('GET', '/ok').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/cannot reach the sixpn control API at http:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
    expect(exitCodeFor(err)).toBe(69);
    await c.close();
  });
});

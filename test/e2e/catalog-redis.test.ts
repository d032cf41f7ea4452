/**
 * Two `sixpn control` processes sharing one real redis-server: a change made through one node
 * is served by the other, and when Redis dies both answer at once with a clear 503 / CLI exit 69,
 * keep running, and serve again once Redis is back on the same port.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControl, type TestControl } from '../harness/control.js';
import { freePort, waitFor } from '../harness/net.js';
import { runSixpn, start, type Proc } from '../harness/procs.js';

let dir = '';
let port = 0;
let redis: Proc | null = null;
let url = '';
const nodes: TestControl[] = [];

/** Append-only with fsync on every write, so the catalog survives a SIGKILL and restart. */
async function startRedisServer(): Promise<Proc> {
  const p = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
  await p.waitForLine(/Ready to accept connections/);
  return p;
}

const cli = (node: TestControl, args: string[]) => runSixpn(args, { env: { ...process.env, SIXPN_API_URL: node.url, SIXPN_TOKEN: node.token } });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sixpn-e2e-redis-'));
  port = await freePort();
  url = `redis://127.0.0.1:${port}`;
  redis = await startRedisServer();
  for (let i = 0; i < 2; i++) nodes.push(await startControl({ redisUrl: url, namespace: 'e2e' }));
});

afterAll(async () => {
  for (const n of nodes) await n.stop();
  await redis?.stop('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('control nodes sharing the Redis catalog', () => {
  it('serves on one node what was written through the other', async () => {
    const [a, b] = nodes as [TestControl, TestControl];
    expect((await cli(a, ['orgs', 'create', 'acme', '--network-id', '24'])).code).toBe(0);
    expect((await cli(a, ['apps', 'create', 'web', '--org', 'acme'])).code).toBe(0);
    const alloc = await cli(b, ['ips', 'allocate-v6', '--private', '--app', 'web']);
    expect(alloc.stderr).toBe('');
    expect(alloc.stdout).toMatch(/fdaa:0:18:0:1::3/);
    const list = await a.api('GET', '/v1/apps/web/ips');
    expect(list.status).toBe(200);
    expect(JSON.stringify(list.body)).toContain('fdaa:0:18:0:1::3');
  });

  it('fails fast with a clear error while Redis is down, then serves again when it is back', async () => {
    const [a, b] = nodes as [TestControl, TestControl];
    const before = (await b.api('GET', '/v1/apps/web/ips')).body;
    await redis!.stop('SIGKILL');
    redis = null;

    const t0 = Date.now();
    const r = await cli(a, ['ips', 'allocate-v6', '--private', '--app', 'web']);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(r.code).toBe(69);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`catalog store at ${url} is unavailable`);
    const api = await b.api('POST', '/v1/apps/web/ips', { type: 'private_v6' });
    expect(api.status).toBe(503);
    expect(api.body.error.code).toBe('SIXPN_STORE_UNAVAILABLE');
    // Both nodes are still running.
    for (const n of nodes) expect(n.proc.child.exitCode).toBeNull();

    redis = await startRedisServer();
    const back = await waitFor(async () => {
      const res = await a.api('POST', '/v1/apps/web/ips', { type: 'private_v6' });
      return res.status === 201 || res.status === 200 ? res : null;
    }, { timeoutMs: 10_000, what: 'node a to write again' });
    // Nothing was allocated while Redis was down: the next number follows the last one.
    expect(back.body.address).toBe('fdaa:0:18:0:1::4');
    // Node b reconnects on its own schedule (its link may still be waiting to retry when a's
    // write lands): it answers again, with the new address, within a few seconds.
    const after = await waitFor(
      async () => {
        const res = await b.api('GET', '/v1/apps/web/ips');
        return res.status === 200 && (res.body as { address: string }[]).some((x) => x.address === 'fdaa:0:18:0:1::4') ? (res.body as { address: string }[]) : null;
      },
      { timeoutMs: 10_000, what: 'node b to serve the new address' },
    );
    expect(after.map((x) => x.address).sort()).toEqual([...(before as { address: string }[]).map((x) => x.address), 'fdaa:0:18:0:1::4'].sort());
  });
});

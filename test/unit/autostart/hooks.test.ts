// Start/stop hooks for hand-registered machines, with real processes and a real HTTP server: the
// machine in the arguments and the environment (never the node's secrets), exit codes and stderr
// as the reason, a hook that outruns its time killed, a daemon left behind not waited for, and
// webhooks with their body, status and timeout.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasHook, runHook } from '../../../src/autostart/hooks.js';
import type { Machine } from '../../../src/catalog/types.js';

const m: Machine = { id: 'c0ffee00000001', app: 'legacy', region: 'ewr', address: 'fdaa:0:18:a7b:7d:c0ff:ee00:2', state: 'stopping', health: { status: 'unknown', reason: '', changed_at: 0 }, created_at: 0, updated_at: 0 };

let dir: string;
let server: Server;
let url: string;
const seen: unknown[] = [];
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sixpn-hooks-'));
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      seen.push({ path: req.url, type: req.headers['content-type'], body: JSON.parse(body) });
      if (req.url === '/slow') return void setTimeout(() => res.end('late'), 2_000);
      res.statusCode = req.url === '/fail' ? 500 : 204;
      res.end(req.url === '/fail' ? 'docker says no' : undefined);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe('start and stop hooks', () => {
  it('runs a command with the machine in its arguments and environment, without the node\'s secrets', async () => {
    process.env.SIXPN_TOKEN = 'secret-admin-token-0123456789';
    const out = join(dir, 'args');
    try {
      await runHook({ app: 'legacy', start: ['sh', '-c', `echo "$1 $2 $SIXPN_HOOK_ACTION $SIXPN_HOOK_MACHINE $SIXPN_HOOK_ADDRESS token=$SIXPN_TOKEN" > ${out}`, 'sh', '{machine}', '{region}'] }, 'start', m, 2_000);
    } finally {
      delete process.env.SIXPN_TOKEN;
    }
    expect(readFileSync(out, 'utf8')).toBe(`${m.id} ewr start ${m.id} ${m.address} token=\n`);
  });

  it('fails with the exit code and the last line of stderr; kills a hook that runs out of time', async () => {
    await expect(runHook({ app: 'legacy', start: ['sh', '-c', 'echo noise >&2; echo "no such container" >&2; exit 3'] }, 'start', m, 2_000)).rejects.toThrow(/^start hook sh exited with code 3: no such container$/);
    await expect(runHook({ app: 'legacy', start: ['/no/such/program'] }, 'start', m, 2_000)).rejects.toThrow(/start hook \/no\/such\/program could not run: spawn \/no\/such\/program ENOENT/);
    const t0 = Date.now();
    await expect(runHook({ app: 'legacy', start: ['sleep', '30'] }, 'start', m, 300)).rejects.toThrow(/did not finish within 300 ms/);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('does not wait for a daemon the hook leaves behind', async () => {
    const pidFile = join(dir, 'daemon.pid');
    const t0 = Date.now();
    await runHook({ app: 'legacy', start: ['sh', '-c', `sleep 30 & echo $! > ${pidFile}`] }, 'start', m, 5_000);
    expect(Date.now() - t0).toBeLessThan(2_000);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    process.kill(pid, 0);
    await runHook({ app: 'legacy', start: ['true'], stop: ['sh', '-c', `kill $(cat ${pidFile})`] }, 'stop', m, 2_000);
    // gone, or a zombie its new parent has not reaped yet
    const gone = (): boolean => {
      try {
        const t = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return t.slice(t.lastIndexOf(')') + 2, t.lastIndexOf(')') + 3) === 'Z';
      } catch {
        return true;
      }
    };
    for (let i = 0; i < 50 && !gone(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(gone()).toBe(true);
  });

  it('POSTs the machine to a webhook; a non-2xx answer or no answer in time is the reason', async () => {
    await runHook({ app: 'legacy', start_url: `${url}/ok` }, 'start', m, 2_000);
    expect(seen.at(-1)).toEqual({ path: '/ok', type: 'application/json', body: { action: 'start', app: 'legacy', machine: m.id, region: 'ewr', address: m.address } });
    await expect(runHook({ app: 'legacy', start: ['true'], stop_url: `${url}/fail` }, 'stop', m, 2_000)).rejects.toThrow(new RegExp(`^stop webhook ${url}/fail answered 500: docker says no$`));
    await expect(runHook({ app: 'legacy', start_url: `${url}/slow` }, 'start', m, 200)).rejects.toThrow(/no answer within 200 ms/);
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await expect(runHook({ app: 'legacy', start_url: `http://127.0.0.1:${port}/` }, 'start', m, 1_000)).rejects.toThrow(/failed: connect ECONNREFUSED/);
  });

  it('knows which actions a hook has', () => {
    expect(hasHook(undefined, 'start')).toBe(false);
    expect(hasHook({ app: 'a', start: ['x'] }, 'start')).toBe(true);
    expect(hasHook({ app: 'a', start: ['x'] }, 'stop')).toBe(false);
    expect(hasHook({ app: 'a', start: ['x'], stop_url: 'http://h/' }, 'stop')).toBe(true);
  });
});

/**
 * A real redis-server for tests: REDIS_URL when set, else one started on a free port and
 * stopped afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net.js';
import { start, type Proc } from './procs.js';

export interface TestRedis {
  url: string;
  stop(): Promise<void>;
  /** Stops the server but keeps its port, to test a store that is down. */
  proc: Proc | null;
}

export async function startRedis(): Promise<TestRedis> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, proc: null, stop: async () => undefined };
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-redis-'));
  const proc = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
  await proc.waitForLine(/Ready to accept connections/);
  return {
    url: `redis://127.0.0.1:${port}`,
    proc,
    async stop() {
      await proc.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

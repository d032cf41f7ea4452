/**
 * A real redis-server for tests: REDIS_URL when set, else one started on a free port and
 * stopped afterwards.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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

/**
 * A redis-server a test kills and brings back on the same port: with `persist`, append-only
 * with fsync on every write (the catalog survives `kill -9`); `wipe()` removes its data while it
 * is down, so the next start is an empty Redis, as after a lost volume. `args` adds options
 * (`--requirepass`, TLS).
 */
export class RedisServer {
  proc: Proc | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'sixpn-redis-'));

  constructor(
    readonly port: number,
    private readonly args: string[] = [],
    private readonly persist = true,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const keep = this.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
    this.proc = start('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', ...keep, '--dir', this.dir, ...this.args]);
    await this.proc.waitForLine(/Ready to accept connections/);
    return this;
  }

  async kill(): Promise<void> {
    await this.proc?.stop('SIGKILL');
    this.proc = null;
  }

  wipe(): void {
    if (this.proc) throw new Error('wipe() needs the server stopped');
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

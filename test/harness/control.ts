/**
 * A real control API process for tests: `sixpn control --config <tmp toml>` on a free port,
 * with the embedded store in a temp folder (or a shared Redis), plus a small undici client.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort } from './net.js';
import { CLI } from './env.js';
import { run, start, startSixpn, type Proc } from './procs.js';

export interface ControlOptions {
  token?: string;
  /** Redis URL: use the Redis store instead of the embedded file. */
  redisUrl?: string;
  namespace?: string;
  /** Extra TOML appended to the config (e.g. a [wireguard] section). */
  extraToml?: string;
  /** Extra keys of the [node] and [catalog] sections (TOML lines). */
  nodeToml?: string;
  catalogToml?: string;
  /** Use this folder (and the catalog file in it) instead of a fresh one; it is kept on stop. */
  dir?: string;
  /** `sixpn up` (every role the config enables) instead of `sixpn control`. */
  command?: 'control' | 'up';
  /**
   * Run the process in a private mount namespace (`unshare -m`) where its folder is bind-mounted
   * onto itself, so a test can make that mount read-only for this process alone (readOnly()).
   */
  mountNamespace?: boolean;
}

export interface ApiResult {
  status: number;
  body: any;
}

export interface TestControl {
  url: string;
  token: string;
  dir: string;
  configFile: string;
  /** The embedded store's catalog file. */
  catalogFile: string;
  proc: Proc;
  /** Calls the API with the test token (or `token`, or none when null). */
  api(method: string, path: string, body?: unknown, token?: string | null): Promise<ApiResult>;
  /** Sends `raw` as the request body unchanged (malformed JSON tests). */
  raw(method: string, path: string, raw: string): Promise<ApiResult>;
  /** The catalog file's text (empty when nothing was ever written). */
  catalogText(): string;
  /** With `mountNamespace`: remounts the folder read-only (true) or read-write for the process. */
  readOnly(on: boolean): Promise<void>;
  stop(): Promise<void>;
}

async function send(url: string, method: string, headers: Record<string, string>, body: string | null): Promise<ApiResult> {
  const res = await request(url, { method: method as 'GET', headers, body });
  const text = await res.body.text();
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  return { status: res.statusCode, body: parsed };
}

export async function startControl(opts: ControlOptions = {}): Promise<TestControl> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'sixpn-control-'));
  const port = await freePort();
  const token = opts.token ?? 'test-token-0123456789';
  const configFile = join(dir, 'node.toml');
  const catalogFile = join(dir, 'catalog.json');
  const store = opts.redisUrl
    ? `store = "redis"\nredis_url = "${opts.redisUrl}"\nnamespace = "${opts.namespace ?? 'sixpn'}"`
    : `path = "catalog.json"`;
  writeFileSync(
    configFile,
    [
      '[node]',
      'region = "ams"',
      opts.nodeToml ?? '',
      '[log]',
      'level = "warn"',
      '[catalog]',
      store,
      opts.catalogToml ?? '',
      '[control]',
      `listen = "127.0.0.1:${port}"`,
      `token = "${token}"`,
      opts.extraToml ?? '',
    ].join('\n'),
  );
  const env = { ...process.env };
  delete env.SIXPN_TOKEN;
  delete env.SIXPN_API_URL;
  const args = [opts.command ?? 'control', '--config', configFile];
  const proc = opts.mountNamespace
    ? start('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" "$1" && shift && exec "$@"', 'sh', dir, process.execPath, CLI, ...args], { env })
    : startSixpn(args, { env });
  const removeDir = () => {
    if (!opts.dir) rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }); // a machine process may still be closing its log file
  };
  try {
    await proc.waitForLine(/sixpn ready/, 20_000);
  } catch (err) {
    await proc.stop('SIGKILL');
    removeDir();
    throw err;
  }
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    token,
    dir,
    configFile,
    catalogFile,
    proc,
    api(method, path, body, tok) {
      const headers: Record<string, string> = {};
      const t = tok === undefined ? token : tok;
      if (t !== null) headers.authorization = `Bearer ${t}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      return send(url + path, method, headers, body === undefined ? null : JSON.stringify(body));
    },
    raw(method, path, raw) {
      return send(url + path, method, { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, raw);
    },
    catalogText() {
      try {
        return readFileSync(catalogFile, 'utf8');
      } catch {
        return '';
      }
    },
    async readOnly(on) {
      if (!opts.mountNamespace) throw new Error('readOnly() needs mountNamespace: true');
      const r = await run('nsenter', ['-t', String(proc.child.pid), '-m', 'mount', '-o', `remount,bind,${on ? 'ro' : 'rw'}`, dir]);
      if (r.code !== 0) throw new Error(`remount of ${dir} failed: ${r.stderr}`);
    },
    async stop() {
      await proc.stop();
      removeDir();
    },
  };
}

/**
 * Start and stop hooks for machines that sixpn does not run (registered by hand: a Docker
 * container, a systemd unit): the command or webhook the operator named for the app in
 * `[[autostart.hooks]]`. Resolves when the hook succeeded; rejects with a one-line reason.
 *
 * A command gets the machine in its arguments (`{app}`, `{machine}`, `{region}`, `{address}`)
 * and in SIXPN_HOOK_* variables, the node's environment without its secrets (SIXPN_TOKEN,
 * SIXPN_REDIS_URL), no stdin, and is killed with its process group when it runs out of time.
 */
import type { Machine } from '../catalog/types.js';
import type { Hook } from './config.js';

export type HookAction = 'start' | 'stop';

const SECRETS = new Set(['SIXPN_TOKEN', 'SIXPN_REDIS_URL']);
const TAIL = 300;

export function hasHook(hook: Hook | undefined, action: HookAction): boolean {
  return hook !== undefined && (action === 'start' ? hook.start !== undefined || hook.start_url !== undefined : hook.stop !== undefined || hook.stop_url !== undefined);
}

/** The machine's words for a hook: the placeholders of a command, the body of a webhook. */
function fields(m: Machine): Record<string, string> {
  return { app: m.app, machine: m.id, region: m.region, address: m.address };
}

export async function runHook(hook: Hook, action: HookAction, m: Machine, timeoutMs: number): Promise<void> {
  const argv = action === 'start' ? hook.start : hook.stop;
  const url = action === 'start' ? hook.start_url : hook.stop_url;
  if (argv) return runCommand(argv, action, m, timeoutMs);
  if (url) return callWebhook(url, action, m, timeoutMs);
  throw new Error(`no ${action} hook for app ${m.app}`);
}

async function runCommand(template: readonly string[], action: HookAction, m: Machine, timeoutMs: number): Promise<void> {
  // Loaded when a hook first runs: a proxy without command hooks never pays for child_process.
  const { spawn } = await import('node:child_process');
  const f = fields(m);
  const argv = template.map((a) => a.replace(/\{(app|machine|region|address)\}/g, (_all, k: string) => f[k]!));
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!SECRETS.has(k)) env[k] = v;
  Object.assign(env, { SIXPN_HOOK_ACTION: action, SIXPN_HOOK_APP: m.app, SIXPN_HOOK_MACHINE: m.id, SIXPN_HOOK_REGION: m.region, SIXPN_HOOK_ADDRESS: m.address });
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env, detached: true });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString('utf8')).slice(-TAIL * 2);
    });
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      reject(new Error(`${action} hook ${argv[0]} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${action} hook ${argv[0]} could not run: ${err.message}`));
    });
    // Settled at 'exit' (its output up to then, or a moment after): a hook that leaves a daemon
    // behind (`cmd &`) may hand it its stderr, and 'close' would wait for the daemon.
    let settled = false;
    const settle = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stderr!.destroy();
      if (code === 0) return resolve();
      const said = stderr.trim().split('\n').pop()?.slice(-TAIL);
      reject(new Error(`${action} hook ${argv[0]} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}${said ? `: ${said}` : ''}`));
    };
    child.once('exit', (code, signal) => {
      const late = setTimeout(() => settle(code, signal), 50);
      child.once('close', () => {
        clearTimeout(late);
        settle(code, signal);
      });
    });
  });
}

async function callWebhook(url: string, action: HookAction, m: Machine, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action, ...fields(m) }), signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  } catch (err) {
    const e = err as Error & { cause?: Error };
    throw new Error(`${action} webhook ${url} failed: ${e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e.cause?.message ?? e.message)}`);
  }
  const text = (await res.text().catch(() => '')).trim().slice(0, TAIL);
  if (res.status < 200 || res.status > 299) throw new Error(`${action} webhook ${url} answered ${res.status}${text ? `: ${text}` : ''}`);
}

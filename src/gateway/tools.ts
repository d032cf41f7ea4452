/**
 * Runs the system tools the gateway drives (wg, ip, nft). Output that may carry key material
 * (`wg show dump` prints the interface's private key on its first line) is returned to the
 * caller only; errors carry stderr, never stdout, so a failure can be logged as it is.
 */
import { spawn } from 'node:child_process';
import { SixpnError } from '../errors.js';

export class ToolError extends SixpnError {
  override readonly code = 'SIXPN_GATEWAY_TOOL';
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${exitCode ?? 'signal'}): ${stderr.trim().split('\n')[0] ?? ''}`);
  }
}

export interface ToolOptions {
  /** Written to the tool's stdin (a private key for `wg set ... private-key /dev/stdin`). */
  input?: string;
  /**
   * Give the tool a real pipe as stdin. Node's stdio pipes are socketpairs, and `wg` opens
   * `/dev/stdin` by path, which fails on a socket (ENXIO); `cat` copies it into a pipe.
   */
  stdinPipe?: boolean;
  timeoutMs?: number;
}

/** Runs `cmd args` without a shell; resolves with stdout, rejects with a ToolError. */
export function runTool(cmd: string, args: readonly string[], opts: ToolOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = opts.stdinPipe
      ? spawn('sh', ['-c', 'cat | "$0" "$@"', cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 10_000);
    // The first word only: arguments may be long and are never secret, but keep messages short.
    const name = `${cmd} ${args.slice(0, 3).join(' ')}`;
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new ToolError(name, null, e.message));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out).toString());
      else reject(new ToolError(name, code, Buffer.concat(err).toString()));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

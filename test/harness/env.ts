/**
 * Facts about the test environment: whether we run inside the private network namespace
 * (where fdaa::/16 is routed to lo) and where the built CLI lives.
 */
import { execFileSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = resolve(ROOT, 'dist/cli/main.js');

/** True inside test/harness/netns-run.sh's namespace: 6PN addresses can be bound. */
export const IN_NETNS = process.env.SIXPN_IN_NETNS === '1';

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Adds an address to lo (inside the test namespace only) so that clients that cannot bind use it as source. */
export function addLoopbackAddress(address: string): void {
  if (!IN_NETNS) throw new Error('refusing to change network configuration outside the test namespace');
  try {
    execFileSync('ip', ['-6', 'addr', 'add', `${address}/128`, 'dev', 'lo', 'nodad'], { stdio: 'pipe' });
  } catch (err) {
    if (!String((err as { stderr?: Buffer }).stderr ?? '').includes('File exists')) throw err;
  }
}

export function removeLoopbackAddress(address: string): void {
  if (!IN_NETNS) return;
  try {
    execFileSync('ip', ['-6', 'addr', 'del', `${address}/128`, 'dev', 'lo'], { stdio: 'pipe' });
  } catch {
    // already gone
  }
}

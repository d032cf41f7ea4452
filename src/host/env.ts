/**
 * What a machine's process is given to run: its environment (the variables a Fly machine gets,
 * then the machine's own `config.env`) and the check that its command can be started at all.
 *
 * The agent's own environment never leaks in (it may hold SIXPN_TOKEN): only PATH is carried
 * over, so that the machine finds the same programs the host has.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { Machine } from '../catalog/types.js';
import { ValidationError } from '../errors.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** FLY_* first (Fly's names), then the machine's config.env, which may not override them. */
export function machineEnv(m: Pick<Machine, 'id' | 'app' | 'region' | 'address' | 'config'>, path: string | undefined, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: path || DEFAULT_PATH,
    HOME: '/',
    ...m.config?.env,
    ...extra,
    FLY_APP_NAME: m.app,
    FLY_MACHINE_ID: m.id,
    FLY_ALLOC_ID: m.id,
    FLY_REGION: m.region,
    FLY_PRIVATE_IP: m.address,
  };
}

/** Thrown when a machine's command cannot be started (not found, not executable). */
export class LaunchError extends ValidationError {}

/**
 * Resolves the program the way execvp would (a name with a slash is a path, relative to `cwd`;
 * otherwise each PATH entry), so that "command not found" is an error before anything is made.
 */
export function resolveCommand(cmd: string, path: string, cwd: string): string {
  const candidates = cmd.includes('/') ? [isAbsolute(cmd) ? cmd : resolve(cwd, cmd)] : path.split(delimiter).filter(Boolean).map((d) => join(d, cmd));
  for (const file of candidates) {
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // next candidate
    }
  }
  throw new LaunchError(cmd.includes('/') ? `command ${cmd} does not exist or is not executable` : `command not found: ${cmd} (searched PATH ${path})`);
}

/**
 * What a machine's process is given to run: its environment (the variables a Fly machine gets,
 * then the machine's own `config.env`) and the check that its command can be started at all.
 *
 * The agent's own environment never leaks in (it may hold SIXPN_TOKEN): only PATH is carried
 * over, so that the machine finds the same programs the host has.
 */
import { accessSync, closeSync, constants, openSync, readSync, realpathSync, statSync, type Stats } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
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

export interface RunAs {
  uid: number;
  gid: number;
}

/** A permission bit of `st` (1 execute/search, 4 read) for a user with only its primary group (supplementary ones are cleared). */
function permits(st: Stats, as: RunAs, bit: 1 | 4 = 1): boolean {
  if (st.uid === as.uid) return (st.mode & (bit << 6)) !== 0;
  if (st.gid === as.gid) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
}

function isScript(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(2);
    return readSync(fd, b, 0, 2, 0) === 2 && b.toString() === '#!';
  } finally {
    closeSync(fd);
  }
}

/** Whether `as` may search every folder above `file` and execute it (and read it, for a script), symlinks followed. */
function executableBy(file: string, as: RunAs): boolean {
  for (const path of new Set([file, realpathSync(file)])) {
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      if (!permits(statSync(dir), as)) return false;
      if (dir === dirname(dir)) break;
    }
  }
  const st = statSync(file);
  return permits(st, as) && (!isScript(file) || permits(st, as, 4));
}

/**
 * Resolves the program the way execvp would (a name with a slash is a path, relative to `cwd`;
 * otherwise each PATH entry), so that "command not found" is an error before anything is made.
 * With `as`, the program must be executable by that user (the machine's, not the agent's root).
 * The machine is started with the path found here: `setpriv` would search PATH still holding
 * root's capabilities and pick a program its user cannot run.
 */
export function resolveCommand(cmd: string, path: string, cwd: string, as?: RunAs | null): string {
  const candidates = cmd.includes('/') ? [isAbsolute(cmd) ? cmd : resolve(cwd, cmd)] : path.split(delimiter).filter(Boolean).map((d) => join(d, cmd));
  let hidden: string | null = null;
  for (const file of candidates) {
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      if (as && as.uid !== 0 && !executableBy(file, as)) {
        hidden ??= file;
        continue;
      }
      return file;
    } catch {
      // next candidate
    }
  }
  if (hidden) throw new LaunchError(`command ${hidden} is not executable by the machine's user (uid ${as!.uid}): it or a folder above it is closed to others`);
  throw new LaunchError(cmd.includes('/') ? `command ${cmd} does not exist or is not executable` : `command not found: ${cmd} (searched PATH ${path})`);
}

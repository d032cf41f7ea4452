/**
 * A machine's process, kept by a small shell shim so that it outlives the agent.
 *
 * The agent starts `sh -c SHIM <dir> <argv...>` detached (its own session): the shim runs the
 * machine's process in a session of its own (`setsid`, so signals reach the process group and
 * never the shim), with stdout/stderr appended to files in the machine's folder and its pid
 * written there, waits for it and writes the exit status. The shim is ~1.6 MB of RSS. When the agent restarts
 * it finds the shim again by pid and by its command line naming the folder: a machine is
 * adopted, never started twice, and an exit that happened while no agent ran is read from the
 * `exit` file. `wait` reports a signal as 128+n, so an exit code above 128 is read as a signal.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';

const SHIM = [
  'dir=$1; shift',
  // In the foreground, not with `&`: a non-interactive shell starts background jobs with SIGINT
  // and SIGQUIT ignored, and SIGINT is Fly's default kill_signal. The inner sh writes its own
  // pid, then becomes the machine's process (exec), in a session of its own.
  'setsid sh -c \'echo $$ >"$0/pid"; exec "$@"\' "$dir" "$@" >>"$dir/stdout" 2>>"$dir/stderr" </dev/null',
  'code=$?',
  'echo "$code" >"$dir/exit.tmp" && mv "$dir/exit.tmp" "$dir/exit"',
].join('\n');
/** argv[0] of every shim, so that `ps` shows what it is. */
const SHIM_NAME = 'sixpn-machine';

export interface ProcessExit {
  exit_code: number | null;
  signal: string | null;
}

export interface LaunchSpec {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
}

const SIGNAL_NAMES = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/** The status the shim wrote (`wait`'s $?), as an exit code or a signal. */
export function parseExitStatus(text: string): ProcessExit | null {
  const code = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || code > 255) return null;
  if (code > 128 && SIGNAL_NAMES.has(code - 128)) return { exit_code: null, signal: SIGNAL_NAMES.get(code - 128)! };
  return { exit_code: code, signal: null };
}

/** A small file's text, or null when it cannot be read. */
export function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** True while `pid` exists (EPERM: it exists, owned by someone else). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when `pid` is stopped by a signal (state T in /proc/<pid>/stat): a suspended machine. */
export function isFrozen(pid: number): boolean {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === null) return false;
  // The state follows the command name, which is in parentheses and may itself hold spaces.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'T';
}

/** True when `pid` is a shim of this folder (not a recycled pid). */
function isShimOf(pid: number, dir: string): boolean {
  const cmdline = readText(`/proc/${pid}/cmdline`);
  if (cmdline === null) return false;
  const args = cmdline.split('\0');
  return args.includes(SHIM_NAME) && args.includes(dir);
}

/** The exit status the shim recorded, if the process has ended. */
export function readExit(dir: string): ProcessExit | null {
  const t = readText(join(dir, 'exit'));
  return t === null ? null : parseExitStatus(t);
}

export class MachineProcess {
  /** Resolves when the shim has gone (the machine's process ended, or the shim was killed). */
  readonly exited: Promise<ProcessExit>;
  private done = false;
  private poll: NodeJS.Timeout | null = null;

  private constructor(
    readonly dir: string,
    readonly shimPid: number,
    readonly pid: number,
    /** Epoch ms when the process started (launch), or when it was adopted. */
    readonly since: number,
    /** Calls `finish` once the shim has gone; returns a poll timer to clear, if it made one. */
    waitExit: (finish: () => void) => NodeJS.Timeout | null,
  ) {
    this.exited = new Promise((resolve) => {
      const finish = (): void => {
        if (this.done) return;
        this.done = true;
        if (this.poll) clearInterval(this.poll);
        resolve(this.collect());
      };
      this.poll = waitExit(finish);
      if (this.done && this.poll) clearInterval(this.poll);
    });
  }

  /** Starts the shim and resolves once the machine's process exists (its pid written). */
  static async launch(dir: string, spec: LaunchSpec, timeoutMs = 5_000): Promise<MachineProcess> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const f of ['pid', 'exit', 'pid.tmp', 'exit.tmp']) rmSync(join(dir, f), { force: true });
    const child = spawn('/bin/sh', ['-c', SHIM, SHIM_NAME, dir, ...spec.argv], { detached: true, stdio: 'ignore', env: spec.env, cwd: spec.cwd });
    child.unref();
    let exitedEarly = false;
    let spawnError: Error | null = null;
    const exitWaiters: (() => void)[] = [];
    child.once('exit', () => {
      exitedEarly = true;
      for (const w of exitWaiters) w();
    });
    child.once('error', (err) => {
      spawnError = err;
      exitedEarly = true;
      for (const w of exitWaiters) w();
    });
    const shimPid = child.pid;
    if (shimPid === undefined) throw new Error(`cannot start the machine shim: ${(spawnError as Error | null)?.message ?? 'no pid'}`);
    writeFileSync(join(dir, 'shim.pid'), `${shimPid}\n`);
    const deadline = Date.now() + timeoutMs;
    let pid: number | null = null;
    for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
      const t = readText(join(dir, 'pid'));
      if (t !== null && /^\d+\s*$/.test(t)) {
        pid = Number(t);
        break;
      }
      if (exitedEarly || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, wait));
    }
    if (pid === null) {
      if (!exitedEarly) child.kill('SIGKILL');
      throw new Error(`the machine shim did not start its process${spawnError ? `: ${(spawnError as Error).message}` : ''}`);
    }
    return new MachineProcess(dir, shimPid, pid, Date.now(), (finish) => {
      if (exitedEarly) finish();
      else exitWaiters.push(finish);
      return null;
    });
  }

  /** The running shim of a machine folder, or null when none runs. */
  static adopt(dir: string, pollMs = 250): MachineProcess | null {
    const shimText = readText(join(dir, 'shim.pid'));
    const pidText = readText(join(dir, 'pid'));
    if (shimText === null || pidText === null) return null;
    const shimPid = Number(shimText);
    const pid = Number(pidText);
    if (!Number.isInteger(shimPid) || !Number.isInteger(pid) || shimPid <= 1 || pid <= 1) return null;
    if (!alive(shimPid) || !isShimOf(shimPid, dir)) return null;
    return new MachineProcess(dir, shimPid, pid, Date.now(), (finish) => {
      // Not our child: no exit event; a cheap signal-0 probe notices the shim has gone.
      const timer = setInterval(() => {
        if (!alive(shimPid) || !isShimOf(shimPid, dir)) finish();
      }, pollMs);
      timer.unref();
      return timer;
    });
  }

  /** Stops watching (the agent is leaving; the process runs on for the next one to adopt). */
  release(): void {
    if (this.poll) clearInterval(this.poll);
    this.poll = null;
  }

  get running(): boolean {
    return !this.done;
  }

  /** Signals the machine's process group (the process and everything it started in its session). */
  signal(sig: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, sig);
    } catch {
      try {
        process.kill(this.pid, sig);
      } catch {
        // already gone
      }
    }
  }

  /** What the shim recorded; a shim killed before writing it leaves the process's fate unknown. */
  private collect(): ProcessExit {
    const e = readExit(this.dir);
    if (e) return e;
    // The shim died without writing the status: make sure its process does not live on unseen.
    if (alive(this.pid)) this.signal('SIGKILL');
    return { exit_code: null, signal: null };
  }
}

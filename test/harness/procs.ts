/**
 * Child processes for tests: start one, collect its output, wait for a line, stop it for sure;
 * run one to completion; the same for the built `sixpn` CLI. The process helpers themselves live
 * once in ./spawn.mjs, shared with bench/; this file gives them their types.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { CLI } from './env.js';
import { run as runAny, start as startAny } from './spawn.mjs';

export interface Proc {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the first output line matching `re`. */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (or signal name). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
  exited: Promise<number | string>;
}

export function start(cmd: string, args: string[], opts: SpawnOptions & { nofile?: number } = {}): Proc {
  return startAny(cmd, args, opts) as Proc;
}

/** Runs the built `sixpn` CLI as a child process. */
export function startSixpn(args: string[], opts: SpawnOptions = {}): Proc {
  return start(process.execPath, [CLI, ...args], opts);
}

/** Runs a command to completion; resolves with its exit code and output (never rejects on non-zero). */
export function run(cmd: string, args: string[], opts: SpawnOptions & { input?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return runAny(cmd, args, opts) as Promise<{ code: number; stdout: string; stderr: string }>;
}

export function runSixpn(args: string[], opts: SpawnOptions & { input?: string; timeoutMs?: number } = {}) {
  return run(process.execPath, [CLI, ...args], opts);
}

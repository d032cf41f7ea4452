/**
 * Child processes for tests: start one, collect its output, wait for a line, stop it for sure.
 * Every process started here is killed when the test file's process exits.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { CLI } from './env.js';

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

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

export function start(cmd: string, args: string[], opts: SpawnOptions = {}): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  live.add(child);
  let out = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const onData = (b: Buffer): void => {
    out += b.toString();
    for (const w of [...waiters]) {
      const line = out.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, sig) => {
      live.delete(child);
      resolve(code ?? sig ?? -1);
    });
    child.on('error', (err) => {
      out += `\nspawn error: ${err.message}`;
      live.delete(child);
      resolve(-1);
    });
  });
  return {
    child,
    output: () => out,
    exited,
    waitForLine(re, timeoutMs = 15_000) {
      const line = out.split('\n').find((l) => re.test(l));
      if (line !== undefined) return Promise.resolve(line);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} from ${cmd} ${args.join(' ')}; output:\n${out.slice(-3000)}`)), timeoutMs);
        const w = { re, resolve: (l: string) => (clearTimeout(t), resolve(l)) };
        waiters.push(w);
        void exited.then((code) => {
          if (waiters.includes(w)) {
            clearTimeout(t);
            reject(new Error(`${cmd} exited (${code}) before printing ${re}; output:\n${out.slice(-3000)}`));
          }
        });
      });
    },
    async stop(signal = 'SIGTERM', graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** Runs the built `sixpn` CLI as a child process. */
export function startSixpn(args: string[], opts: SpawnOptions = {}): Proc {
  return start(process.execPath, [CLI, ...args], opts);
}

/** Runs a command to completion; resolves with its exit code and output (never rejects on non-zero). */
export function run(cmd: string, args: string[], opts: SpawnOptions & { input?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // stdin is a pipe only when there is input; otherwise the child reads /dev/null.
    const child = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(t);
      resolve({ code: -1, stdout, stderr: stderr + err.message });
    });
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    // A child that exits without reading its input (dig, wg) must not crash the test with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input);
  });
}

export function runSixpn(args: string[], opts: SpawnOptions & { input?: string; timeoutMs?: number } = {}) {
  return run(process.execPath, [CLI, ...args], opts);
}

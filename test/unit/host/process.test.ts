// The shim that keeps a machine's process: real processes, exit codes and signals, adoption by
// a later agent, and a shim killed out from under its process.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MachineProcess, parseExitStatus, readExit } from '../../../src/host/process.js';

const dirs: string[] = [];
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), 'sixpn-proc-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const spec = (script: string) => ({ argv: ['/bin/sh', '-c', script], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', MARK: 'm1' }, cwd: '/' });
/** Running (a zombie left to a non-reaping init counts as gone). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe('parseExitStatus', () => {
  it.each([
    ['0\n', { exit_code: 0, signal: null }],
    ['3', { exit_code: 3, signal: null }],
    ['137', { exit_code: null, signal: 'SIGKILL' }],
    ['130', { exit_code: null, signal: 'SIGINT' }],
    ['x', null],
    ['999', null],
  ])('%j -> %j', (text, want) => expect(parseExitStatus(text)).toEqual(want));
});

describe('MachineProcess', () => {
  it('runs the command with its env, collects its output and exit code', async () => {
    const dir = fresh();
    const p = await MachineProcess.launch(dir, spec('echo out $MARK; echo err >&2; exit 7'));
    expect(p.pid).toBeGreaterThan(1);
    expect(await p.exited).toEqual({ exit_code: 7, signal: null });
    expect(readFileSync(join(dir, 'stdout'), 'utf8')).toBe('out m1\n');
    expect(readFileSync(join(dir, 'stderr'), 'utf8')).toBe('err\n');
    expect(readExit(dir)).toEqual({ exit_code: 7, signal: null });
  });

  it('signals the whole process group and reports the signal', async () => {
    const dir = fresh();
    const p = await MachineProcess.launch(dir, spec('sleep 30 & wait'));
    p.signal('SIGTERM');
    expect(await p.exited).toEqual({ exit_code: null, signal: 'SIGTERM' });
  });

  it('is adopted by a later agent, never started twice, and its exit seen', async () => {
    const dir = fresh();
    const p = await MachineProcess.launch(dir, spec('sleep 30'));
    const again = MachineProcess.adopt(dir, 20);
    expect(again?.pid).toBe(p.pid);
    expect(again?.shimPid).toBe(p.shimPid);
    process.kill(p.pid, 'SIGKILL');
    expect(await again!.exited).toEqual({ exit_code: null, signal: 'SIGKILL' });
    expect(MachineProcess.adopt(dir)).toBeNull();
  });

  it('does not adopt a recycled pid that is not this folder\'s shim', async () => {
    const dir = fresh();
    const other = fresh();
    const p = await MachineProcess.launch(dir, spec('sleep 30'));
    // the other folder claims this shim's pid: its command line does not name that folder
    const q = await MachineProcess.launch(other, spec('true'));
    await q.exited;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(other, 'shim.pid'), `${p.shimPid}\n`);
    expect(MachineProcess.adopt(other)).toBeNull();
    p.signal('SIGKILL');
    await p.exited;
  });

  it('kills the process when its shim dies without recording the end', async () => {
    const dir = fresh();
    const p = await MachineProcess.launch(dir, spec('sleep 30'));
    process.kill(p.shimPid, 'SIGKILL');
    expect(await p.exited).toEqual({ exit_code: null, signal: null });
    await new Promise((r) => setTimeout(r, 50));
    expect(alive(p.pid)).toBe(false);
  });

  it('fails clearly when the shim cannot start its process', async () => {
    const dir = fresh();
    const p = await MachineProcess.launch(dir, { argv: ['/nonexistent/program'], env: {}, cwd: '/' });
    // setsid reports the failed exec and the shim records 127 (command not found)
    expect(await p.exited).toEqual({ exit_code: 127, signal: null });
    expect(readFileSync(join(dir, 'stderr'), 'utf8')).toMatch(/nonexistent/);
  });
});

describe('MachineProcess signals', () => {
  it('leaves SIGINT and SIGQUIT to the process (a shell would start a background job with them ignored)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sixpn-proc-'));
    try {
      const p = await MachineProcess.launch(dir, { argv: ['sleep', '30'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: '/' });
      const ignored = BigInt(`0x${/^SigIgn:\s+([0-9a-f]+)/m.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'))![1]}`);
      expect(ignored & (1n << 1n)).toBe(0n); // SIGINT is signal 2: bit 1
      p.signal('SIGINT');
      expect(await p.exited).toEqual({ exit_code: null, signal: 'SIGINT' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

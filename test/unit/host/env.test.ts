// What a machine's process gets: Fly's variables, its own env, nothing of the agent's.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { machineEnv, resolveCommand } from '../../../src/host/env.js';

const m = { id: 'a1000000000001', app: 'web', region: 'ewr', address: 'fdaa:0:18:b00:1:a100:0:2', config: { cmd: ['x'], env: { A: '1' }, restart: { policy: 'always' as const, max_retries: 10 }, kill_signal: 'SIGINT' as const, kill_timeout: 5000 } };

describe('machineEnv', () => {
  it('sets the FLY_* variables last, so they cannot be overridden', () => {
    const env = machineEnv(m, '/usr/bin', { PORT: '9000', FLY_REGION: 'zzz' });
    expect(env).toMatchObject({ A: '1', PORT: '9000', FLY_APP_NAME: 'web', FLY_MACHINE_ID: m.id, FLY_REGION: 'ewr', FLY_PRIVATE_IP: m.address, PATH: '/usr/bin' });
    expect(Object.keys(env)).not.toContain('SIXPN_TOKEN');
  });
});

describe('resolveCommand', () => {
  it('finds programs on PATH or by path, and refuses what cannot run', () => {
    expect(resolveCommand('sh', '/nonexistent:/bin', '/')).toBe('/bin/sh');
    expect(resolveCommand('/bin/sh', '', '/')).toBe('/bin/sh');
    expect(resolveCommand('./bin/sh', '', '/')).toBe('/bin/sh');
    expect(() => resolveCommand('no-such-program-xyz', '/bin:/usr/bin', '/')).toThrow(/command not found: no-such-program-xyz/);
    expect(() => resolveCommand('/etc/passwd', '', '/')).toThrow(/not executable/);
  });

  it('checks the program as the machine\'s user: a folder closed to others hides it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sixpn-env-'));
    try {
      const bin = join(dir, 'bin');
      mkdirSync(bin);
      writeFileSync(join(bin, 'tool'), '#!/bin/sh\n', { mode: 0o755 });
      chmodSync(dir, 0o700);
      const nobody = { uid: 65534, gid: 65534 };
      expect(resolveCommand('tool', bin, '/')).toBe(join(bin, 'tool')); // the agent (root) may
      expect(() => resolveCommand('tool', bin, '/', nobody)).toThrow(/tool is not executable by the machine's user \(uid 65534\)/);
      chmodSync(dir, 0o711);
      expect(resolveCommand('tool', bin, '/', nobody)).toBe(join(bin, 'tool'));
      chmodSync(join(bin, 'tool'), 0o744);
      expect(() => resolveCommand('tool', bin, '/', nobody)).toThrow(/not executable by the machine's user/);
      expect(resolveCommand('sh', '/bin', '/', nobody)).toBe('/bin/sh');
      // a script must be readable too (its interpreter opens it); a binary need not be
      chmodSync(join(bin, 'tool'), 0o711);
      expect(() => resolveCommand('tool', bin, '/', nobody)).toThrow(/not executable by the machine's user/);
      // the first program on PATH that user can run wins (its full path is what gets started)
      const open = mkdtempSync(join(tmpdir(), 'sixpn-env-open-'));
      chmodSync(open, 0o755);
      writeFileSync(join(open, 'tool'), '#!/bin/sh\n', { mode: 0o755 });
      expect(resolveCommand('tool', `${bin}:${open}`, '/', nobody)).toBe(join(open, 'tool'));
      rmSync(open, { recursive: true, force: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

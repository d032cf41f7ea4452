/**
 * Starts a `sixpn` node command (`dns`, `up`, ...) with a config written to a fresh temporary
 * folder, waits for its ready line, and removes the folder when stopped.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSixpn, type Proc } from './procs.js';

export interface SixpnNode {
  proc: Proc;
  dir: string;
  stop(): Promise<void>;
}

/** `toml` may name files relative to `dir` (the config's folder); write them with `prepare`. */
export async function startSixpnNode(command: string, toml: string, prepare?: (dir: string) => Promise<void> | void): Promise<SixpnNode> {
  const dir = mkdtempSync(join(tmpdir(), `sixpn-${command}-`));
  try {
    await prepare?.(dir);
    const cfg = join(dir, 'sixpn.toml');
    writeFileSync(cfg, toml);
    const proc = startSixpn([command, '--config', cfg]);
    await proc.waitForLine(/sixpn ready/);
    return {
      proc,
      dir,
      stop: async () => {
        await proc.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

// Where a host's machines find test/harness/machine.mjs: a copy in a world-readable directory.
// Hosts run machines as an unprivileged user (`[host] machine_user`, default nobody), and a clone
// of the repository may sit in a directory only root can enter (`mktemp -d` makes it 0700), so
// the program is copied once per test process instead of being run from the checkout.
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

let copied = null;

/** The path of a copy of machine.mjs that any user can read. */
export function machineProgram() {
  if (copied) return copied;
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-machine-'));
  chmodSync(dir, 0o755);
  const path = join(dir, 'machine.mjs');
  copyFileSync(fileURLToPath(new URL('./machine.mjs', import.meta.url)), path);
  chmodSync(path, 0o644);
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  copied = path;
  return path;
}

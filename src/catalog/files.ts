/**
 * Files the catalog writes (the embedded store's file, a node's snapshot): written to a temp
 * file, fsynced and renamed into place (mode 0600), so a crash leaves the old or the new file,
 * never half of one; and temp files a killed writer left behind are removed at the next start.
 */
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Writes `text` to `path` atomically; rejects with the filesystem's error (nothing changed then). */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await mkdir(dirname(path), { recursive: true });
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** A pid that no process holds (ESRCH); EPERM means it exists under another user. */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A temp file older than this is stale even when its pid is taken (pids are reused; a write takes milliseconds). */
const STALE_TEMP_MS = 60 * 60 * 1000;

/**
 * Removes `<file>.<pid>.tmp` left by a writer that died between writing and renaming (kill -9,
 * power loss): ours by pid (a former process with this pid), those whose pid is not alive, and
 * any older than an hour. A temp file of a live process is left alone: another sixpn on the
 * same file (which the embedded store does not support, but may happen by mistake) keeps its
 * write. Returns the names removed.
 */
export async function removeStaleTempFiles(path: string, now = Date.now()): Promise<string[]> {
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const pidText = name.slice(prefix.length, -4);
    if (!/^\d{1,10}$/.test(pidText)) continue;
    const pid = Number(pidText);
    const file = join(dir, name);
    let stale = pid === process.pid || !pidAlive(pid);
    if (!stale) {
      try {
        stale = now - (await stat(file)).mtimeMs > STALE_TEMP_MS;
      } catch {
        continue;
      }
    }
    if (!stale) continue;
    try {
      await unlink(file);
      removed.push(name);
    } catch {
      // Gone already, or not ours to remove: the next start tries again.
    }
  }
  return removed;
}

// Machine logs: raw output read as it grows, tagged, kept, followed, and resumed where it stopped.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LogHub, type LogLine } from '../../../src/host/logs.js';
import { waitFor } from '../../harness/net.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), 'sixpn-logs-'));
  dirs.push(d);
  return d;
};
const meta = { machine: 'a1000000000001', app: 'web', region: 'ewr', host: 'h1' };

describe('LogHub', () => {
  it('tags stdout and stderr lines, keeps partial lines until complete, and follows', async () => {
    const dir = fresh();
    const hub = new LogHub(1 << 20);
    const seen: LogLine[] = [];
    const stop = hub.follow({ app: 'web' }, (l) => seen.push(l));
    hub.follow({ app: 'other' }, () => {
      throw new Error('wrong app');
    });
    hub.attach(dir, meta);
    appendFileSync(join(dir, 'stdout'), 'hello\nhal');
    appendFileSync(join(dir, 'stderr'), 'oops\r\n');
    await waitFor(() => seen.length >= 2, { what: 'two lines' });
    appendFileSync(join(dir, 'stdout'), 'f\n');
    await waitFor(() => seen.length >= 3, { what: 'the completed line' });
    expect(seen.map((l) => [l.stream, l.message]).sort()).toEqual([['stderr', 'oops'], ['stdout', 'half'], ['stdout', 'hello']]);
    expect(seen[0]).toMatchObject({ app: 'web', machine: meta.machine, region: 'ewr', host: 'h1' });
    expect(Date.parse(seen[0]!.timestamp)).toBeGreaterThan(Date.now() - 10_000);
    await hub.note(dir, meta, 'machine started');
    const recent = hub.recent({ app: 'web' }, [dir], 10);
    expect(recent.map((l) => l.message)).toContain('machine started');
    expect(hub.recent({ app: 'web', machine: 'ffffffff' }, [dir], 10)).toEqual([]);
    expect(hub.recent({ app: 'web' }, [dir], 2)).toHaveLength(2);
    stop();
    await hub.close();
  });

  it('goes on where it stopped after a restart, and empties raw files past the limit', async () => {
    const dir = fresh();
    const a = new LogHub(4096);
    a.attach(dir, meta);
    writeFileSync(join(dir, 'stdout'), 'one\ntwo\n');
    await a.flush(meta.machine);
    await a.close();
    appendFileSync(join(dir, 'stdout'), 'three\n' + 'x'.repeat(5000) + '\n');
    const b = new LogHub(4096);
    b.attach(dir, meta);
    await b.flush(meta.machine);
    const lines = b.recent({ app: 'web' }, [dir], 100).map((l) => l.message);
    expect(lines.filter((m) => m === 'one')).toHaveLength(1);
    expect(lines).toContain('three');
    // read to the end and past 4096 bytes: the raw file was emptied, the tagged log rolled over on the next write
    expect(statSync(join(dir, 'stdout')).size).toBe(0);
    appendFileSync(join(dir, 'stdout'), 'four\n');
    await b.flush(meta.machine);
    expect(readFileSync(join(dir, 'log.jsonl'), 'utf8')).toContain('"four"');
    expect(b.recent({ app: 'web' }, [dir], 100).map((l) => l.message)).toContain('three');
    await b.close();
  });
});

/**
 * Machine logs: the output each machine's process writes to its folder (stdout, stderr; see
 * ./process.ts), read as it grows, cut into lines and tagged with machine, app, region, host and
 * time, kept in `log.jsonl` in the same folder, and handed to followers (`sixpn logs --follow`).
 *
 * Reading is event-driven (inotify through fs.watch) with a slow poll as a safety net. The raw
 * files are emptied once read past `maxBytes`, and `log.jsonl` rolls over to `log.1.jsonl`, so
 * a chatty machine costs at most ~3x `maxBytes` of disk. How far each raw file was read is kept
 * in `offsets.json`, so a restarted agent goes on where it stopped: lines written while no agent
 * ran are tagged with the time they were read. The host's own lines about a machine (started,
 * exited, restarting) go in with stream `sixpn`.
 */
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, renameSync, statSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';

export type LogStream = 'stdout' | 'stderr' | 'sixpn';

export interface LogLine {
  /** ISO 8601 with milliseconds. */
  timestamp: string;
  app: string;
  machine: string;
  region: string;
  host: string;
  stream: LogStream;
  message: string;
}

export interface LogMeta {
  machine: string;
  app: string;
  region: string;
  host: string;
}

export interface LogFilter {
  app: string;
  machine?: string;
}

/** Longest line kept whole; longer ones are split (a binary blob must not become one huge line). */
const MAX_LINE = 16 * 1024;
const POLL_MS = 1_000;

const matches = (f: LogFilter, l: Pick<LogLine, 'app' | 'machine'>): boolean => l.app === f.app && (f.machine === undefined || l.machine === f.machine);

/** Reads one machine's raw output files as they grow. */
class MachineLog {
  private offsets: Record<'stdout' | 'stderr', number> = { stdout: 0, stderr: 0 };
  private partial: Record<'stdout' | 'stderr', string> = { stdout: '', stderr: '' };
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | null = null;
  private pending: Promise<void> = Promise.resolve();
  private queued = false;
  private closed = false;

  constructor(
    readonly dir: string,
    readonly meta: LogMeta,
    private readonly maxBytes: number,
    private readonly sink: (lines: LogLine[], dir: string) => Promise<void>,
  ) {
    try {
      const o = JSON.parse(readFileSync(join(dir, 'offsets.json'), 'utf8')) as Record<string, unknown>;
      for (const s of ['stdout', 'stderr'] as const) if (typeof o[s] === 'number' && o[s] >= 0) this.offsets[s] = o[s];
    } catch {
      // first attach: read from the start
    }
  }

  start(): void {
    for (const s of ['stdout', 'stderr'] as const) {
      const file = join(this.dir, s);
      if (!existsSync(file)) writeFileSync(file, '', { flag: 'a' });
      try {
        const w = watch(file, { persistent: false }, () => this.kick());
        w.on('error', () => undefined);
        this.watchers.push(w);
      } catch {
        // no inotify: the poll below still reads it
      }
    }
    this.timer = setInterval(() => this.kick(), POLL_MS);
    this.timer.unref();
    this.kick();
  }

  /** Queues one read of both files; calls while one is queued share it. */
  kick(): Promise<void> {
    if (this.queued || this.closed) return this.pending;
    this.queued = true;
    this.pending = this.pending.then(() => {
      this.queued = false;
      return this.readAll();
    });
    return this.pending;
  }

  private async readAll(): Promise<void> {
    const lines: LogLine[] = [];
    for (const s of ['stdout', 'stderr'] as const) this.readStream(s, lines);
    if (lines.length) await this.sink(lines, this.dir);
    try {
      writeFileSync(join(this.dir, 'offsets.json'), JSON.stringify(this.offsets));
    } catch {
      // the folder went away (destroyed)
    }
  }

  private readStream(s: 'stdout' | 'stderr', out: LogLine[]): void {
    const file = join(this.dir, s);
    let fd: number;
    try {
      fd = openSync(file, 'r+');
    } catch {
      return;
    }
    try {
      let size = fstatSync(fd).size;
      // Emptied behind our back (or by us): start again from the top.
      if (size < this.offsets[s]) this.offsets[s] = 0;
      const now = new Date().toISOString();
      while (this.offsets[s] < size) {
        const buf = Buffer.allocUnsafe(Math.min(size - this.offsets[s], 256 * 1024));
        const n = readSync(fd, buf, 0, buf.length, this.offsets[s]);
        if (n <= 0) break;
        this.offsets[s] += n;
        const text = this.partial[s] + buf.subarray(0, n).toString('utf8');
        const parts = text.split('\n');
        this.partial[s] = parts.pop() ?? '';
        for (const p of parts) this.push(out, s, p, now);
        while (this.partial[s].length > MAX_LINE) {
          this.push(out, s, this.partial[s].slice(0, MAX_LINE), now);
          this.partial[s] = this.partial[s].slice(MAX_LINE);
        }
      }
      // Read to the end and past the limit: empty the file (the shim appends, so it goes on at 0).
      size = fstatSync(fd).size;
      if (size === this.offsets[s] && size > this.maxBytes) {
        ftruncateSync(fd, 0);
        this.offsets[s] = 0;
      }
    } finally {
      closeSync(fd);
    }
  }

  private push(out: LogLine[], stream: LogStream, message: string, timestamp: string): void {
    out.push({ timestamp, ...this.meta, stream, message: message.endsWith('\r') ? message.slice(0, -1) : message });
  }

  /** Reads what is left, then stops watching. */
  async close(): Promise<void> {
    await this.kick();
    this.closed = true;
    for (const w of this.watchers) w.close();
    if (this.timer) clearInterval(this.timer);
    await this.pending;
  }
}

export class LogHub {
  private readonly machines = new Map<string, MachineLog>();
  private readonly events = new EventEmitter();

  constructor(private readonly maxBytes: number) {
    this.events.setMaxListeners(0);
  }

  /** Starts reading a machine's output (idempotent). */
  attach(dir: string, meta: LogMeta): void {
    if (this.machines.has(meta.machine)) return;
    const ml = new MachineLog(dir, meta, this.maxBytes, (lines, d) => this.write(lines, d));
    this.machines.set(meta.machine, ml);
    ml.start();
  }

  /** Reads what the machine wrote last, then stops reading it. */
  async detach(machine: string): Promise<void> {
    const ml = this.machines.get(machine);
    if (!ml) return;
    this.machines.delete(machine);
    await ml.close();
  }

  /** Reads new output of a machine now (after its process exited, before its exit is logged). */
  flush(machine: string): Promise<void> {
    return this.machines.get(machine)?.kick() ?? Promise.resolve();
  }

  /** A line from the host itself about a machine. */
  async note(dir: string, meta: LogMeta, message: string): Promise<void> {
    await this.write([{ timestamp: new Date().toISOString(), ...meta, stream: 'sixpn', message }], dir);
  }

  private async write(lines: LogLine[], dir: string): Promise<void> {
    const file = join(dir, 'log.jsonl');
    try {
      if (statSync(file).size > this.maxBytes) renameSync(file, join(dir, 'log.1.jsonl'));
    } catch {
      // not there yet
    }
    try {
      await appendFile(file, lines.map((l) => `${JSON.stringify(l)}\n`).join(''), { mode: 0o600 });
    } catch {
      // the folder went away (destroyed): the followers still get the lines
    }
    for (const l of lines) this.events.emit('line', l);
  }

  /** The last `limit` lines of the matching machines (folders from `dirs`), oldest first. */
  recent(filter: LogFilter, dirs: Iterable<string>, limit: number): LogLine[] {
    const all: LogLine[] = [];
    for (const dir of dirs) {
      const got: LogLine[] = [];
      for (const name of ['log.jsonl', 'log.1.jsonl']) {
        if (got.length >= limit) break;
        let text: string;
        try {
          text = readFileSync(join(dir, name), 'utf8');
        } catch {
          continue;
        }
        const rows = text.split('\n');
        const mine: LogLine[] = [];
        for (let i = rows.length - 1; i >= 0 && mine.length + got.length < limit; i--) {
          const r = rows[i]!;
          if (!r) continue;
          try {
            const l = JSON.parse(r) as LogLine;
            if (matches(filter, l)) mine.push(l);
          } catch {
            // a line cut by a crash
          }
        }
        got.push(...mine);
      }
      all.push(...got);
    }
    all.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
    return all.slice(-limit);
  }

  /** Calls `onLine` for every new matching line until the returned function is called. */
  follow(filter: LogFilter, onLine: (l: LogLine) => void): () => void {
    const h = (l: LogLine): void => {
      if (matches(filter, l)) onLine(l);
    };
    this.events.on('line', h);
    return () => this.events.off('line', h);
  }

  async close(): Promise<void> {
    await Promise.all([...this.machines.keys()].map((id) => this.detach(id)));
    this.events.removeAllListeners();
  }
}

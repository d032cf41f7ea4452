/**
 * Logging: one pino root logger per process, and `child({ module })` for each part.
 *
 * Writes go through pino's asynchronous destination so that a log line never blocks a
 * proxied byte; `flushLogs()` is called on shutdown so the last lines are not lost. A stdout
 * that went away (a closed pipe) silences the logs and nothing else: writes, flushes and the
 * exit hooks then do nothing, so shutdown never waits on logging.
 */
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';

export type { Logger };

let root: Logger | null = null;
let destination: pino.DestinationStream & { flushSync?: () => void } | null = null;

export interface LogOptions {
  level?: string;
  /** Human-readable output (pino-pretty, a dev dependency); falls back to JSON if missing. */
  pretty?: boolean;
}

export function createRootLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.LOG_LEVEL ?? 'info';
  destination = opts.pretty && prettyInstalled() ? prettyDestination() : pino.destination({ dest: 1, sync: false, minLength: 0 });
  root = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  return root;
}

/** pino-pretty is a dev dependency: a production install (`npm ci --omit=dev`) logs JSON instead. */
export function prettyInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

/**
 * Pretty lines are formatted on the main thread and written through the same destination as
 * JSON. Not pino's worker-thread transport: on exit it waits up to 10 s for the worker to drain,
 * and a worker writing into a closed pipe never does, so SIGTERM would hang there. Pretty output
 * is for a terminal (`npm start`); production logs JSON.
 */
function prettyDestination(): pino.DestinationStream & { flushSync?: () => void } {
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  const format = prettyFactory({ colorize: Boolean(process.stdout.isTTY), translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true });
  const out = pino.destination({ dest: 1, sync: false, minLength: 0 });
  return {
    write: (line: string) => void out.write(format(line)),
    flushSync: () => out.flushSync(),
  };
}

/** The process logger (created with defaults on first use). */
export function rootLogger(): Logger {
  return root ?? createRootLogger();
}

export function moduleLogger(module: string): Logger {
  return rootLogger().child({ module });
}

export function flushLogs(): void {
  try {
    destination?.flushSync?.();
  } catch {
    // Nothing useful to do when stdout is gone.
  }
}

/**
 * Logging: one pino root logger per process, and `child({ module })` for each part.
 *
 * Writes go through pino's asynchronous destination so that a log line never blocks a
 * proxied byte; `flushLogs()` is called on shutdown so the last lines are not lost.
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

/** Pretty-printing runs in pino's transport worker thread, so it stays off the hot path too. */
function prettyDestination(): pino.DestinationStream & { flushSync?: () => void } {
  return pino.transport({
    target: 'pino-pretty',
    options: { destination: 1, colorize: Boolean(process.stdout.isTTY), translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true },
  }) as pino.DestinationStream & { flushSync?: () => void };
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

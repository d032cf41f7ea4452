/**
 * Command-line parsing for `sixpn`: one option table (node:util parseArgs), the command
 * registry shape, and the check that a command was given only options it understands, so a
 * typo is an error rather than silently ignored.
 */
import { parseArgs } from 'node:util';
import { ValidationError } from '../errors.js';
import type { ApiClient } from './client.js';

export const OPTIONS = {
  api: { type: 'string' },
  token: { type: 'string' },
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean', short: 'j' },
  help: { type: 'boolean', short: 'h' },
  app: { type: 'string', short: 'a' },
  org: { type: 'string', short: 'o' },
  region: { type: 'string', short: 'r' },
  id: { type: 'string' },
  address: { type: 'string' },
  upstream: { type: 'string' },
  state: { type: 'string' },
  private: { type: 'boolean' },
  output: { type: 'string' },
  'network-id': { type: 'string' },
  services: { type: 'string' },
  yes: { type: 'boolean', short: 'y' },
  expiry: { type: 'string' },
  name: { type: 'string' },
  'all-sessions': { type: 'boolean' },
  watch: { type: 'boolean', short: 'w' },
  follow: { type: 'boolean', short: 'f' },
  kind: { type: 'string' },
  host: { type: 'string' },
  env: { type: 'string', short: 'e', multiple: true },
  restart: { type: 'string' },
  'kill-signal': { type: 'string' },
  'kill-timeout': { type: 'string' },
  machine: { type: 'string' },
  force: { type: 'boolean' },
  lines: { type: 'string', short: 'n' },
  from: { type: 'string' },
  'from-snapshot': { type: 'boolean' },
} as const;

export type OptionName = keyof typeof OPTIONS;
export type Values = {
  [K in OptionName]?: (typeof OPTIONS)[K] extends { multiple: true } ? string[] : (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string;
};

/** Options every API command accepts. */
export const API_OPTIONS: OptionName[] = ['api', 'token', 'config', 'help'];

export interface Parsed {
  words: string[];
  values: Values;
  /** Everything after `--` (the command of `machines run`), untouched; undefined without `--`. */
  rest?: string[];
}

export function parseArgv(argv: string[]): Parsed {
  const dash = argv.indexOf('--');
  const rest = dash >= 0 ? argv.slice(dash + 1) : undefined;
  try {
    const { values, positionals } = parseArgs({ args: dash >= 0 ? argv.slice(0, dash) : argv, options: OPTIONS, allowPositionals: true, strict: true });
    return { words: positionals, values: values as Values, ...(rest ? { rest } : {}) };
  } catch (err) {
    // parseArgs explains itself ("Unknown option '--foo'"); keep its first sentence.
    throw new ValidationError(`${(err as Error).message.split('. ')[0]!.replace(/\.$/, '')} (see sixpn --help)`);
  }
}

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export interface CommandContext {
  values: Values;
  /** Positional arguments after the command words. */
  args: string[];
  /** What came after `--`. */
  rest?: string[] | undefined;
  io: CliIo;
  /** The API client (created on first use from --api/--token/--config/env). */
  client(): Promise<ApiClient>;
}

export interface Command {
  /** The words that select it, e.g. ['ips', 'allocate-v6']. */
  words: string[];
  usage: string;
  summary: string;
  options: OptionName[];
  /** Most positional arguments it takes. */
  maxArgs: number;
  /** Takes a command after `--` (`machines run ... -- CMD ARGS`). */
  takesCommand?: boolean;
  run(ctx: CommandContext): Promise<number | void>;
}

export function checkOptions(cmd: Command, values: Values, args: string[], rest?: string[]): void {
  if (rest !== undefined && !cmd.takesCommand) throw new ValidationError(`sixpn ${cmd.words.join(' ')} takes nothing after -- (usage: ${cmd.usage})`);
  const allowed = new Set<string>([...cmd.options, 'help']);
  for (const [k, v] of Object.entries(values)) {
    if (v !== undefined && !allowed.has(k)) throw new ValidationError(`sixpn ${cmd.words.join(' ')} does not take --${k} (usage: ${cmd.usage})`);
  }
  if (args.length > cmd.maxArgs) throw new ValidationError(`unexpected argument ${JSON.stringify(args[cmd.maxArgs])} (usage: ${cmd.usage})`);
}

/** The value of a required option, or a ValidationError saying how to give it. */
export function need(values: Values, name: 'app' | 'org' | 'region' | 'id', cmd: string): string {
  const v = values[name];
  if (v === undefined || v === '') throw new ValidationError(`${cmd} needs --${name} ${name.toUpperCase()}`);
  return v;
}

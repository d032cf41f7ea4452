/**
 * Loads, validates and freezes a node's configuration (TOML).
 *
 * One schema, composed from each module's own section; every bad key is named in a single
 * ConfigError at start-up. Environment variables override a few secrets and endpoints
 * (SIXPN_TOKEN, SIXPN_REDIS_URL, LOG_LEVEL). Relative paths resolve against the config file's
 * folder, so a config works from any working directory.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { autostartConfigSchema } from '../autostart/config.js';
import { appSchema, machineInputSchema, orgSchema, regionCodeSchema } from '../catalog/types.js';
import { catalogConfigSchema } from '../catalog/config.js';
import { controlConfigSchema } from '../control/config.js';
import { ConfigError } from '../errors.js';
import { demoConfigSchema } from '../demo/config.js';
import { dnsConfigSchema } from '../dns/config.js';
import { wireguardConfigSchema } from '../gateway/config.js';
import { healthConfigSchema } from '../health/config.js';
import { hostConfigSchema } from '../host/config.js';
import { proxyConfigSchema } from '../proxy/config.js';
import { isLoopbackHost } from '../addressing/index.js';
import { hostIdSchema } from './common.js';

/** The package's own config/ folder (bundled region table, demo config). */
export const PACKAGE_CONFIG_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../config');

const logLevelSchema = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
/** Shorter admin tokens are refused: they can be guessed. */
export const MIN_TOKEN_LENGTH = 16;


export const configSchema = z
  .object({
    node: z
      .object({
        name: z.string().min(1).default('sixpn'),
        region: regionCodeSchema.default('ewr'),
        /** Host id under which machines registered without an address get one. */
        host_id: hostIdSchema.default('a7b:7d'),
      })
      .strict()
      .default({}),
    regions: z
      .object({
        file: z.string().default(''),
        /** Round-trip ms between regions, overriding great-circle distance: { ewr = { iad = 8 } } */
        rtt: z.record(z.record(z.number().nonnegative())).default({}),
      })
      .strict()
      .default({}),
    catalog: catalogConfigSchema.default({}),
    control: controlConfigSchema.default({}),
    log: z
      .object({
        level: logLevelSchema.default('info'),
        pretty: z.boolean().default(false),
      })
      .strict()
      .default({}),
    proxy: proxyConfigSchema.default({}),
    dns: dnsConfigSchema.default({}),
    health: healthConfigSchema.default({}),
    wireguard: wireguardConfigSchema.default({}),
    host: hostConfigSchema.default({}),
    autostart: autostartConfigSchema.default({}),
    demo: demoConfigSchema.default({}),
    /** Inline catalog seed: created at start when missing (idempotent). */
    orgs: z.array(orgSchema).default([]),
    apps: z.array(appSchema).default([]),
    machines: z.array(machineInputSchema).default([]),
    /** Flycast addresses to make sure exist: `{ app, org? }` (allocated in order). */
    ips: z.array(z.object({ app: z.string(), org: z.string().optional() }).strict()).default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    // Machines and peers under one host id would share one address range.
    if (parseHostIdLoose(c.node.host_id) === parseHostIdLoose(c.wireguard.host_id)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['wireguard', 'host_id'], message: `must differ from node.host_id (${c.node.host_id}): machine and peer addresses would collide` });
    }
    // A host's machines live under its host id: the node's (hand-registered machines) and the gateway's (peers) are taken.
    for (const [other, key] of [[c.node.host_id, 'node.host_id'], [c.wireguard.host_id, 'wireguard.host_id']] as const) {
      if (c.host.host_id !== '' && parseHostIdLoose(c.host.host_id) === parseHostIdLoose(other)) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['host', 'host_id'], message: `must differ from ${key} (${other}): machine addresses would collide` });
      }
    }
    if (c.control.demo_token && !isLoopbackHost(c.control.listen.host)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['control', 'demo_token'], message: `a demo token is only accepted on a loopback listener, not ${c.control.listen.host}; set a real token (openssl rand -hex 24)` });
    }
  });

/** Host ids compared as numbers ("a7b:007d" is "a7b:7d"); each was checked by its own key. */
function parseHostIdLoose(s: string): string {
  return s.split(':').map((h) => parseInt(h, 16)).join(':');
}

/** The reason a token is unusable, or null. */
function tokenProblem(token: string, demo: boolean): string | null {
  if (token === '' || demo || token.length >= MIN_TOKEN_LENGTH) return null;
  return `must be at least ${MIN_TOKEN_LENGTH} characters (got ${token.length}); use a long random one, e.g. \`openssl rand -hex 24\``;
}

export type Config = z.output<typeof configSchema>;

export interface LoadedConfig {
  config: Readonly<Config>;
  /** Folder of the config file; relative paths resolve against it. */
  baseDir: string;
  /** Absolute path of the file, or null for defaults. */
  file: string | null;
}

function describe(issues: z.ZodIssue[]): string {
  return issues
    .map((i) => {
      const key = i.path.length ? i.path.join('.') : '(top level)';
      if (i.code === 'unrecognized_keys') return `${key}: unknown key(s) ${i.keys.map((k) => JSON.stringify(k)).join(', ')}`;
      return `${key}: ${i.message}`;
    })
    .join('\n  ');
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Validates a parsed config object; throws one ConfigError naming every bad key. */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env, source = 'config'): Config {
  const r = configSchema.safeParse(raw ?? {});
  const problems = r.success ? [] : [describe(r.error.issues)];
  // The token is checked where it came from: the environment wins over the file.
  const fileToken = (raw as { control?: { token?: unknown; demo_token?: unknown } } | undefined)?.control;
  const envProblem = env.SIXPN_TOKEN ? tokenProblem(env.SIXPN_TOKEN, false) : null;
  const fileProblem = !env.SIXPN_TOKEN && typeof fileToken?.token === 'string' ? tokenProblem(fileToken.token, fileToken.demo_token === true) : null;
  if (envProblem) problems.push(`SIXPN_TOKEN: ${envProblem}`);
  if (fileProblem) problems.push(`control.token: ${fileProblem}${'; or, for a throwaway demo on a loopback listener, set control.demo_token = true'}`);
  if (!r.success || problems.length) throw new ConfigError(`${source} is invalid:\n  ${problems.join('\n  ')}`);
  const c = r.data;
  if (env.SIXPN_TOKEN) c.control.token = env.SIXPN_TOKEN;
  if (env.SIXPN_REDIS_URL) c.catalog.redis_url = env.SIXPN_REDIS_URL;
  if (env.LOG_LEVEL) {
    const lvl = logLevelSchema.safeParse(env.LOG_LEVEL);
    if (!lvl.success) throw new ConfigError(`LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent`);
    c.log.level = lvl.data;
  }
  return c;
}

/** Reads and validates a TOML file (or defaults when `file` is undefined). */
export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  if (!file) {
    return { config: deepFreeze(resolvePaths(parseConfig({}, env, 'default config'), process.cwd())), baseDir: process.cwd(), file: null };
  }
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${abs}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    throw new ConfigError(`config file ${abs} is not valid TOML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const baseDir = dirname(abs);
  const config = resolvePaths(parseConfig(raw, env, `config file ${abs}`), baseDir);
  return { config: deepFreeze(config), baseDir, file: abs };
}

function resolvePaths(c: Config, baseDir: string): Config {
  const at = (p: string): string => (p === '' || isAbsolute(p) ? p : resolve(baseDir, p));
  c.catalog.path = at(c.catalog.path);
  c.regions.file = c.regions.file === '' ? resolve(PACKAGE_CONFIG_DIR, 'regions.csv') : at(c.regions.file);
  c.wireguard.state_file = at(c.wireguard.state_file);
  c.host.state_dir = at(c.host.state_dir);
  c.host.workdir = at(c.host.workdir);
  return c;
}

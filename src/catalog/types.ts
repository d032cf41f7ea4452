/**
 * Catalog entities in fly.toml / flyctl vocabulary, as zod schemas with the TypeScript types
 * inferred from them. The control API validates bodies with these same schemas, and the
 * inline seed of a config file too, so a name that is invalid in one place is invalid in all.
 */
import { z } from 'zod';
import { normalizeAddress, parseHostPort } from '../addressing/index.js';

/** DNS-label names: apps, orgs and regions appear as labels in `.internal` names. */
export const NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const nameSchema = z
  .string()
  .regex(NAME_RE, 'must be 1-63 lowercase letters, digits or dashes, not starting or ending with a dash');
export const regionCodeSchema = z.string().regex(/^[a-z]{3}$/, 'must be a 3-letter region code');
/** Machine ids are hex (Fly uses 14 digits); the first 8 digits appear in the 6PN address. */
export const machineIdSchema = z.string().regex(/^[0-9a-f]{8,32}$/, 'must be 8-32 lowercase hex digits');
/** WireGuard peer names become Linux interface names on the laptop: 15 characters at most. */
export const peerNameSchema = z
  .string()
  .max(15, 'must be at most 15 characters (it becomes a Linux interface name)')
  .regex(/^[a-zA-Z0-9_=+.-]+$/, 'may only contain letters, digits and _=+.-');
/** Base64 of a 32-byte X25519 public key. */
export const publicKeySchema = z.string().regex(/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/, 'must be a base64 WireGuard public key');
/**
 * `host:port` or `[v6]:port` a proxy dials instead of the machine's 6PN address: a real IP
 * address or hostname and a port from 1 to 65535, so that no stored entry can make a dial throw.
 */
export const upstreamSchema = z.string().superRefine((s, ctx) => {
  const hp = parseHostPort(s);
  if ('error' in hp) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${JSON.stringify(s)}: ${hp.error}` });
});

/** A stored 6PN address, in the canonical form the stores write (and the proxy dials). */
export const storedAddressSchema = z.string().refine((s) => normalizeAddress(s) === s, (s) => ({ message: `${JSON.stringify(s)} is not a canonical IPv6 address` }));

/** The longest delay Node's timers hold (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
const TOO_LONG = `must be at most ${MAX_TIMER_MS} ms (about 24.8 days, the longest timer Node can hold)`;

/** Durations in fly.toml style: "10s", "500ms", "1m", "1h", or a number of milliseconds. */
export const durationSchema = z.union([
  z.number().int().nonnegative().max(MAX_TIMER_MS, TOO_LONG),
  z
    .string()
    .regex(/^\d+(\.\d+)?(ms|s|m|h)$/, 'must be a duration like "500ms", "10s" or "1m"')
    .transform((s) => {
      const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(s)!;
      const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
      return Math.round(Number(m[1]) * mult);
    })
    .refine((ms) => ms <= MAX_TIMER_MS, TOO_LONG),
]);

export const tcpCheckSchema = z
  .object({
    interval: durationSchema.default(15_000),
    timeout: durationSchema.default(2_000),
    grace_period: durationSchema.default(1_000),
    port: z.number().int().min(1).max(65535).optional(),
  })
  .strict();

export const httpCheckSchema = z
  .object({
    interval: durationSchema.default(15_000),
    timeout: durationSchema.default(2_000),
    grace_period: durationSchema.default(1_000),
    method: z.string().regex(/^[A-Z]+$/).default('GET'),
    path: z.string().startsWith('/').default('/'),
    protocol: z.enum(['http', 'https']).default('http'),
    headers: z.record(z.string()).default({}),
    port: z.number().int().min(1).max(65535).optional(),
    tls_skip_verify: z.boolean().default(false),
  })
  .strict();

export const concurrencySchema = z
  .object({
    type: z.enum(['connections', 'requests']).default('connections'),
    soft_limit: z.number().int().positive().default(20),
    hard_limit: z.number().int().positive().default(25),
  })
  .strict()
  .refine((c) => c.soft_limit <= c.hard_limit, { message: 'soft_limit must not exceed hard_limit', path: ['soft_limit'] });

export const portSchema = z
  .object({
    port: z.number().int().min(1).max(65535),
    handlers: z.array(z.enum(['http', 'tls', 'proxy_proto'])).default([]),
    /** PROXY protocol version when `proxy_proto` is a handler. */
    proxy_proto_options: z.object({ version: z.enum(['v1', 'v2']).default('v1') }).strict().optional(),
  })
  .strict();

/**
 * fly.toml's `auto_stop_machines`: what the proxy does with a machine that has been idle.
 * `true`/`false` are fly.toml's older spelling of "stop"/"off".
 */
export const autoStopSchema = z.preprocess((v) => (v === true ? 'stop' : v === false ? 'off' : v), z.enum(['off', 'stop', 'suspend']));
export type AutoStop = z.infer<typeof autoStopSchema>;

export const serviceSchema = z
  .object({
    protocol: z.enum(['tcp', 'http']).default('tcp'),
    internal_port: z.number().int().min(1).max(65535),
    ports: z.array(portSchema).min(1),
    concurrency: concurrencySchema.default({}),
    tcp_checks: z.array(tcpCheckSchema).default([]),
    http_checks: z.array(httpCheckSchema).default([]),
    /** Stop or suspend machines idle for `[autostart] idle_period` (src/autostart). Absent: "off". */
    auto_stop_machines: autoStopSchema.optional(),
    /** Start a stopped or suspended machine when a caller finds none with room. Absent: on when auto_stop_machines is. */
    auto_start_machines: z.boolean().optional(),
    /** Autostop never leaves fewer started machines than this in the app's primary_region. */
    min_machines_running: z.number().int().min(0).max(10_000).optional(),
  })
  .strict();

export const orgSchema = z
  .object({
    name: nameSchema,
    /** 1..65535: the third hextet of the org's `fdaa:0:<id>::/48`. */
    network_id: z.number().int().min(1).max(0xffff),
  })
  .strict();

export const appSchema = z
  .object({
    name: nameSchema,
    org: nameSchema,
    services: z.array(serviceSchema).default([]),
    /** fly.toml's `primary_region`: where min_machines_running holds. */
    primary_region: regionCodeSchema.optional(),
  })
  .strict();

/**
 * A machine's lifecycle, in Fly's words. Machines registered by hand are only ever `started` or
 * `stopped`. Machines a host agent runs (`config` set) move through the rest: the API writes the
 * wish (`created`, `starting`, `stopping`, `destroying`), the host agent the outcome (`started`,
 * `stopped`, `failed`) and removes a destroyed machine; `destroyed` is what the API answers then.
 * Only `started` machines are dialed, answered in DNS and health-checked. `suspending` and
 * `suspended` (Fly's words) are a run machine frozen in place by autostop: its process kept,
 * not scheduled; `starting` thaws it.
 */
export const MACHINE_STATES = ['created', 'starting', 'started', 'stopping', 'stopped', 'suspending', 'suspended', 'destroying', 'destroyed', 'failed'] as const;
export const machineStateSchema = z.enum(MACHINE_STATES);
export const healthStatusSchema = z.enum(['unknown', 'healthy', 'unhealthy']);

export const machineHealthSchema = z
  .object({
    status: healthStatusSchema,
    reason: z.string().max(500).default(''),
    /** Epoch milliseconds of the last status change. */
    changed_at: z.number().int().nonnegative(),
  })
  .strict();

/** Environment variable names: a letter or `_`, then letters, digits or `_`. FLY_* are set by the host. */
export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const noNul = (s: string): boolean => !s.includes('\0');
export const envNameSchema = z
  .string()
  .regex(ENV_NAME_RE, 'must be a variable name (a letter or _, then letters, digits or _)')
  .refine((k) => !k.startsWith('FLY_'), 'FLY_* variables are set by the host (FLY_APP_NAME, FLY_MACHINE_ID, FLY_REGION, FLY_PRIVATE_IP)');

/** fly.toml's kill_signal values. */
export const killSignalSchema = z.enum(['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGKILL', 'SIGSTOP']);

/** Fly's restart policy: `always` (the default of `fly machine run`), `on-failure` (up to max_retries, 10), `no`. */
export const restartPolicySchema = z
  .object({
    policy: z.enum(['no', 'always', 'on-failure']).default('always'),
    /** on-failure only: restarts in a row before the machine is left failed. */
    max_retries: z.number().int().min(0).max(1000).default(10),
  })
  .strict();

/** What a host agent runs: the machine `config` of Fly's Machines API, reduced to a process. */
export const machineConfigSchema = z
  .object({
    cmd: z
      .array(z.string().min(1, 'must not be empty').max(4096).refine(noNul, 'must not contain NUL'))
      .min(1, 'must name the command to run')
      .max(256),
    env: z.record(envNameSchema, z.string().max(32_768).refine(noNul, 'must not contain NUL')).default({}),
    restart: restartPolicySchema.default({}),
    kill_signal: killSignalSchema.default('SIGINT'),
    /** Time from kill_signal to SIGKILL (Fly's default 5 s, at most 5 min). */
    kill_timeout: durationSchema.pipe(z.number().max(300_000, 'must be at most 5m')).default(5_000),
  })
  .strict();

/** How the machine's process last ended. */
export const machineExitSchema = z
  .object({
    /** null when it died of a signal. */
    exit_code: z.number().int().nullable(),
    signal: z.string().nullable(),
    /** true when the exit followed a stop, restart or destroy request. */
    requested: z.boolean(),
    at: z.number().int().nonnegative(),
  })
  .strict();

export const machineSchema = z
  .object({
    id: machineIdSchema,
    app: nameSchema,
    region: regionCodeSchema,
    /** The machine's 6PN address, inside its app's org prefix. */
    address: storedAddressSchema,
    state: machineStateSchema,
    health: machineHealthSchema,
    /** Dial this instead of `[address]:internal_port` (loopback demos, benchmarks). */
    upstream: upstreamSchema.optional(),
    /** The host that runs it (machines run by sixpn); absent for machines registered by hand. */
    host: nameSchema.optional(),
    /** What the host runs; absent for machines registered by hand. */
    config: machineConfigSchema.optional(),
    last_exit: machineExitSchema.optional(),
    /** Automatic restarts since the last start request (restart policy). */
    restarts: z.number().int().nonnegative().optional(),
    /** Why it is in its state, in a few words ("exited with code 1", "command not found: x"). */
    state_reason: z.string().max(500).optional(),
    /**
     * Epoch ms a proxy node last saw traffic on it, published (at most every half idle period)
     * so that autostop on every node knows what the others see (src/autostart).
     */
    last_active_at: z.number().int().nonnegative().optional(),
    created_at: z.number().int().nonnegative(),
    updated_at: z.number().int().nonnegative(),
  })
  .strict();

/** `up` while its agent runs (heartbeat fresh), `down` after a clean shutdown. */
export const hostStateSchema = z.enum(['up', 'down']);
export const hostDriverSchema = z.enum(['netns', 'local']);
/** Host ids 0 and 1 are infrastructure and Flycast; a host id fills hextets 4 and 5 of its machines' addresses. */
export const hostIdSchema = z.number().int().min(2).max(0xffffffff);

export const hostSchema = z
  .object({
    name: nameSchema,
    region: regionCodeSchema,
    host_id: hostIdSchema,
    state: hostStateSchema,
    driver: hostDriverSchema,
    /** Epoch ms of the agent's last heartbeat. */
    heartbeat_at: z.number().int().nonnegative(),
    /** The running agent (`<boot id>/<pid>`): a second agent under the same name is refused. */
    session: z.string().min(1).max(200),
    /** For the mesh between hosts: only the public key, ever; the private key stays in the host's 0600 state file. */
    wireguard: z
      .object({
        public_key: publicKeySchema,
        /** `host:port` the other hosts dial: checked like an upstream, so no stored entry can make a dial throw. */
        endpoint: z.string().max(300).pipe(upstreamSchema).optional(),
      })
      .strict()
      .optional(),
    created_at: z.number().int().nonnegative(),
    updated_at: z.number().int().nonnegative(),
  })
  .strict();

export const flycastIpSchema = z
  .object({
    address: storedAddressSchema,
    app: nameSchema,
    /** The org whose network holds this address, and whose members may use it. */
    org: nameSchema,
    type: z.literal('private_v6'),
    region: z.string().default('global'),
    created_at: z.number().int().nonnegative(),
  })
  .strict();

export const peerSchema = z
  .object({
    name: peerNameSchema,
    org: nameSchema,
    region: regionCodeSchema,
    /** The peer's address; it owns the /120 around it. */
    address: storedAddressSchema,
    public_key: publicKeySchema,
    created_at: z.number().int().nonnegative(),
  })
  .strict();

/**
 * A token the platform issued: an org token (the control API, for its orgs only) or a dashboard
 * session (the read-only status routes). Only the SHA-256 of the secret is stored; the secret
 * is shown once, to whoever asked for it.
 */
export const tokenKindSchema = z.enum(['org', 'dashboard']);
export const tokenIdSchema = z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits');
export const tokenNameSchema = z.string().min(1).max(64).regex(/^[\x21-\x7e]+(?: [\x21-\x7e]+)*$/, 'must be 1-64 printable ASCII characters');
export const tokenObjectSchema = z
  .object({
    id: tokenIdSchema,
    kind: tokenKindSchema,
    name: tokenNameSchema,
    /** The orgs an org token may see and change (a dashboard session has none). */
    orgs: z.array(nameSchema).max(16),
    /** Lowercase hex SHA-256 of the whole token string. */
    hash: z.string().regex(/^[0-9a-f]{64}$/),
    created_at: z.number().int().nonnegative(),
    /** Epoch milliseconds after which the token no longer works. */
    expires_at: z.number().int().nonnegative(),
  })
  .strict();
const orgsFitKind = (t: { kind: TokenKind; orgs: string[] }): boolean => (t.kind === 'org') === (t.orgs.length > 0);
const ORGS_FIT_KIND = { message: 'an org token names at least one org, a dashboard session none', path: ['orgs'] };
export const tokenSchema = tokenObjectSchema.refine(orgsFitKind, ORGS_FIT_KIND);
/** The same check for a token read back from storage, where a newer version may have added fields. */
export const storedTokenSchema = tokenObjectSchema.passthrough().refine(orgsFitKind, ORGS_FIT_KIND);

export type Duration = number;
export type TokenKind = z.infer<typeof tokenKindSchema>;
export type Token = z.infer<typeof tokenSchema>;
export type TcpCheck = z.infer<typeof tcpCheckSchema>;
export type HttpCheck = z.infer<typeof httpCheckSchema>;
export type Concurrency = z.infer<typeof concurrencySchema>;
export type ServicePort = z.infer<typeof portSchema>;
export type Service = z.infer<typeof serviceSchema>;
export type Org = z.infer<typeof orgSchema>;
export type App = z.infer<typeof appSchema>;
export type MachineState = z.infer<typeof machineStateSchema>;
export type HealthStatus = z.infer<typeof healthStatusSchema>;
export type MachineHealth = z.infer<typeof machineHealthSchema>;
export type Machine = z.infer<typeof machineSchema>;
export type FlycastIp = z.infer<typeof flycastIpSchema>;
export type Peer = z.infer<typeof peerSchema>;
export type MachineConfig = z.infer<typeof machineConfigSchema>;
export type MachineConfigInput = z.input<typeof machineConfigSchema>;
export type MachineExit = z.infer<typeof machineExitSchema>;
export type Host = z.infer<typeof hostSchema>;
export type HostState = z.infer<typeof hostStateSchema>;
export type HostDriver = z.infer<typeof hostDriverSchema>;

/** Input shapes accepted by the store (it fills ids, addresses and timestamps). */
export const appInputSchema = appSchema;
export type AppInput = z.input<typeof appSchema>;

export const machineInputSchema = z
  .object({
    id: machineIdSchema.optional(),
    app: nameSchema,
    region: regionCodeSchema,
    /** Explicit 6PN address; derived from the host id and the machine id when absent. */
    address: z.string().optional(),
    /** Hand-registered machines: `started` (default) or `stopped`; run machines start `created`. */
    state: machineStateSchema.optional(),
    upstream: upstreamSchema.optional(),
    /** Run by this host (with `config`): the address takes the host's host id. */
    host: nameSchema.optional(),
    config: machineConfigSchema.optional(),
  })
  .strict();
export type MachineInput = z.input<typeof machineInputSchema>;

export const machinePatchSchema = z
  .object({
    state: machineStateSchema.optional(),
    health: machineHealthSchema.partial({ reason: true, changed_at: true }).optional(),
    region: regionCodeSchema.optional(),
    upstream: upstreamSchema.nullable().optional(),
    last_exit: machineExitSchema.optional(),
    restarts: z.number().int().nonnegative().optional(),
    state_reason: z.string().max(500).nullable().optional(),
    last_active_at: z.number().int().nonnegative().optional(),
  })
  .strict();
export type MachinePatch = z.input<typeof machinePatchSchema>;

export const peerInputSchema = z
  .object({
    name: peerNameSchema,
    org: nameSchema,
    region: regionCodeSchema,
    public_key: publicKeySchema,
  })
  .strict();
export type PeerInput = z.infer<typeof peerInputSchema>;

export const hostInputSchema = z
  .object({
    name: nameSchema,
    region: regionCodeSchema,
    /** Absent: the catalog keeps the one it has for this name, or allocates a free one. */
    host_id: hostIdSchema.optional(),
    driver: hostDriverSchema,
    session: z.string().min(1).max(200),
    wireguard: hostSchema.shape.wireguard,
  })
  .strict();
export type HostInput = z.input<typeof hostInputSchema>;

export const hostPatchSchema = z
  .object({
    state: hostStateSchema.optional(),
    heartbeat_at: z.number().int().nonnegative().optional(),
    wireguard: hostSchema.shape.wireguard,
  })
  .strict();
export type HostPatch = z.input<typeof hostPatchSchema>;

/** Everything in the catalog at one moment. */
export interface CatalogSnapshot {
  orgs: Org[];
  apps: App[];
  machines: Machine[];
  flycast: FlycastIp[];
  peers: Peer[];
  hosts: Host[];
}

export type EntityKind = 'org' | 'app' | 'machine' | 'flycast' | 'peer' | 'host';

/**
 * One change, as published to every node. `value` is the entity after the change (absent on
 * delete), so that a subscriber applies it without reading the store back.
 */
export type CatalogChange =
  | { kind: 'org'; op: 'put'; key: string; value: Org; at: number }
  | { kind: 'app'; op: 'put'; key: string; value: App; at: number }
  | { kind: 'machine'; op: 'put'; key: string; value: Machine; at: number }
  | { kind: 'flycast'; op: 'put'; key: string; value: FlycastIp; at: number }
  | { kind: 'peer'; op: 'put'; key: string; value: Peer; at: number }
  | { kind: 'host'; op: 'put'; key: string; value: Host; at: number }
  | { kind: EntityKind; op: 'del'; key: string; at: number };

/** Peers are keyed `<org>/<name>`: names are unique inside an org only. */
export const peerKey = (org: string, name: string): string => `${org}/${name}`;

/**
 * The table of roles a node can run, in start order. `sixpn up` starts every role its config
 * enables, the single-role commands (`sixpn proxy`, ...) start one role with its companions, and
 * the banner lists what started: all three read this one table.
 *
 * Order matters: a role may use the handle of a role started before it (ctx.roles), so the
 * control API, which reports on the gateway, starts last.
 */
import type { Config } from './config/index.js';
import type { RoleName, RoleStarter } from './role.js';

export interface RoleSpec {
  name: RoleName;
  /** For `sixpn help`. */
  summary: string;
  /** Whether `sixpn up` starts it for this config. */
  enabled(c: Readonly<Config>): boolean;
  /** Has its own `sixpn <name>` command. */
  command: boolean;
  /** Roles that command also starts, when their section enables them. */
  companions: RoleName[];
  /** Role code is loaded on demand, so that API commands of the CLI start fast. */
  load(): Promise<RoleStarter>;
}

export const ROLES: readonly RoleSpec[] = [
  {
    name: 'demo',
    summary: 'the demo machines of `npm start`',
    enabled: (c) => c.demo.enabled,
    command: false,
    companions: [],
    load: async () => (await import('./demo/index.js')).startDemoRole,
  },
  {
    name: 'health',
    summary: 'the active health checker',
    enabled: (c) => c.health.enabled,
    command: false,
    companions: [],
    load: async () => (await import('./health/index.js')).startHealthRole,
  },
  {
    name: 'proxy',
    summary: 'the Flycast proxy (with the health checker when [health] is enabled)',
    enabled: (c) => c.proxy.enabled,
    command: true,
    companions: ['health'],
    load: async () => (await import('./proxy/index.js')).startProxyRole,
  },
  {
    name: 'dns',
    summary: 'the .internal DNS server',
    enabled: (c) => c.dns.enabled,
    command: true,
    companions: [],
    load: async () => (await import('./dns/index.js')).startDnsRole,
  },
  {
    name: 'host',
    summary: 'the host agent: runs the machines placed on this server',
    enabled: (c) => c.host.enabled,
    command: false,
    companions: [],
    load: async () => (await import('./host/index.js')).startHostRole,
  },
  {
    name: 'mesh',
    summary: 'the WireGuard mesh between hosts (with the host role and the netns driver)',
    enabled: (c) => c.mesh.enabled && c.host.enabled && c.host.driver === 'netns',
    command: false,
    companions: [],
    load: async () => (await import('./mesh/index.js')).startMeshRole,
  },
  {
    name: 'gateway',
    summary: 'the WireGuard gateway',
    enabled: (c) => c.wireguard.enabled,
    command: true,
    companions: [],
    load: async () => (await import('./gateway/index.js')).startGatewayRole,
  },
  {
    name: 'control',
    summary: 'the control API and dashboard',
    enabled: (c) => c.control.enabled,
    command: true,
    companions: [],
    load: async () => (await import('./control/index.js')).startControlRole,
  },
];

/** The roles `sixpn up` runs for a config: each one its section enables. */
export function enabledRoles(c: Readonly<Config>): RoleName[] {
  return ROLES.filter((r) => r.enabled(c)).map((r) => r.name);
}

/** What `sixpn <name>` runs: the role, and its companions that the config enables. */
export function commandRoles(name: RoleName, c: Readonly<Config>): RoleName[] {
  const spec = ROLES.find((r) => r.name === name)!;
  const companions = spec.companions.filter((n) => ROLES.find((r) => r.name === n)!.enabled(c));
  return ROLES.filter((r) => r.name === name || companions.includes(r.name)).map((r) => r.name);
}

/** Starters for the named roles (all of them when no names are given). */
export async function loadStarters(names: readonly RoleName[] = ROLES.map((r) => r.name)): Promise<Partial<Record<RoleName, RoleStarter>>> {
  const specs = ROLES.filter((r) => names.includes(r.name));
  const loaded = await Promise.all(specs.map((r) => r.load()));
  return Object.fromEntries(specs.map((r, i) => [r.name, loaded[i]]));
}

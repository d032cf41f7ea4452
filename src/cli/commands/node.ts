/**
 * `sixpn up|control|proxy|dns|gateway --config FILE`: run a node with all its enabled roles, or
 * one role alone. Prints one "ready" line with each role's own description once everything
 * listens, then runs until SIGTERM/SIGINT (which drain).
 */
import type { Config } from '../../config/index.js';
import type { RoleName, RoleStarter } from '../../role.js';
import type { Command, CommandContext } from '../args.js';

/** Role code is loaded only by node commands, so API commands start fast. */
async function starters(): Promise<Record<RoleName, RoleStarter>> {
  const [control, demo, dns, gateway, health, proxy, host] = await Promise.all([
    import('../../control/index.js'),
    import('../../demo/index.js'),
    import('../../dns/index.js'),
    import('../../gateway/index.js'),
    import('../../health/index.js'),
    import('../../proxy/index.js'),
    import('../../host/index.js'),
  ]);
  return {
    demo: demo.startDemoRole,
    control: control.startControlRole,
    health: health.startHealthRole,
    proxy: proxy.startProxyRole,
    dns: dns.startDnsRole,
    gateway: gateway.startGatewayRole,
    host: host.startHostRole,
  };
}

/** The roles `sixpn up` runs for a config: each one its section enables. */
export function enabledRoles(c: Readonly<Config>): RoleName[] {
  const on: [RoleName, boolean][] = [
    ['demo', c.demo.enabled],
    ['control', c.control.enabled],
    ['health', c.health.enabled],
    ['proxy', c.proxy.enabled],
    ['dns', c.dns.enabled],
    ['host', c.host.enabled],
    ['gateway', c.wireguard.enabled],
  ];
  return on.filter(([, yes]) => yes).map(([name]) => name);
}

async function runNode(ctx: CommandContext, pick: (c: Readonly<Config>) => RoleName[]): Promise<number | void> {
  const { loadConfig } = await import('../../config/index.js');
  const { exitOnSignals, startNode } = await import('../../node.js');
  const loaded = loadConfig(ctx.values.config);
  const roles = pick(loaded.config);
  const node = await startNode(loaded, roles, await starters());
  exitOnSignals(node);
  const lines = node.roles.flatMap((r) => r.describe?.() ?? [r.name]);
  ctx.io.out(`sixpn ready: node ${loaded.config.node.name}, roles ${node.roles.map((r) => r.name).join(', ') || 'none'}\n${lines.map((l) => `  ${l}\n`).join('')}`);
  // Keep running: the listeners hold the event loop open; signals end the process.
  return new Promise<never>(() => undefined);
}

const nodeOptions: Command['options'] = ['config'];

export const nodeCommands: Command[] = [
  {
    words: ['up'],
    usage: 'sixpn up [--config FILE]',
    summary: 'Run every role the config enables (demo, control, health, proxy, dns, host, gateway)',
    options: nodeOptions,
    maxArgs: 0,
    run: (ctx) => runNode(ctx, enabledRoles),
  },
  {
    words: ['control'],
    usage: 'sixpn control --config FILE',
    summary: 'Run the control API alone',
    options: nodeOptions,
    maxArgs: 0,
    run: (ctx) => runNode(ctx, () => ['control']),
  },
  {
    words: ['proxy'],
    usage: 'sixpn proxy --config FILE',
    summary: 'Run the Flycast proxy (with the health checker when [health] is enabled)',
    options: nodeOptions,
    maxArgs: 0,
    run: (ctx) => runNode(ctx, (c) => (c.health.enabled ? ['health', 'proxy'] : ['proxy'])),
  },
  {
    words: ['dns'],
    usage: 'sixpn dns --config FILE',
    summary: 'Run the .internal DNS server alone',
    options: nodeOptions,
    maxArgs: 0,
    run: (ctx) => runNode(ctx, () => ['dns']),
  },
  {
    words: ['gateway'],
    usage: 'sixpn gateway --config FILE',
    summary: 'Run the WireGuard gateway alone',
    options: nodeOptions,
    maxArgs: 0,
    run: (ctx) => runNode(ctx, () => ['gateway']),
  },
];

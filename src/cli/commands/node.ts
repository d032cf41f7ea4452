/**
 * `sixpn up|control|proxy|dns|gateway --config FILE`: run a node with all its enabled roles, or
 * one role alone (src/roles.ts says which roles and in what order). Prints one "ready" line with
 * each role's own description once everything listens, then runs until SIGTERM/SIGINT (which drain).
 */
import type { Config } from '../../config/index.js';
import { holdYoungGeneration } from '../../proxy/memory.js';
import type { RoleName } from '../../role.js';
import { commandRoles, enabledRoles, ROLES } from '../../roles.js';
import type { Command, CommandContext } from '../args.js';

async function runNode(ctx: CommandContext, pick: (c: Readonly<Config>) => RoleName[]): Promise<number | void> {
  // Before the role code loads: loading it alone would grow the young generation to 2 x 4 MiB.
  // Only a node that runs the proxy keeps it small (the proxy role holds it too).
  holdYoungGeneration();
  const { loadConfig } = await import('../../config/index.js');
  const { exitOnSignals, startNode } = await import('../../node.js');
  const { loadStarters } = await import('../../roles.js');
  const loaded = loadConfig(ctx.values.config);
  const roles = pick(loaded.config);
  if (!roles.includes('proxy')) holdYoungGeneration(false);
  const node = await startNode(loaded, roles, await loadStarters(roles));
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
    summary: `Run every role the config enables (${ROLES.map((r) => r.name).join(', ')})`,
    options: nodeOptions,
    maxArgs: 0,
    run: (ctx) => runNode(ctx, enabledRoles),
  },
  ...ROLES.filter((r) => r.command).map(
    (r): Command => ({
      words: [r.name],
      usage: `sixpn ${r.name} --config FILE`,
      summary: `Run ${r.summary}${r.companions.length ? '' : ' alone'}`,
      options: nodeOptions,
      maxArgs: 0,
      run: (ctx) => runNode(ctx, (c) => commandRoles(r.name, c)),
    }),
  ),
];

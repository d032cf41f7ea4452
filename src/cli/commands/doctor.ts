/**
 * `sixpn doctor [--config FILE] [--json]`: checks this host for what the config's roles need
 * (src/doctor), prints each check with what to do when it fails, and exits 1 when one fails.
 */
import type { Command } from '../args.js';
import { json } from '../output.js';

export const doctorCommands: Command[] = [
  {
    words: ['doctor'],
    usage: 'sixpn doctor [--config FILE] [--json]',
    summary: "Check that this host has what the config's roles need (routes, sysctls, tools, ports, the store), with a fix for each failure",
    options: ['config', 'json'],
    maxArgs: 0,
    async run(ctx) {
      const { loadConfig } = await import('../../config/index.js');
      const { enabledRoles } = await import('../../roles.js');
      const { runDoctor, renderReport } = await import('../../doctor/index.js');
      const { CHECKS } = await import('../../doctor/checks.js');
      const loaded = loadConfig(ctx.values.config);
      const roles = enabledRoles(loaded.config);
      const report = await runDoctor(CHECKS, { config: loaded.config, roles });
      if (ctx.values.json) ctx.io.out(json({ node: loaded.config.node.name, roles, config: loaded.file, ...report }));
      else ctx.io.out(`sixpn doctor: node ${loaded.config.node.name}, roles ${roles.join(', ') || 'none'} (${loaded.file ?? 'built-in defaults; pass --config FILE'})\n${renderReport(report)}`);
      return report.failed ? 1 : 0;
    },
  },
];

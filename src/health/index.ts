/**
 * The health checker role: runs the active checks of the machines this node is responsible
 * for and writes their health transitions to the catalog (see src/health/README.md).
 */
import { localHostName, sourcePicker } from '../catalog/source.js';
import type { NodeContext, RunningRole } from '../role.js';
import { HealthChecker } from './checker.js';
import { describeScope, regionScope } from './plan.js';

export async function startHealthRole(ctx: NodeContext): Promise<RunningRole> {
  const cfg = ctx.config.health;
  const log = ctx.log.child({ module: 'health' });
  if (!cfg.enabled) {
    log.info('active health checks disabled ([health] enabled = false)');
    return { name: 'health', describe: () => ['health: disabled'], close: async () => undefined };
  }
  const scope = describeScope(cfg.regions, ctx.config.node.region, ctx.store.kind);
  const checker = new HealthChecker({
    store: ctx.store,
    view: ctx.view,
    log,
    fall: cfg.fall,
    rise: cfg.rise,
    maxConcurrent: cfg.max_concurrent_checks,
    inScope: regionScope(cfg.regions, ctx.config.node.region, ctx.store.kind),
    sourceFor: sourcePicker(ctx.view, localHostName(ctx.config)),
  });
  checker.start();
  const first = checker.stats();
  log.info({ scope, machines: first.machines, checks: first.checks, fall: cfg.fall, rise: cfg.rise }, `health checker started: ${first.machines} machines, ${first.checks} checks (${scope})`);
  return {
    name: 'health',
    describe() {
      const s = checker.stats();
      return [`health: ${s.checks} checks on ${s.machines} machines in ${scope} (fall ${cfg.fall}, rise ${cfg.rise})`];
    },
    async close() {
      checker.close();
    },
  };
}

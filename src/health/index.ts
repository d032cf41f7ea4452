/**
 * The health checker role: runs the active checks of the machines this node is responsible
 * for and writes their health transitions to the catalog (see src/health/README.md). On a
 * shared catalog it heartbeats a node liveness entry and takes over the checks of regions whose
 * checker died (./coverage.ts), handing them back when that checker returns.
 */
import { localHostName, sourcePicker } from '../catalog/source.js';
import { randomUUID } from 'node:crypto';
import type { NodeEntry } from '../catalog/types.js';
import type { NodeContext, RunningRole } from '../role.js';
import { HealthChecker } from './checker.js';
import { nodeAlive, takenOver } from './coverage.js';
import { describeScope, regionScope } from './plan.js';

export async function startHealthRole(ctx: NodeContext): Promise<RunningRole> {
  const cfg = ctx.config.health;
  const log = ctx.log.child({ module: 'health' });
  if (!cfg.enabled) {
    log.info('active health checks disabled ([health] enabled = false)');
    return { name: 'health', describe: () => ['health: disabled'], close: async () => undefined };
  }
  const scope = describeScope(cfg.regions, ctx.config.node.region, ctx.store.kind);
  const own = regionScope(cfg.regions, ctx.config.node.region, ctx.store.kind);
  /** Regions taken over from dead checker nodes -> the nodes that covered them. */
  let extra = new Map<string, string[]>();
  const checker = new HealthChecker({
    store: ctx.store,
    view: ctx.view,
    log,
    fall: cfg.fall,
    rise: cfg.rise,
    maxConcurrent: cfg.max_concurrent_checks,
    inScope: (region) => own(region) || extra.has(region),
    sourceFor: sourcePicker(ctx.view, localHostName(ctx.config)),
  });
  checker.start();
  const first = checker.stats();
  log.info({ scope, machines: first.machines, checks: first.checks, fall: cfg.fall, rise: cfg.rise }, `health checker started: ${first.machines} machines, ${first.checks} checks (${scope})`);

  // A lone node (embedded store) checks everything: no liveness to share.
  const liveness = ctx.store.kind === 'redis' ? startLiveness() : null;

  function startLiveness() {
    const self: NodeEntry = {
      name: ctx.config.node.name,
      region: ctx.config.node.region,
      state: 'up',
      session: randomUUID(),
      checks: cfg.regions.length ? [...cfg.regions] : [ctx.config.node.region],
      heartbeat_interval: cfg.node_heartbeat,
      heartbeat_at: Date.now(),
      started_at: Date.now(),
    };
    let failing = false;
    let stopped = false;
    const beat = async (): Promise<void> => {
      try {
        const before = await ctx.store.beatNode({ ...self, heartbeat_at: Date.now() });
        if (before && before.session !== self.session && nodeAlive(before, Date.now()) && before.heartbeat_at > self.started_at) {
          log.warn({ node: self.name, other_session: before.session }, `another process heartbeats as node ${self.name}: give each node its own [node] name`);
        }
        if (failing) log.info('node heartbeat written again');
        failing = false;
      } catch (err) {
        if (!failing) log.warn({ err: (err as Error).message }, 'cannot write the node heartbeat; other checkers may take over this node\'s regions meanwhile');
        failing = true;
      }
    };
    const recompute = (): void => {
      // While the node serves a snapshot or a diverged view, the liveness entries it sees are
      // frozen and its own heartbeats are refused: every other node would look dead. Keep the
      // regions as they are until the store holds this catalog again.
      if (stopped || (ctx.catalog !== undefined && ctx.catalog.state !== 'ok')) return;
      const regions = new Set<string>();
      for (const m of ctx.view.machines.values()) regions.add(m.region);
      const next = takenOver({ self, nodes: ctx.view.nodes.values(), regions, now: Date.now(), rankFrom: (r) => ctx.regions.rankFrom(r) });
      let changed = false;
      for (const [region, from] of next) {
        if (extra.has(region)) continue;
        changed = true;
        log.warn({ region, from }, `taking over the checks of region ${region}: ${from.length ? `its checker ${from.join(', ')} is silent` : 'no node checks it'}`);
      }
      for (const region of extra.keys()) {
        if (next.has(region)) continue;
        changed = true;
        log.info({ region }, `handing the checks of region ${region} back: its checker heartbeats again`);
      }
      extra = next;
      if (changed) checker.rescope();
    };
    const timer = setInterval(() => {
      void beat();
      recompute();
    }, cfg.node_heartbeat);
    timer.unref();
    const onChange = (c: { kind: string }): void => {
      if (c.kind === 'node' || c.kind === 'machine') recompute();
    };
    ctx.view.on('change', onChange);
    void beat();
    return {
      extra: () => [...extra.keys()],
      async stop() {
        stopped = true;
        clearInterval(timer);
        ctx.view.off('change', onChange);
        // A clean shutdown hands this node's regions over at once.
        await ctx.store.nodeDown(self.name, self.session).catch(() => undefined);
      },
    };
  }

  return {
    name: 'health',
    describe() {
      const s = checker.stats();
      const taken = liveness?.extra() ?? [];
      return [`health: ${s.checks} checks on ${s.machines} machines in ${scope}${taken.length ? ` (+ ${taken.join(', ')} taken over)` : ''} (fall ${cfg.fall}, rise ${cfg.rise})`];
    },
    async close() {
      await liveness?.stop();
      checker.close();
    },
  };
}

/**
 * The demo role for `npm start`: serves the machines of the `[demo] apps` in-process (see
 * ./machines.ts) and points each machine's catalog `upstream` at its server before the proxy
 * starts, so the Flycast proxy dials them on loopback without root or host network changes.
 * Its banner lines tell a newcomer what to try (./try.ts).
 */
import { fileURLToPath } from 'node:url';
import type { CatalogChange, Machine } from '../catalog/types.js';
import type { NodeContext, RunningRole } from '../role.js';
import { startDemoMachine, type DemoKind, type DemoMachine } from './machines.js';
import { formatTry, tryCommands } from './try.js';

export interface DemoRole extends RunningRole {
  /** Running demo machines by machine id. */
  machines(): ReadonlyMap<string, DemoMachine>;
}

const UPSTREAM_WAIT_MS = 5_000;

export async function startDemoRole(ctx: NodeContext): Promise<DemoRole> {
  const { config, view, store } = ctx;
  const log = ctx.log.child({ module: 'demo' });
  const wanted = new Set(config.demo.apps);
  for (const app of wanted) {
    if (!view.apps.has(app)) log.warn({ app }, 'demo app is not in the catalog (yet); its machines are served once they appear');
  }
  const running = new Map<string, DemoMachine>();
  const starting = new Map<string, Promise<void>>();
  let closed = false;

  const kindOf = (app: string): DemoKind => (view.apps.get(app)?.services.some((s) => s.protocol === 'http') ? 'http' : 'tcp');

  function serve(m: Machine): Promise<void> {
    const busy = starting.get(m.id);
    if (busy) return busy;
    const p = (async () => {
      const dm = await startDemoMachine({ machine: m, city: ctx.regions.get(m.region)?.city ?? null }, kindOf(m.app), config.demo.host);
      if (closed) {
        await dm.close();
        return;
      }
      running.set(m.id, dm);
      try {
        await store.updateMachine(m.id, { upstream: dm.upstream });
      } catch (err) {
        running.delete(m.id);
        await dm.close();
        throw err;
      }
      log.info({ machine: m.id, app: m.app, region: m.region, kind: dm.kind, upstream: dm.upstream }, 'demo machine serving');
    })().finally(() => starting.delete(m.id));
    starting.set(m.id, p);
    return p;
  }

  async function retire(id: string): Promise<void> {
    const dm = running.get(id);
    if (!dm) return;
    running.delete(id);
    await dm.close();
    log.info({ machine: id }, 'demo machine removed');
  }

  const onChange = (c: CatalogChange): void => {
    if (closed || c.kind !== 'machine') return;
    if (c.op === 'del') {
      void retire(c.key);
      return;
    }
    // Machines a host runs are the host's: the demo serves only those registered by hand.
    if (!wanted.has(c.value.app) || c.value.host !== undefined || running.has(c.key) || starting.has(c.key)) return;
    serve(c.value).catch((err: unknown) => log.error({ err, machine: c.key }, 'cannot start demo machine'));
  };

  const initial = [...wanted].flatMap((app) => [...view.machinesOf(app)].filter((m) => m.host === undefined));
  try {
    await Promise.all(initial.map((m) => serve(m)));
    // The proxy starts right after this role and reads upstreams from the view: wait until
    // the view shows every one (immediate with the embedded store; a round trip with Redis).
    const deadline = Date.now() + UPSTREAM_WAIT_MS;
    while ([...running.values()].some((dm) => view.machines.get(dm.id)?.upstream !== dm.upstream)) {
      if (Date.now() > deadline) throw new Error('timed out waiting for demo machine upstreams to reach the catalog view');
      await new Promise((r) => setTimeout(r, 20));
    }
  } catch (err) {
    closed = true;
    await Promise.all([...running.values()].map((dm) => dm.close()));
    throw err;
  }
  view.on('change', onChange);

  // Scale to zero: a machine this node's host runs, made once its host is in the catalog (the
  // host role starts after this one). Stopped with the demo (stop_on_exit), started again by the
  // first Flycast caller of the next run.
  const hostName = config.host.name || config.node.name;
  const program = fileURLToPath(new URL('./machine-main.js', import.meta.url));
  let giving = false;
  const giveMachines = async (): Promise<void> => {
    if (closed || giving || !config.host.enabled || !view.hosts.has(hostName)) return;
    giving = true;
    try {
      for (const app of config.demo.scale_to_zero) {
        if (!view.apps.has(app) || [...view.machinesOf(app)].length > 0) continue;
        const m = await store.registerMachine({ app, region: config.host.region || config.node.region, host: hostName, config: { cmd: [process.execPath, program] } }, { hostId: ctx.hostId });
        log.info({ machine: m.id, app, host: hostName }, 'demo: gave a scale-to-zero app a machine run by this host');
      }
    } finally {
      giving = false;
    }
  };
  const onHost = (c: CatalogChange): void => {
    if (c.kind === 'host' && c.op === 'put' && c.key === hostName) giveMachines().catch((err: unknown) => log.error({ err }, 'demo: cannot give a scale-to-zero app its machine'));
  };
  if (config.demo.scale_to_zero.length > 0) {
    view.on('change', onHost);
    void giveMachines().catch((err: unknown) => log.error({ err }, 'demo: cannot give a scale-to-zero app its machine'));
  }

  const regions = [...new Set(initial.map((m) => m.region))].sort();
  return {
    name: 'demo',
    machines: () => running,
    describe() {
      const lines = [`demo: ${running.size} machines of ${[...wanted].join(', ')} in ${regions.join(', ')}, on ${config.demo.host}`];
      return [...lines, ...formatTry(tryCommands(config, view, ctx.regions))];
    },
    async close() {
      if (closed) return;
      closed = true;
      view.off('change', onChange);
      view.off('change', onHost);
      await Promise.allSettled([...starting.values()]);
      await Promise.all([...running.values()].map((dm) => dm.close()));
      running.clear();
    },
  };
}

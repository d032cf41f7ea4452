/**
 * Wires a node together for `sixpn up` (and the single-role commands): loads the region
 * table, opens the store, seeds it from config, opens the read view, then starts the roles in
 * the order of the role table (src/roles.ts). SIGTERM drains (stop accepting, let in-flight
 * work finish up to the proxy's drain_timeout) and exits 0; SIGINT does the same, a second
 * SIGINT exits at once.
 */
import { parseHostId } from './addressing/index.js';
import { openStore } from './catalog/open.js';
import { seedCatalog } from './catalog/seed.js';
import { CatalogView } from './catalog/view.js';
import type { LoadedConfig } from './config/index.js';
import { ConfigError } from './errors.js';
import { watchCatalog } from './catalog/watch.js';
import { createRootLogger, flushLogs } from './observe/log.js';
import { loadRegionTable } from './regions/load.js';
import { ROLES } from './roles.js';
import type { NodeContext, RoleName, RoleStarter, RunningRole } from './role.js';

export interface RunningNode {
  ctx: NodeContext;
  roles: RunningRole[];
  /** Drain then close everything; idempotent. */
  stop(): Promise<void>;
}

/** Starts the named roles, in the order of the role table (src/roles.ts), with `starters` supplying each role's code. */
export async function startNode(loaded: LoadedConfig, wanted: RoleName[], starters: Partial<Record<RoleName, RoleStarter>>): Promise<RunningNode> {
  const { config } = loaded;
  const log = createRootLogger({ level: config.log.level, pretty: config.log.pretty });
  const regions = loadRegionTable(config.regions.file, config.regions.rtt);
  if (!regions.has(config.node.region)) throw new ConfigError(`node.region: unknown region ${config.node.region}`);
  const hostId = parseHostId(config.node.host_id)!;
  const catalogLog = log.child({ module: 'catalog' });
  const store = await openStore(config.catalog, regions.codes, catalogLog, config.node.name);
  let view: CatalogView;
  try {
    // Seeding writes: only into the catalog this node serves (not into a wiped or foreign store).
    if (store.state === 'ok') await seedCatalog(store, { orgs: config.orgs, apps: config.apps, machines: config.machines, ips: config.ips }, hostId);
    else catalogLog.warn({ catalog_state: store.state }, 'config seed skipped: the catalog store does not hold this node\'s catalog now');
    view = await CatalogView.open(store);
    store.attach(view);
  } catch (err) {
    await store.close();
    throw err;
  }
  view.on('error', (err) => log.error({ err, module: 'catalog' }, 'catalog view reload failed'));
  // Every role, not only the admin listener, logs and counts the catalog changes it sees.
  watchCatalog(view, log);
  const ctx: NodeContext = { config, baseDir: loaded.baseDir, store, catalog: store, view, regions, log, hostId, roles: new Map() };
  const started: RunningRole[] = [];
  try {
    for (const { name } of ROLES) {
      if (!wanted.includes(name)) continue;
      const starter = starters[name];
      if (!starter) throw new ConfigError(`role ${name} is not available in this build`);
      const role = await starter(ctx);
      started.push(role);
      ctx.roles.set(name, role);
    }
  } catch (err) {
    for (const r of started.reverse()) await r.close().catch(() => undefined);
    view.close();
    await store.close();
    throw err;
  }

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      const deadline = Date.now() + config.proxy.drain_timeout;
      await Promise.all(started.map((r) => r.drain?.(deadline).catch((err: unknown) => log.warn({ err, role: r.name }, 'drain failed'))));
      for (const r of [...started].reverse()) await r.close().catch((err: unknown) => log.warn({ err, role: r.name }, 'close failed'));
      view.close();
      await store.close();
      flushLogs();
    })());
  return { ctx, roles: started, stop };
}

/** Installs SIGTERM/SIGINT handlers that drain and exit 0. */
export function exitOnSignals(node: RunningNode): void {
  // A node runs until it is told to stop, even while it has nothing to serve (an empty catalog
  // whose addresses come later): without a handle of its own the event loop could run dry and
  // the process exit 0 right after its ready line.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let signals = 0;
  let firstAt = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    // `npm start` forwards the terminal's Ctrl-C to a child that already got it from its
    // process group: a repeat within a second is the same keypress, not an impatient second one.
    if (signals > 1 && sig === 'SIGINT' && Date.now() - firstAt > 1000) process.exit(130);
    if (signals > 1) return;
    firstAt = Date.now();
    // Shutdown must not depend on logging: a log call that throws (stdout gone) is skipped.
    const say = (fn: () => void): void => {
      try {
        fn();
      } catch {
        // nothing to tell anyone
      }
    };
    say(() => node.ctx.log.info({ signal: sig }, 'draining and shutting down'));
    node.stop().then(
      () => {
        clearInterval(keepAlive);
        process.exit(0);
      },
      (err: unknown) => {
        say(() => node.ctx.log.error({ err }, 'shutdown failed'));
        flushLogs();
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

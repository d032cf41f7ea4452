/**
 * A proxy worker process (forked by ./workers.ts): runs the ordinary proxy role on a catalog view
 * relayed from the primary, with its share of every service's limits. It obeys the primary only:
 * signals to the process group (Ctrl-C, SIGTERM) are the primary's to act on, and a primary that
 * went away (the IPC channel closed) ends the worker. It answers the primary's metrics requests
 * with its data path's series and tells it when its passive ejections change (./worker-reports.ts).
 */
import type { CatalogStore, StoreListener } from '../catalog/store.js';
import type { CatalogSnapshot, Machine } from '../catalog/types.js';
import { ERROR_CLASSES, SixpnError, StoreUnavailableError } from '../errors.js';
import { CatalogView } from '../catalog/view.js';
import type { Config } from '../config/index.js';
import { createRootLogger, flushLogs, type Logger } from '../observe/log.js';
import { registry } from '../observe/metrics.js';
import { loadRegionTable } from '../regions/load.js';
import type { NodeContext } from '../role.js';
import { startProxyRole, type ProxyRole } from './index.js';
import type { FromWorker, ToWorker } from './workers.js';

const tell = (m: FromWorker): void => {
  if (process.connected) process.send!(m);
};

/** A typed error again from its code, as the primary's store raised it (a compare-and-set conflict stays a ConflictError). */
function errorFrom(e: { code: string; message: string }): Error {
  const Cls = ERROR_CLASSES.find((c) => new c('').code === e.code);
  return Cls ? new Cls(e.message) : new SixpnError(e.message);
}

/**
 * The part of a store a worker uses: reads (a CatalogView) fed by the primary, and the one write
 * autostart and autostop make, `updateMachine`, done by the primary's store.
 */
class RelayStore {
  private readonly listeners = new Set<StoreListener>();
  private readonly pending = new Map<number, { resolve: (s: CatalogSnapshot) => void; reject: (e: Error) => void }>();
  private readonly writes = new Map<number, { resolve: (m: Machine) => void; reject: (e: Error) => void }>();
  private next = 0;

  updateMachine(...args: Parameters<CatalogStore['updateMachine']>): Promise<Machine> {
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      if (!process.connected) return reject(new StoreUnavailableError('the proxy primary is gone'));
      this.writes.set(id, { resolve, reject });
      tell({ t: 'store', id, op: 'updateMachine', args });
    });
  }

  subscribe(l: StoreListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  snapshot(): Promise<CatalogSnapshot> {
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      tell({ t: 'snapshot', id });
    });
  }

  onMessage(m: ToWorker): void {
    if (m.t === 'event') for (const l of this.listeners) l(m.e);
    else if (m.t === 'snapshot') {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error !== undefined) p?.reject(new Error(m.error));
      else p?.resolve(m.snap as CatalogSnapshot);
    } else if (m.t === 'store') {
      const w = this.writes.get(m.id);
      this.writes.delete(m.id);
      if (m.error !== undefined) w?.reject(errorFrom(m.error));
      else w?.resolve(m.machine as Machine);
    }
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}

let role: ProxyRole | null = null;
let log: Logger | null = null;
const relay = new RelayStore();

/**
 * The families a worker reports: what its data path counts. Its catalog view is a copy of the
 * primary's, which counts for it, and the process metrics (process_*, nodejs_*) are not enabled
 * in workers: the node's describe the primary.
 */
const REPORTED = /^sixpn_(?:proxy|autostart|autostop)_/;

function answerMetrics(m: Extract<ToWorker, { t: 'metrics' }>): void {
  const names = m.names;
  registry.snapshot((n) => REPORTED.test(n) && (names === undefined || names.includes(n))).then(
    (snap) => tell({ t: 'metrics', id: m.id, snap }),
    // Unanswered, the primary counts this worker with its last answer.
    (err: unknown) => log?.error({ err }, 'reading the metrics for the primary failed'),
  );
}

async function start(m: Extract<ToWorker, { t: 'init' }>): Promise<void> {
  const config = m.config as Config;
  log = createRootLogger({ level: config.log.level, pretty: config.log.pretty }).child({ worker: m.index });
  const regions = loadRegionTable(config.regions.file, config.regions.rtt);
  const view = await CatalogView.open(relay as unknown as CatalogStore);
  const ctx: NodeContext = { config, baseDir: m.baseDir, store: relay as unknown as CatalogStore, view, regions, log, hostId: m.hostId, roles: new Map() };
  role = await startProxyRole(ctx, { share: { index: m.index, count: m.count }, onEjections: (list) => tell({ t: 'ejections', list }) });
  tell({ t: 'ready', describe: role.describe?.() ?? [] });
}

async function stop(): Promise<void> {
  await role?.close();
  flushLogs();
  process.exit(0);
}

process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
process.on('disconnect', () => void stop());
process.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'init':
      start(m).catch((err: unknown) => {
        tell({ t: 'failed', error: (err as Error).message });
        process.exit(1);
      });
      return;
    case 'metrics':
      answerMetrics(m);
      return;
    case 'forget':
      role?.forgetMachine(m.machine, m.abort && Object.assign(new Error(m.abort.message), m.abort.code === undefined ? {} : { code: m.abort.code }));
      return;
    case 'drain':
      void role?.drain?.(m.deadline).then(() => tell({ t: 'drained' }));
      return;
    case 'close':
      void stop();
      return;
    default:
      relay.onMessage(m);
  }
});
// Messages sent before this module ran (it loads asynchronously) would be lost: ask for init now.
tell({ t: 'hello' });

/**
 * `[proxy] workers = N`: the proxy's data path in N processes (node:cluster) sharing its
 * listening sockets; the node's other roles (catalog, control, health, DNS) stay in the primary.
 *
 *   primary  forks the workers, relays the catalog to them (a snapshot on request, then every
 *            store event, in order, over the IPC channel), passes drain/close on, and restarts a
 *            worker that died;
 *   worker   opens a CatalogView on that relay (./worker.ts) and runs the ordinary proxy role
 *            with `workers = 1` and its share of every service's limits.
 *
 * hard_limit stays a hard cap for the node as a whole by static shares: worker i of N may hold
 * `share(hard_limit, i, N)` (./share.ts) units of a machine (floor(hard/N), plus one for the first hard % N
 * workers), and the shares add up to exactly hard_limit, so no interleaving of the workers can go
 * above it. soft_limit is shared the same way (at least 1). The price: a worker whose share is
 * used up queues or refuses while another may have room (at most N - 1 units of headroom lost).
 * Connections are handed to workers round-robin by the primary (node's default on Linux), so
 * shares are used evenly.
 *
 * The node reports as one (./worker-reports.ts): a read of the primary's registry (/metrics, the
 * dashboard, /v1/status) asks every worker for its series, in parallel, and sums them in; a
 * worker tells the primary its passive ejections when they change; forgetMachine is passed on.
 * Workers do nothing for it per request: they answer when asked.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Ejection } from '../balancer/index.js';
import type { CatalogChange } from '../catalog/types.js';
import type { CatalogStore, StoreEvent } from '../catalog/store.js';
import type { SixpnError } from '../errors.js';
import { registry, type RegistrySnapshot } from '../observe/metrics.js';
import type { NodeContext } from '../role.js';
import { unionEjections, WorkerSlot } from './worker-reports.js';


/** Messages between the primary and a worker. */
export type ToWorker =
  | { t: 'init'; config: unknown; baseDir: string; hostId: number; index: number; count: number }
  | { t: 'snapshot'; id: number; snap?: unknown; error?: string }
  | { t: 'event'; e: StoreEvent }
  | { t: 'metrics'; id: number; names?: string[] }
  | { t: 'store'; id: number; machine?: unknown; error?: { code: string; message: string } }
  | { t: 'forget'; machine: string; abort?: { message: string; code?: string } }
  | { t: 'drain'; deadline: number }
  | { t: 'close' };
export type FromWorker =
  | { t: 'hello' }
  | { t: 'ready'; describe: string[] }
  | { t: 'snapshot'; id: number }
  | { t: 'metrics'; id: number; snap: RegistrySnapshot }
  | { t: 'store'; id: number; op: 'updateMachine'; args: Parameters<CatalogStore['updateMachine']> }
  | { t: 'ejections'; list: Ejection[] }
  | { t: 'drained' }
  | { t: 'failed'; error: string };

export interface ProxyWorkers {
  describe(): string[];
  /** Machines some worker's passive ejection keeps out now (one entry per machine). */
  ejections(): Ejection[];
  /** Every worker closes the machine's pooled connections (with `abort`, the busy ones too). */
  forgetMachine(id: string, abort?: Error): void;
  drain(deadline: number): Promise<void>;
  close(): Promise<void>;
}

const WORKER_ENTRY = fileURLToPath(new URL('./worker.js', import.meta.url));

/** Forks `count` proxy workers and resolves once every one of them listens. */
export async function startProxyWorkers(ctx: NodeContext, count: number): Promise<ProxyWorkers> {
  const log = ctx.log.child({ module: 'proxy' });
  cluster.setupPrimary({ exec: WORKER_ENTRY, args: [], serialization: 'advanced' });
  const workers = new Map<number, Worker>();
  let lines: string[] = [];
  let closing = false;
  const config = { ...ctx.config, proxy: { ...ctx.config.proxy, workers: 1 } };
  // A worker's channel may close between isConnected() and the write (the worker is going): the
  // write then fails with EPIPE, which must not end the node. Its exit is handled on 'exit'.
  const send = (w: Worker, m: ToWorker): void => {
    if (w.isConnected()) w.send(m, (err: Error | null) => err && log.warn({ err: err.message, pid: w.process.pid, t: m.t }, 'message to a proxy worker not sent'));
  };
  /** Workers that said ready: a message sent to one still loading is lost, so drain waits for this. */
  const ready = new WeakSet<Worker>();
  let drainDeadline: number | null = null;
  const unsubscribe = ctx.store.subscribe((e) => {
    for (const w of workers.values()) send(w, { t: 'event', e });
  });
  const slots = Array.from({ length: count }, () => new WorkerSlot());
  const removeSources = slots.map((slot) => registry.addRemote(slot));
  // A deleted machine's series leave each worker's registry; the slots' bases follow.
  const onChange = (c: CatalogChange): void => {
    if (c.kind === 'machine' && c.op === 'del') for (const slot of slots) slot.forgetMachine(c.key);
  };
  ctx.view.on('change', onChange);
  const stopReports = (): void => {
    ctx.view.off('change', onChange);
    for (const remove of removeSources) remove();
  };

  const fork = (index: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const w = cluster.fork({ SIXPN_PROXY_WORKER: String(index) });
      workers.set(index, w);
      const slot = slots[index]!;
      w.on('message', (m: FromWorker) => {
        if (m.t === 'metrics') slot.answer(m.id, m.snap);
        else if (m.t === 'ejections') slot.ejections = m.list;
        else if (m.t === 'hello') {
          // From hello on the worker hears requests (one sent before would be lost, and waited for).
          slot.attach((id, names) => send(w, { t: 'metrics', id, ...(names ? { names: [...names] } : {}) }));
          send(w, { t: 'init', config, baseDir: ctx.baseDir, hostId: ctx.hostId, index, count });
        } else if (m.t === 'snapshot') {
          ctx.store.snapshot().then(
            (snap) => send(w, { t: 'snapshot', id: m.id, snap }),
            (err: Error) => send(w, { t: 'snapshot', id: m.id, error: err.message }),
          );
        } else if (m.t === 'store') {
          // Autostart and autostop in a worker write machine states (a start, a stop, activity)
          // through the primary's store: the worker's own is a read-only relay of the catalog.
          ctx.store.updateMachine(...m.args).then(
            (machine) => send(w, { t: 'store', id: m.id, machine }),
            (err: unknown) => send(w, { t: 'store', id: m.id, error: { code: (err as SixpnError).code ?? 'SIXPN_INTERNAL', message: (err as Error).message } }),
          );
        } else if (m.t === 'ready') {
          ready.add(w);
          if (index === 0) lines = m.describe;
          // Started again while the node drains (SIGTERM during a restart): it drains too.
          if (drainDeadline !== null) send(w, { t: 'drain', deadline: drainDeadline });
          resolve();
        } else if (m.t === 'failed') reject(new Error(`proxy worker ${index}: ${m.error}`));
      });
      w.on('exit', (code, signal) => {
        if (workers.get(index) === w) workers.delete(index);
        slot.detach();
        if (!ready.has(w)) return reject(new Error(`proxy worker ${index} exited before it was ready (${signal ?? code})`));
        if (closing) return;
        log.error({ worker: index, code, signal }, 'proxy worker died; starting another');
        fork(index).catch((err: unknown) => log.error({ err, worker: index }, 'restarting a proxy worker failed'));
      });
    });

  try {
    await Promise.all(Array.from({ length: count }, (_, i) => fork(i)));
  } catch (err) {
    closing = true;
    unsubscribe();
    stopReports();
    for (const w of workers.values()) w.kill();
    throw err;
  }
  log.info({ workers: count }, 'proxy workers listening');

  const waitExit = (w: Worker, ms: number): Promise<void> =>
    new Promise((resolve) => {
      if (w.isDead()) return resolve();
      const t = setTimeout(() => {
        w.process.kill('SIGKILL');
        resolve();
      }, ms);
      w.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });

  return {
    describe: () => [...lines, `proxy: ${count} workers (node:cluster), each with its share of every hard_limit`],
    ejections: () => unionEjections(slots, Date.now()),
    forgetMachine(id, abort) {
      // An Error does not cross the IPC channel whole: its message and code do, which is what
      // the requests that fail with it report.
      const code = (abort as NodeJS.ErrnoException | undefined)?.code;
      const m: ToWorker = { t: 'forget', machine: id, ...(abort ? { abort: { message: abort.message, ...(code ? { code } : {}) } } : {}) };
      for (const w of workers.values()) send(w, m);
    },
    async drain(deadline: number) {
      closing = true;
      drainDeadline = deadline;
      await Promise.all(
        [...workers.values()].map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.isDead()) return resolve();
              const done = (): void => {
                clearTimeout(t);
                resolve();
              };
              const t = setTimeout(done, Math.max(0, deadline - Date.now()) + 1_000);
              w.on('message', (m: FromWorker) => m.t === 'drained' && done());
              w.once('exit', done);
              if (ready.has(w)) send(w, { t: 'drain', deadline });
            }),
        ),
      );
    },
    async close() {
      closing = true;
      unsubscribe();
      stopReports();
      await Promise.all(
        [...workers.values()].map((w) => {
          send(w, { t: 'close' });
          return waitExit(w, 3_000);
        }),
      );
    },
  };
}

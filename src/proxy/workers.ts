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
 * `share(hard_limit, i, N)` units of a machine (floor(hard/N), plus one for the first hard % N
 * workers), and the shares add up to exactly hard_limit, so no interleaving of the workers can go
 * above it. soft_limit is shared the same way (at least 1). The price: a worker whose share is
 * used up queues or refuses while another may have room (at most N - 1 units of headroom lost).
 * Connections are handed to workers round-robin by the primary (node's default on Linux), so
 * shares are used evenly.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { StoreEvent } from '../catalog/store.js';
import type { NodeContext } from '../role.js';

export { share } from './share.js';

/** Messages between the primary and a worker. */
export type ToWorker =
  | { t: 'init'; config: unknown; baseDir: string; hostId: number; index: number; count: number }
  | { t: 'snapshot'; id: number; snap?: unknown; error?: string }
  | { t: 'event'; e: StoreEvent }
  | { t: 'drain'; deadline: number }
  | { t: 'close' };
export type FromWorker = { t: 'hello' } | { t: 'ready'; describe: string[] } | { t: 'snapshot'; id: number } | { t: 'drained' } | { t: 'failed'; error: string };

export interface ProxyWorkers {
  describe(): string[];
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
  const send = (w: Worker, m: ToWorker): void => {
    if (w.isConnected()) w.send(m);
  };
  const unsubscribe = ctx.store.subscribe((e) => {
    for (const w of workers.values()) send(w, { t: 'event', e });
  });

  const fork = (index: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const w = cluster.fork({ SIXPN_PROXY_WORKER: String(index) });
      workers.set(index, w);
      let ready = false;
      w.on('message', (m: FromWorker) => {
        if (m.t === 'hello') send(w, { t: 'init', config, baseDir: ctx.baseDir, hostId: ctx.hostId, index, count });
        else if (m.t === 'snapshot') {
          ctx.store.snapshot().then(
            (snap) => send(w, { t: 'snapshot', id: m.id, snap }),
            (err: Error) => send(w, { t: 'snapshot', id: m.id, error: err.message }),
          );
        } else if (m.t === 'ready') {
          ready = true;
          if (index === 0) lines = m.describe;
          resolve();
        } else if (m.t === 'failed') reject(new Error(`proxy worker ${index}: ${m.error}`));
      });
      w.on('exit', (code, signal) => {
        if (workers.get(index) === w) workers.delete(index);
        if (!ready) return reject(new Error(`proxy worker ${index} exited before it was ready (${signal ?? code})`));
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
    async drain(deadline: number) {
      closing = true;
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
              send(w, { t: 'drain', deadline });
            }),
        ),
      );
    },
    async close() {
      closing = true;
      unsubscribe();
      await Promise.all(
        [...workers.values()].map((w) => {
          send(w, { t: 'close' });
          return waitExit(w, 3_000);
        }),
      );
    },
  };
}

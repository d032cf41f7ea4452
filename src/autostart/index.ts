/**
 * Scale to zero over Flycast: autostart (./waker.ts) brings machines up when callers need them,
 * autostop (./autostop.ts) stops or suspends idle ones; the apps' fly.toml services say which
 * (./policy.ts), `[autostart]` says how (./config.ts). Run by the proxy role, which owns the
 * traffic both are about:
 *
 *   const autostart = startAutostart({ config: ctx.config.autostart, store, view, balancer, ... });
 *   upstream.autostart = autostart; // the seam: Upstream.acquire calls wake(), nudge(), warming()
 *   ...
 *   await autostart.close();
 */
import type { Balancer } from '../balancer/index.js';
import type { CatalogStore } from '../catalog/store.js';
import type { Machine, Service } from '../catalog/types.js';
import type { CatalogView } from '../catalog/view.js';
import type { StartFailedError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { Autostop } from './autostop.js';
import type { AutostartConfig, Hook } from './config.js';
import { Waker } from './waker.js';

export type { AutostartConfig } from './config.js';

/**
 * What the proxy's upstream layer calls at its acquire step (src/proxy/upstream.ts declares the
 * seam as MachineStarter; this is the same shape). Both are cheap
 * when there is nothing to do: `wake` returns null at once for an app that does not autostart,
 * `nudge` reads a cached answer.
 */
export interface MachineStarter {
  /** No started machine of `app` has room for this caller: wait for one to be started (null: none can be). */
  wake(app: string, service: Service): Promise<Machine | StartFailedError | null>;
  /** A start of this machine this node is waiting on (started, not yet accepting); null: none. */
  warming(machine: string): Promise<unknown> | null;
  /** The caller was served farther away than `nearerThan` (a region rank; Infinity: over soft_limit): start one for the next callers. */
  nudge(app: string, service: Service, nearerThan: number): void;
}

export interface Autostart extends MachineStarter {
  readonly waker: Waker;
  readonly autostop: Autostop;
  describe(): string;
  close(): Promise<void>;
}

export interface AutostartOptions {
  config: Readonly<AutostartConfig>;
  store: CatalogStore;
  view: CatalogView;
  balancer: Balancer;
  /** This proxy's region order: rank 0 is its own region. */
  rank(region: string): number;
  connectTimeoutMs: number;
  nodeName: string;
  log: Logger;
}

export function startAutostart(o: AutostartOptions): Autostart {
  const log = o.log.child({ module: 'autostart' });
  const hooks = new Map<string, Hook>(o.config.hooks.map((h) => [h.app, h]));
  const waker = new Waker({ store: o.store, view: o.view, rank: o.rank, startTimeoutMs: o.config.start_timeout, connectTimeoutMs: o.connectTimeoutMs, hooks, nodeName: o.nodeName, log });
  const autostop = new Autostop({ store: o.store, view: o.view, balancer: o.balancer, idlePeriodMs: o.config.idle_period, checkIntervalMs: o.config.check_interval, hookTimeoutMs: o.config.start_timeout, hooks, waking: (id) => waker.isWaking(id), log });
  autostop.start();
  return {
    waker,
    autostop,
    wake: (app, service) => waker.wake(app, service),
    nudge: (app, service, nearerThan) => waker.nudge(app, service, nearerThan),
    warming: (machine) => waker.warming(machine),
    describe: () =>
      `autostart: start_timeout ${o.config.start_timeout} ms; autostop after ${o.config.idle_period} ms idle, checked every ${o.config.check_interval} ms${hooks.size ? `; hooks for ${[...hooks.keys()].join(', ')}` : ''}`,
    async close() {
      waker.close();
      await autostop.close();
    },
  };
}

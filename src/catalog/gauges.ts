/**
 * Catalog-derived gauges, computed from a node's view when /metrics is scraped (no work
 * between scrapes): machines per app by what they can do for traffic, and each machine's
 * region. Alert rules need the first because health series exist only for machines being
 * checked: an app whose machines are all stopped has no health series at all, yet it has no
 * machine to serve it. The second lets PromQL sum per-machine traffic by region (join on
 * app and machine), which the proxy's own metrics do not label.
 */
import type { CatalogView } from './view.js';
import type { Machine } from './types.js';
import { gauge } from '../observe/metrics.js';

/**
 * `serving`: started and not unhealthy (what the balancer may pick); `unhealthy`: started but
 * failing its checks; `not_started`: any other state (stopped, and the lifecycle states).
 */
export type MachineServing = 'serving' | 'unhealthy' | 'not_started';

export function servingStatus(m: Machine): MachineServing {
  if (m.state !== 'started') return 'not_started';
  return m.health.status === 'unhealthy' ? 'unhealthy' : 'serving';
}

const STATUSES: readonly MachineServing[] = ['serving', 'unhealthy', 'not_started'];
let current: CatalogView | null = null;

const appMachines = gauge({
  name: 'sixpn_catalog_app_machines',
  help: 'Machines of each app in this node\'s catalog view, by status: serving (started, not unhealthy), unhealthy (started, failing checks), not_started',
  labelNames: ['app', 'status'] as const,
  collect() {
    this.reset();
    const view = current;
    if (!view) return;
    for (const app of view.apps.keys()) {
      const n: Record<MachineServing, number> = { serving: 0, unhealthy: 0, not_started: 0 };
      for (const m of view.machinesOf(app)) n[servingStatus(m)]++;
      for (const status of STATUSES) this.set({ app, status }, n[status]);
    }
  },
});

const machineInfo = gauge({
  name: 'sixpn_catalog_machine_info',
  help: 'Always 1, one series per machine in this node\'s catalog view: join on app and machine to get its region',
  labelNames: ['app', 'machine', 'region'] as const,
  collect() {
    this.reset();
    if (!current) return;
    for (const m of current.machines.values()) this.set({ app: m.app, machine: m.id, region: m.region }, 1);
  },
});

/** Exports `view`'s gauges on this process's /metrics (the admin listener calls it). */
export function exportCatalogGauges(view: CatalogView): void {
  current = view;
  void appMachines;
  void machineInfo;
}

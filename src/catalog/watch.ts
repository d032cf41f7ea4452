/**
 * Watches a node's catalog view: one JSON log line per applied change, the change counter by
 * kind, and the change lag (origin time to applied here), which shows how stale this node's
 * routing can be after a deploy, a stop or a health flip on another node.
 */
import type { CatalogView } from './view.js';
import type { CatalogChange } from './types.js';
import type { Logger } from '../observe/log.js';
import { counter, histogram } from '../observe/metrics.js';

export const catalogChanges = counter({
  name: 'sixpn_catalog_changes_total',
  help: 'Catalog changes applied to this node\'s view, by entity kind and operation.',
  labelNames: ['kind', 'op'] as const,
});

export const catalogChangeLag = histogram({
  name: 'sixpn_catalog_change_lag_seconds',
  help: 'Time from a catalog change at its origin to its application in this node\'s view.',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
});

const watched = new WeakSet<CatalogView>();

/** What a change log line says about the entity (no secrets: peers only carry public keys). */
export function describeChange(c: CatalogChange): Record<string, unknown> {
  const line: Record<string, unknown> = { kind: c.kind, op: c.op, key: c.key };
  if (c.op !== 'put') return line;
  switch (c.kind) {
    case 'machine':
      line.app = c.value.app;
      line.region = c.value.region;
      line.state = c.value.state;
      line.health = c.value.health.status;
      if (c.value.health.reason) line.reason = c.value.health.reason;
      break;
    case 'app':
      line.org = c.value.org;
      break;
    case 'flycast':
      line.app = c.value.app;
      line.org = c.value.org;
      break;
    case 'peer':
      line.org = c.value.org;
      line.region = c.value.region;
      break;
    case 'org':
      line.network_id = c.value.network_id;
      break;
  }
  return line;
}

/** Starts watching `view` (once per view; later calls are no-ops). */
export function watchCatalog(view: CatalogView, log: Logger): void {
  if (watched.has(view)) return;
  watched.add(view);
  const clog = log.child({ module: 'catalog' });
  view.on('change', (c) => {
    const lagMs = Math.max(0, Date.now() - c.at);
    catalogChanges.inc({ kind: c.kind, op: c.op });
    catalogChangeLag.observe(lagMs / 1000);
    clog.info({ ...describeChange(c), lag_ms: lagMs }, 'catalog change');
  });
  view.on('reset', () => clog.info({ version: view.version }, 'catalog view reloaded'));
}

/**
 * The node status document behind /v1/status and the dashboard: orgs -> apps -> regions ->
 * machines from the catalog view, with live traffic read back from the proxy's own metrics
 * in the registry, proxy workers' included (active connections now; request and connection
 * rates from the sampler's newest 1-second point).
 */
import { formatHostId, orgPrefixCidr } from '../addressing/index.js';
import { hostStatus, type HostStatus } from '../host/placement.js';
import type { CatalogStatus } from '../catalog/guard.js';
import type { CatalogView } from '../catalog/view.js';
import type { App, Machine } from '../catalog/types.js';
import type { RegionTable } from '../regions/index.js';
import { METRIC } from './metric-names.js';
import { readMetric, type LiveSampler, type Sample } from './sampler.js';

export interface MachineStatus {
  id: string;
  app: string;
  region: string;
  address: string;
  state: Machine['state'];
  health: { status: Machine['health']['status']; reason: string; changed_at: number };
  upstream: string | null;
  /** The host that runs it; null for a machine registered by hand. */
  host: string | null;
  /**
   * The app's active checks for this machine, as flyctl counts them. The catalog keeps the
   * checker's verdict, not each check: `passing` means all pass, `critical` at least one fails.
   */
  checks: { total: number; status: 'passing' | 'critical' | 'pending' };
  /** null: the proxy on this node has not reported on this machine. */
  active_connections: number | null;
  /** HTTP requests (http services) or connections (tcp) per second over the last sample. */
  request_rate: number | null;
  updated_at: number;
}

export interface RegionStatus {
  region: string;
  city: string | null;
  machines: MachineStatus[];
}

export interface AppStatus {
  name: string;
  org: string;
  /** "http 80 -> 8080", "tcp 7 -> 7" */
  services: string[];
  flycast: { address: string; org: string }[];
  counts: { machines: number; started: number; healthy: number; unhealthy: number };
  active_connections: number | null;
  request_rate: number | null;
  /** HTTP 5xx answers per second (null: no HTTP traffic seen). */
  error_rate: number | null;
  regions: RegionStatus[];
}

export interface OrgStatus {
  name: string;
  network_id: number;
  prefix: string;
  apps: AppStatus[];
  peers: { name: string; region: string; address: string; created_at: number }[];
}

export interface HostRow {
  name: string;
  region: string;
  host_id: string;
  status: HostStatus;
  driver: string;
  machines: number;
  started: number;
  heartbeat_at: number;
}

export interface NodeStatus {
  node: { name: string; region: string; uptime_s: number; pid: number };
  generated_at: number;
  /** `state` and the rest from the node's catalog guard (src/catalog/guard.ts): not `ok` means writes are refused and an operator must act. */
  catalog: { store: string; version: number; last_change_lag_ms: number } & CatalogStatus;
  totals: { orgs: number; apps: number; machines: number; started: number; healthy: number; unhealthy: number; peers: number; flycast: number };
  orgs: OrgStatus[];
  /** Host agents, by name. */
  hosts: HostRow[];
}

/** Traffic figures per app and per machine (`app/machine`), merged from the proxy's metrics. */
export interface Traffic {
  activeByApp: Map<string, number>;
  activeByMachine: Map<string, number>;
  rateByApp: Map<string, number>;
  rateByMachine: Map<string, number>;
  /** HTTP 5xx answers per second, by app. */
  errorRateByApp: Map<string, number>;
}

export const emptyTraffic = (): Traffic => ({ activeByApp: new Map(), activeByMachine: new Map(), rateByApp: new Map(), rateByMachine: new Map(), errorRateByApp: new Map() });

/** Sums samples by app and by `app/machine` (when the metric has a machine label). */
export function sumByAppAndMachine(values: Sample[]): { byApp: Map<string, number>; byMachine: Map<string, number> } {
  const byApp = new Map<string, number>();
  const byMachine = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, v: number): void => {
    map.set(key, (map.get(key) ?? 0) + v);
  };
  for (const s of values) {
    const app = s.labels.app;
    if (app === undefined || !Number.isFinite(s.value)) continue;
    add(byApp, String(app), s.value);
    const machine = s.labels.machine;
    if (machine !== undefined && machine !== '') add(byMachine, `${app}/${machine}`, s.value);
  }
  return { byApp, byMachine };
}

/** Connections held right now, by app and by `app/machine`. */
export async function readActive(): Promise<Pick<Traffic, 'activeByApp' | 'activeByMachine'>> {
  const active = sumByAppAndMachine(await readMetric(METRIC.activeConnections));
  return { activeByApp: active.byApp, activeByMachine: active.byMachine };
}

/**
 * Rates over the sampler's points of the last `windowMs` (requests/s for HTTP apps,
 * connections/s for TCP apps): the status is pushed every 2 s, so each push covers the
 * traffic since the one before.
 */
export function latestRates(sampler: LiveSampler, windowMs = 2_000): Pick<Traffic, 'rateByApp' | 'rateByMachine' | 'errorRateByApp'> {
  const rateByApp = new Map<string, number>();
  const rateByMachine = new Map<string, number>();
  const errorRateByApp = new Map<string, number>();
  const put = (map: Map<string, number>, key: string, v: number): void => {
    if (!Number.isNaN(v)) map.set(key, v);
  };
  for (const app of sampler.apps.keys()) {
    put(rateByApp, app, sampler.apps.mean(app, 'rate', windowMs));
    put(errorRateByApp, app, sampler.apps.mean(app, 'errors_5xx', windowMs));
  }
  for (const key of sampler.machines.keys()) put(rateByMachine, key, sampler.machines.mean(key, 'rate', windowMs));
  return { rateByApp, rateByMachine, errorRateByApp };
}

function serviceLine(s: App['services'][number]): string {
  const ports = s.ports.map((p) => p.port).join(',');
  return `${s.protocol} ${ports} -> ${s.internal_port}`;
}

const round = (n: number | undefined): number | null => (n === undefined ? null : Math.round(n * 100) / 100);

export interface StatusSource {
  view: CatalogView;
  regions: RegionTable;
  node: { name: string; region: string };
  store: string;
  /** The guard's state; absent: always ok (in-process test nodes without a guard). */
  catalogStatus?: () => CatalogStatus;
  startedAt: number;
  /** A host silent for longer than this shows as unreachable (default 6 s). */
  hostStaleAfterMs?: number;
}

const OK_CATALOG: CatalogStatus = { state: 'ok', identity: null, store_identity: null, since: null, message: null, snapshot: null };

/** Builds the status document; regions are ordered nearest to this node first. */
export function buildStatus(src: StatusSource, traffic: Traffic, now = Date.now()): NodeStatus {
  const { view, regions } = src;
  const rank = regions.rankFrom(src.node.region);
  const flycastByApp = new Map<string, { address: string; org: string }[]>();
  for (const f of view.flycast.values()) {
    let list = flycastByApp.get(f.app);
    if (!list) flycastByApp.set(f.app, (list = []));
    list.push({ address: f.address, org: f.org });
  }
  const hasMachineRates = new Set([...traffic.rateByMachine.keys()].map((k) => k.slice(0, k.indexOf('/'))));
  const totals = { orgs: view.orgs.size, apps: view.apps.size, machines: view.machines.size, started: 0, healthy: 0, unhealthy: 0, peers: view.peers.size, flycast: view.flycast.size };
  const orgs: OrgStatus[] = [];
  const orgNames = [...view.orgs.keys()].sort();
  for (const orgName of orgNames) {
    const org = view.orgs.get(orgName)!;
    const apps: AppStatus[] = [];
    for (const app of view.appsOfOrg(orgName).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const byRegion = new Map<string, MachineStatus[]>();
      const checkTotal = app.services.reduce((n, s) => n + s.tcp_checks.length + s.http_checks.length, 0);
      const counts = { machines: 0, started: 0, healthy: 0, unhealthy: 0 };
      for (const m of view.machinesOf(app.name)) {
        const key = `${app.name}/${m.id}`;
        const ms: MachineStatus = {
          id: m.id,
          app: m.app,
          region: m.region,
          address: m.address,
          state: m.state,
          health: { status: m.health.status, reason: m.health.reason, changed_at: m.health.changed_at },
          upstream: m.upstream ?? null,
          host: m.host ?? null,
          checks: { total: checkTotal, status: m.health.status === 'healthy' ? 'passing' : m.health.status === 'unhealthy' ? 'critical' : 'pending' },
          active_connections: traffic.activeByMachine.get(key) ?? (traffic.activeByApp.has(app.name) ? 0 : null),
          // Only when the proxy counts per machine; an app-level counter says nothing per machine.
          request_rate: round(traffic.rateByMachine.get(key)) ?? (hasMachineRates.has(app.name) ? 0 : null),
          updated_at: m.updated_at,
        };
        counts.machines++;
        if (m.state === 'started') counts.started++;
        if (m.health.status === 'healthy') counts.healthy++;
        if (m.health.status === 'unhealthy') counts.unhealthy++;
        let list = byRegion.get(m.region);
        if (!list) byRegion.set(m.region, (list = []));
        list.push(ms);
      }
      totals.started += counts.started;
      totals.healthy += counts.healthy;
      totals.unhealthy += counts.unhealthy;
      const regionList: RegionStatus[] = [...byRegion.entries()]
        .sort(([a], [b]) => (rank.get(a) ?? 1e9) - (rank.get(b) ?? 1e9) || (a < b ? -1 : 1))
        .map(([region, machines]) => ({
          region,
          city: regions.get(region)?.city ?? null,
          machines: machines.sort((a, b) => (a.id < b.id ? -1 : 1)),
        }));
      apps.push({
        name: app.name,
        org: app.org,
        services: app.services.map(serviceLine),
        flycast: (flycastByApp.get(app.name) ?? []).sort((a, b) => (a.address < b.address ? -1 : 1)),
        counts,
        active_connections: traffic.activeByApp.get(app.name) ?? null,
        request_rate: round(traffic.rateByApp.get(app.name)),
        error_rate: round(traffic.errorRateByApp.get(app.name)) ?? (traffic.rateByApp.has(app.name) && app.services.some((x) => x.protocol === 'http') ? 0 : null),
        regions: regionList,
      });
    }
    const peers = view
      .peersOfOrg(orgName)
      .map((p) => ({ name: p.name, region: p.region, address: p.address, created_at: p.created_at }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    orgs.push({ name: org.name, network_id: org.network_id, prefix: orgPrefixCidr(org.network_id), apps, peers });
  }
  const hosts: HostRow[] = [...view.hosts.values()]
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((h) => {
      const ms = [...view.machinesOnHost(h.name)];
      return {
        name: h.name,
        region: h.region,
        host_id: formatHostId(h.host_id),
        status: hostStatus(h, now, src.hostStaleAfterMs ?? 6_000),
        driver: h.driver,
        machines: ms.length,
        started: ms.filter((m) => m.state === 'started').length,
        heartbeat_at: h.heartbeat_at,
      };
    });
  return {
    node: { name: src.node.name, region: src.node.region, uptime_s: Math.round((now - src.startedAt) / 1000), pid: process.pid },
    generated_at: now,
    catalog: { store: src.store, version: view.version, last_change_lag_ms: view.lastChangeLagMs, ...(src.catalogStatus?.() ?? OK_CATALOG) },
    totals,
    orgs,
    hosts,
  };
}

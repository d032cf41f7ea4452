/**
 * The document behind `/v1/status/series` and the dashboard's charts: the sampler's points
 * (./sampler.ts) for the last 15 minutes, per app with its machines and regions, and a
 * node-wide region view, joined with the catalog (org, region, state, health).
 *
 * Every series array is aligned with `times`; null means "no value at that point" (the proxy
 * did not report it, or nothing was measured: a latency with no request in that second).
 */
import type { App } from '../catalog/types.js';
import type { CatalogView } from '../catalog/view.js';
import { NotFoundError } from '../errors.js';
import type { RegionTable } from '../regions/index.js';
import { APP_COLUMNS, MACHINE_COLUMNS, SAMPLE_MS, type LiveSampler } from './sampler.js';

type Column = (number | null)[];
type Columns<C extends string> = Record<C, Column>;

export interface MachineSeries {
  id: string;
  /** null: no longer in the catalog (its history stays until it ages out). */
  region: string | null;
  state: string | null;
  health: string | null;
  /** null: this node's proxy has not served it in the window (or `machines=0` was asked). */
  series: Columns<(typeof MACHINE_COLUMNS)[number]> | null;
}

export interface AppRegionSeries {
  region: string;
  /** rate: requests/s (HTTP apps); active: connections held; share: of the app's traffic, 0..1. */
  series: Columns<'rate' | 'active' | 'share'>;
}

export interface AppSeries {
  name: string;
  org: string | null;
  /** What `rate` counts: HTTP apps are measured in requests, TCP apps in connections. */
  unit: 'requests' | 'connections';
  /** What `share` is a share of: requests/s for HTTP apps, active connections for TCP apps (which have no per-machine rate). */
  share_of: 'rate' | 'active';
  series: Columns<(typeof APP_COLUMNS)[number]> | null;
  machines: MachineSeries[];
  regions: AppRegionSeries[];
}

export interface RegionView {
  region: string;
  city: string | null;
  machines: number;
  started: number;
  healthy: number;
  /** rate: HTTP requests/s of every app in the region; share: of the node's HTTP traffic; active: connections held. */
  series: Columns<'rate' | 'active' | 'share'>;
}

export interface SeriesDoc {
  node: { name: string; region: string };
  generated_at: number;
  step_ms: number;
  window_ms: number;
  times: number[];
  node_series: Columns<'rate' | 'denied'>;
  apps: AppSeries[];
  regions: RegionView[];
  /** Series kept and refused per family (refused > 0: the ceiling cut some off). */
  limits: Record<'apps' | 'machines' | 'regions', { kept: number; max: number; refused: number }>;
  /** How long the last sample of the registry took, in ms. */
  sample_ms: number;
  /** Memory held by every series of this node, in bytes. */
  series_bytes: number;
}

export interface SeriesSource {
  sampler: LiveSampler;
  view: CatalogView;
  regions: RegionTable;
  node: { name: string; region: string };
}

export interface SeriesQuery {
  /** One app (its machines included), else every app. */
  app?: string | undefined;
  /** Only points newer than this (epoch ms). */
  since?: number | undefined;
  /** false: list each app's machines without their series (a dashboard's first load of a big fleet). */
  machines?: boolean | undefined;
}

const isHttpApp = (app: App | undefined): boolean =>
  !!app && app.services.some((s) => s.protocol === 'http' || s.ports.some((p) => p.handlers.includes('http')));

/** Shares of each series at each point (null where the total is 0 or unknown). */
function shares(parts: Column[], n: number): Column[] {
  const out = parts.map(() => new Array<number | null>(n).fill(null));
  for (let i = 0; i < n; i++) {
    let total = 0;
    for (const p of parts) total += p[i] ?? 0;
    if (total <= 0) continue;
    parts.forEach((p, j) => {
      const v = p[i];
      out[j]![i] = v === null || v === undefined ? null : Math.round((v / total) * 1000) / 1000;
    });
  }
  return out;
}

const empty = (n: number): Column => new Array<number | null>(n).fill(null);

function sumInto(into: Column, add: Column): void {
  for (let i = 0; i < into.length; i++) {
    const v = add[i];
    if (v === null || v === undefined) continue;
    into[i] = (into[i] ?? 0) + v;
  }
}

export function buildSeries(src: SeriesSource, q: SeriesQuery = {}, now = Date.now()): SeriesDoc {
  const { sampler, view } = src;
  const since = q.since ?? 0;
  const times = sampler.store.times(since);
  const n = times.length;
  const rank = src.regions.rankFrom(src.node.region);
  const byRank = (a: string, b: string): number => (rank.get(a) ?? 1e9) - (rank.get(b) ?? 1e9) || (a < b ? -1 : 1);

  let names: string[];
  if (q.app !== undefined) {
    if (!view.apps.has(q.app) && !sampler.apps.has(q.app)) throw new NotFoundError(`app ${q.app} not found`);
    names = [q.app];
  } else names = [...new Set([...view.apps.keys(), ...sampler.apps.keys()])].sort();

  // Series keys of machines and regions, grouped by app once (keys are `app/...`).
  const keysByApp = (keys: Iterable<string>): Map<string, string[]> => {
    const out = new Map<string, string[]>();
    for (const k of keys) {
      const app = k.slice(0, k.indexOf('/'));
      let list = out.get(app);
      if (!list) out.set(app, (list = []));
      list.push(k.slice(app.length + 1));
    }
    return out;
  };
  const machineKeys = keysByApp(sampler.machines.keys());
  const regionKeys = keysByApp(sampler.regions.keys());

  const nodeRegions = new Map<string, { rate: Column; active: Column }>();
  const apps: AppSeries[] = names.map((name) => {
    const app = view.apps.get(name);
    const http = isHttpApp(app) || sampler.httpApps.has(name);
    const ids = new Set([...(machineKeys.get(name) ?? []), ...[...view.machinesOf(name)].map((m) => m.id)]);
    const machines: MachineSeries[] = [...ids].sort().map((id) => {
      const m = view.machines.get(id);
      return {
        id,
        region: m?.region ?? null,
        state: m?.state ?? null,
        health: m?.health.status ?? null,
        series: q.machines === false ? null : sampler.machines.read(`${name}/${id}`, since),
      };
    });
    const regionNames = [...new Set([...(regionKeys.get(name) ?? []), ...[...view.machinesOf(name)].map((m) => m.region)])].sort(byRank);
    const raw = regionNames.map((region) => sampler.regions.read(`${name}/${region}`, since) ?? { rate: empty(n), active: empty(n) });
    const share = shares(raw.map((r) => (http ? r.rate : r.active)), n);
    const regions = regionNames.map((region, i) => {
      const r = raw[i]!;
      let agg = nodeRegions.get(region);
      if (!agg) nodeRegions.set(region, (agg = { rate: empty(n), active: empty(n) }));
      if (http) sumInto(agg.rate, r.rate);
      sumInto(agg.active, r.active);
      return { region, series: { rate: r.rate, active: r.active, share: share[i]! } };
    });
    return {
      name,
      org: app?.org ?? null,
      unit: http ? 'requests' : 'connections',
      share_of: http ? 'rate' : 'active',
      series: sampler.apps.read(name, since),
      machines,
      regions,
    } satisfies AppSeries;
  });

  // The node-wide region view: catalog counts now, traffic over time.
  const counts = new Map<string, { machines: number; started: number; healthy: number }>();
  for (const m of view.machines.values()) {
    if (q.app !== undefined && m.app !== q.app) continue;
    let c = counts.get(m.region);
    if (!c) counts.set(m.region, (c = { machines: 0, started: 0, healthy: 0 }));
    c.machines++;
    if (m.state === 'started') c.started++;
    if (m.health.status === 'healthy') c.healthy++;
  }
  const regionList = [...new Set([...counts.keys(), ...nodeRegions.keys()])].sort(byRank);
  const nodeShare = shares(regionList.map((r) => nodeRegions.get(r)?.rate ?? empty(n)), n);
  const regions: RegionView[] = regionList.map((region, i) => ({
    region,
    city: src.regions.get(region)?.city ?? null,
    ...(counts.get(region) ?? { machines: 0, started: 0, healthy: 0 }),
    series: { rate: nodeRegions.get(region)?.rate ?? empty(n), active: nodeRegions.get(region)?.active ?? empty(n), share: nodeShare[i]! },
  }));

  const limit = (f: { size: number; maxSeries: number; refused: number }) => ({ kept: f.size, max: f.maxSeries, refused: f.refused });
  return {
    node: src.node,
    generated_at: now,
    step_ms: SAMPLE_MS,
    window_ms: SAMPLE_MS * sampler.store.capacity,
    times,
    node_series: sampler.node.read('node', since) ?? { rate: empty(n), denied: empty(n) },
    apps,
    regions,
    limits: { apps: limit(sampler.apps), machines: limit(sampler.machines), regions: limit(sampler.regions) },
    sample_ms: Math.round(sampler.lastCostMs * 100) / 100,
    series_bytes: sampler.store.bytes,
  };
}

/**
 * The region table: codes, cities, coordinates, and nearest-first orderings.
 *
 * Distance is great-circle kilometres unless an RTT matrix (milliseconds, from config) names
 * the pair; the two are never mixed in one comparison because an RTT entry replaces the
 * distance of that pair with `rtt * KM_PER_MS` (light in fibre covers ~100 km per ms of RTT).
 * Orderings are computed once per origin and cached: the proxy asks per connection.
 *
 * @example new RegionTable(parseRegionsCsv(text)).nearestFirst('ewr') // ['ewr', 'iad', ...]
 */

export interface Region {
  code: string;
  city: string;
  country: string;
  latitude: number;
  longitude: number;
}

/** Round-trip milliseconds between region pairs; keys are `a-b` or nested `{a: {b: ms}}`. */
export type RttMatrix = Record<string, Record<string, number>>;

export const KM_PER_MS = 100;
const EARTH_RADIUS_KM = 6371;

export class RegionTableError extends Error {}

/** Parses `code,city,country,latitude,longitude` with a header line. */
export function parseRegionsCsv(text: string): Region[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = lines.shift();
  if (!header || header.trim().toLowerCase() !== 'code,city,country,latitude,longitude') {
    throw new RegionTableError('regions table: first line must be code,city,country,latitude,longitude');
  }
  const seen = new Set<string>();
  return lines.map((line, i) => {
    const cols = line.split(',').map((c) => c.trim());
    const [code, city, country, lat, lon] = cols;
    const latitude = Number(lat);
    const longitude = Number(lon);
    if (cols.length !== 5 || !code || !/^[a-z]{3}$/.test(code) || !Number.isFinite(latitude) || !Number.isFinite(longitude)) {
      throw new RegionTableError(`regions table line ${i + 2}: expected code,city,country,latitude,longitude, got ${JSON.stringify(line)}`);
    }
    if (Math.abs(latitude) > 90 || Math.abs(longitude) > 180) {
      throw new RegionTableError(`regions table line ${i + 2}: coordinates out of range`);
    }
    if (seen.has(code)) throw new RegionTableError(`regions table line ${i + 2}: duplicate region ${code}`);
    seen.add(code);
    return { code, city: city ?? '', country: country ?? '', latitude, longitude };
  });
}

/** Great-circle distance in kilometres (haversine). */
export function greatCircleKm(a: Pick<Region, 'latitude' | 'longitude'>, b: Pick<Region, 'latitude' | 'longitude'>): number {
  const rad = Math.PI / 180;
  const dLat = (b.latitude - a.latitude) * rad;
  const dLon = (b.longitude - a.longitude) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.latitude * rad) * Math.cos(b.latitude * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

export class RegionTable {
  readonly regions: readonly Region[];
  private readonly byCode = new Map<string, Region>();
  private readonly orderCache = new Map<string, readonly string[]>();
  private readonly rtt: RttMatrix;

  constructor(regions: readonly Region[], rtt: RttMatrix = {}) {
    this.regions = regions;
    for (const r of regions) this.byCode.set(r.code, r);
    for (const [a, row] of Object.entries(rtt)) {
      if (!this.byCode.has(a)) throw new RegionTableError(`rtt matrix names unknown region ${a}`);
      for (const [b, ms] of Object.entries(row)) {
        if (!this.byCode.has(b)) throw new RegionTableError(`rtt matrix names unknown region ${b}`);
        if (!Number.isFinite(ms) || ms < 0) throw new RegionTableError(`rtt matrix ${a}.${b} must be a non-negative number`);
      }
    }
    this.rtt = rtt;
  }

  has(code: string): boolean {
    return this.byCode.has(code);
  }

  get(code: string): Region | undefined {
    return this.byCode.get(code);
  }

  get codes(): string[] {
    return this.regions.map((r) => r.code);
  }

  /** Distance used for ordering: RTT-derived when the matrix names the pair, else great-circle. */
  distance(from: string, to: string): number {
    if (from === to) return 0;
    const ms = this.rtt[from]?.[to] ?? this.rtt[to]?.[from];
    if (ms !== undefined) return ms * KM_PER_MS;
    const a = this.byCode.get(from);
    const b = this.byCode.get(to);
    if (!a || !b) return Number.POSITIVE_INFINITY;
    return greatCircleKm(a, b);
  }

  /** Every region code, nearest to `from` first (`from` itself first). Cached per origin. */
  nearestFirst(from: string): readonly string[] {
    let order = this.orderCache.get(from);
    if (!order) {
      order = this.regions
        .map((r) => ({ code: r.code, d: this.distance(from, r.code) }))
        .sort((x, y) => x.d - y.d || (x.code < y.code ? -1 : 1))
        .map((x) => x.code);
      this.orderCache.set(from, order);
    }
    return order;
  }

  /** Rank of each region relative to `from` (0 = `from`); unknown regions rank last. */
  rankFrom(from: string): ReadonlyMap<string, number> {
    const m = new Map<string, number>();
    this.nearestFirst(from).forEach((c, i) => m.set(c, i));
    return m;
  }
}

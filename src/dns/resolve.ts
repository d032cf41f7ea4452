/**
 * The .internal / .flycast resolver: from a question, the asker's org zone and the asker's
 * region to the records of the answer. No I/O: the server decides the asker (by source address)
 * and encodes the result; this file only knows names.
 *
 * @example resolveLocal({ name: 'web.internal', type: 'AAAA' }, zone, 'ewr', opts)
 *   // { rcode: 'NOERROR', answers: [{ name: 'web.internal', type: 'AAAA', ... }], ... }
 */
import type { Answer } from 'dns-packet';
import type { Machine } from '../catalog/types.js';
import type { RegionTable } from '../regions/index.js';
import type { OrgZone } from './zone.js';

export interface Question {
  name: string;
  type: string;
}

export interface Resolution {
  rcode: 'NOERROR' | 'NXDOMAIN';
  answers: Answer[];
  authorities: Answer[];
  /** False when the answer depends on more than the org and the question bytes (nearest). */
  cacheable: boolean;
}

export interface ResolveOptions {
  ttl: number;
  regions: RegionTable;
}

/** Zones answered here; everything else is forwarded. `a.a.d.f.ip6.arpa` keeps 6PN reverse lookups local. */
const ZONES = ['internal', 'flycast', 'a.a.d.f.ip6.arpa'] as const;
type Zone = (typeof ZONES)[number];

/** The local zone a (lowercase, no trailing dot) name falls in, or null when it is forwarded. */
export function localZoneOf(lower: string): Zone | null {
  for (const z of ZONES) {
    if (lower === z || (lower.endsWith(z) && lower.charCodeAt(lower.length - z.length - 1) === 46)) return z;
  }
  return null;
}

const MAX_TXT_STRING = 255;

/** Splits a TXT value into character-strings of at most 255 bytes. */
export function splitTxt(value: string): Buffer[] {
  const buf = Buffer.from(value, 'utf8');
  if (buf.length === 0) return [buf];
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += MAX_TXT_STRING) out.push(buf.subarray(i, i + MAX_TXT_STRING));
  return out;
}

/** What exists at a name: undefined = the name does not exist (NXDOMAIN). */
interface Records {
  aaaa?: string[];
  /** One entry per TXT record, each one value (split into 255-byte strings when encoded). */
  txt?: string[];
  soa?: true;
  cacheable?: false;
}

const EMPTY: Records = {};
const TOP_RE = /^top([1-9]\d{0,3})$/;

function addresses(ms: readonly Machine[]): string[] {
  return ms.map((m) => m.address);
}

/** The N started machines of the app nearest `from`, health rule applied first, ties by id. */
export function nearest(ms: readonly Machine[], n: number, from: string, regions: RegionTable): Machine[] {
  const rank = regions.rankFrom(from);
  const far = rank.size;
  return [...ms].sort((a, b) => (rank.get(a.region) ?? far) - (rank.get(b.region) ?? far) || (a.id < b.id ? -1 : 1)).slice(0, n);
}

function internalRecords(labels: string[], zone: OrgZone, askerRegion: string, opts: ResolveOptions): Records | undefined {
  // labels without the trailing "internal"
  const n = labels.length;
  if (n === 0) return { soa: true };
  const last = labels[n - 1]!;
  if (last === '_apps') return n === 1 ? (zone.appNames.length ? { txt: [zone.appNames.join(',')] } : EMPTY) : undefined;
  if (last === '_instances') return n === 1 ? (zone.instances.length ? { txt: zone.instances } : EMPTY) : undefined;
  if (last === '_peer') {
    if (n === 1) return zone.peerNames.length ? { txt: [zone.peerNames.join(',')] } : EMPTY;
    const peer = zone.peers.get(labels.slice(0, n - 1).join('.'));
    return peer ? { aaaa: [peer.address] } : undefined;
  }
  const app = zone.apps.get(last);
  if (!app) return undefined;
  if (n === 1) return { aaaa: addresses(app.serving) };
  const sub = labels[n - 2]!;
  if (n === 2) {
    switch (sub) {
      case 'global':
        return { aaaa: addresses(app.serving) };
      case 'vms':
        return app.started.length ? { txt: [app.started.map((m) => m.id).join(',')] } : EMPTY;
      case 'regions':
        return app.regions.length ? { txt: [app.regions.join(',')] } : EMPTY;
      case 'vm':
      case 'of':
        return EMPTY; // empty non-terminals: the name exists, holds nothing
    }
    if (opts.regions.has(sub)) return { aaaa: addresses(app.byRegion.get(sub) ?? []) };
    return undefined;
  }
  if (n === 3 && sub === 'vm') {
    const m = app.byId.get(labels[0]!);
    return m ? { aaaa: [m.address] } : undefined;
  }
  if (sub === 'of' && labels[n - 3] === 'nearest') {
    if (n === 3) return EMPTY;
    const top = n === 4 ? TOP_RE.exec(labels[0]!) : null;
    if (!top) return undefined;
    return { aaaa: addresses(nearest(app.serving, Number(top[1]), askerRegion, opts.regions)), cacheable: false };
  }
  return undefined;
}

function flycastRecords(labels: string[], zone: OrgZone): Records | undefined {
  if (labels.length === 0) return { soa: true };
  if (labels.length !== 1) return undefined;
  const ips = zone.flycast.get(labels[0]!);
  if (ips) return { aaaa: ips };
  return zone.apps.has(labels[0]!) ? EMPTY : undefined;
}

function soa(zoneName: string, zone: OrgZone, ttl: number): Answer {
  return {
    name: zoneName,
    type: 'SOA',
    class: 'IN',
    ttl,
    data: {
      mname: `ns.${zoneName}`,
      rname: `hostmaster.${zoneName}`,
      serial: zone.serial,
      refresh: 3600,
      retry: 600,
      expire: 86_400,
      minimum: ttl,
    },
  };
}

/**
 * Answers a question about a local name for a member of `zone`'s org. The answer carries the
 * question's spelling of the name (names are matched case-insensitively). `askerRegion` is the
 * region of the asking machine or peer, or the DNS node's own region when unknown.
 */
export function resolveLocal(q: Question, zone: OrgZone, askerRegion: string, opts: ResolveOptions): Resolution {
  const lower = q.name.toLowerCase();
  const zoneName = localZoneOf(lower);
  if (!zoneName) throw new RangeError(`${q.name} is not a local name`);
  const labels = lower === zoneName ? [] : lower.slice(0, lower.length - zoneName.length - 1).split('.');
  let recs: Records | undefined;
  if (zoneName === 'internal') recs = internalRecords(labels, zone, askerRegion, opts);
  else if (zoneName === 'flycast') recs = flycastRecords(labels, zone);
  else recs = labels.length === 0 ? { soa: true } : undefined;
  const cacheable = recs?.cacheable !== false;
  if (!recs) return { rcode: 'NXDOMAIN', answers: [], authorities: [soa(zoneName, zone, opts.ttl)], cacheable };
  const { ttl } = opts;
  const answers: Answer[] = [];
  const any = q.type === 'ANY';
  if ((any || q.type === 'AAAA') && recs.aaaa) {
    for (const data of recs.aaaa) answers.push({ name: q.name, type: 'AAAA', class: 'IN', ttl, data });
  }
  if ((any || q.type === 'TXT') && recs.txt) {
    for (const v of recs.txt) answers.push({ name: q.name, type: 'TXT', class: 'IN', ttl, data: splitTxt(v) });
  }
  if ((any || q.type === 'SOA') && recs.soa) answers.push({ ...soa(zoneName, zone, ttl), name: q.name });
  return { rcode: 'NOERROR', answers, authorities: answers.length ? [] : [soa(zoneName, zone, ttl)], cacheable };
}

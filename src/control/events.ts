/**
 * The event feed: what happened on this node, newest last, bounded, followable.
 *
 * Health transitions, machine state changes (started, stopped, created, removed), passive
 * ejections and re-admissions by this node's proxy, other catalog changes, callers denied by
 * org (one event per org pair per second, with the count), and the Redis catalog connection
 * going down or up. Each event has a sequence number, so a follower that reconnects with
 * `Last-Event-ID` gets what it missed while it is still in the ring.
 *
 * The shape is meant to carry machine log lines later (kind `log`, `data: {stream, line}`):
 * a feed is a class, so logs can get their own ring and not push health events out.
 */
import type { Ejection } from '../balancer/index.js';
import type { CatalogView } from '../catalog/view.js';
import type { CatalogChange, Machine } from '../catalog/types.js';
import { ValidationError } from '../errors.js';
import type { RunningRole } from '../role.js';
import type { LiveSampler, Tick } from './sampler.js';

export const FEED_KINDS = ['health', 'machine', 'ejection', 'catalog', 'denied', 'store', 'log'] as const;
export type FeedKind = (typeof FEED_KINDS)[number];

export interface FeedEvent {
  /** Increasing per node, from 1. */
  seq: number;
  /** Epoch ms. */
  at: number;
  kind: FeedKind;
  level: 'info' | 'warn' | 'error';
  /** The org it concerns: the app's org, or for denials the org whose address was refused. */
  org?: string;
  app?: string;
  machine?: string;
  region?: string;
  /** One line for people. */
  message: string;
  /** The same facts for scripts (from/to, reason, count, caller_org...). */
  data?: Record<string, unknown>;
}

export type NewEvent = Omit<FeedEvent, 'seq' | 'at'> & { at?: number };

export interface FeedFilter {
  kinds?: ReadonlySet<FeedKind>;
  org?: string;
  app?: string;
  machine?: string;
}

export function matchesFilter(e: FeedEvent, f: FeedFilter): boolean {
  if (f.kinds && !f.kinds.has(e.kind)) return false;
  if (f.org !== undefined && e.org !== f.org) return false;
  if (f.app !== undefined && e.app !== f.app) return false;
  if (f.machine !== undefined && e.machine !== f.machine) return false;
  return true;
}

/** `?kind=health,denied&org=&app=&machine=` -> a filter; an unknown kind is bad input. */
export function parseFeedFilter(q: URLSearchParams): FeedFilter {
  const f: FeedFilter = {};
  const kinds = q.get('kind');
  if (kinds) {
    const set = new Set<FeedKind>();
    for (const k of kinds.split(',')) {
      const kind = k.trim();
      if (!(FEED_KINDS as readonly string[]).includes(kind)) throw new ValidationError(`kind ${JSON.stringify(kind)} is not an event kind (one of: ${FEED_KINDS.join(', ')})`);
      set.add(kind as FeedKind);
    }
    f.kinds = set;
  }
  for (const key of ['org', 'app', 'machine'] as const) {
    const v = q.get(key);
    if (v) f[key] = v;
  }
  return f;
}

export class EventFeed {
  private readonly ring: FeedEvent[] = [];
  private readonly listeners = new Set<(e: FeedEvent) => void>();
  private seq = 0;

  constructor(readonly capacity = 2000) {}

  publish(e: NewEvent): FeedEvent {
    const ev: FeedEvent = { ...e, seq: ++this.seq, at: e.at ?? Date.now() };
    this.ring.push(ev);
    if (this.ring.length > this.capacity) this.ring.splice(0, this.ring.length - this.capacity);
    for (const l of this.listeners) l(ev);
    return ev;
  }

  /** Kept events with seq > `after` that match, oldest first, at most the newest `limit`. */
  since(after: number, f: FeedFilter = {}, limit = this.capacity): FeedEvent[] {
    const out: FeedEvent[] = [];
    for (const e of this.ring) if (e.seq > after && matchesFilter(e, f)) out.push(e);
    return out.length > limit ? out.slice(out.length - limit) : out;
  }

  get lastSeq(): number {
    return this.seq;
  }

  subscribe(fn: (e: FeedEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

/** A proxy role handle that can list the machines its passive ejection keeps out (the proxy role implements it). */
export interface EjectionSource {
  ejections(): Ejection[];
}

function isEjectionSource(role: RunningRole | undefined): role is RunningRole & EjectionSource {
  return !!role && typeof (role as Partial<EjectionSource>).ejections === 'function';
}

interface Known {
  app: string;
  region: string;
  state: string;
  health: Machine['health']['status'];
  upstream: string | undefined;
}

const known = (m: Machine): Known => ({ app: m.app, region: m.region, state: m.state, health: m.health.status, upstream: m.upstream });

/** What an org or caller org is called in a line ("outside every org" for ""). */
const orgWords = (org: string): string => (org === '' ? 'outside every org' : `org ${org}`);

/** Most denial events per point; the rest are summed into one. */
const MAX_DENIAL_EVENTS = 20;

/**
 * Feeds `feed` from the catalog view (machine diffs: health, state, created, removed; the
 * other entities as catalog changes), from the sampler's ticks (denials, the store
 * connection) and from the proxy's passive ejection (read on each tick).
 */
export class FeedWatcher {
  private readonly machines = new Map<string, Known>();
  private ejected = new Map<string, number>();
  private storeUp: number | null = null;
  private readonly onChange = (c: CatalogChange): void => this.change(c);
  private readonly onReset = (): void => this.resync();
  private readonly onTick = (t: Tick): void => this.tick(t);

  constructor(
    private readonly view: CatalogView,
    private readonly feed: EventFeed,
    private readonly sampler: LiveSampler,
    private readonly proxy: () => RunningRole | undefined,
  ) {
    for (const m of view.machines.values()) this.machines.set(m.id, known(m));
    view.on('change', this.onChange);
    view.on('reset', this.onReset);
    sampler.on('tick', this.onTick);
  }

  private orgOf(app: string): string | undefined {
    return this.view.apps.get(app)?.org;
  }

  private machineEvent(m: Known, id: string, e: Omit<NewEvent, 'app' | 'machine' | 'region' | 'org'>): void {
    const org = this.orgOf(m.app);
    this.feed.publish({ ...e, app: m.app, machine: id, region: m.region, ...(org !== undefined ? { org } : {}) });
  }

  /** Events for one machine going from `before` to `m` (either may be absent). */
  private diffMachine(id: string, before: Known | undefined, m: Machine | undefined): void {
    if (!m) {
      if (before) this.machineEvent(before, id, { kind: 'machine', level: 'info', message: `machine ${id} of ${before.app} removed`, data: { from: before.state, to: 'removed' } });
      this.machines.delete(id);
      return;
    }
    const now = known(m);
    this.machines.set(id, now);
    if (!before) {
      this.machineEvent(now, id, { kind: 'machine', level: 'info', message: `machine ${id} of ${m.app} created in ${m.region} (${m.state})`, data: { from: null, to: m.state } });
      return;
    }
    if (before.state !== now.state) {
      const level = now.state === 'failed' ? 'error' : 'info';
      this.machineEvent(now, id, { kind: 'machine', level, message: `machine ${id} of ${m.app} ${now.state} (was ${before.state})`, data: { from: before.state, to: now.state } });
    }
    if (before.health !== now.health) {
      const level = now.health === 'unhealthy' ? 'warn' : 'info';
      const why = m.health.reason ? `: ${m.health.reason}` : '';
      this.machineEvent(now, id, {
        kind: 'health',
        level,
        message: `machine ${id} of ${m.app} ${now.health}${why} (was ${before.health})`,
        data: { from: before.health, to: now.health, reason: m.health.reason },
      });
    }
    if (before.state === now.state && before.health === now.health && (before.region !== now.region || before.upstream !== now.upstream || before.app !== now.app)) {
      this.machineEvent(now, id, { kind: 'catalog', level: 'info', message: `machine ${id} of ${m.app} updated`, data: { region: m.region, upstream: m.upstream ?? null } });
    }
  }

  private change(c: CatalogChange): void {
    if (c.kind === 'machine') {
      const before = this.machines.get(c.key);
      const m = c.op === 'put' ? c.value : undefined;
      this.diffMachine(c.key, before, m);
      // A stop or a health flip moves traffic: end the current chart point there.
      const app = m?.app ?? before?.app;
      if (!before || !m || before.state !== m.state || before.health !== m.health.status) this.sampler.cut(app === undefined ? [] : [`${app}/${c.key}`]);
      return;
    }
    const what = c.op === 'put' ? 'put' : 'deleted';
    switch (c.kind) {
      case 'org':
        this.feed.publish({ kind: 'catalog', level: 'info', org: c.key, message: c.op === 'put' ? `org ${c.key} saved (network ${c.value.network_id})` : `org ${c.key} deleted`, data: { entity: 'org', op: what } });
        break;
      case 'app':
        this.feed.publish({
          kind: 'catalog',
          level: 'info',
          app: c.key,
          ...(c.op === 'put' ? { org: c.value.org } : {}),
          message: c.op === 'put' ? `app ${c.key} saved (${c.value.services.length} services)` : `app ${c.key} destroyed`,
          data: { entity: 'app', op: what },
        });
        break;
      case 'flycast':
        this.feed.publish({
          kind: 'catalog',
          level: 'info',
          ...(c.op === 'put' ? { app: c.value.app, org: c.value.org } : {}),
          message: c.op === 'put' ? `flycast ${c.key} allocated to ${c.value.app}` : `flycast ${c.key} released`,
          data: { entity: 'flycast', op: what, address: c.key },
        });
        break;
      case 'peer': {
        const [org, name] = [c.key.slice(0, c.key.indexOf('/')), c.key.slice(c.key.indexOf('/') + 1)];
        this.feed.publish({ kind: 'catalog', level: 'info', org, message: c.op === 'put' ? `wireguard peer ${name} added to ${org}` : `wireguard peer ${name} removed from ${org}`, data: { entity: 'peer', op: what, name } });
        break;
      }
    }
  }

  /** After a view reload: whatever changed while it was away, as events. */
  private resync(): void {
    const seen = new Set<string>();
    for (const m of this.view.machines.values()) {
      seen.add(m.id);
      this.diffMachine(m.id, this.machines.get(m.id), m);
    }
    for (const id of [...this.machines.keys()]) if (!seen.has(id)) this.diffMachine(id, this.machines.get(id), undefined);
  }

  private tick(t: Tick): void {
    this.denials(t);
    if (t.storeConnected !== null && t.storeConnected !== this.storeUp) {
      if (this.storeUp !== null || t.storeConnected === 0) {
        this.feed.publish(
          t.storeConnected === 1
            ? { kind: 'store', level: 'info', message: 'catalog store (Redis) connected again', data: { connected: true } }
            : { kind: 'store', level: 'error', message: 'catalog store (Redis) unavailable: serving from this node\'s view, writes fail', data: { connected: false } },
        );
      }
      this.storeUp = t.storeConnected;
    }
    this.ejections(t.at);
  }

  private denials(t: Tick): void {
    const list = [...t.denied].sort((a, b) => b.count - a.count);
    for (const d of list.slice(0, MAX_DENIAL_EVENTS)) {
      this.feed.publish({
        kind: 'denied',
        level: 'warn',
        org: d.org,
        message: `${d.count} caller${d.count === 1 ? '' : 's'} from ${orgWords(d.caller_org)} denied at ${orgWords(d.org)}'s Flycast addresses`,
        data: { count: d.count, caller_org: d.caller_org },
      });
    }
    const rest = list.slice(MAX_DENIAL_EVENTS);
    if (rest.length) {
      const count = rest.reduce((n, d) => n + d.count, 0);
      this.feed.publish({ kind: 'denied', level: 'warn', message: `${count} more callers denied across ${rest.length} more org pairs`, data: { count, pairs: rest.length } });
    }
  }

  private ejections(now: number): void {
    const role = this.proxy();
    if (!isEjectionSource(role)) return;
    const next = new Map<string, number>();
    for (const e of role.ejections()) {
      const key = `${e.app}/${e.machine}`;
      next.set(key, e.until);
      if (this.ejected.has(key)) continue;
      const m = this.machines.get(e.machine) ?? { app: e.app, region: '', state: '', health: 'unknown' as const, upstream: undefined };
      const secs = Math.max(0, Math.round((e.until - now) / 100) / 10);
      this.machineEvent(m, e.machine, {
        kind: 'ejection',
        level: 'warn',
        message: `machine ${e.machine} of ${e.app} ejected from this node's rotation for ${secs}s after failed connects`,
        data: { ejected: true, until: e.until },
      });
    }
    for (const key of this.ejected.keys()) {
      if (next.has(key)) continue;
      const id = key.slice(key.indexOf('/') + 1);
      const app = key.slice(0, key.indexOf('/'));
      const m = this.machines.get(id);
      if (!m) continue;
      this.machineEvent(m, id, { kind: 'ejection', level: 'info', message: `machine ${id} of ${app} back in this node's rotation`, data: { ejected: false } });
    }
    this.ejected = next;
  }

  close(): void {
    this.view.off('change', this.onChange);
    this.view.off('reset', this.onReset);
    this.sampler.off('tick', this.onTick);
  }
}

/**
 * Request steering, Fly's way: what a caller's routing headers and a machine's `fly-replay`
 * answer mean, checked and turned into a balancer `Steer` (plus the replay's target app).
 *
 * Pure: strings and catalog maps in, a plan or a typed error out; the HTTP engine calls these
 * only when a head carries one of the fields (the parser flags them), so a request without
 * steering pays nothing here.
 *
 * @example
 *   const steer = steerFromHeaders({ preferRegion: 'lhr', forceRegion: null, preferInstance: null, forceInstance: null }, 'web', catalog, regions);
 *   const replay = parseReplay('region=iad;state=write');   // from the machine's response
 *   const plan = planReplay(replay, { app, machine }, catalog, { replays: 0, fallback: false, bodyTooLarge: false });
 */
import type { Steer } from '../balancer/index.js';
import type { App, Machine, Service } from '../catalog/types.js';
import { NAME_RE } from '../catalog/types.js';
import { ForbiddenError, NotFoundError, ReplayBodyTooLargeError, ReplayInvalidError, ReplayLoopError, ValidationError } from '../errors.js';

export { ReplayBodyTooLargeError, ReplayInvalidError, ReplayLoopError, SteerUnavailableError } from '../errors.js';

/** Bodies up to this many bytes are kept while they pass, so the request can be replayed (Fly: 1 MB). */
export const MAX_REPLAY_BODY = 1024 * 1024;
/**
 * How many times one caller request may be replayed. A chain (a router app replays to an app,
 * which replays to its primary region) takes two; a third `fly-replay` is answered 508, never
 * followed, so two machines that replay to each other cannot loop.
 */
export const MAX_REPLAYS = 2;
/** Longest `timeout=` a replay may ask for. */
export const MAX_REPLAY_TIMEOUT_MS = 60_000;
/** Most regions in one list (a header or a replay field). */
const MAX_REGIONS = 16;
const MACHINE_ID = /^[0-9a-f]{8,32}$/;

/** What steering needs of the catalog (a CatalogView is one). */
export interface SteeringCatalog {
  readonly apps: ReadonlyMap<string, App>;
  readonly machinesByApp: ReadonlyMap<string, ReadonlyMap<string, Machine>>;
}

/** What steering needs of the region table. */
export interface RegionCodes {
  has(code: string): boolean;
}

/** The caller's routing headers as sent (null: absent; repeated fields joined by ","). */
export interface SteeringHeaders {
  preferRegion: string | null;
  forceRegion: string | null;
  preferInstance: string | null;
  forceInstance: string | null;
}

export const NO_STEER: Steer = Object.freeze({ machine: null, forceMachine: false, regions: null, forceRegions: false });

/**
 * A comma-separated region list (`lhr`, `"iad, ord"`). `any` (replays only) ends it and says
 * "then anywhere": returned as `any: true`. Unknown codes are an error naming them.
 */
export function parseRegionList(value: string, regions: RegionCodes, allowAny: boolean, what: string): { regions: string[]; any: boolean } {
  const out: string[] = [];
  let any = false;
  const parts = value.split(',');
  if (parts.length > MAX_REGIONS) throw new ValidationError(`${what}: more than ${MAX_REGIONS} regions`);
  for (const raw of parts) {
    const code = raw.trim().toLowerCase();
    if (code === '') throw new ValidationError(`${what}: empty region in ${JSON.stringify(value)}`);
    if (any) throw new ValidationError(`${what}: "any" must come last`);
    if (code === 'any' && allowAny) {
      any = true;
      continue;
    }
    if (!/^[a-z]{3}$/.test(code) || !regions.has(code)) throw new ValidationError(`${what}: unknown region ${JSON.stringify(raw.trim())}`);
    if (!out.includes(code)) out.push(code);
  }
  if (out.length === 0) throw new ValidationError(`${what}: no region given`);
  return { regions: out, any };
}

function machineId(value: string, what: string): string {
  const id = value.trim().toLowerCase();
  if (!MACHINE_ID.test(id)) throw new ValidationError(`${what}: ${JSON.stringify(value)} is not a machine id (8-32 hex digits)`);
  return id;
}

/**
 * The caller's routing headers for `app` as a balancer constraint, or the error the caller gets:
 * 400 for a malformed value, an unknown region, a prefer-instance id that is no machine of the
 * app, or both the prefer and force form of one header; 404 for a force-instance id that is no
 * machine of the app. Whether a machine is available is the pick's business (503 there).
 */
export function steerFromHeaders(h: SteeringHeaders, app: string, catalog: SteeringCatalog, regions: RegionCodes): Steer {
  if (h.preferRegion !== null && h.forceRegion !== null) throw new ValidationError('send fly-prefer-region or fly-force-region, not both');
  if (h.preferInstance !== null && h.forceInstance !== null) throw new ValidationError('send fly-prefer-instance-id or fly-force-instance-id, not both');
  let machine: string | null = null;
  let forceMachine = false;
  const idValue = h.forceInstance ?? h.preferInstance;
  if (idValue !== null) {
    forceMachine = h.forceInstance !== null;
    const what = forceMachine ? 'fly-force-instance-id' : 'fly-prefer-instance-id';
    machine = machineId(idValue, what);
    if (!catalog.machinesByApp.get(app)?.has(machine)) {
      if (forceMachine) throw new NotFoundError(`${what}: no machine ${machine} in app ${app}`);
      throw new ValidationError(`${what}: no machine ${machine} in app ${app}`);
    }
  }
  let list: string[] | null = null;
  const regionValue = h.forceRegion ?? h.preferRegion;
  if (regionValue !== null) list = parseRegionList(regionValue, regions, false, h.forceRegion !== null ? 'fly-force-region' : 'fly-prefer-region').regions;
  return { machine, forceMachine, regions: list, forceRegions: h.forceRegion !== null };
}

/** The message of a steered pick that found no machine with room. */
export function unavailableText(steer: Steer, app: string, full: boolean): string {
  const why = full ? 'at its hard limit' : 'started and healthy';
  if (steer.machine !== null && steer.forceMachine) return `machine ${steer.machine} of app ${app} is not available (${full ? 'at its hard limit' : 'not started, unhealthy or ejected'})`;
  if (steer.regions !== null && steer.forceRegions) return `no machine of app ${app} ${full ? 'with room' : why} in region ${steer.regions.join(', ')}`;
  return `no machine of app ${app} ${full ? 'with room' : 'available'}`;
}

/** A parsed `fly-replay` value. */
export interface Replay {
  regions: string[] | null;
  /** `region=...,any`: the regions are a preference, not a constraint. */
  anyRegion: boolean;
  instance: string | null;
  preferInstance: string | null;
  app: string | null;
  state: string | null;
  elsewhere: boolean;
  timeoutMs: number | null;
  fallback: 'force_self' | 'prefer_self' | null;
}

const FIELDS = new Set(['region', 'instance', 'prefer_instance', 'app', 'state', 'elsewhere', 'timeout', 'fallback']);

/** `name=value;name="quoted, value"` into a map; a field named twice or a broken quote is an error. */
function splitFields(value: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const n = value.length;
  const ws = (): void => {
    while (i < n && (value[i] === ' ' || value[i] === '\t')) i++;
  };
  while (i < n) {
    ws();
    if (i >= n) break;
    const eq = value.indexOf('=', i);
    if (eq < 0) throw new ReplayInvalidError(`fly-replay: field without a value near ${JSON.stringify(value.slice(i, i + 20))}`);
    const name = value.slice(i, eq).trim().toLowerCase();
    if (!FIELDS.has(name)) throw new ReplayInvalidError(`fly-replay: unknown field ${JSON.stringify(name)}`);
    if (out.has(name)) throw new ReplayInvalidError(`fly-replay: field ${name} given twice`);
    i = eq + 1;
    ws();
    let v = '';
    if (value[i] === '"') {
      i++;
      let closed = false;
      while (i < n) {
        const c = value[i]!;
        if (c === '\\' && i + 1 < n) {
          v += value[i + 1];
          i += 2;
        } else if (c === '"') {
          i++;
          closed = true;
          break;
        } else {
          v += c;
          i++;
        }
      }
      if (!closed) throw new ReplayInvalidError(`fly-replay: unterminated quote in field ${name}`);
      ws();
      if (i < n && value[i] !== ';') throw new ReplayInvalidError(`fly-replay: bytes after the quoted value of ${name}`);
    } else {
      const end = value.indexOf(';', i);
      v = value.slice(i, end < 0 ? n : end).trim();
      i = end < 0 ? n : end;
    }
    if (value[i] === ';') i++;
    out.set(name, v);
  }
  return out;
}

/** `800ms`, `10s`, `1m` into ms. */
function duration(v: string): number | null {
  const m = /^(\d{1,6})(ms|s|m)$/.exec(v);
  if (!m) return null;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/** Parses a machine's `fly-replay` value; what cannot be followed is a ReplayInvalidError. */
export function parseReplay(value: string, regions: RegionCodes): Replay {
  const f = splitFields(value);
  const r: Replay = { regions: null, anyRegion: false, instance: null, preferInstance: null, app: null, state: null, elsewhere: false, timeoutMs: null, fallback: null };
  const region = f.get('region');
  if (region !== undefined) {
    try {
      const l = parseRegionList(region, regions, true, 'fly-replay region');
      r.regions = l.regions;
      r.anyRegion = l.any;
    } catch (err) {
      throw new ReplayInvalidError((err as Error).message);
    }
  }
  for (const [field, key] of [
    ['instance', 'instance'],
    ['prefer_instance', 'preferInstance'],
  ] as const) {
    const v = f.get(field);
    if (v === undefined) continue;
    if (!MACHINE_ID.test(v.toLowerCase())) throw new ReplayInvalidError(`fly-replay ${field}: ${JSON.stringify(v)} is not a machine id`);
    r[key] = v.toLowerCase();
  }
  if (r.instance !== null && r.preferInstance !== null) throw new ReplayInvalidError('fly-replay: instance and prefer_instance together');
  const app = f.get('app');
  if (app !== undefined) {
    if (!NAME_RE.test(app)) throw new ReplayInvalidError(`fly-replay app: ${JSON.stringify(app)} is not an app name`);
    r.app = app;
  }
  const state = f.get('state');
  if (state !== undefined) {
    if (state.length > 1024) throw new ReplayInvalidError('fly-replay state: longer than 1024 bytes');
    r.state = state;
  }
  const elsewhere = f.get('elsewhere');
  if (elsewhere !== undefined) {
    if (elsewhere !== 'true' && elsewhere !== 'false') throw new ReplayInvalidError(`fly-replay elsewhere: ${JSON.stringify(elsewhere)} is not true or false`);
    r.elsewhere = elsewhere === 'true';
  }
  const timeout = f.get('timeout');
  if (timeout !== undefined) {
    const ms = duration(timeout);
    if (ms === null || ms <= 0 || ms > MAX_REPLAY_TIMEOUT_MS) throw new ReplayInvalidError(`fly-replay timeout: ${JSON.stringify(timeout)} is not a duration from 1ms to ${MAX_REPLAY_TIMEOUT_MS / 1000}s (800ms, 10s)`);
    r.timeoutMs = ms;
  }
  const fallback = f.get('fallback');
  if (fallback !== undefined) {
    if (fallback !== 'force_self' && fallback !== 'prefer_self') throw new ReplayInvalidError(`fly-replay fallback: ${JSON.stringify(fallback)} is not force_self or prefer_self`);
    r.fallback = fallback;
  }
  if (r.regions === null && r.instance === null && r.preferInstance === null && r.app === null && !r.elsewhere) {
    throw new ReplayInvalidError('fly-replay: no target (region, instance, prefer_instance, app or elsewhere=true)');
  }
  return r;
}

/** Where a replay comes from: the app and machine that answered with fly-replay. */
export interface ReplaySource {
  app: App;
  machine: Machine;
  /** The service the caller reached (its port picks the target app's service). */
  service: Service;
}

/** A replay to make: the target app and service, the pick constraint, what the target is told. */
export interface ReplayPlan {
  app: App;
  service: Service;
  steer: Steer;
  /** elsewhere=true: the machine that asked is not a candidate. */
  excludeSource: boolean;
  timeoutMs: number | null;
  fallback: 'force_self' | 'prefer_self' | null;
  /** The `fly-replay-src` value. */
  src: string;
}

/** Where the request stands when a machine asks for a replay. */
export interface ReplayHistory {
  /** Replays already made for this caller request. */
  replays: number;
  /** The request already went back to its source after a failed replay. */
  fallback: boolean;
  /** The body was not kept (over MAX_REPLAY_BODY). */
  bodyTooLarge: boolean;
}

/** A value as a header token or a quoted string. */
function quoted(v: string): string {
  return /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(v) ? v : `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** `fly-replay-src`: the machine and region that asked, when (µs since the epoch), the state it passed. */
export function replaySrc(machine: Machine, state: string | null, nowMs: number): string {
  return `instance=${machine.id};region=${machine.region};t=${Math.floor(nowMs * 1000)}${state !== null ? `;state=${quoted(state)}` : ''}`;
}

/** The HTTP service of `app` a replay lands on: the one serving the same port, else the first HTTP one. */
export function replayService(app: App, from: Service): Service | null {
  const ports = new Set(from.ports.map((p) => p.port));
  let first: Service | null = null;
  for (const s of app.services) {
    const http = s.protocol === 'http' || s.ports.some((p) => p.handlers.includes('http'));
    if (!http) continue;
    if (s.ports.some((p) => ports.has(p.port))) return s;
    first ??= s;
  }
  return first;
}

/**
 * The replay policy: checks a parsed fly-replay against the bound, the body limit and the org
 * boundary, and resolves it against the catalog. Errors: ReplayLoopError (508),
 * ReplayBodyTooLargeError (413), ForbiddenError (403: the app is in another org),
 * ReplayInvalidError (502: unknown app, no HTTP service, an instance not in the target app).
 */
export function planReplay(r: Replay, from: ReplaySource, catalog: SteeringCatalog, h: ReplayHistory, nowMs: number): ReplayPlan {
  if (h.fallback) throw new ReplayLoopError('fly-replay from a machine that got the request back after a failed replay: not replayed again');
  if (h.replays >= MAX_REPLAYS) throw new ReplayLoopError(`fly-replay after ${h.replays} replays of this request: not followed (at most ${MAX_REPLAYS})`);
  if (h.bodyTooLarge) throw new ReplayBodyTooLargeError(`machine ${from.machine.id} asked to replay a request whose body is over ${MAX_REPLAY_BODY} bytes (1 MiB), more than the proxy keeps for a replay; send such requests with fly-force-region or fly-force-instance-id instead`);
  let app = from.app;
  let service = from.service;
  if (r.app !== null && r.app !== from.app.name) {
    const target = catalog.apps.get(r.app);
    if (!target) throw new ReplayInvalidError(`fly-replay app: no app ${r.app}`);
    if (target.org !== from.app.org) throw new ForbiddenError(`fly-replay app: app ${r.app} is not in org ${from.app.org}`);
    const s = replayService(target, from.service);
    if (!s) throw new ReplayInvalidError(`fly-replay app: app ${r.app} has no HTTP service`);
    app = target;
    service = s;
  }
  const id = r.instance ?? r.preferInstance;
  if (id !== null && !catalog.machinesByApp.get(app.name)?.has(id)) throw new ReplayInvalidError(`fly-replay ${r.instance !== null ? 'instance' : 'prefer_instance'}: no machine ${id} in app ${app.name}`);
  const steer: Steer = { machine: id, forceMachine: r.instance !== null, regions: r.regions, forceRegions: r.regions !== null && !r.anyRegion };
  return {
    app,
    service,
    steer,
    excludeSource: r.elsewhere && app.name === from.app.name,
    timeoutMs: r.timeoutMs,
    fallback: r.fallback,
    src: replaySrc(from.machine, r.state, nowMs),
  };
}

/** The constraint of a fallback: back to the machine that asked (force_self) or, failing it, its app (prefer_self). */
export function fallbackSteer(mode: 'force_self' | 'prefer_self', source: Machine): Steer {
  return { machine: source.id, forceMachine: mode === 'force_self', regions: null, forceRegions: false };
}

/** The `fly-replay-failed` value the source machine gets with a fallback. */
export function replayFailed(plan: ReplayPlan, reason: string): string {
  return `app=${plan.app.name};reason=${quoted(reason)}`;
}

/**
 * Catalog rules shared by every store: validation, address derivation and collision checks.
 *
 * Pure: a store hands in what it read (through the `Lookup` functions) and gets back the
 * entity to write, or a typed error. The embedded store calls these under its single thread;
 * the Redis store calls them inside an optimistic transaction and retries on a race.
 */
import { z } from 'zod';
import {
  flycastAddress,
  isReservedHostId,
  machineAddress,
  MAX_SEQUENCE,
  normalizeAddress,
  orgDnsAddress,
  orgOf,
  parseMachineAddress,
  peerAddress,
} from '../addressing/index.js';
import { ConflictError, ExhaustedError, ForbiddenError, NotFoundError, ValidationError } from '../errors.js';
import {
  appSchema,
  flycastIpSchema,
  hostInputSchema,
  hostPatchSchema,
  hostSchema,
  machineInputSchema,
  machineSchema,
  machinePatchSchema,
  orgSchema,
  peerInputSchema,
  peerSchema,
  serviceSchema,
  storedTokenSchema,
  tokenSchema,
  type App,
  type AppInput,
  type EntityKind,
  type FlycastIp,
  type Host,
  type HostInput,
  type HostPatch,
  type Machine,
  type MachineInput,
  type MachinePatch,
  type MachineState,
  type Org,
  type Peer,
  type PeerInput,
  type Service,
  type Token,
} from './types.js';

/** Turns a zod failure into one ValidationError naming every bad field. */
export function parseOrThrow<T extends z.ZodTypeAny>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const detail = r.error.issues
    .map((i) => `${i.path.length ? i.path.join('.') : what}: ${i.message}`)
    .join('; ');
  throw new ValidationError(`invalid ${what}: ${detail}`);
}

export function validateOrg(input: unknown, orgByName: (n: string) => Org | undefined, orgByNetworkId: (id: number) => Org | undefined): Org {
  const org = parseOrThrow(orgSchema, input, 'org');
  if (orgByName(org.name)) throw new ConflictError(`org ${org.name} already exists`);
  const other = orgByNetworkId(org.network_id);
  if (other) throw new ConflictError(`network id ${org.network_id} is already used by org ${other.name}`);
  return org;
}

export function validateApp(input: AppInput, appByName: (n: string) => App | undefined, orgByName: (n: string) => Org | undefined, regionExists: (c: string) => boolean = () => true): App {
  const app = parseOrThrow(appSchema, input, 'app');
  if (app.primary_region !== undefined && !regionExists(app.primary_region)) throw new ValidationError(`invalid app: primary_region: unknown region ${app.primary_region}`);
  if (!orgByName(app.org)) throw new NotFoundError(`org ${app.org} not found`);
  if (appByName(app.name)) throw new ConflictError(`app ${app.name} already exists`);
  return app;
}

export function validateServices(services: unknown): Service[] {
  return parseOrThrow(z.array(serviceSchema), services, 'services');
}

export interface AppServicesOptions {
  /** fly.toml's primary_region: a region code, null to remove it, absent to keep the app's. */
  primary_region?: string | null;
}

/** The app with new services (and primary_region when given), validated. */
export function withServices(app: App, services: unknown, opts: AppServicesOptions, regionExists: (c: string) => boolean): App {
  const next: App = { ...app, services: validateServices(services) };
  if (opts.primary_region === null) delete next.primary_region;
  else if (opts.primary_region !== undefined) {
    const r = parseOrThrow(appSchema.shape.primary_region, opts.primary_region, 'primary_region');
    if (r === undefined || !regionExists(r)) throw new ValidationError(`invalid app: primary_region: unknown region ${opts.primary_region}`);
    next.primary_region = r;
  }
  return next;
}

export function randomMachineId(random: () => number = Math.random): string {
  let id = '';
  for (let i = 0; i < 14; i++) id += Math.floor(random() * 16).toString(16);
  return id;
}

export interface MachineLookup {
  appByName(name: string): App | undefined;
  orgByName(name: string): Org | undefined;
  machineById(id: string): Machine | undefined;
  /** Who holds this (normalized) address, if anyone: a machine id, peer key or Flycast ip. */
  addressOwner(address: string): string | undefined;
  regionExists(code: string): boolean;
  hostByName(name: string): Host | undefined;
}

/** Builds a machine to register; `newId` is used when the input carries none. */
export function buildMachine(input: MachineInput, hostId: number, lookup: MachineLookup, now: number, newId: () => string): Machine {
  const m = parseOrThrow(machineInputSchema, input, 'machine');
  const app = lookup.appByName(m.app);
  if (!app) throw new NotFoundError(`app ${m.app} not found`);
  const org = lookup.orgByName(app.org);
  if (!org) throw new NotFoundError(`org ${app.org} not found`);
  if (!lookup.regionExists(m.region)) throw new ValidationError(`invalid machine: region: unknown region ${m.region}`);
  const id = m.id ?? newId();
  if (lookup.machineById(id)) throw new ConflictError(`machine ${id} already exists`);
  if ((m.host === undefined) !== (m.config === undefined)) {
    throw new ValidationError('invalid machine: host and config go together (a machine run by a host has both; one registered by hand neither)');
  }
  const host = m.host === undefined ? undefined : lookup.hostByName(m.host);
  if (m.host !== undefined && !host) throw new NotFoundError(`host ${m.host} not found`);
  const run = host !== undefined;
  if (run && m.address !== undefined) throw new ValidationError('invalid machine: address: a machine run by a host takes its address from the host id');
  if (run && m.upstream !== undefined) throw new ValidationError('invalid machine: upstream: a machine run by a host gets its upstream from the host');
  if (run && m.state !== undefined && m.state !== 'created') throw new ValidationError(`invalid machine: state: a machine run by a host starts as created, not ${m.state}`);
  if (!run && m.state !== undefined && m.state !== 'started' && m.state !== 'stopped') {
    throw new ValidationError(`invalid machine: state: a machine registered by hand is started or stopped, not ${m.state}`);
  }
  if (host && host.region !== m.region) throw new ValidationError(`invalid machine: region: host ${host.name} is in region ${host.region}, not ${m.region}`);
  if (host && isReservedHostId(host.host_id)) throw new ValidationError(`host id ${host.host_id} is reserved`);
  let address: string;
  if (host) {
    address = machineAddress(org.network_id, host.host_id, id);
  } else if (m.address !== undefined) {
    const norm = normalizeAddress(m.address);
    if (!norm) throw new ValidationError(`invalid machine: address: ${JSON.stringify(m.address)} is not an IPv6 address`);
    if (orgOf(norm) !== org.network_id) {
      throw new ValidationError(`invalid machine: address: ${norm} is outside org ${org.name}'s prefix`);
    }
    const parts = parseMachineAddress(norm);
    if (!parts) throw new ValidationError(`invalid machine: address: ${norm} is reserved (DNS or Flycast range)`);
    address = norm;
  } else {
    if (isReservedHostId(hostId)) throw new ValidationError(`host id ${hostId} is reserved`);
    address = machineAddress(org.network_id, hostId, id);
  }
  const owner = lookup.addressOwner(address);
  if (owner !== undefined) throw new ConflictError(`address ${address} is already used by ${owner}`);
  return {
    id,
    app: app.name,
    region: m.region,
    address,
    state: m.state ?? (run ? 'created' : 'started'),
    health: { status: 'unknown', reason: 'no check has run yet', changed_at: now },
    ...(m.upstream !== undefined ? { upstream: m.upstream } : {}),
    ...(host && m.config ? { host: host.name, config: m.config } : {}),
    created_at: now,
    updated_at: now,
  };
}

export interface MachineUpdateOptions {
  /** Apply only while the machine is in one of these states (else ConflictError): a compare-and-set. */
  ifState?: readonly MachineState[];
}

export function applyMachinePatch(machine: Machine, patch: MachinePatch, now: number, regionExists: (c: string) => boolean, opts: MachineUpdateOptions = {}): Machine {
  const p = parseOrThrow(machinePatchSchema, patch, 'machine update');
  if (p.region !== undefined && !regionExists(p.region)) throw new ValidationError(`invalid machine update: region: unknown region ${p.region}`);
  if (opts.ifState && !opts.ifState.includes(machine.state)) {
    throw new ConflictError(`machine ${machine.id} is ${machine.state}, not ${opts.ifState.join(' or ')}`);
  }
  if (p.state === 'destroyed') throw new ValidationError('invalid machine update: state: a destroyed machine is removed from the catalog, not kept as destroyed');
  const next: Machine = { ...machine, updated_at: now };
  if (p.state !== undefined) next.state = p.state;
  if (p.last_exit !== undefined) next.last_exit = p.last_exit;
  if (p.restarts !== undefined) next.restarts = p.restarts;
  if (p.last_active_at !== undefined) next.last_active_at = p.last_active_at;
  if (p.state_reason === null) delete next.state_reason;
  else if (p.state_reason !== undefined) next.state_reason = p.state_reason;
  if (p.region !== undefined) next.region = p.region;
  if (p.upstream === null) delete next.upstream;
  else if (p.upstream !== undefined) next.upstream = p.upstream;
  if (p.health !== undefined) {
    const changed = p.health.status !== machine.health.status;
    next.health = {
      status: p.health.status,
      reason: p.health.reason ?? machine.health.reason,
      changed_at: p.health.changed_at ?? (changed ? now : machine.health.changed_at),
    };
  }
  return next;
}

export interface HostOptions {
  /** Host ids this host may not take: the node's own for hand-registered machines, the WireGuard gateway's. */
  reservedHostIds: readonly number[];
  /** A host whose heartbeat is older than this counts as gone: another agent may take its name. */
  staleAfterMs: number;
  /** This session may be replaced even with a fresh heartbeat (an agent of this boot whose process is gone). */
  replaceSession?: string;
}

export interface HostLookup {
  hostByName(name: string): Host | undefined;
  /** The name of the host holding this host id, if any. */
  hostNameById(hostId: number): string | undefined;
  regionExists(code: string): boolean;
  /** Machines placed on the named host (only counted when its region would change). */
  machinesOnHost(name: string): number;
}

const hostIdText = (id: number): string => `${Math.floor(id / 0x10000).toString(16)}:${(id & 0xffff).toString(16)}`;

/**
 * A host (re-)registering: a new name gets its configured host id, or a free one drawn with
 * `randomHostId`; a known name keeps the host id it has (a configured one must match: machine
 * addresses are made of it). A name whose agent still heartbeats under another session is
 * refused, so two agents never run the same machines.
 */
export function buildHost(input: HostInput, lookup: HostLookup, opts: HostOptions, now: number, randomHostId: (attempt: number) => number): Host {
  const h = parseOrThrow(hostInputSchema, input, 'host');
  if (!lookup.regionExists(h.region)) throw new ValidationError(`invalid host: region: unknown region ${h.region}`);
  const existing = lookup.hostByName(h.name);
  if (existing) {
    if (h.host_id !== undefined && h.host_id !== existing.host_id) {
      throw new ConflictError(`host ${h.name} has host id ${hostIdText(existing.host_id)} in the catalog, not ${hostIdText(h.host_id)}: its machines' addresses are made of it (remove the host_id setting, or remove the host first)`);
    }
    const fresh = now - existing.heartbeat_at < opts.staleAfterMs;
    if (existing.state === 'up' && fresh && existing.session !== h.session && existing.session !== opts.replaceSession) {
      throw new ConflictError(`host ${h.name} is already run by another agent (session ${existing.session}, last heartbeat ${now - existing.heartbeat_at} ms ago); stop it first or give this one another [host] name`);
    }
    if (existing.region !== h.region && lookup.machinesOnHost(h.name) > 0) {
      throw new ConflictError(`host ${h.name} is in region ${existing.region} and runs machines there; it cannot move to ${h.region}`);
    }
  }
  let hostId: number;
  if (existing) hostId = existing.host_id;
  else if (h.host_id !== undefined) {
    if (opts.reservedHostIds.includes(h.host_id)) throw new ConflictError(`host id ${hostIdText(h.host_id)} is reserved on this node (the node's or the WireGuard gateway's host id); choose another`);
    const holder = lookup.hostNameById(h.host_id);
    if (holder !== undefined) throw new ConflictError(`host id ${hostIdText(h.host_id)} is already used by host ${holder}`);
    hostId = h.host_id;
  } else {
    for (let attempt = 0; ; attempt++) {
      if (attempt >= 64) throw new ExhaustedError('no free host id found after 64 draws');
      const id = randomHostId(attempt);
      if (isReservedHostId(id) || opts.reservedHostIds.includes(id) || lookup.hostNameById(id) !== undefined) continue;
      hostId = id;
      break;
    }
  }
  return {
    name: h.name,
    region: h.region,
    host_id: hostId,
    state: 'up',
    driver: h.driver,
    heartbeat_at: now,
    session: h.session,
    ...(h.wireguard ? { wireguard: h.wireguard } : {}),
    created_at: existing?.created_at ?? now,
    updated_at: now,
  };
}

export interface HostUpdateOptions {
  /** Apply only while this session runs the host (else ConflictError): a replaced agent stops writing. */
  ifSession?: string;
}

export function applyHostPatch(host: Host, patch: HostPatch, now: number, opts: HostUpdateOptions = {}): Host {
  const p = parseOrThrow(hostPatchSchema, patch, 'host update');
  if (opts.ifSession !== undefined && host.session !== opts.ifSession) {
    throw new ConflictError(`host ${host.name} is now run by another agent (session ${host.session})`);
  }
  const next: Host = { ...host, updated_at: now };
  if (p.state !== undefined) next.state = p.state;
  if (p.heartbeat_at !== undefined) next.heartbeat_at = p.heartbeat_at;
  if (p.wireguard !== undefined) next.wireguard = p.wireguard;
  return next;
}

/** Refuses to remove a host that still has machines placed on it. */
export function assertHostUnused(name: string, machines: Iterable<Machine>): void {
  const on = [...machines].filter((m) => m.host === name).map((m) => m.id);
  if (on.length) throw new ConflictError(`host ${name} still runs machines ${on.slice(0, 3).join(', ')}${on.length > 3 ? ', ...' : ''}; destroy them first`);
}

/** A random 32-bit host id from 8 hex digits. */
export function randomHostId(random: () => number = Math.random): number {
  return Math.floor(random() * 0x1_0000_0000) >>> 0;
}

/** The Flycast address for sequence `seq` of `org`; throws when the range is used up. */
export function buildFlycast(app: App, org: Org, seq: number, now: number): FlycastIp {
  if (seq > MAX_SEQUENCE) throw new ExhaustedError(`org ${org.name} has no Flycast addresses left`);
  return { address: flycastAddress(org.network_id, seq), app: app.name, org: org.name, type: 'private_v6', region: 'global', created_at: now };
}

/** Flycast numbering starts here, so that the first address reads `...:0:1::3` like Fly's. */
export const FIRST_FLYCAST_SEQUENCE = 3;

export interface PeerLookup {
  orgByName(name: string): Org | undefined;
  peerByKey(org: string, name: string): Peer | undefined;
  addressOwner(address: string): string | undefined;
  regionExists(code: string): boolean;
}

export function validatePeerInput(input: PeerInput, lookup: PeerLookup): { peer: PeerInput; org: Org } {
  const peer = parseOrThrow(peerInputSchema, input, 'wireguard peer');
  const org = lookup.orgByName(peer.org);
  if (!org) throw new NotFoundError(`org ${peer.org} not found`);
  if (!lookup.regionExists(peer.region)) throw new ValidationError(`invalid wireguard peer: region: unknown region ${peer.region}`);
  if (lookup.peerByKey(peer.org, peer.name)) throw new ConflictError(`wireguard peer ${peer.name} already exists in org ${peer.org}`);
  return { peer, org };
}

export function buildPeer(input: PeerInput, org: Org, gatewayHostId: number, seq: number, now: number): Peer {
  if (seq > MAX_SEQUENCE) throw new ExhaustedError(`org ${org.name} has no peer addresses left`);
  return { ...input, address: peerAddress(org.network_id, gatewayHostId, seq), created_at: now };
}

/** Addresses no entity may take: the org resolver. */
export function isInfrastructureAddress(address: string, org: Org): boolean {
  return address === orgDnsAddress(org.network_id);
}

/** Refuses to delete an org that still holds apps, peers or Flycast addresses. */
export function assertOrgUnused(name: string, apps: Iterable<App>, peers: Iterable<Peer>, flycast: Iterable<FlycastIp>): void {
  const uses = [
    ...[...apps].filter((a) => a.org === name).map((a) => `app ${a.name}`),
    ...[...peers].filter((p) => p.org === name).map((p) => `peer ${p.name}`),
    ...[...flycast].filter((f) => f.org === name).map((f) => `flycast ip ${f.address}`),
  ];
  if (uses.length) throw new ConflictError(`org ${name} is still in use by ${uses.slice(0, 3).join(', ')}${uses.length > 3 ? ', ...' : ''}`);
}

/** The normalized address of a Flycast IP to release (with `org`: only if it is that org's). */
export function validateRelease(address: string, orgName: string | undefined, lookup: (normalized: string) => FlycastIp | undefined): string {
  const norm = normalizeAddress(address);
  if (!norm) throw new ValidationError(`${JSON.stringify(address)} is not an IPv6 address`);
  const ip = lookup(norm);
  if (!ip) throw new NotFoundError(`flycast ip ${norm} not found`);
  if (orgName !== undefined && ip.org !== orgName) throw new ForbiddenError(`flycast ip ${norm} does not belong to org ${orgName}`);
  return norm;
}

// Read back, an entity may carry top-level fields a newer version added (a cluster being
// upgraded node by node): those pass; every field this version uses is checked.
const STORED_SCHEMAS = {
  org: orgSchema.passthrough(),
  app: appSchema.passthrough(),
  machine: machineSchema.passthrough(),
  flycast: flycastIpSchema.passthrough(),
  peer: peerSchema.passthrough(),
  host: hostSchema.passthrough(),
  token: storedTokenSchema,
} as const;
/** What a store keeps: the catalog's entities, and tokens (which are not published to views). */
export type StoredKind = EntityKind | 'token';
/** The entity type of each kind. */
export type StoredEntity<K extends StoredKind> = z.infer<(typeof STORED_SCHEMAS)[K]>;

/** What a store does with an entity it read back that fails its schema: skip it and say why. */
export interface RejectedEntry {
  kind: StoredKind;
  /** Its id, name or address, when the entry has one. */
  key: string;
  reason: string;
}

/**
 * Checks an entity read back from storage (a catalog file, a Redis hash, a change another node
 * published) against the schema it must have been written with: every field a dial or a
 * listener uses (upstream, addresses, ports, durations) is in range, so an entry written by an
 * older version or by hand can be skipped loudly instead of crashing the node when it is used.
 */
export function checkStored<K extends StoredKind>(kind: K, raw: unknown): { value: StoredEntity<K> } | RejectedEntry {
  const r = STORED_SCHEMAS[kind].safeParse(raw);
  if (r.success) return { value: r.data as StoredEntity<K> };
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const keyField = kind === 'machine' ? o.id : kind === 'flycast' ? o.address : kind === 'peer' ? `${String(o.org)}/${String(o.name)}` : o.name;
  const reason = r.error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : kind}: ${i.message}`)
    .join('; ');
  return { kind, key: typeof keyField === 'string' ? keyField : '?', reason };
}

/** Dashboard sessions kept at most; the oldest go first (a script logging in in a loop cannot fill the catalog). */
export const MAX_DASHBOARD_SESSIONS = 1000;

/**
 * Validates a token record to store: the schema, a free id, orgs that exist. Returns the record
 * and the ids of tokens to remove with it: expired ones, and the oldest dashboard sessions past
 * MAX_DASHBOARD_SESSIONS, so that the table cleans itself as it is written.
 */
export function validateToken(input: unknown, lookup: { orgByName(n: string): Org | undefined; tokens(): Iterable<Token> }, now: number): { token: Token; prune: string[] } {
  const token = parseOrThrow(tokenSchema, input, 'token');
  for (const org of token.orgs) if (!lookup.orgByName(org)) throw new NotFoundError(`org ${org} not found`);
  if (new Set(token.orgs).size !== token.orgs.length) throw new ValidationError('invalid token: orgs: names an org twice');
  if (token.expires_at <= now) throw new ValidationError('invalid token: expires_at: is in the past');
  const prune: string[] = [];
  const sessions: Token[] = [];
  for (const t of lookup.tokens()) {
    if (t.id === token.id) throw new ConflictError(`token ${t.id} already exists`);
    if (t.expires_at <= now) prune.push(t.id);
    else if (t.kind === 'dashboard') sessions.push(t);
  }
  if (token.kind === 'dashboard' && sessions.length >= MAX_DASHBOARD_SESSIONS) {
    sessions.sort((a, b) => a.created_at - b.created_at);
    for (const t of sessions.slice(0, sessions.length - MAX_DASHBOARD_SESSIONS + 1)) prune.push(t.id);
  }
  return { token, prune };
}

/** Tokens that name a deleted org stop working with it: removed, not left to wake up if the name comes back. */
export function tokensOfOrg(org: string, tokens: Iterable<Token>): string[] {
  return [...tokens].filter((t) => t.orgs.includes(org)).map((t) => t.id);
}

/**
 * The control API for machines that hosts run, and for hosts: `machines run` with placement,
 * the lifecycle verbs (stop, start, restart, destroy) and their waits, `hosts list`, and logs.
 *
 * The API only writes wishes to the catalog (`created`, `starting`, `stopping`, `destroying`,
 * each a compare-and-set on the state) and waits, on this node's catalog view, for the host
 * agent to write the outcome. A run that ends failed (say, "command not found") is removed again
 * before the error is answered: nothing half-made. Machines registered by hand keep the old,
 * direct meaning of stop and start.
 *
 * Org tokens (./tokens.ts): the machines, verbs and logs of their orgs' apps, as for every
 * route. Hosts are the platform's: an org token lists only the hosts that run a machine of its
 * orgs, each counting only those machines and without the agent's session or mesh endpoint, and
 * placement errors do not list the other hosts; removing a host needs the admin token.
 */
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { parseOrThrow } from '../catalog/rules.js';
import type { CatalogStore } from '../catalog/store.js';
import { machineConfigSchema, machineIdSchema, nameSchema, regionCodeSchema, type CatalogSnapshot, type Host, type Machine, type MachineState } from '../catalog/types.js';
import type { CatalogView } from '../catalog/view.js';
import { ConflictError, ForbiddenError, MachineFailedError, NotFoundError, ValidationError } from '../errors.js';
import type { HostRole, LogLine } from '../host/index.js';
import { hostStatus, placeMachine, type HostStatus } from '../host/placement.js';
import type { RunningRole } from '../role.js';
import type { ApiRequest, ApiResponse, Router } from './http.js';
import { adminOnly, allow, orgList, type Principal } from './tokens.js';

export interface MachineRouteDeps {
  store: CatalogStore;
  view: CatalogView;
  /** A host silent for longer than this is unreachable (placement skips it). */
  staleAfterMs: number;
  /** The host role of this node, if it runs one (serves logs). */
  hostRole(): RunningRole | undefined;
}

export const runInputSchema = z
  .object({
    id: machineIdSchema.optional(),
    region: regionCodeSchema.optional(),
    host: nameSchema.optional(),
    config: machineConfigSchema,
  })
  .strict();

/** A host as the API shows it: with its status and machine count. */
export type HostView = Host & { status: HostStatus; heartbeat_age_ms: number; machines: number };

export function hostView(h: Host, machines: number, now: number, staleAfterMs: number): HostView {
  return { ...h, status: hostStatus(h, now, staleAfterMs), heartbeat_age_ms: Math.max(0, now - h.heartbeat_at), machines };
}

/** What an org token sees of a host: not the agent's session, nor the mesh key and endpoint. */
export type OrgHostView = Omit<HostView, 'session' | 'wireguard'>;

/**
 * The hosts `p` may see, each with the count of the machines it may see on it: every host for
 * the admin token; for an org token, the hosts that run a machine of its orgs.
 */
function visibleHosts(snap: CatalogSnapshot, p: Principal): Map<string, { host: Host; machines: number }> {
  const out = new Map<string, { host: Host; machines: number }>();
  const byName = new Map(snap.hosts.map((h) => [h.name, h]));
  if (p.kind === 'admin') for (const h of snap.hosts) out.set(h.name, { host: h, machines: 0 });
  const orgOfApp = p.kind === 'org' ? new Map(snap.apps.map((a) => [a.name, a.org])) : null;
  for (const m of snap.machines) {
    if (m.host === undefined) continue;
    if (orgOfApp) {
      const org = orgOfApp.get(m.app);
      if (org === undefined || !(p as Extract<Principal, { kind: 'org' }>).orgs.has(org)) continue;
    }
    const seen = out.get(m.host);
    if (seen) seen.machines++;
    else {
      const h = byName.get(m.host);
      if (h) out.set(m.host, { host: h, machines: 1 });
    }
  }
  return out;
}

function hostViewFor(p: Principal, h: Host, machines: number, now: number, staleAfterMs: number): HostView | OrgHostView {
  const v = hostView(h, machines, now, staleAfterMs);
  if (p.kind === 'admin') return v;
  const { session: _session, wireguard: _wireguard, ...shown } = v;
  return shown;
}

/** How long the API waits for a host to act. A stop may take kill_timeout, plus the catalog round trips. */
const START_WAIT_MS = 20_000;
const stopWait = (m: Machine): number => (m.config?.kill_timeout ?? 5_000) + 10_000;

function waitMs(req: ApiRequest, dflt: number): number {
  const t = req.query.get('timeout');
  if (t === null || t === '') return dflt;
  const m = /^(\d+)(ms|s)?$/.exec(t);
  if (!m) throw new ValidationError('timeout: must be milliseconds or like "30s"');
  return Math.min(300_000, Number(m[1]) * (m[2] === 's' ? 1000 : 1));
}

/** Resolves with the machine once `done(it)` holds (undefined: it is gone), or null on timeout. */
export function waitForMachine(view: CatalogView, id: string, done: (m: Machine | undefined) => boolean, timeoutMs: number): Promise<Machine | undefined | null> {
  const now = view.machines.get(id);
  if (done(now)) return Promise.resolve(now);
  return new Promise((resolve) => {
    const onChange = (c: { kind: string; key: string }): void => {
      if (c.kind !== 'machine' || c.key !== id) return;
      const m = view.machines.get(id);
      if (!done(m)) return;
      finish();
      resolve(m);
    };
    const timer = setTimeout(() => {
      finish();
      resolve(null);
    }, timeoutMs);
    const finish = (): void => {
      clearTimeout(timer);
      view.off('change', onChange);
    };
    view.on('change', onChange);
  });
}

const isIn = (...states: MachineState[]) => (m: Machine | undefined): boolean => m !== undefined && states.includes(m.state);

/** The verbs the generic machine routes hand over to for machines that hosts run. */
export interface MachineVerbs {
  run(app: string, body: Record<string, unknown>, req: ApiRequest): Promise<ApiResponse>;
  /** null: the machine is registered by hand (the caller keeps the direct meaning). 403 unless `p` may act on it. */
  findRun(id: string, p: Principal): Promise<Machine | null>;
  stop(m: Machine, req: ApiRequest): Promise<Machine>;
  start(m: Machine, req: ApiRequest): Promise<Machine>;
  destroy(m: Machine, req: ApiRequest): Promise<Machine>;
}

const ALL_BUT_DESTROYING: MachineState[] = ['created', 'starting', 'started', 'stopping', 'stopped', 'suspending', 'suspended', 'failed'];

export function addMachineRoutes(r: Router, d: MachineRouteDeps): MachineVerbs {
  const { store, view } = d;

  /**
   * The machine if a host runs it, null if it is registered by hand; 403 unless `p` may act on
   * it. A machine not in the snapshot is null for the admin token: the store decides (one
   * skipped at load as invalid is still removable, issue 11); an org token cannot own it.
   */
  const findRun = async (id: string, p: Principal): Promise<Machine | null> => {
    const snap = await store.snapshot();
    const m = snap.machines.find((x) => x.id === id);
    if (!m && p.kind === 'admin') return null;
    if (!m) throw new NotFoundError(`machine ${id} not found`);
    allow(p, snap.apps.find((a) => a.name === m.app)?.org, `machine ${id}`);
    return m.config ? m : null;
  };

  /** Writes a wish with compare-and-set; a machine already past it is left alone. */
  const wish = async (m: Machine, to: MachineState, from: MachineState[], extra: Record<string, unknown> = {}): Promise<void> => {
    try {
      await store.updateMachine(m.id, { state: to, ...extra }, { ifState: from });
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  };

  const stop = async (m: Machine, req: ApiRequest): Promise<Machine> => {
    if (m.state === 'stopped' || m.state === 'failed') return m;
    if (m.state === 'destroying') throw new ConflictError(`machine ${m.id} is being destroyed`);
    await wish(m, 'stopping', ['created', 'starting', 'started', 'suspending', 'suspended']);
    const got = await waitForMachine(view, m.id, (x) => !x || ['stopped', 'failed', 'destroying'].includes(x.state), waitMs(req, stopWait(m)));
    if (got === null) throw new MachineFailedError(`host ${m.host} did not stop machine ${m.id} in time (is its agent running? sixpn hosts list)`);
    if (got === undefined) throw new NotFoundError(`machine ${m.id} was removed meanwhile`);
    return got;
  };

  const start = async (m: Machine, req: ApiRequest): Promise<Machine> => {
    if (m.state === 'destroying') throw new ConflictError(`machine ${m.id} is being destroyed`);
    if (m.state === 'stopping' || m.state === 'suspending') {
      const was = m.state;
      const got = await waitForMachine(view, m.id, (x) => !x || x.state !== was, stopWait(m));
      if (!got) throw new MachineFailedError(`machine ${m.id} is still ${was}`);
      m = got;
    }
    if (m.state === 'stopped' || m.state === 'failed' || m.state === 'suspended') await wish(m, 'starting', ['stopped', 'failed', 'suspended'], { restarts: 0, state_reason: null });
    const got = await waitForMachine(view, m.id, (x) => !x || ['started', 'failed', 'stopped', 'destroying'].includes(x.state), waitMs(req, START_WAIT_MS));
    if (got === null) throw new MachineFailedError(`host ${m.host} did not start machine ${m.id} in time (is its agent running? sixpn hosts list)`);
    if (got === undefined) throw new NotFoundError(`machine ${m.id} was removed meanwhile`);
    if (got.state === 'failed') throw new MachineFailedError(`machine ${m.id} failed to start on host ${m.host}: ${got.state_reason ?? 'no reason given'}`);
    return got;
  };

  const run = async (app: string, body: Record<string, unknown>, req: ApiRequest): Promise<ApiResponse> => {
    const input = parseOrThrow(runInputSchema, body, 'machine');
    const snap = await store.snapshot();
    if (!snap.apps.some((a) => a.name === app)) throw new NotFoundError(`app ${app} not found`);
    // An org token is not shown the hosts its orgs do not use, not even in an error.
    const host = placeMachine(snap.hosts, snap.machines, { region: input.region, host: input.host }, Date.now(), d.staleAfterMs, { listHosts: req.principal.kind === 'admin' });
    const m = await store.registerMachine({ ...(input.id !== undefined ? { id: input.id } : {}), app, region: host.region, host: host.name, config: input.config }, { hostId: host.host_id });
    const got = await waitForMachine(view, m.id, (x) => !x || ['started', 'failed', 'stopped', 'destroying'].includes(x.state), waitMs(req, START_WAIT_MS));
    if (got && got.state === 'failed') {
      // Nothing half-made: the host already removed what it made; the catalog entry goes too.
      await store.removeMachine(m.id).catch(() => undefined);
      throw new MachineFailedError(`machine ${m.id} could not start on host ${host.name}: ${got.state_reason ?? 'no reason given'}; it was not kept`);
    }
    if (got === undefined) throw new NotFoundError(`machine ${m.id} was removed meanwhile`);
    return { status: 201, body: got ?? view.machines.get(m.id) ?? m };
  };

  r.add('POST', '/v1/machines/:id/restart', async (req) => {
    const snap = await store.snapshot();
    const m = snap.machines.find((x) => x.id === req.params.id);
    if (!m) throw new NotFoundError(`machine ${req.params.id} not found`);
    allow(req.principal, snap.apps.find((a) => a.name === m.app)?.org, `machine ${m.id}`);
    if (!m.config) throw new ValidationError(`machine ${req.params.id} is registered by hand: sixpn does not run its process (use stop and start)`);
    return { status: 200, body: await start(await stop(m, req), req) };
  });

  // Fly's `machine suspend`: the process is frozen in place; `start` (or Flycast traffic) thaws it.
  r.add('POST', '/v1/machines/:id/suspend', async (req) => {
    const snap = await store.snapshot();
    const m = snap.machines.find((x) => x.id === req.params.id);
    if (!m) throw new NotFoundError(`machine ${req.params.id} not found`);
    allow(req.principal, snap.apps.find((a) => a.name === m.app)?.org, `machine ${m.id}`);
    if (!m.config) throw new ValidationError(`machine ${m.id} is registered by hand: sixpn does not run its process, so it cannot suspend it (use stop)`);
    if (m.state === 'suspended') return { status: 200, body: m };
    if (m.state !== 'started' && m.state !== 'suspending') throw new ConflictError(`machine ${m.id} is ${m.state}: only a started machine can be suspended`);
    await wish(m, 'suspending', ['started']);
    const got = await waitForMachine(view, m.id, (x) => !x || ['suspended', 'stopped', 'failed', 'destroying'].includes(x.state), waitMs(req, START_WAIT_MS));
    if (got === null) throw new MachineFailedError(`host ${m.host} did not suspend machine ${m.id} in time (is its agent running? sixpn hosts list)`);
    if (got === undefined) throw new NotFoundError(`machine ${m.id} was removed meanwhile`);
    return { status: 200, body: got };
  });

  r.add('GET', '/v1/hosts', async (req) => {
    const now = Date.now();
    const seen = [...visibleHosts(await store.snapshot(), req.principal).values()].sort((a, b) => (a.host.name < b.host.name ? -1 : a.host.name > b.host.name ? 1 : 0));
    return { status: 200, body: seen.map((s) => hostViewFor(req.principal, s.host, s.machines, now, d.staleAfterMs)) };
  });
  r.add('GET', '/v1/hosts/:name', async (req) => {
    const p = req.principal;
    const s = visibleHosts(await store.snapshot(), p).get(req.params.name!);
    if (!s) {
      // The same answer whether the host exists or not: an org token learns no other host's name.
      if (p.kind === 'org') throw new ForbiddenError(`host ${req.params.name} runs no machine of org ${orgList(p)}; this token is for org ${orgList(p)} only (the admin token sees every host)`);
      throw new NotFoundError(`host ${req.params.name} not found`);
    }
    return { status: 200, body: hostViewFor(p, s.host, s.machines, Date.now(), d.staleAfterMs) };
  });
  r.add('DELETE', '/v1/hosts/:name', async (req) => {
    adminOnly(req.principal, 'removing a host');
    await store.removeHost(req.params.name!);
    return { status: 204 };
  });

  r.add('GET', '/v1/apps/:app/logs', async (req) => {
    const app = parseOrThrow(nameSchema, req.params.app, 'app');
    const machine = req.query.get('machine') || undefined;
    if (machine !== undefined) parseOrThrow(machineIdSchema, machine, 'machine');
    const snap = await store.snapshot();
    const owner = snap.apps.find((a) => a.name === app);
    if (!owner) throw new NotFoundError(`app ${app} not found`);
    allow(req.principal, owner.org, `app ${app}`);
    if (machine !== undefined && !snap.machines.some((m) => m.id === machine && m.app === app)) throw new NotFoundError(`machine ${machine} of app ${app} not found`);
    const role = d.hostRole() as HostRole | undefined;
    const elsewhere = [...new Set(snap.machines.filter((m) => m.app === app && m.host !== undefined && m.host !== role?.hostName && (machine === undefined || m.id === machine)).map((m) => m.host!))];
    if (!role) {
      throw new NotFoundError(`this node runs no host; logs of ${machine ?? app} are kept by host${elsewhere.length === 1 ? '' : 's'} ${elsewhere.join(', ') || '(none: no machine of it is run by a host)'}: ask the control API of that node`);
    }
    const lines = Math.min(10_000, Math.max(1, Number(req.query.get('lines') ?? '100') || 100));
    const filter = { app, ...(machine !== undefined ? { machine } : {}) };
    const recent = role.recentLogs(filter, lines);
    const follow = req.query.get('follow') === '1' || req.query.get('follow') === 'true';
    if (!follow) return { status: 200, body: recent };
    return {
      status: 200,
      stream: (res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', ...(elsewhere.length ? { 'x-sixpn-hosts-elsewhere': elsewhere.join(',') } : {}) });
        const write = (l: LogLine): void => {
          // A reader that stopped reading must not grow our memory: cut it.
          if (res.writableLength > 1024 * 1024) res.destroy();
          else res.write(`${JSON.stringify(l)}\n`);
        };
        for (const l of recent) write(l);
        const stopFollowing = role.followLogs(filter, write);
        res.on('close', stopFollowing);
      },
    };
  });

  const destroy = async (m: Machine, req: ApiRequest): Promise<Machine> => {
    const force = req.query.get('force') === '1' || req.query.get('force') === 'true';
    if (force) await store.removeMachine(m.id);
    else {
      if (m.state !== 'destroying') await wish(m, 'destroying', ALL_BUT_DESTROYING);
      const got = await waitForMachine(view, m.id, (x) => x === undefined, waitMs(req, stopWait(m)));
      if (got !== undefined) {
        throw new MachineFailedError(`host ${m.host} did not destroy machine ${m.id} in time (is its agent running? sixpn hosts list); force=true removes it from the catalog and the host cleans up when it is back`);
      }
    }
    return { ...m, state: 'destroyed', updated_at: Date.now() };
  };

  return { run, findRun, stop, start, destroy };
}

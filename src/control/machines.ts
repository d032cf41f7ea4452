/**
 * The control API for machines that hosts run, and for hosts: `machines run` with placement,
 * the lifecycle verbs (stop, start, restart, destroy) and their waits, `hosts list`, and logs.
 *
 * The API only writes wishes to the catalog (`created`, `starting`, `stopping`, `destroying`,
 * each a compare-and-set on the state) and waits, on this node's catalog view, for the host
 * agent to write the outcome. A run that ends failed (say, "command not found") is removed again
 * before the error is answered: nothing half-made. Machines registered by hand keep the old,
 * direct meaning of stop and start.
 */
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { parseOrThrow } from '../catalog/rules.js';
import type { CatalogStore } from '../catalog/store.js';
import { machineConfigSchema, machineIdSchema, nameSchema, regionCodeSchema, type Host, type Machine, type MachineState } from '../catalog/types.js';
import type { CatalogView } from '../catalog/view.js';
import { ConflictError, MachineFailedError, NotFoundError, ValidationError } from '../errors.js';
import type { HostRole, LogLine } from '../host/index.js';
import { hostStatus, placeMachine, type HostStatus } from '../host/placement.js';
import type { RunningRole } from '../role.js';
import type { ApiRequest, ApiResponse, Router } from './http.js';

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
  /** null: the machine is registered by hand (the caller keeps the direct meaning). */
  findRun(id: string): Promise<Machine | null>;
  stop(m: Machine, req: ApiRequest): Promise<Machine>;
  start(m: Machine, req: ApiRequest): Promise<Machine>;
  destroy(m: Machine, req: ApiRequest): Promise<Machine>;
}

const ALL_BUT_DESTROYING: MachineState[] = ['created', 'starting', 'started', 'stopping', 'stopped', 'failed'];

export function addMachineRoutes(r: Router, d: MachineRouteDeps): MachineVerbs {
  const { store, view } = d;

  const findRun = async (id: string): Promise<Machine | null> => {
    const m = (await store.snapshot()).machines.find((x) => x.id === id);
    if (!m) throw new NotFoundError(`machine ${id} not found`);
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
    await wish(m, 'stopping', ['created', 'starting', 'started']);
    const got = await waitForMachine(view, m.id, (x) => !x || ['stopped', 'failed', 'destroying'].includes(x.state), waitMs(req, stopWait(m)));
    if (got === null) throw new MachineFailedError(`host ${m.host} did not stop machine ${m.id} in time (is its agent running? sixpn hosts list)`);
    if (got === undefined) throw new NotFoundError(`machine ${m.id} was removed meanwhile`);
    return got;
  };

  const start = async (m: Machine, req: ApiRequest): Promise<Machine> => {
    if (m.state === 'destroying') throw new ConflictError(`machine ${m.id} is being destroyed`);
    if (m.state === 'stopping') {
      const got = await waitForMachine(view, m.id, (x) => !x || x.state !== 'stopping', stopWait(m));
      if (!got) throw new MachineFailedError(`machine ${m.id} is still stopping`);
      m = got;
    }
    if (m.state === 'stopped' || m.state === 'failed') await wish(m, 'starting', ['stopped', 'failed'], { restarts: 0, state_reason: null });
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
    const host = placeMachine(snap.hosts, snap.machines, { region: input.region, host: input.host }, Date.now(), d.staleAfterMs);
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
    const m = await findRun(req.params.id!);
    if (!m) throw new ValidationError(`machine ${req.params.id} is registered by hand: sixpn does not run its process (use stop and start)`);
    return { status: 200, body: await start(await stop(m, req), req) };
  });

  r.add('GET', '/v1/hosts', async () => {
    const snap = await store.snapshot();
    const now = Date.now();
    return { status: 200, body: snap.hosts.map((h) => hostView(h, snap.machines.filter((m) => m.host === h.name).length, now, d.staleAfterMs)) };
  });
  r.add('GET', '/v1/hosts/:name', async (req) => {
    const snap = await store.snapshot();
    const h = snap.hosts.find((x) => x.name === req.params.name);
    if (!h) throw new NotFoundError(`host ${req.params.name} not found`);
    return { status: 200, body: hostView(h, snap.machines.filter((m) => m.host === h.name).length, Date.now(), d.staleAfterMs) };
  });
  r.add('DELETE', '/v1/hosts/:name', async (req) => {
    await store.removeHost(req.params.name!);
    return { status: 204 };
  });

  r.add('GET', '/v1/apps/:app/logs', async (req) => {
    const app = parseOrThrow(nameSchema, req.params.app, 'app');
    const machine = req.query.get('machine') || undefined;
    if (machine !== undefined) parseOrThrow(machineIdSchema, machine, 'machine');
    const snap = await store.snapshot();
    if (!snap.apps.some((a) => a.name === app)) throw new NotFoundError(`app ${app} not found`);
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

/**
 * Autostart: a caller of an app with no started machine that has room gets one started, and
 * waits until it accepts connections.
 *
 *   wake(app, service)   the proxy found no candidate: start (or resume, or join the start of)
 *                        the best wakeable machine, nearest region first; resolves with the
 *                        machine once a TCP connect to it succeeds, a StartFailedError when it
 *                        failed or start_timeout ran out, null when there is nothing to start
 *   nudge(app, ...)      the caller was served farther away or over soft_limit: start one for
 *                        the next callers, without waiting
 *
 * One start per machine, whatever the number of callers and proxy nodes: callers on this node
 * share a start (each start counts for soft_limit callers; more callers start more machines),
 * and between nodes the catalog's compare-and-set from stopped (or suspended) to starting lets
 * exactly one node move it; every other node sees the state change and waits for the same
 * machine to come up in its own view. Every node picks machines in the same order (policy.ts),
 * so concurrent callers on several nodes go for the same machine.
 *
 * A machine a host runs is started by the host agent (the catalog's `starting` is the wish it
 * acts on; a suspended one is thawed). One registered by hand is started by the app's start hook
 * (./hooks.ts), run by the node that won the compare-and-set. The winner marks a start that
 * failed or timed out `failed`, so that the next caller wakes another machine.
 */
import net from 'node:net';
import { parseHostPort } from '../addressing/index.js';
import type { CatalogStore } from '../catalog/store.js';
import type { CatalogChange, Machine, Service } from '../catalog/types.js';
import type { CatalogView } from '../catalog/view.js';
import { ConflictError, StartFailedError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { counter, histogram } from '../observe/metrics.js';
import type { Hook } from './config.js';
import { hasHook, runHook } from './hooks.js';
import { autoStartOf, wakeOrder } from './policy.js';

const starts = counter({
  name: 'sixpn_autostart_starts_total',
  help: 'Machines this node brought up for Flycast callers, by outcome (started, resumed, joined: another node or the API started it, failed)',
  labelNames: ['outcome'] as const,
});
const waitSeconds = histogram({
  name: 'sixpn_autostart_wait_seconds',
  help: 'Time a Flycast caller waited for a machine to start and accept',
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
});

export interface WakerOptions {
  store: CatalogStore;
  view: CatalogView;
  /** Region order of this proxy: 0 is its own region. */
  rank(region: string): number;
  startTimeoutMs: number;
  /** Each connect attempt while waiting for a machine to accept. */
  connectTimeoutMs: number;
  hooks: ReadonlyMap<string, Hook>;
  nodeName: string;
  log: Logger;
}

interface Start {
  id: string;
  app: string;
  /** Callers of a service with this internal port share it (the probe dials that port). */
  port: number;
  waiters: number;
  /** This node's compare-and-set moved it: this node marks it failed when it does not come up. */
  mine: boolean;
  resume: boolean;
  done: Promise<Machine | StartFailedError>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

export class Waker {
  private readonly byApp = new Map<string, Start[]>();
  private readonly byMachine = new Map<string, Start>();
  /** Per app, the machine a nudge would start (null: none); dropped when the app's machines change. */
  private readonly best = new Map<string, Machine | null>();
  private readonly cancels = new Set<() => void>();
  private closed = false;
  private readonly onChange = (c: CatalogChange): void => {
    if (c.kind !== 'machine') return;
    if (c.op === 'put') this.best.delete(c.value.app);
    else this.best.clear();
  };
  private readonly onReset = (): void => this.best.clear();

  constructor(private readonly o: WakerOptions) {
    o.view.on('change', this.onChange);
    o.view.on('reset', this.onReset);
  }

  private readonly canHook = (app: string): boolean => hasHook(this.o.hooks.get(app), 'start');

  /** The machine to wake next for `app`, or null (cached between changes: a nudge runs per spilled pick). */
  private bestFor(app: string): Machine | null {
    let b = this.best.get(app);
    if (b === undefined) {
      b = wakeOrder(this.o.view.machinesOf(app), this.o.rank, this.canHook, (id) => this.byMachine.has(id))[0] ?? null;
      this.best.set(app, b);
    }
    return b;
  }

  /** The start of this machine under way on this node (resolves when it accepts or failed); null: none. */
  warming(id: string): Promise<Machine | StartFailedError> | null {
    return this.byMachine.get(id)?.done ?? null;
  }

  /** Callers on this node are waiting for this machine to start and accept. */
  isWaking(id: string): boolean {
    return this.byMachine.has(id);
  }

  /** Starts being made for `app` right now (for tests and the dashboard). */
  pending(app: string): number {
    return this.byApp.get(app)?.length ?? 0;
  }

  async wake(app: string, service: Service): Promise<Machine | StartFailedError | null> {
    if (this.closed || !autoStartOf(service)) return null;
    const soft = service.concurrency.soft_limit;
    const list = this.byApp.get(app);
    let s = list?.find((x) => x.port === service.internal_port && x.waiters < soft);
    // Every start under way is full: another machine, if there is one; else the least waited on.
    s ??= this.begin(app, service) ?? list?.filter((x) => x.port === service.internal_port).sort((a, b) => a.waiters - b.waiters)[0];
    if (!s) return null;
    s.waiters++;
    const t0 = performance.now();
    try {
      return await s.done;
    } finally {
      s.waiters--;
      waitSeconds.observe((performance.now() - t0) / 1000);
    }
  }

  /** Starts a machine for the next callers when one is waiting nearer than `nearerThan` (a region rank; Infinity: anywhere). */
  nudge(app: string, service: Service, nearerThan: number): void {
    if (this.closed || this.byApp.has(app) || !autoStartOf(service)) return;
    const m = this.bestFor(app);
    if (!m || this.o.rank(m.region) >= nearerThan) return;
    this.begin(app, service, m);
  }

  private begin(app: string, service: Service, pick?: Machine): Start | null {
    const m = pick ?? this.bestFor(app);
    if (!m) return null;
    const s: Start = { id: m.id, app, port: service.internal_port, waiters: 0, mine: false, resume: false, done: Promise.resolve(m) };
    this.byMachine.set(m.id, s);
    let list = this.byApp.get(app);
    if (!list) this.byApp.set(app, (list = []));
    list.push(s);
    this.best.delete(app);
    s.done = this.run(s, m, service).finally(() => {
      this.byMachine.delete(m.id);
      const l = this.byApp.get(app);
      const i = l?.indexOf(s) ?? -1;
      if (l && i >= 0) l.splice(i, 1);
      if (l && l.length === 0) this.byApp.delete(app);
      this.best.delete(app);
    });
    return s;
  }

  private async run(s: Start, first: Machine, service: Service): Promise<Machine | StartFailedError> {
    const deadline = Date.now() + this.o.startTimeoutMs;
    const limit = `${this.o.startTimeoutMs} ms`;
    let m: Machine | undefined = first;
    try {
      if (m.state === 'stopping' || m.state === 'suspending') {
        const was = m.state;
        const settled = await this.until(s.id, (x) => !x || x.state !== was, deadline);
        if (settled === null) return await this.fail(s, `it was still ${was} after ${limit}`);
        if (!settled) return await this.fail(s, 'it was removed');
        m = settled;
      }
      if (m.state === 'stopped' || m.state === 'suspended') {
        s.resume = m.state === 'suspended';
        try {
          m = await this.o.store.updateMachine(s.id, { state: 'starting', restarts: 0, state_reason: `${s.resume ? 'resumed' : 'started'} for Flycast traffic by proxy ${this.o.nodeName}` }, { ifState: [m.state] });
          s.mine = true;
        } catch (err) {
          // Another node (or the API) moved it first: its start is waited for like ours.
          if (!(err instanceof ConflictError)) return await this.fail(s, `the catalog refused the start: ${(err as Error).message}`);
        }
        if (s.mine && m.config === undefined) {
          const hook = this.o.hooks.get(m.app);
          try {
            await runHook(hook!, 'start', m, Math.max(1, deadline - Date.now()));
          } catch (err) {
            return await this.fail(s, (err as Error).message);
          }
          // `started` only once it accepts: callers that pick from the catalog (on any node) must
          // not be sent to a machine whose hook returned before its server listens. (No state check
          // meanwhile: this node's view may not show its own `starting` yet.)
          const target = probeTarget(m, service);
          if (!(await this.probe(s.id, target, deadline, null))) {
            return await this.fail(s, `its start hook succeeded but it did not accept connections on ${fmt(target)} within ${limit}`);
          }
          await this.o.store.updateMachine(s.id, { state: 'started', state_reason: 'started by its start hook' }, { ifState: ['starting'] });
        }
      }
      const up = await this.untilStarted(s.id, deadline);
      if (typeof up === 'string') return await this.fail(s, up);
      const target = probeTarget(up, service);
      if (!(await this.probe(s.id, target, deadline))) {
        const now = this.o.view.machines.get(s.id);
        if (now && now.state !== 'started') return await this.fail(s, `it ${now.state === 'failed' ? 'failed' : `went ${now.state}`} before it accepted${now.state_reason ? `: ${now.state_reason}` : ''}`);
        return await this.fail(s, `it started but did not accept connections on ${fmt(target)} within ${limit}`);
      }
      starts.inc({ outcome: !s.mine ? 'joined' : s.resume ? 'resumed' : 'started' });
      this.o.log.info({ app: s.app, machine: s.id, region: up.region, waiters: s.waiters, ms: this.o.startTimeoutMs - (deadline - Date.now()), how: !s.mine ? 'joined' : s.resume ? 'resumed' : 'started' }, 'machine up for Flycast callers');
      return this.o.view.machines.get(s.id) ?? up;
    } catch (err) {
      return await this.fail(s, (err as Error).message);
    }
  }

  /** Waits until the machine is `started`; a string says why it will not be. */
  private async untilStarted(id: string, deadline: number): Promise<Machine | string> {
    // Stopped or suspended counts as an outcome only once it was seen moving: when this node
    // lost the compare-and-set, its view may show the old state for a moment.
    let moving = false;
    const got = await this.until(
      id,
      (x) => {
        if (!x || x.state === 'started' || x.state === 'failed' || x.state === 'destroying' || x.state === 'stopping' || x.state === 'suspending') return true;
        if (x.state === 'starting' || x.state === 'created') moving = true;
        return moving && (x.state === 'stopped' || x.state === 'suspended');
      },
      deadline,
    );
    if (got === null) {
      const now = this.o.view.machines.get(id);
      const host = now?.host ? ` (host ${now.host} did not report it started: is its agent up? sixpn hosts list)` : '';
      return `it did not start within ${this.o.startTimeoutMs} ms${host}`;
    }
    if (got === undefined) return 'it was removed';
    if (got.state === 'started') return got;
    if (got.state === 'failed') return `it failed to start${got.state_reason ? `: ${got.state_reason}` : ''}`;
    return `it went ${got.state} before it came up`;
  }

  /** The machine once `done(it)` holds (undefined: gone), or null at the deadline or on close. */
  private until(id: string, done: (m: Machine | undefined) => boolean, deadline: number): Promise<Machine | undefined | null> {
    const now = this.o.view.machines.get(id);
    if (done(now)) return Promise.resolve(now);
    return new Promise((resolve) => {
      const finish = (v: Machine | undefined | null): void => {
        clearTimeout(timer);
        this.o.view.off('change', onChange);
        this.cancels.delete(cancel);
        resolve(v);
      };
      const onChange = (c: CatalogChange): void => {
        if (c.kind !== 'machine' || c.key !== id) return;
        const m = this.o.view.machines.get(id);
        if (done(m)) finish(m);
      };
      const cancel = (): void => finish(null);
      const timer = setTimeout(cancel, Math.max(0, deadline - Date.now()));
      timer.unref();
      this.o.view.on('change', onChange);
      this.cancels.add(cancel);
    });
  }

  /** Connects until the machine accepts (true), leaves `state` (null: whatever it is), or the deadline passes. */
  private async probe(id: string, target: { host: string; port: number } | null, deadline: number, state: Machine['state'] | null = 'started'): Promise<boolean> {
    if (!target) return false;
    for (let pause = 2; !this.closed; pause = Math.min(pause * 2, 50)) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      if (await connectOnce(target, Math.min(left, this.o.connectTimeoutMs))) return true;
      if (state !== null && this.o.view.machines.get(id)?.state !== state) return false;
      await sleep(Math.min(pause, Math.max(0, deadline - Date.now())));
    }
    return false;
  }

  private async fail(s: Start, reason: string): Promise<StartFailedError> {
    starts.inc({ outcome: 'failed' });
    if (s.mine) {
      await this.o.store
        .updateMachine(s.id, { state: 'failed', state_reason: `autostart: ${reason}`.slice(0, 500) }, { ifState: ['created', 'starting', 'started'] })
        .catch((err: unknown) => this.o.log.warn({ machine: s.id, err: (err as Error).message }, 'could not mark a machine that did not start failed'));
    }
    this.o.log.warn({ app: s.app, machine: s.id, waiters: s.waiters, reason, marked_failed: s.mine }, 'machine did not come up for Flycast callers');
    return new StartFailedError(`machine ${s.id} of app ${s.app} could not be started for this request: ${reason}`);
  }

  close(): void {
    this.closed = true;
    this.o.view.off('change', this.onChange);
    this.o.view.off('reset', this.onReset);
    for (const c of [...this.cancels]) c();
  }
}

/** Where the probe dials: the machine's `upstream`, else its 6PN address and the service's internal port. */
function probeTarget(m: Machine, service: Service): { host: string; port: number } | null {
  if (!m.upstream) return { host: m.address, port: service.internal_port };
  const hp = parseHostPort(m.upstream);
  return 'error' in hp ? null : hp;
}

function fmt(t: { host: string; port: number } | null): string {
  if (!t) return 'its upstream (unusable)';
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

function connectOnce(t: { host: string; port: number }, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let sock: net.Socket;
    try {
      sock = net.connect({ host: t.host, port: t.port });
    } catch {
      resolve(false);
      return;
    }
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

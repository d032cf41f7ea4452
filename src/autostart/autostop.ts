/**
 * Autostop: every `check_interval` this node looks at the started machines of the apps whose
 * services say `auto_stop_machines = "stop"` or `"suspend"`, and stops (or suspends) those that
 * had no connection or request through any proxy for `idle_period`, at most one per region per
 * sweep, never below min_machines_running in the app's primary region (./policy.ts).
 *
 * "Through any proxy": each node knows its own traffic (./idle.ts) and publishes it in the
 * machine's `last_active_at` when the stored value is older than half the idle period (so a
 * busy machine costs one catalog write per half period, whatever its traffic); a sweep takes a
 * machine's activity as the latest of its own, the published one and the machine's last change.
 *
 * Stopping is the same compare-and-set as the API's (started -> stopping, or -> suspending), so
 * the host agent does the rest; a machine registered by hand is stopped by its app's stop hook.
 * A machine suspended while this node still had work in flight on it (a request that raced the
 * decision) is resumed at once, so that no caller waits on a frozen process.
 */
import type { Balancer } from '../balancer/index.js';
import type { CatalogStore } from '../catalog/store.js';
import type { App, CatalogChange, Machine } from '../catalog/types.js';
import type { CatalogView } from '../catalog/view.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { counter } from '../observe/metrics.js';
import type { Hook } from './config.js';
import { hasHook, runHook } from './hooks.js';
import { IdleTracker } from './idle.js';
import { autoStopOf, idleToStop, type IdleMachine } from './policy.js';

const stops = counter({
  name: 'sixpn_autostop_machines_total',
  help: 'Idle machines this node stopped or suspended (action), and machines suspended under work in flight that it resumed (resumed)',
  labelNames: ['action'] as const,
});

export interface AutostopOptions {
  store: CatalogStore;
  view: CatalogView;
  balancer: Balancer;
  idlePeriodMs: number;
  checkIntervalMs: number;
  /** Longest a stop hook may run. */
  hookTimeoutMs: number;
  hooks: ReadonlyMap<string, Hook>;
  /** Callers on this node wait for this machine to come up (the waker): it is in use, not idle. */
  waking?: (id: string) => boolean;
  log: Logger;
  now?: () => number;
}

const fmtMs = (ms: number): string => (ms % 60_000 === 0 ? `${ms / 60_000}m` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

export class Autostop {
  readonly tracker: IdleTracker;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly publishing = new Set<string>();
  private readonly warned = new Set<string>();
  private closed = false;
  private readonly now: () => number;
  private readonly onChange = (c: CatalogChange): void => {
    if (c.kind === 'machine' && c.op === 'put' && (c.value.state === 'suspending' || c.value.state === 'suspended')) this.guardSuspended(c.value);
  };

  constructor(private readonly o: AutostopOptions) {
    this.now = o.now ?? Date.now;
    this.tracker = new IdleTracker((id) => o.balancer.slot(id), this.now());
    o.view.on('change', this.onChange);
  }

  /** Sweeps every check_interval, the first one at a random point of the first interval (nodes do not sweep in step). */
  start(): void {
    const tick = (): void => {
      if (this.closed) return;
      this.running ??= this.sweep()
        .catch((err: unknown) => this.o.log.error({ err }, 'autostop sweep failed'))
        .finally(() => (this.running = null));
    };
    const first = setTimeout(() => {
      tick();
      this.timer = setInterval(tick, this.o.checkIntervalMs);
      this.timer.unref();
    }, Math.floor(Math.random() * this.o.checkIntervalMs));
    first.unref();
    this.timer = first;
  }

  /** One look at every app that autostops; resolves when its stops were asked for. */
  async sweep(): Promise<void> {
    const now = this.now();
    const ids = new Set<string>();
    for (const app of this.o.view.apps.values()) {
      const { mode, minRunning } = autoStopOf(app);
      if (mode === 'off') continue;
      const machines: IdleMachine[] = [];
      for (const m of this.o.view.machinesOf(app.name)) {
        ids.add(m.id);
        if (m.state !== 'started') {
          machines.push({ machine: m, activeAt: now });
          continue;
        }
        const a = this.tracker.sample(m.id, now);
        // Callers waiting for it to accept hold no balancer slot yet; they are traffic all the same.
        const waited = this.o.waking?.(m.id) ?? false;
        if (a.busy || waited) this.publish(m, now);
        machines.push({ machine: m, activeAt: waited ? now : Math.max(a.at, m.last_active_at ?? 0, m.updated_at) });
      }
      for (const m of idleToStop(machines, now, this.o.idlePeriodMs, minRunning, app.primary_region)) {
        if (this.closed) return;
        await this.stop(m, mode === 'suspend' ? 'suspend' : 'stop', app);
      }
    }
    this.tracker.keepOnly(ids);
  }

  /** Tells the other nodes this machine is in use (at most once per half idle period). */
  private publish(m: Machine, now: number): void {
    if ((m.last_active_at ?? 0) >= now - this.o.idlePeriodMs / 2 || this.publishing.has(m.id)) return;
    this.publishing.add(m.id);
    this.o.store
      .updateMachine(m.id, { last_active_at: now })
      .catch((err: unknown) => {
        if (!(err instanceof NotFoundError)) this.o.log.warn({ machine: m.id, err: (err as Error).message }, 'could not publish machine activity');
      })
      .finally(() => this.publishing.delete(m.id));
  }

  private warnOnce(key: string, fields: Record<string, unknown>, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.o.log.warn(fields, msg);
  }

  private async stop(m: Machine, want: 'stop' | 'suspend', app: App): Promise<void> {
    const now = this.o.view.machines.get(m.id);
    // Traffic may have come since the sample: never stop under work in flight.
    if (!now || now.state !== 'started' || this.tracker.inFlight(m.id) > 0 || this.o.waking?.(m.id)) return;
    const hand = m.config === undefined;
    const hook = this.o.hooks.get(app.name);
    if (hand && !hasHook(hook, 'stop')) {
      return this.warnOnce(`nohook/${app.name}`, { app: app.name }, `autostop: machines of app ${app.name} are registered by hand and no stop hook is configured for it ([[autostart.hooks]]): they are left running`);
    }
    if (hand && want === 'suspend') this.warnOnce(`nosuspend/${app.name}`, { app: app.name }, `autostop: machines of app ${app.name} are registered by hand: sixpn cannot freeze their processes, so they are stopped instead of suspended`);
    const action = want === 'suspend' && !hand ? 'suspend' : 'stop';
    const reason = `autostop: no traffic for ${fmtMs(this.o.idlePeriodMs)}`;
    try {
      await this.o.store.updateMachine(m.id, { state: action === 'suspend' ? 'suspending' : 'stopping', state_reason: reason }, { ifState: ['started'] });
    } catch (err) {
      if (err instanceof ConflictError || err instanceof NotFoundError) return; // moved meanwhile: its business
      throw err;
    }
    stops.inc({ action });
    this.o.log.info({ app: app.name, machine: m.id, region: m.region, idle_ms: this.o.idlePeriodMs, action }, action === 'suspend' ? 'autostop: suspending an idle machine' : 'autostop: stopping an idle machine');
    if (!hand) return;
    try {
      await runHook(hook!, 'stop', m, this.o.hookTimeoutMs);
      await this.o.store.updateMachine(m.id, { state: 'stopped', state_reason: `${reason} (stopped by its stop hook)` }, { ifState: ['stopping'] });
    } catch (err) {
      const why = (err as Error).message;
      this.o.log.warn({ app: app.name, machine: m.id, reason: why }, 'autostop: the stop hook failed; the machine is taken as still running');
      await this.o.store.updateMachine(m.id, { state: 'started', state_reason: `autostop: ${why}`.slice(0, 500) }, { ifState: ['stopping'] }).catch(() => undefined);
    }
  }

  /** A machine frozen while this node has work in flight on it: thawed at once. */
  private guardSuspended(m: Machine): void {
    if (this.closed || this.tracker.inFlight(m.id) === 0) return;
    const resume = async (): Promise<void> => {
      const now = this.o.view.machines.get(m.id);
      if (!now || now.state !== 'suspended') return; // still suspending: the 'suspended' change comes next
      await this.o.store.updateMachine(m.id, { state: 'starting', restarts: 0, state_reason: 'resumed: requests were in flight on it when it was suspended' }, { ifState: ['suspended'] });
      stops.inc({ action: 'resumed' });
      this.o.log.info({ machine: m.id, app: m.app, in_flight: this.tracker.inFlight(m.id) }, 'autostop: resumed a machine suspended under work in flight');
    };
    resume().catch((err: unknown) => {
      if (!(err instanceof ConflictError)) this.o.log.warn({ machine: m.id, err: (err as Error).message }, 'could not resume a machine suspended under work in flight');
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.o.view.off('change', this.onChange);
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}

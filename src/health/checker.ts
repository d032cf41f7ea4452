/**
 * The active checker: one timer per (machine, check) for every started machine this node is
 * responsible for, first runs spread at random over the interval, runs bounded by a limiter.
 * Verdicts (./tracker.ts) are written to the catalog only when they differ from what the
 * catalog says, so every node, DNS, the API and the dashboard see one state and a steady
 * fleet costs no writes. When the store is down checks go on; the write is retried and the
 * outage logged once. Nothing here runs per proxied request.
 */
import type { SourcePicker } from '../catalog/source.js';
import type { CatalogStore } from '../catalog/store.js';
import type { CatalogChange, HealthStatus, Machine } from '../catalog/types.js';
import type { CatalogView } from '../catalog/view.js';
import { NotFoundError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { httpCheck, tcpCheck, type CheckResult } from './checks.js';
import { Limiter } from './limiter.js';
import { checksTotal, machineHealthy, storeWriteErrorsTotal, transitionsTotal } from './metrics.js';
import { planChecks, type PlannedCheck } from './plan.js';
import { CheckTracker, machineVerdict, type Verdict } from './tracker.js';

export interface CheckerOptions {
  store: CatalogStore;
  view: CatalogView;
  log: Logger;
  fall: number;
  rise: number;
  maxConcurrent: number;
  /** Whether this node checks machines of `region` (see plan.ts regionScope). */
  inScope: (region: string) => boolean;
  /** Delay before a failed catalog write is tried again. */
  retryWriteMs?: number;
  /** Where checks dial machines from (the host's address in their org; src/catalog/source.ts). */
  sourceFor?: SourcePicker;
  random?: () => number;
}

interface RunningCheck {
  plan: PlannedCheck;
  label: string;
  tracker: CheckTracker;
  timer: NodeJS.Timeout | null;
}

interface Entry {
  id: string;
  app: string;
  region: string;
  signature: string;
  /** Epoch ms the machine (re)started, as far as the catalog tells: grace counts from here. */
  startedAt: number;
  checks: RunningCheck[];
  alive: boolean;
  /** The last verdict this node decided on (logged once per change). */
  decided: HealthStatus | null;
  /** Written to the store and not yet seen back in the view. */
  written: HealthStatus | null;
  writing: boolean;
  retry: NodeJS.Timeout | null;
}

function runPlanned(p: PlannedCheck): Promise<CheckResult> {
  return p.kind === 'http' ? httpCheck(p.target, p.http, p.timeout) : tcpCheck(p.target, p.timeout);
}

export class HealthChecker {
  private readonly entries = new Map<string, Entry>();
  private readonly limiter: Limiter;
  private readonly random: () => number;
  private readonly retryWriteMs: number;
  private storeDown = false;
  private closed = false;
  private readonly onChange = (c: CatalogChange): void => this.applyChange(c);
  private readonly onReset = (): void => this.reconcileAll();

  constructor(private readonly o: CheckerOptions) {
    this.limiter = new Limiter(o.maxConcurrent);
    this.random = o.random ?? Math.random;
    this.retryWriteMs = o.retryWriteMs ?? 1_000;
  }

  start(): void {
    this.o.view.on('change', this.onChange);
    this.o.view.on('reset', this.onReset);
    this.reconcileAll();
  }

  /** Machines and checks currently scheduled on this node. */
  stats(): { machines: number; checks: number; inFlight: number; queued: number } {
    let checks = 0;
    for (const e of this.entries.values()) checks += e.checks.length;
    return { machines: this.entries.size, checks, inFlight: this.limiter.inFlight, queued: this.limiter.queued };
  }

  close(): void {
    this.closed = true;
    this.o.view.off('change', this.onChange);
    this.o.view.off('reset', this.onReset);
    for (const e of [...this.entries.values()]) this.remove(e);
  }

  private applyChange(c: CatalogChange): void {
    if (c.kind === 'machine') {
      if (c.op === 'put') this.reconcile(c.value);
      else {
        const e = this.entries.get(c.key);
        if (e) this.remove(e);
      }
    } else if (c.kind === 'app') {
      for (const m of this.o.view.machinesOf(c.key)) this.reconcile(m);
      for (const e of [...this.entries.values()]) if (e.app === c.key && !this.o.view.machines.has(e.id)) this.remove(e);
    }
  }

  private reconcileAll(): void {
    for (const e of [...this.entries.values()]) if (!this.o.view.machines.has(e.id)) this.remove(e);
    for (const m of this.o.view.machines.values()) this.reconcile(m);
  }

  private reconcile(m: Machine): void {
    if (this.closed) return;
    const app = this.o.view.apps.get(m.app);
    const plans = app && m.state === 'started' && this.o.inScope(m.region) ? planChecks(app, m, this.o.sourceFor?.(m)) : [];
    const e = this.entries.get(m.id);
    if (plans.length === 0) {
      // No checks (or not ours, or stopped): the machine's health is left as it is.
      if (e) this.remove(e);
      return;
    }
    const signature = JSON.stringify(plans);
    if (e && e.signature === signature) {
      e.written = null;
      e.region = m.region;
      return;
    }
    // Changed checks keep the machine's start time; a machine new to us starts its grace at
    // its last catalog change (its creation, or the change that started it).
    const startedAt = e ? e.startedAt : m.updated_at;
    if (e) this.remove(e);
    this.add(m, plans, signature, startedAt);
  }

  private add(m: Machine, plans: PlannedCheck[], signature: string, startedAt: number): void {
    const e: Entry = {
      id: m.id,
      app: m.app,
      region: m.region,
      signature,
      startedAt,
      checks: [],
      alive: true,
      decided: null,
      written: null,
      writing: false,
      retry: null,
    };
    const now = Date.now();
    for (const plan of plans) {
      const rc: RunningCheck = { plan, label: plan.label, tracker: new CheckTracker(this.o.fall, this.o.rise, startedAt + plan.grace), timer: null };
      // First run after the grace period, at a random point of one interval: checks of
      // machines that appear together (start-up, a deploy) do not all fire at once.
      const delay = Math.max(0, startedAt + plan.grace - now) + Math.floor(this.random() * plan.interval);
      rc.timer = setTimeout(() => void this.fire(e, rc), delay);
      e.checks.push(rc);
    }
    this.entries.set(m.id, e);
  }

  private remove(e: Entry): void {
    e.alive = false;
    for (const rc of e.checks) if (rc.timer) clearTimeout(rc.timer);
    if (e.retry) clearTimeout(e.retry);
    this.entries.delete(e.id);
    machineHealthy.remove({ app: e.app, machine: e.id });
  }

  private async fire(e: Entry, rc: RunningCheck): Promise<void> {
    rc.timer = null;
    const firedAt = Date.now();
    const r = await this.limiter.run(() => runPlanned(rc.plan));
    if (!e.alive) return;
    checksTotal.inc({ result: r.ok ? 'pass' : 'fail' });
    rc.tracker.record(r.ok, r.reason, Date.now());
    this.evaluate(e);
    rc.timer = setTimeout(() => void this.fire(e, rc), Math.max(0, firedAt + rc.plan.interval - Date.now()));
  }

  private evaluate(e: Entry): void {
    const v = machineVerdict(e.checks);
    if (!v) return;
    machineHealthy.set({ app: e.app, machine: e.id }, v.status === 'healthy' ? 1 : 0);
    const current = this.o.view.machines.get(e.id)?.health.status;
    if (current === undefined) return;
    if (v.status === current) {
      e.decided = v.status;
      return;
    }
    if (e.decided !== v.status) {
      e.decided = v.status;
      transitionsTotal.inc({ to: v.status });
      this.o.log.info({ app: e.app, machine: e.id, region: e.region, from: current, to: v.status, reason: v.reason }, `machine ${e.id} ${v.status}: ${v.reason}`);
    }
    if (e.written !== v.status) this.write(e, v);
  }

  private write(e: Entry, v: Verdict): void {
    if (e.writing || e.retry) return;
    e.writing = true;
    this.o.store.updateMachine(e.id, { health: { status: v.status, reason: v.reason } }).then(
      () => {
        e.writing = false;
        e.written = v.status;
        if (this.storeDown) {
          this.storeDown = false;
          this.o.log.info('catalog store reachable again: health transitions are written');
        }
      },
      (err: unknown) => {
        e.writing = false;
        if (err instanceof NotFoundError) return;
        storeWriteErrorsTotal.inc();
        if (!this.storeDown) {
          this.storeDown = true;
          this.o.log.warn({ err }, 'cannot write health transitions to the catalog store; checks go on and writes are retried');
        }
        if (!e.alive || this.closed) return;
        e.retry = setTimeout(() => {
          e.retry = null;
          if (e.alive) this.evaluate(e);
        }, this.retryWriteMs);
      },
    );
  }
}

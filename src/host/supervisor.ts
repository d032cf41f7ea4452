/**
 * The host's machine supervisor: keeps every machine placed on this host in the state the
 * catalog asks for, and writes back what happened.
 *
 * The catalog is the only channel. The API writes a wish (`created`, `starting`, `stopping`,
 * `destroying`); this supervisor acts on it and writes the outcome (`starting` -> `started`,
 * `stopped`, `failed`) with compare-and-set, so that a stop asked meanwhile is never overwritten
 * by a late "started". A process that exits on its own follows the machine's restart policy
 * (./policy.ts) with back-off. Work on one machine is serialized (one chain per machine);
 * machines are independent of each other.
 *
 * On start it adopts the processes an earlier agent left running (./process.ts) before it
 * starts anything, and removes what belongs to no machine of this host any more (folders,
 * namespaces): none orphaned, none started twice. A full reconcile runs every
 * `resync_interval`, so a change missed while the store was down is acted on later.
 */
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { CatalogStore } from '../catalog/store.js';
import type { CatalogChange, Machine, MachinePatch, MachineState } from '../catalog/types.js';
import type { CatalogView } from '../catalog/view.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { counter, histogram } from '../observe/metrics.js';
import type { HostConfig } from './config.js';
import type { Driver, MachineNetwork } from './driver.js';
import { LaunchError, machineEnv, resolveCommand } from './env.js';
import type { LogHub, LogMeta } from './logs.js';
import { decideOnExit, describeExit, type Backoff } from './policy.js';
import { isFrozen, MachineProcess, readExit, type ProcessExit } from './process.js';

const starts = counter({ name: 'sixpn_host_machine_starts_total', help: 'Machine processes started by this host, by outcome', labelNames: ['outcome'] as const });
const exits = counter({ name: 'sixpn_host_machine_exits_total', help: 'Machine processes that ended, by whether a stop was asked', labelNames: ['requested'] as const });
const startSeconds = histogram({
  name: 'sixpn_host_machine_start_seconds',
  help: 'Time from a start decision to the machine recorded started (network, process, catalog write)',
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
});

/** After SIGKILL, how long to wait for the shim to report the end. */
const KILL_WAIT_MS = 5_000;

interface Slot {
  proc: MachineProcess | null;
  /** A restart waiting out its back-off. */
  timer: NodeJS.Timeout | null;
  chain: Promise<void>;
  /** The running process is being stopped on request (its exit is not a crash). */
  requested: boolean;
  /** Last config seen, to stop a machine the catalog no longer has with its own signal. */
  config: Machine['config'];
  /** Its processes are stopped (SIGSTOP) for `suspended`. */
  frozen: boolean;
}

export interface SupervisorDeps {
  hostName: string;
  cfg: HostConfig;
  store: CatalogStore;
  view: CatalogView;
  driver: Driver;
  logs: LogHub;
  log: Logger;
  /** Working folder of machine processes. */
  workdir: string;
}

const sleep = (ms: number): Promise<null> => new Promise((r) => setTimeout(() => r(null), ms).unref());

export class Supervisor {
  private readonly slots = new Map<string, Slot>();
  private readonly machinesDir: string;
  private readonly backoff: Backoff;
  private resyncTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /**
   * Machines found on this host at start while the catalog did not know the host at all (a new
   * or wiped catalog): never killed on its word. The operator removes them, or they are adopted
   * when a catalog that has them comes back.
   */
  private readonly unknownAtStart = new Set<string>();
  private readonly onChange = (c: CatalogChange): void => {
    if (c.kind !== 'machine' || this.closed) return;
    if ((c.op === 'put' && c.value.host === this.d.hostName) || this.slots.has(c.key)) this.schedule(c.key);
  };
  private readonly onReset = (): void => void this.resync();

  constructor(private readonly d: SupervisorDeps) {
    this.machinesDir = join(d.cfg.state_dir, 'machines');
    this.backoff = { baseMs: d.cfg.restart_backoff, maxMs: d.cfg.restart_backoff_max, resetAfterMs: d.cfg.restart_reset_after };
  }

  dirOf(id: string): string {
    return join(this.machinesDir, id);
  }

  /** Folders of every machine this host knows locally (for `logs`). */
  machineDirs(filter: (id: string) => boolean): string[] {
    return this.localIds()
      .filter(filter)
      .map((id) => this.dirOf(id));
  }

  private localIds(): string[] {
    try {
      return readdirSync(this.machinesDir).filter((n) => /^[0-9a-f]{8,32}$/.test(n));
    } catch {
      return [];
    }
  }

  /** This host's machines as the filter needs them. */
  networks(): MachineNetwork[] {
    const out: MachineNetwork[] = [];
    for (const m of this.d.view.machinesOnHost(this.d.hostName)) {
      const net = this.networkOf(m);
      if (net) out.push(net);
    }
    return out;
  }

  private networkOf(m: Machine): MachineNetwork | null {
    const app = this.d.view.apps.get(m.app);
    const org = app ? this.d.view.orgs.get(app.org) : undefined;
    return org ? { id: m.id, address: m.address, networkId: org.network_id } : null;
  }

  /**
   * Adopts what runs, then reconciles every machine of this host and every leftover.
   * `hostWasKnown`: the catalog had this host before it registered (else leftovers are kept).
   */
  async start(hostWasKnown: boolean): Promise<void> {
    if (!hostWasKnown) {
      for (const id of [...this.localIds(), ...(await this.d.driver.existing().catch(() => []))]) {
        if (!this.d.view.machines.has(id)) this.unknownAtStart.add(id);
      }
      if (this.unknownAtStart.size) {
        this.d.log.error(
          { machines: [...this.unknownAtStart] },
          `the catalog did not know host ${this.d.hostName}, but machines of an earlier run are here; they are left running and untouched (destroy them by hand, or point the host at the catalog that has them)`,
        );
      }
    }
    for (const id of this.localIds()) {
      const proc = MachineProcess.adopt(this.dirOf(id));
      if (!proc) continue;
      const slot = this.slot(id);
      slot.proc = proc;
      slot.frozen = isFrozen(proc.pid);
      this.watchExit(id, proc);
      this.d.log.info({ machine: id, pid: proc.pid, ...(slot.frozen ? { frozen: true } : {}) }, 'adopted a running machine process');
    }
    this.d.view.on('change', this.onChange);
    this.d.view.on('reset', this.onReset);
    await this.resync();
    this.resyncTimer = setInterval(() => void this.resync(), this.d.cfg.resync_interval);
    this.resyncTimer.unref();
  }

  /** Reconciles every machine this host has anything of; resolves when all are done. */
  async resync(): Promise<void> {
    if (this.closed) return;
    const ids = new Set<string>([...this.slots.keys(), ...this.localIds(), ...(await this.d.driver.existing().catch(() => []))]);
    for (const m of this.d.view.machinesOnHost(this.d.hostName)) ids.add(m.id);
    await this.d.driver.sync(this.networks()).catch((err: unknown) => this.d.log.error({ err }, 'refreshing the isolation filter failed'));
    await Promise.all([...ids].map((id) => this.schedule(id)));
  }

  private slot(id: string): Slot {
    let s = this.slots.get(id);
    if (!s) this.slots.set(id, (s = { proc: null, timer: null, chain: Promise.resolve(), requested: false, config: undefined, frozen: false }));
    return s;
  }

  /** Queues a reconcile of one machine behind whatever that machine is doing. */
  schedule(id: string): Promise<void> {
    return this.run(id, () => this.reconcile(id));
  }

  private run(id: string, fn: () => Promise<void>): Promise<void> {
    const slot = this.slot(id);
    const next = slot.chain.then(fn).catch((err: unknown) => {
      this.d.log.error({ err, machine: id }, 'machine reconcile failed; retrying at the next change or resync');
    });
    slot.chain = next;
    return next;
  }

  private meta(m: Pick<Machine, 'id' | 'app' | 'region'>): LogMeta {
    return { machine: m.id, app: m.app, region: m.region, host: this.d.hostName };
  }

  private note(m: Pick<Machine, 'id' | 'app' | 'region'>, message: string): Promise<void> {
    return this.d.logs.note(this.dirOf(m.id), this.meta(m), message);
  }

  /** A compare-and-set write; false when the state moved on (the caller reconciles again). */
  private async cas(id: string, from: readonly MachineState[], patch: MachinePatch): Promise<Machine | null> {
    try {
      return await this.d.store.updateMachine(id, patch, { ifState: from });
    } catch (err) {
      if (err instanceof ConflictError || err instanceof NotFoundError) {
        void this.schedule(id);
        return null;
      }
      throw err;
    }
  }

  private async reconcile(id: string): Promise<void> {
    if (this.closed) return;
    const m = this.d.view.machines.get(id);
    const slot = this.slot(id);
    if (!m || m.host !== this.d.hostName) {
      if (this.unknownAtStart.has(id)) return;
      // A catalog without this host was wiped or replaced: never kill machines on its word.
      if (!this.d.view.hosts.has(this.d.hostName)) {
        this.d.log.error({ machine: id }, `host ${this.d.hostName} is not in the catalog: leaving machine ${id} as it is`);
        return;
      }
      await this.retire(id, slot);
      return;
    }
    slot.config = m.config;
    // The process ended and its onExit is queued right behind this: it applies the policy.
    const exitQueued = slot.proc !== null && !slot.proc.running;
    switch (m.state) {
      case 'created':
      case 'starting':
        if (exitQueued) return;
        if (slot.proc?.running) {
          // A suspended machine resumes here: its process thaws and is started again at once.
          // The process group first and the catalog next (what the caller waits for); the rest
          // of the machine's network right after.
          const thawed = slot.frozen;
          if (thawed) {
            slot.proc.signal('SIGCONT');
            slot.frozen = false;
          }
          await this.cas(id, ['created', 'starting'], { state: 'started', state_reason: null });
          if (thawed) {
            await this.freeze(m, slot, false);
            await this.note(m, 'resumed: processes continued (SIGCONT)');
          }
        } else if (!slot.timer) await this.launch(m, slot);
        return;
      case 'suspending':
        if (exitQueued) return;
        if (slot.proc?.running) {
          await this.freeze(m, slot, true);
          await this.note(m, 'suspended: processes stopped (SIGSTOP) until traffic resumes them');
          await this.cas(id, ['suspending'], { state: 'suspended' });
        } else await this.cas(id, ['suspending'], { state: 'stopped', state_reason: 'nothing ran to suspend' });
        return;
      case 'suspended':
        if (exitQueued) return;
        // After an agent restart the process is adopted still stopped; stop it again if it is not.
        if (slot.proc?.running) {
          if (!slot.frozen || !isFrozen(slot.proc.pid)) await this.freeze(m, slot, true);
          return;
        }
        await this.cas(id, ['suspended'], { state: 'stopped', restarts: 0, state_reason: 'its process ended while suspended' });
        return;
      case 'started':
        if (exitQueued) return;
        if (slot.proc?.running) {
          this.d.logs.attach(this.dirOf(id), this.meta(m));
          return;
        }
        // Nothing runs: it ended while no agent watched (agent down, host rebooted).
        await this.handleExit(m, slot, readExit(this.dirOf(id)) ?? { exit_code: null, signal: null }, 0);
        return;
      case 'stopping': {
        const exit = await this.stopProcess(m, slot);
        await this.cas(id, ['stopping'], {
          state: 'stopped',
          restarts: 0,
          state_reason: 'stopped on request',
          ...(exit ? { last_exit: { ...exit, requested: true, at: Date.now() } } : {}),
        });
        return;
      }
      case 'stopped':
      case 'failed':
        if (slot.proc?.running) await this.stopProcess(m, slot);
        this.cancelRestart(slot);
        return;
      case 'destroying':
        await this.retire(id, slot);
        await this.d.store.removeMachine(id).catch((err: unknown) => {
          if (!(err instanceof NotFoundError)) throw err;
        });
        this.d.log.info({ machine: id, app: m.app }, 'machine destroyed');
        return;
      case 'destroyed':
        return;
    }
  }

  private cancelRestart(slot: Slot): void {
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = null;
  }

  private async launch(m: Machine, slot: Slot): Promise<void> {
    this.cancelRestart(slot);
    const t0 = process.hrtime.bigint();
    const dir = this.dirOf(m.id);
    const config = m.config!;
    // Never two: a shim of this folder may run although this agent did not see it start.
    const running = MachineProcess.adopt(dir);
    if (running) {
      slot.proc = running;
      running.signal('SIGCONT');
      slot.frozen = false;
      this.watchExit(m.id, running);
      await this.cas(m.id, ['created', 'starting'], { state: 'started', state_reason: null });
      return;
    }
    if (m.state === 'created') {
      const moved = await this.cas(m.id, ['created'], { state: 'starting' });
      if (!moved) return;
      m = moved;
    }
    const net = this.networkOf(m);
    try {
      if (!net) throw new LaunchError(`app ${m.app} or its org is gone`);
      const cwd = this.d.workdir;
      const path = process.env.PATH ?? '';
      const program = resolveCommand(config.cmd[0]!, machineEnv(m, path).PATH!, cwd, this.d.driver.runAs());
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const prep = await this.d.driver.prepare(m, net, dir);
      this.d.logs.attach(dir, this.meta(m));
      if (this.d.driver.kind === 'local') {
        await this.note(m, `LOCAL DRIVER: no network isolation; this machine is a plain process of the host's user on ${prep.upstream} (PORT=${prep.env.PORT}); its 6PN address ${m.address} is not bound`);
      }
      const proc = await MachineProcess.launch(dir, { argv: [...prep.wrap, program, ...config.cmd.slice(1)], env: machineEnv(m, path, prep.env), cwd });
      slot.proc = proc;
      slot.requested = false;
      this.watchExit(m.id, proc);
      await this.note(m, `machine started: ${config.cmd.join(' ')} (pid ${proc.pid})`);
      const done = await this.cas(m.id, ['starting'], { state: 'started', state_reason: null, ...(prep.upstream ? { upstream: prep.upstream } : {}) });
      starts.inc({ outcome: done ? 'started' : 'superseded' });
      startSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
      this.d.log.info({ machine: m.id, app: m.app, pid: proc.pid, ms: Math.round(Number(process.hrtime.bigint() - t0) / 1e6) }, 'machine started');
    } catch (err) {
      starts.inc({ outcome: 'failed' });
      const reason = err instanceof LaunchError ? err.message : `cannot start: ${(err as Error).message}`;
      this.d.log.warn({ machine: m.id, app: m.app, reason }, 'machine failed to start');
      // Nothing half-made: the network goes with the failed start.
      await this.d.logs.detach(m.id);
      await this.d.driver.teardown(m.id).catch((e: unknown) => this.d.log.error({ err: e, machine: m.id }, 'removing the network of a failed machine failed'));
      await this.cas(m.id, ['starting'], { state: 'failed', state_reason: reason.slice(0, 500) });
    }
  }

  private watchExit(id: string, proc: MachineProcess): void {
    void proc.exited.then((exit) => this.run(id, () => this.onExit(id, proc, exit)));
  }

  private async onExit(id: string, proc: MachineProcess, exit: ProcessExit): Promise<void> {
    const slot = this.slots.get(id);
    if (!slot || slot.proc !== proc) return;
    slot.proc = null;
    exits.inc({ requested: String(slot.requested) });
    await this.d.logs.flush(id);
    if (slot.requested || this.closed) return; // the stop path records it
    const m = this.d.view.machines.get(id);
    if (!m || m.host !== this.d.hostName) return;
    let upFor = Date.now() - proc.since;
    try {
      upFor = Date.now() - statSync(join(proc.dir, 'pid')).mtimeMs;
    } catch {
      // keep the estimate
    }
    await this.handleExit(m, slot, exit, upFor);
  }

  /** A process ended on its own: record it and apply the restart policy. */
  private async handleExit(m: Machine, slot: Slot, exit: ProcessExit, upForMs: number): Promise<void> {
    if (!m.config) return;
    const d = decideOnExit(m.config.restart, exit, m.restarts ?? 0, upForMs, this.backoff);
    const last_exit = { ...exit, requested: false, at: Date.now() };
    this.d.log.warn({ machine: m.id, app: m.app, ...exit, decision: d.action, reason: d.reason }, 'machine process exited');
    await this.note(m, `process ${d.reason}`);
    if (d.action === 'restart') {
      const moved = await this.cas(m.id, ['started', 'starting'], { state: 'starting', last_exit, restarts: d.restarts, state_reason: d.reason });
      if (!moved) return;
      this.cancelRestart(slot);
      slot.timer = setTimeout(() => {
        slot.timer = null;
        void this.schedule(m.id);
      }, d.delayMs);
      slot.timer.unref();
      return;
    }
    await this.cas(m.id, ['started', 'starting'], { state: d.action === 'fail' ? 'failed' : 'stopped', last_exit, restarts: d.restarts, state_reason: d.reason });
  }

  /** Sends kill_signal, then SIGKILL after kill_timeout; resolves with how it ended (null: nothing ran). */
  private async stopProcess(m: Pick<Machine, 'id' | 'app' | 'region' | 'config'>, slot: Slot): Promise<ProcessExit | null> {
    this.cancelRestart(slot);
    const proc = slot.proc;
    if (!proc || !proc.running) {
      slot.proc = null;
      return null;
    }
    slot.requested = true;
    const sig = (m.config?.kill_signal ?? 'SIGTERM') as NodeJS.Signals;
    const timeout = m.config?.kill_timeout ?? 5_000;
    proc.signal(sig);
    // A suspended process gets its kill_signal when it runs again: continue it right after.
    if (slot.frozen) await this.freeze(m, slot, false);
    await this.note(m, `stopping: sent ${sig}, SIGKILL after ${timeout} ms`);
    let exit = await Promise.race([proc.exited, sleep(timeout)]);
    if (!exit) {
      proc.signal('SIGKILL');
      await this.d.driver.killRemaining(m.id);
      await this.note(m, `did not stop within ${timeout} ms: sent SIGKILL`);
      exit = (await Promise.race([proc.exited, sleep(KILL_WAIT_MS)])) ?? { exit_code: null, signal: 'SIGKILL' };
    }
    if (slot.proc === proc) slot.proc = null;
    await this.d.logs.flush(m.id);
    await this.note(m, `process ${describeExit(exit)}`);
    return exit;
  }

  /**
   * Suspend and resume: SIGSTOP / SIGCONT to the machine's process group (its session: the
   * shim starts it with setsid, so everything it starts is in it unless it makes a session of
   * its own), then to whatever else runs in its network (the netns driver). The kernel keeps
   * its sockets: connections queue in its listen backlog and are answered once it continues.
   */
  private async freeze(m: Pick<Machine, 'id'>, slot: Slot, frozen: boolean): Promise<void> {
    const sig = frozen ? 'SIGSTOP' : 'SIGCONT';
    slot.proc?.signal(sig);
    slot.frozen = frozen;
    await this.d.driver.signalAll(m.id, sig).catch((err: unknown) => this.d.log.warn({ err, machine: m.id }, `${sig} to the processes of the machine's network failed`));
  }

  /** Stops it, removes its network and folder: the machine is gone from this host. */
  private async retire(id: string, slot: Slot): Promise<void> {
    const known = this.d.view.machines.get(id);
    const m = known ?? { id, app: '', region: '', config: slot.config };
    if (slot.proc?.running) await this.stopProcess(m, slot);
    this.cancelRestart(slot);
    await this.d.logs.detach(id);
    await this.d.driver.teardown(id);
    rmSync(this.dirOf(id), { recursive: true, force: true });
    if (this.slots.get(id) === slot) this.slots.delete(id);
    if (!known) this.d.log.info({ machine: id }, 'removed a machine this host no longer runs (network, folder, process)');
  }

  /** Machines running now, by id. */
  running(): Map<string, MachineProcess> {
    const out = new Map<string, MachineProcess>();
    for (const [id, s] of this.slots) if (s.proc?.running) out.set(id, s.proc);
    return out;
  }

  /**
   * Stops watching. With `stop_on_exit` the machines are stopped first (and marked stopped);
   * otherwise they run on and the next agent adopts them.
   */
  async close(stopMachines = this.d.cfg.stop_on_exit): Promise<void> {
    if (this.closed) return;
    this.d.view.off('change', this.onChange);
    this.d.view.off('reset', this.onReset);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const s of this.slots.values()) this.cancelRestart(s);
    if (stopMachines) {
      await Promise.all(
        [...this.slots.entries()].map(([id, slot]) =>
          this.run(id, async () => {
            const m = this.d.view.machines.get(id);
            if (!m || !slot.proc?.running) return;
            const exit = await this.stopProcess(m, slot);
            await this.d.store
              .updateMachine(id, { state: 'stopped', state_reason: `host ${this.d.hostName} shut down`, ...(exit ? { last_exit: { ...exit, requested: true, at: Date.now() } } : {}) }, { ifState: ['started', 'starting', 'created', 'stopping'] })
              .catch(() => undefined);
          }),
        ),
      );
    }
    this.closed = true;
    await Promise.all([...this.slots.values()].map((s) => s.chain));
    for (const s of this.slots.values()) s.proc?.release();
    await this.d.logs.close();
  }
}

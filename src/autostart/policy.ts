/**
 * The decisions of autostart and autostop, pure: what an app's services ask for, which machine
 * a caller wakes, and which idle machines a sweep stops. Data in, data out, so each is a table
 * test (test/unit/autostart/policy.test.ts).
 */
import type { App, AutoStop, Machine, Service } from '../catalog/types.js';

/** fly.toml's `auto_start_machines`; absent, it follows auto_stop_machines (an app that lets sixpn stop its machines gets them started again). */
export function autoStartOf(s: Service): boolean {
  return s.auto_start_machines ?? (s.auto_stop_machines !== undefined && s.auto_stop_machines !== 'off');
}

const MILDNESS: Record<AutoStop, number> = { off: 0, suspend: 1, stop: 2 };

/**
 * What autostop does with the app's idle machines. A machine serves every service of its app, so
 * the mildest service wins (one service that says "off", or says nothing, keeps them running);
 * min_machines_running is the largest any service asks for.
 */
export function autoStopOf(app: App): { mode: AutoStop; minRunning: number } {
  if (app.services.length === 0) return { mode: 'off', minRunning: 0 };
  let mode: AutoStop = 'stop';
  let minRunning = 0;
  for (const s of app.services) {
    const m = s.auto_stop_machines ?? 'off';
    if (MILDNESS[m] < MILDNESS[mode]) mode = m;
    minRunning = Math.max(minRunning, s.min_machines_running ?? 0);
  }
  return { mode, minRunning };
}

/** Lower is tried first, inside a region: one coming up already, then the quickest to bring back. */
const STATE_ORDER: Partial<Record<Machine['state'], number>> = { starting: 0, suspended: 1, stopped: 2, suspending: 3, stopping: 4 };

/**
 * A machine that traffic may bring up: stopped or suspended, or on its way there (the start
 * waits for it to settle), or already starting by a start request (joined, not started twice). A
 * `starting` machine in a restart back-off (restarts > 0) is a crash loop, not a start to join.
 * Machines registered by hand only with a start hook on this node; `failed` ones never (a failed
 * start must let the next caller try another machine).
 */
export function isWakeable(m: Machine, hasHook: (app: string) => boolean): boolean {
  if (STATE_ORDER[m.state] === undefined) return false;
  if (m.state === 'starting' && (m.restarts ?? 0) > 0) return false;
  if (m.state === 'suspended' || m.state === 'suspending') return m.config !== undefined;
  return m.config !== undefined || hasHook(m.app);
}

/**
 * The machines a caller may wake, best first: nearest region (by `rank`, the proxy's region
 * order), then one starting already, suspended, stopped, then those still stopping; ties by id,
 * so that every proxy node goes for the same machine and the compare-and-set lets one start it.
 */
export function wakeOrder(machines: Iterable<Machine>, rank: (region: string) => number, hasHook: (app: string) => boolean, skip: (id: string) => boolean = () => false): Machine[] {
  const out: Machine[] = [];
  for (const m of machines) if (!skip(m.id) && isWakeable(m, hasHook)) out.push(m);
  return out.sort((a, b) => rank(a.region) - rank(b.region) || STATE_ORDER[a.state]! - STATE_ORDER[b.state]! || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export interface IdleMachine {
  machine: Machine;
  /** Epoch ms of its last traffic, through any proxy as far as this node knows. */
  activeAt: number;
}

/**
 * The machines an autostop sweep stops or suspends: started ones idle for `idlePeriodMs`, at most
 * one per region per sweep (as Fly's proxy does, so capacity goes down gently), never leaving
 * fewer than `minRunning` started machines in the primary region (in the whole app when it names
 * none). Longest idle first.
 */
export function idleToStop(machines: readonly IdleMachine[], now: number, idlePeriodMs: number, minRunning: number, primaryRegion: string | undefined): Machine[] {
  const inScope = (m: Machine): boolean => primaryRegion === undefined || m.region === primaryRegion;
  let keptInScope = machines.filter((x) => x.machine.state === 'started' && inScope(x.machine)).length;
  const idle = machines.filter((x) => x.machine.state === 'started' && now - x.activeAt >= idlePeriodMs).sort((a, b) => a.activeAt - b.activeAt || (a.machine.id < b.machine.id ? -1 : 1));
  const regions = new Set<string>();
  const out: Machine[] = [];
  for (const { machine } of idle) {
    if (regions.has(machine.region)) continue;
    if (inScope(machine)) {
      if (keptInScope <= minRunning) continue;
      keptInScope--;
    }
    regions.add(machine.region);
    out.push(machine);
  }
  return out;
}

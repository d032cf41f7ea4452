// Autostart and autostop decisions as tables: what an app's services ask for, which machine a
// caller wakes, which idle machines a sweep stops (min_machines_running in the primary region).
import { describe, expect, it } from 'vitest';
import { autoStartOf, autoStopOf, idleToStop, isWakeable, wakeOrder } from '../../../src/autostart/policy.js';
import type { App, Machine, Service } from '../../../src/catalog/types.js';

const svc = (extra: Partial<Service> = {}): Service => ({
  protocol: 'http',
  internal_port: 8080,
  ports: [{ port: 80, handlers: [] }],
  concurrency: { type: 'requests', soft_limit: 20, hard_limit: 25 },
  tcp_checks: [],
  http_checks: [],
  ...extra,
});
const app = (services: Service[], primary_region?: string): App => ({ name: 'web', org: 'acme', services, ...(primary_region ? { primary_region } : {}) });
const RUN = { cmd: ['x'], env: {}, restart: { policy: 'always' as const, max_retries: 10 }, kill_signal: 'SIGINT' as const, kill_timeout: 5000 };
const machine = (id: string, region: string, state: Machine['state'], extra: Partial<Machine> = {}): Machine => ({
  id,
  app: 'web',
  region,
  address: 'fdaa:0:18::2',
  state,
  health: { status: 'unknown', reason: '', changed_at: 0 },
  host: 'h1',
  config: RUN,
  created_at: 0,
  updated_at: 0,
  ...extra,
});
const RANK: Record<string, number> = { ewr: 0, iad: 1, lhr: 2 };
const rank = (r: string): number => RANK[r] ?? 99;
const noHooks = (): boolean => false;

describe('what the services ask for', () => {
  it.each([
    [{}, false],
    [{ auto_stop_machines: 'off' as const }, false],
    [{ auto_stop_machines: 'stop' as const }, true],
    [{ auto_stop_machines: 'suspend' as const }, true],
    [{ auto_stop_machines: 'off' as const, auto_start_machines: true }, true],
    [{ auto_stop_machines: 'stop' as const, auto_start_machines: false }, false],
  ])('auto_start_machines of %j is %s', (extra, want) => expect(autoStartOf(svc(extra))).toBe(want));

  it.each([
    [[], 'off', 0],
    [[svc()], 'off', 0],
    [[svc({ auto_stop_machines: 'suspend', min_machines_running: 1 })], 'suspend', 1],
    [[svc({ auto_stop_machines: 'stop' }), svc({ auto_stop_machines: 'suspend', min_machines_running: 2 })], 'suspend', 2],
    [[svc({ auto_stop_machines: 'stop' }), svc()], 'off', 0],
  ] as const)('autostop of %j: %s, min %d', (services, mode, min) => expect(autoStopOf(app([...services]))).toEqual({ mode, minRunning: min }));
});

describe('which machine a caller wakes', () => {
  it.each([
    ['stopped, run by a host', machine('a', 'ewr', 'stopped'), true],
    ['suspended', machine('a', 'ewr', 'suspended'), true],
    ['still stopping', machine('a', 'ewr', 'stopping'), true],
    ['starting on request', machine('a', 'ewr', 'starting', { restarts: 0 }), true],
    ['starting in a restart back-off', machine('a', 'ewr', 'starting', { restarts: 2 }), false],
    ['started', machine('a', 'ewr', 'started'), false],
    ['failed', machine('a', 'ewr', 'failed'), false],
    ['destroying', machine('a', 'ewr', 'destroying'), false],
    ['registered by hand, no hook', machine('a', 'ewr', 'stopped', { host: undefined, config: undefined }), false],
  ])('%s: %s', (_what, m, want) => expect(isWakeable(m, noHooks)).toBe(want));

  it('takes a hand-registered machine only with a start hook, and never suspends one', () => {
    const hand = machine('a', 'ewr', 'stopped', { host: undefined, config: undefined });
    expect(isWakeable(hand, (a) => a === 'web')).toBe(true);
    expect(isWakeable({ ...hand, state: 'suspended' }, () => true)).toBe(false);
  });

  it('orders nearest region first, then starting, suspended, stopped, stopping; ties by id (every node picks the same)', () => {
    const ms = [
      machine('f', 'lhr', 'suspended'),
      machine('e', 'iad', 'stopped'),
      machine('d', 'ewr', 'stopping'),
      machine('c', 'ewr', 'stopped'),
      machine('b', 'ewr', 'stopped'),
      machine('a', 'ewr', 'suspended'),
      machine('g', 'ewr', 'started'),
      machine('h', 'ewr', 'starting'),
    ];
    expect(wakeOrder(ms, rank, noHooks).map((m) => m.id)).toEqual(['h', 'a', 'b', 'c', 'd', 'e', 'f']);
    expect(wakeOrder(ms, rank, noHooks, (id) => id === 'h' || id === 'a').map((m) => m.id)).toEqual(['b', 'c', 'd', 'e', 'f']);
  });
});

describe('which idle machines a sweep stops', () => {
  const NOW = 1_000_000;
  const IDLE = 60_000;
  const at = (m: Machine, idleFor: number) => ({ machine: m, activeAt: NOW - idleFor });

  it('stops machines idle for the period, one per region per sweep, longest idle first', () => {
    const got = idleToStop([at(machine('a', 'ewr', 'started'), 70_000), at(machine('b', 'ewr', 'started'), 90_000), at(machine('c', 'iad', 'started'), 60_000), at(machine('d', 'lhr', 'started'), 59_999)], NOW, IDLE, 0, undefined);
    expect(got.map((m) => m.id)).toEqual(['b', 'c']);
  });

  it('never goes below min_machines_running in the primary region; other regions go to zero', () => {
    const ms = [at(machine('a', 'ewr', 'started'), 90_000), at(machine('b', 'ewr', 'started'), 80_000), at(machine('c', 'iad', 'started'), 90_000)];
    expect(idleToStop(ms, NOW, IDLE, 1, 'ewr').map((m) => m.id)).toEqual(['a', 'c']);
    expect(idleToStop(ms, NOW, IDLE, 2, 'ewr').map((m) => m.id)).toEqual(['c']);
    // a primary region machine already stopped counts as gone
    expect(idleToStop([at(machine('a', 'ewr', 'started'), 90_000), at(machine('b', 'ewr', 'stopped'), 90_000)], NOW, IDLE, 1, 'ewr')).toEqual([]);
  });

  it('counts min_machines_running over the whole app when it names no primary region', () => {
    const ms = [at(machine('a', 'ewr', 'started'), 90_000), at(machine('c', 'iad', 'started'), 80_000)];
    expect(idleToStop(ms, NOW, IDLE, 1, undefined).map((m) => m.id)).toEqual(['a']);
    expect(idleToStop(ms, NOW, IDLE, 0, undefined).map((m) => m.id)).toEqual(['a', 'c']);
  });

  it('leaves busy and non-started machines alone', () => {
    expect(idleToStop([at(machine('a', 'ewr', 'started'), 1_000), at(machine('b', 'iad', 'suspended'), 90_000), at(machine('c', 'lhr', 'starting'), 90_000)], NOW, IDLE, 0, undefined)).toEqual([]);
  });
});

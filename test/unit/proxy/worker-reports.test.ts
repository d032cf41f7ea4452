// The primary's view of its proxy workers (src/proxy/worker-reports.ts): a slot as a remote source
// of a real registry, answered from another real registry through JSON as over IPC. The node's
// counters never go backwards across a worker's exit and restart, a dead worker's gauges leave,
// a late worker counts with its last answer, and ejections merge to one entry per machine.
import { describe, expect, it } from 'vitest';
import { Registry, type RegistrySnapshot } from '../../../src/observe/metrics.js';
import { unionEjections, WorkerSlot } from '../../../src/proxy/worker-reports.js';

/** A worker process's registry with the proxy's kinds of metric. */
function workerRegistry() {
  const r = new Registry();
  return {
    r,
    requests: r.counter({ name: 'sixpn_proxy_http_requests_total', help: 'h', labelNames: ['app', 'machine'] as const }),
    active: r.gauge({ name: 'sixpn_proxy_active_connections', help: 'h', labelNames: ['app', 'machine'] as const }),
    seconds: r.histogram({ name: 'sixpn_proxy_request_duration_seconds', help: 'h', labelNames: ['app'] as const, buckets: [0.1, 1] }),
  };
}

/** Attaches `w` to the slot: it answers each request on the next turn, as a worker over IPC would. */
function attach(slot: WorkerSlot, w: Registry): void {
  slot.attach((id, names) => {
    void w.snapshot(names && ((n) => names.includes(n))).then((snap) => setImmediate(() => slot.answer(id, JSON.parse(JSON.stringify(snap)) as RegistrySnapshot)));
  });
}

/** A primary's registry with one worker slot (waited for at most `timeoutMs`), held by a first worker. */
function node(timeoutMs?: number) {
  const primary = new Registry();
  const slot = new WorkerSlot();
  primary.addRemote(slot, timeoutMs);
  const w = workerRegistry();
  attach(slot, w.r);
  return { primary, slot, w };
}

/** The value of one sample line of the primary's /metrics, or undefined without it. */
async function line(primary: Registry, prefix: string): Promise<number | undefined> {
  const l = (await primary.metrics()).split('\n').find((x) => x.startsWith(prefix));
  return l === undefined ? undefined : Number(l.slice(l.lastIndexOf(' ') + 1));
}

const REQS = 'sixpn_proxy_http_requests_total{app="web",machine="m1"}';
const ACTIVE = 'sixpn_proxy_active_connections{app="web",machine="m1"}';
const COUNT = 'sixpn_proxy_request_duration_seconds_count{app="web"}';

describe('a worker slot', () => {
  it('adds a restarted worker to what the one before it last answered: counters never go backwards, its gauges leave with it', async () => {
    const { primary, slot, w: first } = node();
    first.requests.inc({ app: 'web', machine: 'm1' }, 5);
    first.active.set({ app: 'web', machine: 'm1' }, 2);
    first.seconds.observe({ app: 'web' }, 0.05);
    expect(await line(primary, REQS)).toBe(5);
    expect(await line(primary, ACTIVE)).toBe(2);
    // Counted after its last answer: lost with it (SIGKILL), but what was seen stays.
    first.requests.inc({ app: 'web', machine: 'm1' }, 2);
    slot.detach();
    expect(await line(primary, REQS)).toBe(5);
    expect(await line(primary, COUNT)).toBe(1);
    expect(await line(primary, ACTIVE)).toBeUndefined();

    const second = workerRegistry();
    attach(slot, second.r);
    second.requests.inc({ app: 'web', machine: 'm1' }, 3);
    second.active.set({ app: 'web', machine: 'm1' }, 1);
    second.seconds.observe({ app: 'web' }, 0.5);
    expect(await line(primary, REQS)).toBe(8);
    expect(await line(primary, ACTIVE)).toBe(1);
    expect(await line(primary, COUNT)).toBe(2);
    // samples() (the dashboard's read) sees the same sums.
    const got = await primary.samples(['sixpn_proxy_http_requests_total']);
    expect(got.get('sixpn_proxy_http_requests_total')).toEqual([{ labels: { app: 'web', machine: 'm1' }, value: 8 }]);
  });

  it('ends a read waiting for a worker that exits at once, with the base that now holds its last answer', async () => {
    const { primary, slot, w } = node(5_000);
    w.requests.inc({ app: 'web', machine: 'm1' }, 4);
    expect(await line(primary, REQS)).toBe(4);
    slot.attach(() => undefined); // the same worker, now deaf
    const t0 = performance.now();
    const pending = line(primary, REQS);
    setTimeout(() => slot.detach(), 20);
    expect(await pending).toBe(4);
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  it('counts a worker late for a read with its last answer, without waiting for it', async () => {
    const { primary, slot, w } = node(50);
    w.requests.inc({ app: 'web', machine: 'm1' }, 6);
    w.active.set({ app: 'web', machine: 'm1' }, 3);
    expect(await line(primary, REQS)).toBe(6);
    slot.attach(() => undefined);
    const t0 = performance.now();
    expect(await line(primary, REQS)).toBe(6);
    expect(await line(primary, ACTIVE)).toBe(3);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it("drops a deleted machine's series from the base and from the last answer", async () => {
    const { primary, slot, w } = node(50);
    w.requests.inc({ app: 'web', machine: 'm1' });
    w.requests.inc({ app: 'web', machine: 'm2' });
    await primary.metrics();
    slot.detach();
    const next = workerRegistry();
    attach(slot, next.r);
    next.requests.inc({ app: 'web', machine: 'm2' });
    await primary.metrics();
    slot.attach(() => undefined); // late from now on: its last answer counts
    slot.forgetMachine('m2');
    const text = await primary.metrics();
    expect(text).toContain(`${REQS} 1`);
    expect(text).not.toContain('machine="m2"');
  });
});

describe('the ejections of several workers', () => {
  const NOW = 1_000_000;
  const slotWith = (...list: { app: string; machine: string; until: number }[]): WorkerSlot => Object.assign(new WorkerSlot(), { ejections: list });

  it.each<[string, WorkerSlot[], { app: string; machine: string; until: number }[]]>([
    ['none', [slotWith(), slotWith()], []],
    ['one worker', [slotWith({ app: 'web', machine: 'm1', until: NOW + 10_000 }), slotWith()], [{ app: 'web', machine: 'm1', until: NOW + 10_000 }]],
    [
      'the same machine in two workers: once, until the later one takes it back',
      [slotWith({ app: 'web', machine: 'm1', until: NOW + 10_000 }), slotWith({ app: 'web', machine: 'm1', until: NOW + 20_000 })],
      [{ app: 'web', machine: 'm1', until: NOW + 20_000 }],
    ],
    [
      'two machines',
      [slotWith({ app: 'web', machine: 'm1', until: NOW + 10_000 }), slotWith({ app: 'api', machine: 'm2', until: NOW + 5_000 })],
      [
        { app: 'web', machine: 'm1', until: NOW + 10_000 },
        { app: 'api', machine: 'm2', until: NOW + 5_000 },
      ],
    ],
    ['an ejection that ran out', [slotWith({ app: 'web', machine: 'm1', until: NOW }), slotWith()], []],
  ])('%s', (_what, slots, want) => {
    expect(unionEjections(slots, NOW)).toEqual(want);
  });

  it('end with the worker that told them', () => {
    const slot = slotWith({ app: 'web', machine: 'm1', until: NOW + 10_000 });
    slot.detach();
    expect(unionEjections([slot], NOW)).toEqual([]);
  });
});

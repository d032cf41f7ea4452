// sixpn's Prometheus registry: what /metrics says for each kind of metric (tables of operations
// and the lines they give), the errors a bad definition or call gets, remove/reset, collect
// hooks, the get() shape the dashboard sampler reads, snapshots of two registries merged, remote
// sources summed into reads (late and failing ones), the process metrics, and the whole
// exposition checked by the real promtool.
import { describe, expect, it } from 'vitest';
import { counter, exposition, mergeSnapshots, Registry, type RegistrySnapshot, type RemoteSource } from '../../../src/observe/metrics.js';
import { registerProcessMetrics } from '../../../src/observe/metrics/process.js';
import { hasCommand } from '../../harness/env.js';
import { run } from '../../harness/procs.js';

/** The sample lines (no # lines) a registry's exposition has after `ops`. */
async function lines(ops: (r: Registry) => void): Promise<string[]> {
  const r = new Registry();
  ops(r);
  return (await r.metrics()).split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

describe('exposition', () => {
  it.each<[string, (r: Registry) => void, string[]]>([
    ['counter without labels starts at 0', (r) => r.counter({ name: 'a_total', help: 'h' }), ['a_total 0']],
    [
      'counter without labels adds',
      (r) => {
        const c = r.counter({ name: 'a_total', help: 'h' });
        c.inc();
        c.inc(2.5);
      },
      ['a_total 3.5'],
    ],
    [
      'labelled counter: object and positional labels reach the same series, labels in definition order',
      (r) => {
        const c = r.counter({ name: 'a_total', help: 'h', labelNames: ['app', 'code'] as const });
        c.inc({ code: 200, app: 'web' });
        c.labels('web', '200').inc(2);
        c.labels({ app: 'api', code: '500' }).inc();
      },
      ['a_total{app="web",code="200"} 3', 'a_total{app="api",code="500"} 1'],
    ],
    [
      'a label left out is the empty value (the same series to Prometheus)',
      (r) => {
        const c = r.counter({ name: 'a_total', help: 'h', labelNames: ['app', 'machine'] as const });
        c.inc({ app: 'web' } as never);
        c.inc({ app: 'web', machine: '' });
      },
      ['a_total{app="web",machine=""} 2'],
    ],
    ['labelled counter has no series before use', (r) => r.counter({ name: 'a_total', help: 'h', labelNames: ['app'] as const }), []],
    ['a child exists from labels() on, at 0', (r) => r.counter({ name: 'a_total', help: 'h', labelNames: ['app'] as const }).labels('web'), ['a_total{app="web"} 0']],
    [
      'gauge inc, dec, set',
      (r) => {
        const g = r.gauge({ name: 'g', help: 'h' });
        g.inc();
        g.inc(4);
        g.dec(2);
        const l = r.gauge({ name: 'l', help: 'h', labelNames: ['m'] as const });
        l.set({ m: 'a' }, 7);
        l.dec({ m: 'a' });
        l.labels('b').inc(-1);
      },
      ['g 3', 'l{m="a"} 6', 'l{m="b"} -1'],
    ],
    [
      'numbers: integers plain, decimals and exponents as JavaScript prints them, NaN and infinities as Prometheus spells them',
      (r) => {
        const g = r.gauge({ name: 'g', help: 'h', labelNames: ['v'] as const });
        for (const [k, v] of [['int', 42], ['dec', 0.1], ['big', 1e21], ['small', -0.000001], ['nan', NaN], ['inf', Infinity], ['ninf', -Infinity]] as const) g.set({ v: k }, v);
      },
      ['g{v="int"} 42', 'g{v="dec"} 0.1', 'g{v="big"} 1e+21', 'g{v="small"} -0.000001', 'g{v="nan"} NaN', 'g{v="inf"} +Inf', 'g{v="ninf"} -Inf'],
    ],
    [
      'label values escape backslash, double quote and newline',
      (r) => r.counter({ name: 'a_total', help: 'h', labelNames: ['v'] as const }).inc({ v: 'a\\b"c\nd' }),
      ['a_total{v="a\\\\b\\"c\\nd"} 1'],
    ],
    [
      'histogram without labels shows empty buckets',
      (r) => r.histogram({ name: 'h_seconds', help: 'h', buckets: [1, 2] }),
      ['h_seconds_bucket{le="1"} 0', 'h_seconds_bucket{le="2"} 0', 'h_seconds_bucket{le="+Inf"} 0', 'h_seconds_sum 0', 'h_seconds_count 0'],
    ],
    [
      'histogram buckets are cumulative, a value equal to a bound counts in that bucket, one above all only in +Inf',
      (r) => {
        const h = r.histogram({ name: 'h_seconds', help: 'h', labelNames: ['app'] as const, buckets: [0.1, 1, 10] });
        for (const v of [-1, 0.1, 0.10000001, 1, 10, 11]) h.observe({ app: 'x' }, v);
      },
      [
        'h_seconds_bucket{le="0.1",app="x"} 2',
        'h_seconds_bucket{le="1",app="x"} 4',
        'h_seconds_bucket{le="10",app="x"} 5',
        'h_seconds_bucket{le="+Inf",app="x"} 6',
        'h_seconds_sum{app="x"} 21.20000001',
        'h_seconds_count{app="x"} 6',
      ],
    ],
    [
      'histogram children from labels() observe',
      (r) => {
        const h = r.histogram({ name: 'h_seconds', help: 'h', labelNames: ['a', 'b'] as const, buckets: [1] });
        h.labels('x', 'y').observe(0.5);
        h.labels('x', 'y').observe(2);
      },
      ['h_seconds_bucket{le="1",a="x",b="y"} 1', 'h_seconds_bucket{le="+Inf",a="x",b="y"} 2', 'h_seconds_sum{a="x",b="y"} 2.5', 'h_seconds_count{a="x",b="y"} 2'],
    ],
    [
      'label values that would run together in a naive key stay apart',
      (r) => {
        const c = r.counter({ name: 'a_total', help: 'h', labelNames: ['x', 'y'] as const });
        c.inc({ x: 'a1:', y: 'b' });
        c.inc({ x: 'a', y: '1:b' });
      },
      ['a_total{x="a1:",y="b"} 1', 'a_total{x="a",y="1:b"} 1'],
    ],
  ])('%s', async (_what, ops, want) => {
    expect(await lines(ops)).toEqual(want);
  });

  it('writes HELP (escaped) and TYPE per metric, a blank line between metrics, in definition order', async () => {
    const r = new Registry();
    r.gauge({ name: 'b', help: 'back\\slash and\nnewline, "quotes" kept' });
    r.counter({ name: 'a_total', help: 'first' });
    expect(await r.metrics()).toBe('# HELP b back\\\\slash and\\nnewline, "quotes" kept\n# TYPE b gauge\nb 0\n\n# HELP a_total first\n# TYPE a_total counter\na_total 0\n');
    expect(r.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  });
});

describe('definition and call errors name the metric and the label', () => {
  it.each<[string, (r: Registry) => unknown, RegExp]>([
    ['bad metric name', (r) => r.counter({ name: 'sixpn-bad', help: 'h' }), /metric name "sixpn-bad" is not valid/],
    ['missing help', (r) => r.counter({ name: 'a_total', help: '' }), /metric a_total: help text is missing/],
    ['bad label name', (r) => r.counter({ name: 'a_total', help: 'h', labelNames: ['ok', 'not-ok'] }), /metric a_total: label name "not-ok" is not valid/],
    ['reserved label name', (r) => r.counter({ name: 'a_total', help: 'h', labelNames: ['__x'] }), /metric a_total: label name "__x" is reserved/],
    ['duplicate label', (r) => r.gauge({ name: 'g', help: 'h', labelNames: ['app', 'app'] }), /metric g: label "app" is listed twice/],
    ['histogram le label', (r) => r.histogram({ name: 'h', help: 'h', labelNames: ['le'] }), /metric h: label "le" is reserved/],
    ['buckets out of order', (r) => r.histogram({ name: 'h', help: 'h', buckets: [1, 0.5] }), /metric h: buckets must ascend strictly: 1 then 0.5/],
    ['an infinite bucket', (r) => r.histogram({ name: 'h', help: 'h', buckets: [1, Infinity] }), /metric h: bucket Infinity is not a finite number/],
    ['no bucket', (r) => r.histogram({ name: 'h', help: 'h', buckets: [] }), /metric h: needs at least one bucket/],
    ['bad gauge merge', (r) => r.gauge({ name: 'g', help: 'h', merge: 'avg' as never }), /metric g: merge must be sum, min or max/],
    ['unknown label', (r) => r.counter({ name: 'a_total', help: 'h', labelNames: ['app'] as const }).inc({ app: 'x', oops: 'y' } as never), /metric a_total: label "oops" is not one of its labels \[app\]/],
    ['wrong label count', (r) => r.counter({ name: 'a_total', help: 'h', labelNames: ['app', 'code'] as const }).labels('x'), /metric a_total: takes 2 label values \[app, code\], got 1/],
    ['label value of another type', (r) => r.gauge({ name: 'g', help: 'h', labelNames: ['app'] as const }).labels({ app: null as never }), /metric g: label "app" must be a string or a number, got null/],
    ['no labels on a labelled metric', (r) => r.gauge({ name: 'g', help: 'h', labelNames: ['app'] as const }).set(1), /metric g: has labels \[app\]: pass them/],
    ['a counter going down', (r) => r.counter({ name: 'a_total', help: 'h' }).inc(-1), /metric a_total: a counter only goes up by a finite amount, got -1/],
    ['a counter child going up by NaN', (r) => r.counter({ name: 'a_total', help: 'h', labelNames: ['a'] as const }).labels('x').inc(NaN), /metric a_total: .*got NaN/],
    ['observing NaN', (r) => r.histogram({ name: 'h', help: 'h' }).observe(NaN), /metric h: cannot observe NaN/],
    [
      'the same name as another type',
      (r) => {
        r.counter({ name: 'x', help: 'h' });
        r.gauge({ name: 'x', help: 'h' });
      },
      /metric x: is already defined as a counter/,
    ],
    [
      'the same name with other labels',
      (r) => {
        r.counter({ name: 'x', help: 'h', labelNames: ['a'] });
        r.counter({ name: 'x', help: 'h', labelNames: ['b'] });
      },
      /metric x: is already defined with labels \[a\]/,
    ],
    [
      'the same name with other buckets',
      (r) => {
        r.histogram({ name: 'x', help: 'h', buckets: [1] });
        r.histogram({ name: 'x', help: 'h', buckets: [2] });
      },
      /metric x: is already defined with buckets \[1\]/,
    ],
  ])('%s', (_what, call, message) => {
    expect(() => call(new Registry())).toThrow(message);
  });

  it('a definition seen again returns the registered metric (a module loaded twice)', () => {
    const r = new Registry();
    const a = r.histogram({ name: 'h', help: 'h', labelNames: ['app'] as const, buckets: [1, 2] });
    expect(r.histogram({ name: 'h', help: 'h', labelNames: ['app'] as const, buckets: [1, 2] })).toBe(a);
    expect(r.getSingleMetric('h')).toBe(a);
    const c = counter({ name: 'sixpn_test_twice_total', help: 'h' });
    expect(counter({ name: 'sixpn_test_twice_total', help: 'h' })).toBe(c);
  });
});

describe('remove and reset', () => {
  it('remove drops one series; a child held across it is detached and labels() starts a new one', async () => {
    const r = new Registry();
    const c = r.counter({ name: 'a_total', help: 'h', labelNames: ['app', 'machine'] as const });
    const old = c.labels('web', 'm1');
    old.inc(5);
    c.inc({ app: 'web', machine: 'm2' });
    c.remove({ app: 'web', machine: 'm1' });
    old.inc();
    expect((await r.metrics()).split('\n').filter((l) => l.startsWith('a_total'))).toEqual(['a_total{app="web",machine="m2"} 1']);
    c.labels('web', 'm1').inc();
    c.remove('web', 'm2');
    expect((await r.metrics()).split('\n').filter((l) => l.startsWith('a_total'))).toEqual(['a_total{app="web",machine="m1"} 1']);
  });

  it('reset drops labelled series and puts unlabelled ones back to zero', async () => {
    const r = new Registry();
    const g = r.gauge({ name: 'g', help: 'h', labelNames: ['app'] as const });
    const plain = r.counter({ name: 'c_total', help: 'h' });
    const h = r.histogram({ name: 'h', help: 'h', buckets: [1] });
    g.set({ app: 'a' }, 1);
    plain.inc(3);
    h.observe(0.5);
    r.resetMetrics();
    const text = await r.metrics();
    expect(text).not.toContain('g{');
    expect(text).toContain('\nc_total 0\n');
    expect(text).toContain('\nh_count 0\n');
    plain.inc();
    expect(await r.metrics()).toContain('\nc_total 1\n');
  });
});

describe('collect hooks', () => {
  it('run with this = the metric before every read, sync or async', async () => {
    const r = new Registry();
    let seen: unknown = null;
    let n = 0;
    const g = r.gauge({
      name: 'g',
      help: 'h',
      labelNames: ['app'] as const,
      collect() {
        seen = this;
        this.reset();
        this.set({ app: 'now' }, ++n);
      },
    });
    r.counter({
      name: 'slow_total',
      help: 'h',
      async collect() {
        await new Promise((resolve) => setTimeout(resolve, 5));
        this.inc();
      },
    });
    const text = await r.metrics();
    expect(seen).toBe(g);
    expect(text).toContain('g{app="now"} 1');
    expect(text).toContain('slow_total 1');
    expect((await g.get()).values.map((v) => v.value)).toEqual([2]);
    const snap = await r.snapshot();
    expect(snap.find((f) => f.name === 'slow_total')?.series).toEqual([{ labels: {}, value: 2 }]); // get() of g ran only g's hook
  });
});

describe('get()', () => {
  it('gives counters and gauges as their own series objects, the same object on every read', async () => {
    const r = new Registry();
    const c = r.counter({ name: 'a_total', help: 'h', labelNames: ['app'] as const });
    c.inc({ app: 'web' }, 2);
    const first = await c.get();
    expect(first).toMatchObject({ name: 'a_total', help: 'h', type: 'counter', values: [{ labels: { app: 'web' }, value: 2 }] });
    c.inc({ app: 'web' });
    const second = await c.get();
    expect(second.values[0]).toBe(first.values[0]);
    expect(second.values[0]!.value).toBe(3);
  });

  it('gives histograms as prom-client did: _bucket samples with le first (a number, then "+Inf"), then _sum and _count', async () => {
    const r = new Registry();
    const h = r.histogram({ name: 'h_seconds', help: 'h', labelNames: ['app'] as const, buckets: [0.1, 1] });
    h.observe({ app: 'x' }, 0.05);
    h.observe({ app: 'x' }, 0.5);
    h.observe({ app: 'x' }, 5);
    const got = await h.get();
    expect(got.type).toBe('histogram');
    expect(got.values).toEqual([
      { labels: { le: 0.1, app: 'x' }, value: 1, metricName: 'h_seconds_bucket' },
      { labels: { le: 1, app: 'x' }, value: 2, metricName: 'h_seconds_bucket' },
      { labels: { le: '+Inf', app: 'x' }, value: 3, metricName: 'h_seconds_bucket' },
      { labels: { app: 'x' }, value: 5.55, metricName: 'h_seconds_sum' },
      { labels: { app: 'x' }, value: 3, metricName: 'h_seconds_count' },
    ]);
    expect(Object.keys(got.values[0]!.labels)).toEqual(['le', 'app']);
  });
});

/** The same metrics in two processes, each with its own series. */
function worker(n: number): Registry {
  const r = new Registry();
  const c = r.counter({ name: 'req_total', help: 'Requests', labelNames: ['app'] as const });
  const g = r.gauge({ name: 'active', help: 'Active', labelNames: ['app'] as const });
  const lag = r.gauge({ name: 'lag_seconds', help: 'Lag', merge: 'max' });
  const start = r.gauge({ name: 'start_seconds', help: 'Start', merge: 'min' });
  const odd = r.gauge({ name: 'odd', help: 'Odd' });
  const h = r.histogram({ name: 'dur_seconds', help: 'Duration', labelNames: ['app'] as const, buckets: [0.1, 1] });
  c.inc({ app: 'web' }, 10 * n);
  c.inc({ app: `only${n}` }, n);
  g.set({ app: 'web' }, n);
  lag.set(0.01 * n);
  start.set(1000 + n);
  odd.set(n === 1 ? NaN : 1);
  for (let i = 0; i < n; i++) h.observe({ app: 'web' }, 0.05 * n);
  h.observe({ app: 'web' }, 2);
  return r;
}

describe('snapshots', () => {
  it('survive JSON and merge into one exposition: counters, gauges and histograms per label set summed, min/max gauges kept so', async () => {
    const wire = (s: RegistrySnapshot): RegistrySnapshot => JSON.parse(JSON.stringify(s));
    const merged = mergeSnapshots([wire(await worker(1).snapshot()), wire(await worker(2).snapshot())]);
    const text = exposition(merged);
    expect(text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))).toEqual([
      'req_total{app="web"} 30',
      'req_total{app="only1"} 1',
      'req_total{app="only2"} 2',
      'active{app="web"} 3',
      'lag_seconds 0.02',
      'start_seconds 1001',
      'odd NaN',
      'dur_seconds_bucket{le="0.1",app="web"} 3', // 0.05 once, 0.1 twice
      'dur_seconds_bucket{le="1",app="web"} 3',
      'dur_seconds_bucket{le="+Inf",app="web"} 5',
      'dur_seconds_sum{app="web"} 4.25',
      'dur_seconds_count{app="web"} 5',
    ]);
    expect(text).toContain('# HELP dur_seconds Duration\n# TYPE dur_seconds histogram\n');
  });

  it('of one registry render as its own /metrics does', async () => {
    const r = worker(3);
    expect(exposition(mergeSnapshots([await r.snapshot()]))).toBe(await r.metrics());
  });

  it.each<[string, RegistrySnapshot, RegExp]>([
    ['another type', [{ name: 'x', help: 'h', type: 'gauge', labelNames: [], series: [] }], /metric x: cannot merge a counter in one snapshot and a gauge in another/],
    ['other labels', [{ name: 'x', help: 'h', type: 'counter', labelNames: ['b'], series: [] }], /metric x: cannot merge labels \[a\] in one snapshot and \[b\] in another/],
  ])('refuse to merge the same name with %s', (_what, other, message) => {
    const one: RegistrySnapshot = [{ name: 'x', help: 'h', type: 'counter', labelNames: ['a'], series: [] }];
    expect(() => mergeSnapshots([one, other])).toThrow(message);
  });

  it('refuse histograms with other buckets or a wrong count of bucket counts', () => {
    const h = (buckets: number[], counts: number[]): RegistrySnapshot => [{ name: 'h', help: 'h', type: 'histogram', labelNames: [], buckets, series: [{ labels: {}, counts, sum: 0 }] }];
    expect(() => mergeSnapshots([h([1], [0, 0]), h([2], [0, 0])])).toThrow(/metric h: cannot merge buckets \[1\] in one snapshot and \[2\] in another/);
    expect(() => mergeSnapshots([h([1], [0, 0, 0])])).toThrow(/metric h: a series has 3 bucket counts for 1 buckets/);
  });
});

/** Another process's registry as a remote source: its snapshot goes through JSON, as over IPC; `reads` records what was asked. */
function remote(other: Registry, reads: (readonly string[] | undefined)[] = []): RemoteSource {
  return {
    async read(names) {
      reads.push(names);
      const snap = await other.snapshot(names && ((n) => names.includes(n)));
      return [JSON.parse(JSON.stringify(snap)) as RegistrySnapshot];
    },
  };
}

/** A source that never answers; it records whether the read gave up on it. */
function silent(): RemoteSource & { aborted: boolean } {
  const s = {
    aborted: false,
    read: (_names: readonly string[] | undefined, signal: AbortSignal) =>
      new Promise<RegistrySnapshot[]>(() => {
        signal.addEventListener('abort', () => (s.aborted = true));
      }),
  };
  return s;
}

const sampleLines = (text: string, name: string): string[] => text.split('\n').filter((l) => l.startsWith(name));

describe('remote sources', () => {
  it("are summed into metrics() and samples() with this process's series; samples() asks them for the names it reads only", async () => {
    const primary = new Registry();
    primary.counter({ name: 'req_total', help: 'Requests', labelNames: ['app'] as const }).inc({ app: 'web' }, 5);
    primary.counter({ name: 'own_total', help: 'Own' }).inc();
    const reads: (readonly string[] | undefined)[] = [];
    primary.addRemote(remote(worker(1), reads));
    primary.addRemote(remote(worker(2), reads));
    const text = await primary.metrics();
    expect(sampleLines(text, 'req_total')).toEqual(['req_total{app="web"} 35', 'req_total{app="only1"} 1', 'req_total{app="only2"} 2']);
    expect(sampleLines(text, 'own_total')).toEqual(['own_total 1']);
    expect(sampleLines(text, 'active')).toEqual(['active{app="web"} 3']);
    expect(sampleLines(text, 'dur_seconds_count')).toEqual(['dur_seconds_count{app="web"} 5']);
    expect(reads).toEqual([undefined, undefined]);

    reads.length = 0;
    const got = await primary.samples(['req_total', 'active', 'dur_seconds', 'nowhere']);
    expect([...got.keys()].sort()).toEqual(['active', 'dur_seconds', 'req_total']);
    expect(got.get('req_total')).toEqual([
      { labels: { app: 'web' }, value: 35 },
      { labels: { app: 'only1' }, value: 1 },
      { labels: { app: 'only2' }, value: 2 },
    ]);
    expect(got.get('active')).toEqual([{ labels: { app: 'web' }, value: 3 }]);
    // Histograms in get()'s shape, buckets cumulative over both processes.
    expect(got.get('dur_seconds')!.filter((s) => s.metricName === 'dur_seconds_bucket').map((s) => [s.labels.le, s.value])).toEqual([
      [0.1, 3],
      [1, 3],
      ['+Inf', 5],
    ]);
    expect(reads).toEqual([
      ['req_total', 'active', 'dur_seconds', 'nowhere'],
      ['req_total', 'active', 'dur_seconds', 'nowhere'],
    ]);
  });

  it("leave getSingleMetric().get() and snapshot() this process's own", async () => {
    const primary = new Registry();
    const c = primary.counter({ name: 'req_total', help: 'Requests', labelNames: ['app'] as const });
    c.inc({ app: 'web' });
    primary.addRemote(remote(worker(1)));
    expect((await c.get()).values.map((v) => [v.labels, v.value])).toEqual([[{ app: 'web' }, 1]]);
    expect((await primary.snapshot()).map((f) => f.name)).toEqual(['req_total']);
  });

  it('give one object per merged counter or gauge series, kept up to date from read to read, let go once no process has the series', async () => {
    const primary = new Registry();
    const w = new Registry();
    const c = w.counter({ name: 'req_total', help: 'Requests', labelNames: ['machine'] as const });
    c.inc({ machine: 'm1' });
    c.inc({ machine: 'm2' });
    primary.addRemote(remote(w));
    const [m1, m2] = (await primary.samples(['req_total'])).get('req_total')!;
    c.inc({ machine: 'm1' }, 4);
    const again = (await primary.samples(['req_total'])).get('req_total')!;
    expect(again[0]).toBe(m1);
    expect(again[0]!.value).toBe(5);
    c.remove({ machine: 'm2' });
    expect((await primary.samples(['req_total'])).get('req_total')).toEqual([{ labels: { machine: 'm1' }, value: 5 }]);
    c.inc({ machine: 'm2' });
    const back = (await primary.samples(['req_total'])).get('req_total')!;
    expect(back[1]).not.toBe(m2);
    expect(back[1]!.value).toBe(1);
  });

  it('leave a source that does not answer in time out of the read, without waiting for it, and abort its read', async () => {
    const primary = new Registry();
    primary.counter({ name: 'req_total', help: 'Requests', labelNames: ['app'] as const }).inc({ app: 'web' });
    const stuck = silent();
    primary.addRemote(remote(worker(1)), 1_000);
    primary.addRemote(stuck, 50);
    const t0 = performance.now();
    const text = await primary.metrics();
    expect(performance.now() - t0).toBeLessThan(500);
    expect(sampleLines(text, 'req_total')).toEqual(['req_total{app="web"} 11', 'req_total{app="only1"} 1']);
    expect(stuck.aborted).toBe(true);
  });

  it('count what stale() gives for a source that is late (even one that settles as it is aborted) or fails, and nothing for one that fails without it', async () => {
    const last = await worker(2).snapshot();
    const primary = new Registry();
    primary.addRemote({ ...silent(), stale: () => [last] }, 50);
    const settlesOnAbort: RemoteSource = {
      read: (_names, signal) => new Promise((resolve) => signal.addEventListener('abort', () => resolve([]))),
      stale: () => [last],
    };
    primary.addRemote(settlesOnAbort, 50);
    primary.addRemote({ read: () => Promise.reject(new Error('worker gone')) });
    primary.addRemote({ read: () => Promise.reject(new Error('worker gone')), stale: (names) => [last.filter((f) => !names || names.includes(f.name))] });
    expect(sampleLines(await primary.metrics(), 'req_total')).toEqual(['req_total{app="web"} 60', 'req_total{app="only2"} 6']);
    expect((await primary.samples(['active'])).get('active')).toEqual([{ labels: { app: 'web' }, value: 6 }]);
  });

  it('are read no more once removed', async () => {
    const primary = new Registry();
    const reads: (readonly string[] | undefined)[] = [];
    const remove = primary.addRemote(remote(worker(1), reads));
    remove();
    expect(await primary.metrics()).toBe('\n');
    expect(reads).toEqual([]);
  });
});

describe('process metrics', () => {
  const NAMES = [
    'process_cpu_user_seconds_total',
    'process_cpu_system_seconds_total',
    'process_cpu_seconds_total',
    'process_start_time_seconds',
    'process_resident_memory_bytes',
    'process_virtual_memory_bytes',
    'process_heap_bytes',
    'process_open_fds',
    'process_max_fds',
    'nodejs_eventloop_lag_seconds',
    'nodejs_eventloop_lag_p99_seconds',
    'nodejs_active_resources_total',
    'nodejs_active_handles_total',
    'nodejs_heap_size_total_bytes',
    'nodejs_heap_size_used_bytes',
    'nodejs_external_memory_bytes',
    'nodejs_heap_space_size_used_bytes',
    'nodejs_version_info',
    'nodejs_gc_duration_seconds',
  ];

  it('are all there, with plausible values read at scrape time', async () => {
    const r = new Registry();
    const stop = registerProcessMetrics(r);
    try {
      for (let i = 0; i < 2e5; i++) Math.sqrt(i); // some CPU
      const text = await r.metrics();
      const value = (name: string): number => {
        const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
        expect(m, name).not.toBeNull();
        return Number(m![1]);
      };
      for (const n of NAMES) expect(text).toContain(`# TYPE ${n} `);
      expect(value('process_cpu_seconds_total')).toBeCloseTo(value('process_cpu_user_seconds_total') + value('process_cpu_system_seconds_total'), 6);
      // Counted since the process started, not since the metrics were defined.
      expect(value('process_cpu_user_seconds_total')).toBeGreaterThan(0.05);
      const start = value('process_start_time_seconds');
      expect(start).toBeLessThanOrEqual(Date.now() / 1000);
      expect(start).toBeGreaterThan(Date.now() / 1000 - process.uptime() - 2);
      expect(value('process_resident_memory_bytes')).toBeGreaterThan(10 * 2 ** 20);
      expect(value('process_resident_memory_bytes')).toBeLessThan(4 * 2 ** 30);
      expect(value('process_virtual_memory_bytes')).toBeGreaterThan(value('process_resident_memory_bytes'));
      expect(value('process_open_fds')).toBeGreaterThan(2);
      expect(value('process_open_fds')).toBeLessThanOrEqual(value('process_max_fds'));
      expect(value('nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
      expect(value('nodejs_eventloop_lag_seconds')).toBeLessThan(1);
      expect(value('nodejs_heap_size_used_bytes')).toBeLessThanOrEqual(value('nodejs_heap_size_total_bytes'));
      expect(value('nodejs_active_handles_total')).toBeGreaterThanOrEqual(0);
      const [major, minor, patch] = process.version.slice(1).split('.');
      expect(text).toContain(`nodejs_version_info{version="${process.version}",major="${major}",minor="${minor}",patch="${patch}"} 1`);
      expect(text).toMatch(/^nodejs_heap_space_size_used_bytes\{space="old"\} \d+$/m);
      // A second scrape: counters only go up.
      const before = value('process_cpu_seconds_total');
      const again = await r.metrics();
      expect(Number(/^process_cpu_seconds_total (\S+)$/m.exec(again)![1])).toBeGreaterThanOrEqual(before);
    } finally {
      stop();
    }
  });
});

describe.skipIf(!hasCommand('promtool'))('promtool check metrics', () => {
  it('accepts a registry holding every kind of metric and the process metrics', async () => {
    const r = new Registry();
    const stop = registerProcessMetrics(r);
    try {
      r.counter({ name: 'sixpn_t_plain_total', help: 'plain counter' }).inc();
      r.counter({ name: 'sixpn_t_requests_total', help: 'a "quoted" help with a back\\slash\nand a newline', labelNames: ['app', 'code'] as const }).inc({ app: 'w"e\\b\nx', code: 200 });
      r.gauge({ name: 'sixpn_t_active', help: 'gauge', labelNames: ['app'] as const }).set({ app: 'web' }, -2.5);
      const odd = r.gauge({ name: 'sixpn_t_odd', help: 'non-finite gauges', labelNames: ['v'] as const });
      odd.set({ v: 'nan' }, NaN);
      odd.set({ v: 'inf' }, Infinity);
      odd.set({ v: 'ninf' }, -Infinity);
      r.histogram({ name: 'sixpn_t_plain_seconds', help: 'plain histogram', buckets: [0.001, 1] }).observe(0.001);
      const h = r.histogram({ name: 'sixpn_t_duration_seconds', help: 'histogram', labelNames: ['app'] as const, buckets: [0.0001, 0.25, 10] });
      for (const v of [0, 0.0001, 0.3, 1e6]) h.observe({ app: 'web' }, v);
      const res = await run('promtool', ['check', 'metrics'], { input: await r.metrics() });
      // Parsing problems exit 1; lint findings exit 3. The only findings are prom-client's three
      // gauges named `_total`, whose names dashboards know.
      const findings = (res.stdout + res.stderr).split('\n').filter((l) => l.trim() !== '');
      expect(findings.filter((l) => !/^nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/.test(l))).toEqual([]);
      expect([0, 3]).toContain(res.code);
    } finally {
      stop();
    }
  });
});

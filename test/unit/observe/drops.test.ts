// Drop accounting shared by the gateway and the host filters: metric increments per org, one log
// line per source and minute with the count since the last, counters that restart from zero.
import pino from 'pino';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { counter, registry } from '../../../src/observe/metrics.js';
import { DropLog } from '../../../src/observe/drops.js';

describe('DropLog', () => {
  it('counts deltas per org and logs each source at most once a minute', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({ write: (chunk, _e, cb) => (lines.push(JSON.parse(chunk.toString())), cb()) });
    const metric = counter({ name: 'sixpn_test_drops_total', help: 'test', labelNames: ['org'] as const });
    const d = new DropLog<{ src: string; org: string }>(metric, pino({ level: 'info' }, sink), 'dropped');
    const who = (n: string) => (n === 'skip' ? undefined : { src: n, org: n.startsWith('a') ? 'acme' : 'globex' });
    const t = 1_000_000;
    d.account(new Map([['a1', 3], ['g1', 0], ['skip', 9]]), who, t);
    d.account(new Map([['a1', 5], ['g1', 2]]), who, t + 10_000); // a1 logged at t: waits; g1 logs now
    d.account(new Map([['a1', 6], ['g1', 2]]), who, t + 61_000); // a1: 3 unlogged since t
    d.account(new Map([['a1', 1]]), who, t + 62_000); // a1's counter was made anew: +1
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => [l.src, l.dropped])).toEqual([['a1', 3], ['g1', 2], ['a1', 3]]);
    const values = (await registry.getSingleMetric('sixpn_test_drops_total')!.get()).values;
    expect(Object.fromEntries(values.map((v) => [v.labels.org, v.value]))).toEqual({ acme: 7, globex: 2 });
  });
});

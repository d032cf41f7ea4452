/**
 * The admin listener's live routes over real HTTP: /v1/status/series, the event feed
 * /v1/events (JSON and followed as server-sent events, resumed with Last-Event-ID) and the
 * chart library the page loads.
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { httpRequests } from '../../../src/proxy/metrics.js';
import { readSse } from '../../harness/sse.js';
import { startTestNode, TOKEN, type TestNode } from '../../harness/test-node.js';

let node: TestNode | null = null;
afterEach(async () => {
  await node?.close();
  node = null;
});

const auth = { authorization: `Bearer ${TOKEN}` };

/** Follows /v1/events until `n` feed frames arrived; returns them with their SSE ids. */
async function follow(url: string, headers: Record<string, string>, n: number, onOpen: () => void = () => undefined): Promise<{ id: number; data: any }[]> {
  const got: { id: number; data: any }[] = [];
  await readSse(
    url,
    headers,
    (f) => {
      if (f.event === 'feed' && f.id !== undefined) got.push({ id: Number(f.id), data: JSON.parse(f.data) });
      return got.length === n;
    },
    {
      onOpen: (res) => {
        expect(res.headers['content-type']).toContain('text/event-stream');
        onOpen();
      },
    },
  );
  return got;
}

describe('/v1/status/series', () => {
  it('needs the token, and answers the 1-second points per app, machine and region', async () => {
    node = await startTestNode();
    expect((await fetch(`${node.url}/v1/status/series?app=hello`)).status).toBe(401);
    httpRequests.inc({ app: 'hello', machine: 'e286d4c2a17d89', status_class: '2xx' }, 1);
    // The sampler primed at start; its first point comes a second later.
    await new Promise((r) => setTimeout(r, 1100));
    httpRequests.inc({ app: 'hello', machine: 'e286d4c2a17d89', status_class: '2xx' }, 30);
    await new Promise((r) => setTimeout(r, 1000));
    const doc = await (await fetch(`${node.url}/v1/status/series?app=hello`, { headers: auth })).json();
    expect(doc).toMatchObject({ step_ms: 1000, window_ms: 900_000, node: { region: 'ewr' } });
    expect(doc.times.length).toBeGreaterThanOrEqual(1);
    expect(doc.apps).toHaveLength(1);
    const hello = doc.apps[0];
    expect(hello).toMatchObject({ name: 'hello', org: 'demo', unit: 'requests', share_of: 'rate' });
    for (const col of ['rate', 'errors_4xx', 'errors_5xx', 'errors_connect', 'p50_ms', 'p99_ms', 'active']) expect(hello.series[col]).toHaveLength(doc.times.length);
    const total = (a: (number | null)[]) => a.reduce<number>((s, v) => s + (v ?? 0), 0);
    expect(total(hello.series.rate)).toBeGreaterThan(20);
    const m = hello.machines.find((x: any) => x.id === 'e286d4c2a17d89');
    expect(m).toMatchObject({ region: 'ewr', state: 'started' });
    expect(total(m.series.rate)).toBeGreaterThan(20);
    // Regions nearest to the node first; all of hello's traffic went to ewr.
    expect(hello.regions.map((r: any) => r.region)).toEqual(['ewr', 'lhr']);
    expect(hello.regions[0].series.share.filter((v: number | null) => v !== null).at(-1)).toBe(1);
    expect(doc.regions.map((r: any) => r.region)).toEqual(['ewr', 'lhr']);
    expect(doc.regions[0]).toMatchObject({ machines: 1, started: 1 });
    // A first load of a big fleet: machines listed, their series left for later.
    const light = await (await fetch(`${node.url}/v1/status/series?machines=0`, { headers: auth })).json();
    const lightHello = light.apps.find((a: any) => a.name === 'hello');
    expect(lightHello.machines.map((x: any) => [x.id, x.series])).toContainEqual(['e286d4c2a17d89', null]);
    expect(total(lightHello.series.rate)).toBeGreaterThan(20);
    // Only what is newer than `since`.
    const last = doc.times.at(-1);
    const inc = await (await fetch(`${node.url}/v1/status/series?since=${last}`, { headers: auth })).json();
    expect(inc.times.every((t: number) => t > last)).toBe(true);
  });

  it('names bad input: an unknown app, a malformed since', async () => {
    node = await startTestNode();
    const unknown = await fetch(`${node.url}/v1/status/series?app=nope`, { headers: auth });
    expect(unknown.status).toBe(404);
    expect((await unknown.json()).error).toEqual({ code: 'SIXPN_NOT_FOUND', message: 'app nope not found' });
    const bad = await fetch(`${node.url}/v1/status/series?since=yesterday`, { headers: auth });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.message).toBe('since: must be a non-negative integer, got "yesterday"');
    const badMachines = await fetch(`${node.url}/v1/status/series?machines=yes`, { headers: auth });
    expect(badMachines.status).toBe(400);
  });
});

describe('/v1/events', () => {
  it('lists what happened, filtered, and refuses an unknown kind', async () => {
    node = await startTestNode();
    expect((await fetch(`${node.url}/v1/events`)).status).toBe(401);
    await node.store.updateMachine('e286d4c2a17d89', { state: 'stopped' });
    await node.store.updateMachine('3d8d9e1a7c5e89', { health: { status: 'unhealthy', reason: 'connect refused' } });
    const all = await (await fetch(`${node.url}/v1/events`, { headers: auth })).json();
    expect(all.events.map((e: any) => e.kind)).toEqual(['machine', 'health']);
    expect(all.last_seq).toBe(2);
    const health = await (await fetch(`${node.url}/v1/events?kind=health&app=echo`, { headers: auth })).json();
    expect(health.events).toEqual([expect.objectContaining({ kind: 'health', app: 'echo', org: 'demo', machine: '3d8d9e1a7c5e89', level: 'warn' })]);
    const bad = await fetch(`${node.url}/v1/events?kind=nope`, { headers: auth });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.code).toBe('SIXPN_INVALID');
  });

  it('follows as server-sent events and resumes after Last-Event-ID', async () => {
    node = await startTestNode();
    const n = node;
    const url = `${n.url}/v1/events?follow=1&app=hello`;
    const first = await follow(url, auth, 2, () => {
      void n.store.updateMachine('e286d4c2a17d89', { state: 'stopped' }).then(() => n.store.updateMachine('9080e254f03418', { state: 'stopped' }));
    });
    expect(first.map((f) => f.data.message)).toEqual(['machine e286d4c2a17d89 of hello stopped (was started)', 'machine 9080e254f03418 of hello stopped (was started)']);
    expect(first.map((f) => f.id)).toEqual([1, 2]);
    // Missed while away: a reconnect with Last-Event-ID gets exactly what came after.
    await n.store.updateMachine('e286d4c2a17d89', { state: 'started' });
    await n.store.updateMachine('3d8d9e1a7c5e89', { state: 'stopped' }); // another app: filtered out
    const resumed = await follow(url, { ...auth, 'last-event-id': '1' }, 2);
    expect(resumed.map((f) => f.id)).toEqual([2, 3]);
    expect(resumed[1]!.data).toMatchObject({ kind: 'machine', machine: 'e286d4c2a17d89', data: { from: 'stopped', to: 'started' } });
    // An id ahead of the feed means the node restarted (its sequence began again): all of it is new.
    const restarted = await follow(url, { ...auth, 'last-event-id': '999' }, 3);
    expect(restarted.map((f) => f.id)).toEqual([1, 2, 3]);
  });
});

describe('the chart library', () => {
  it('is served by the node, without a token, with the integrity hash the page names', async () => {
    node = await startTestNode();
    const html = await (await fetch(`${node.url}/dashboard`)).text();
    const tag = /<script src="(\/dashboard\/uplot\.js\?v=[A-Za-z0-9]+)" integrity="(sha384-[A-Za-z0-9+/=]+)"><\/script>/.exec(html);
    expect(tag).not.toBeNull();
    const r = await fetch(`${node.url}${tag![1]}`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/javascript');
    expect(r.headers.get('cache-control')).toContain('immutable');
    const js = Buffer.from(await r.arrayBuffer());
    expect(`sha384-${createHash('sha384').update(js).digest('base64')}`).toBe(tag![2]);
    expect(js.toString()).toContain('uPlot');
  });
});

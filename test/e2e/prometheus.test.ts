/**
 * A real Prometheus scrapes a running `sixpn up` (the demo config on free ports) every second
 * and evaluates config/prometheus/sixpn.rules.yml. Traffic goes through the Flycast proxy with
 * a real client; then PromQL over what Prometheus stored must give the request counts the
 * client saw, the error ratio, the health series of a machine that failed and recovered,
 * denials by org, traffic by region, and every Grafana panel's query must run.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCommand, ROOT } from '../harness/env.js';
import { freePort, waitFor } from '../harness/net.js';
import { startPrometheus, type TestPrometheus } from '../harness/prometheus.js';
import { startSixpnNode, type SixpnNode } from '../harness/sixpn-node.js';

const TOKEN = 'prometheus-e2e-token';
const MACHINE = 'e286d4c2a17d89'; // hello in ewr, the node's region: it gets the traffic first

describe.skipIf(!hasCommand('prometheus'))('a real Prometheus scraping sixpn', () => {
  let node: SixpnNode;
  let prom: TestPrometheus;
  let api: string;
  let hello: string;
  let billing: string;
  const seen = { ok: 0, err: 0, denied: 0 };
  /** What the client had seen when Prometheus first stored every series the test reads. */
  const base = { ok: 0, err: 0 };
  const total = (cls: string) => `sum(sixpn_proxy_http_requests_total{app="hello",status_class="${cls}"})`;

  const value = async (expr: string): Promise<number> => {
    const r = await prom.query(expr);
    return r.length === 0 ? NaN : Number(r[0]!.value[1]);
  };
  /** Waits until Prometheus has scraped (or recorded) what the test expects. */
  const eventually = async (expr: string, ok: (v: number) => boolean, ms = 15_000): Promise<number> => {
    let last = NaN;
    await waitFor(async () => ok((last = await value(expr))), { timeoutMs: ms, everyMs: 200, what: expr }).catch(() => {
      throw new Error(`${expr} stayed ${last}`);
    });
    return last;
  };
  const get = async (url: string): Promise<number> => {
    const r = await fetch(url);
    await r.arrayBuffer();
    return r.status;
  };

  beforeAll(async () => {
    const [control, h, e, b] = [await freePort(), await freePort(), await freePort(), await freePort()];
    api = `http://127.0.0.1:${control}`;
    hello = `http://127.0.0.1:${h}/`;
    billing = `http://127.0.0.1:${b}/`;
    const toml = readFileSync(join(ROOT, 'config/demo.toml'), 'utf8')
      .replace('listen_port = 10080', `listen_port = ${h}`)
      .replace('listen_port = 10007', `listen_port = ${e}`)
      .replace('listen_port = 10081', `listen_port = ${b}`)
      .replace('listen = "127.0.0.1:4280"', `listen = "127.0.0.1:${control}"`)
      .replace('path = "../data/demo-catalog.json"', 'path = ""')
      .replace('token = "demo-token"', `token = "${TOKEN}"`)
      .replace('port = 8053', `port = ${await freePort()}`)
      .replace('pretty = true', 'pretty = false')
      .replace('level = "info"', 'level = "warn"')
      .replaceAll('interval = "3s"', 'interval = "400ms"')
      .replaceAll('grace_period = "1s"', 'grace_period = "0s"');
    node = await startSixpnNode('up', toml);
    prom = await startPrometheus({ target: `127.0.0.1:${control}`, token: TOKEN });
    await eventually('up{job="sixpn"}', (v) => v === 1);
    // The demo machines turn healthy (rise = 1) before the traffic starts.
    await eventually(`sixpn_health_machine_healthy{machine="${MACHINE}"}`, (v) => v === 1);
    // A counter's first stored sample is where rate() starts: make every series the test
    // reads exist before the traffic it measures (a 500 and a 403 now, the machine recovered
    // at once so its checks never see it fail).
    expect(await get(hello)).toBe(200);
    expect(await get(`${hello}_demo/fail`)).toBe(500);
    expect(await get(`${hello}_demo/recover`)).toBe(200);
    expect(await get(billing)).toBe(403);
    Object.assign(seen, { ok: 2, err: 1, denied: 1 });
    Object.assign(base, { ok: 2, err: 1 });
    await eventually(total('5xx'), (v) => v === 1);
    await eventually(total('2xx'), (v) => v === 2);
    await eventually('sum(sixpn_proxy_denied_by_org_total)', (v) => v === 1);
  }, 60_000);

  afterAll(async () => {
    await prom?.stop();
    await node?.stop();
  });

  it('stores the request counts the client saw, by status class, and the error ratio', async () => {
    for (let i = 0; i < 150; i++) (await get(hello)) === 200 ? seen.ok++ : seen.err++;
    // The machine answers 500 for a minute from now on; its checks fail (fall = 2), then the
    // proxy routes around it: some callers see 500 before that.
    expect(await get(`${hello}_demo/fail`)).toBe(500);
    seen.err++;
    const until = Date.now() + 4000;
    while (Date.now() < until) (await get(hello)) === 200 ? seen.ok++ : seen.err++;
    expect(seen.err).toBeGreaterThan(1);
    expect(seen.ok).toBeGreaterThan(150);

    await eventually(total('2xx'), (v) => v === seen.ok);
    await eventually(total('5xx'), (v) => v === seen.err);
    expect(await value(`sum(sixpn_proxy_connections_accepted_total{app="hello",proto="http"})`)).toBeGreaterThan(0);
    // Answers per machine add up; the failing machine answered every 5xx.
    expect(await value(`sum(sixpn_proxy_http_requests_total{app="hello",machine="${MACHINE}",status_class="5xx"})`)).toBe(seen.err);

    // The recorded 5-minute ratio follows the counts since the series were first stored
    // (rate() extrapolates a little at the window's edges).
    const exact = (seen.err - base.err) / (seen.ok + seen.err - base.ok - base.err);
    const ratio = await eventually('sixpn:proxy_http_error_ratio:rate5m{app="hello"}', (v) => v > 0);
    expect(ratio).toBeGreaterThan(exact * 0.75);
    expect(ratio).toBeLessThan(exact * 1.25);
    const p99 = await eventually('sixpn:proxy_request_duration_seconds:p99_5m{app="hello"}', (v) => v > 0);
    expect(p99).toBeLessThan(5);
    // Traffic moved from ewr to iad when the machine turned unhealthy.
    const regions = await prom.query('sixpn:proxy_http_requests_by_region:rate1m{app="hello"}');
    expect(regions.map((r) => r.metric.region).sort()).toEqual(expect.arrayContaining(['ewr', 'iad']));
  });

  it('stores the health series of a machine that failed its checks and recovered', async () => {
    await eventually(`sixpn:health_machine_healthy{app="hello",machine="${MACHINE}"}`, (v) => v === 0);
    expect(await value('sixpn:catalog_app_machines{app="hello",status="unhealthy"}')).toBe(1);
    expect(await value('sixpn:catalog_app_machines{app="hello",status="serving"}')).toBe(2);
    // The alert rule sees it (pending: it fires after a minute).
    await eventually(`count(ALERTS{alertname="SixpnMachineUnhealthy",alertstate="pending",machine="${MACHINE}"})`, (v) => v === 1, 5000);
    // Recover it at the machine itself (the proxy no longer routes to it).
    const m = (await (await fetch(`${api}/v1/machines/${MACHINE}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { upstream: string };
    expect(await get(`http://${m.upstream}/_demo/recover`)).toBe(200);
    await eventually(`sixpn_health_machine_healthy{machine="${MACHINE}"}`, (v) => v === 1);
    const series = await prom.queryRange(`sixpn_health_machine_healthy{machine="${MACHINE}"}`, 60);
    const values = series[0]!.values.map((v) => v[1]);
    // 1, then 0, then 1 again, in that order.
    const first0 = values.indexOf('0');
    expect(first0).toBeGreaterThan(0);
    expect(values.slice(0, first0)).toContain('1');
    expect(values.slice(values.lastIndexOf('0'))).toContain('1');
    expect(await value('sum(sixpn_health_transitions_total{to="unhealthy"})')).toBeGreaterThanOrEqual(1);
  });

  it('counts callers denied by org, and evaluates every rule without error', async () => {
    for (let i = 0; i < 5; i++) {
      expect(await get(billing)).toBe(403);
      seen.denied++;
    }
    await eventually('sum(sixpn_proxy_denied_by_org_total{org="acme",caller_org="demo"})', (v) => v === seen.denied);
    await eventually('sixpn:proxy_denied_by_org:rate5m{org="acme"}', (v) => v > 0);
    const rules = await prom.api<{ groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] }>('/api/v1/rules');
    expect(rules.groups.map((g) => g.name).sort()).toEqual(['sixpn-alerts', 'sixpn-recording']);
    const broken = rules.groups.flatMap((g) => g.rules).filter((r) => r.health !== 'ok');
    expect(broken).toEqual([]);
  });

  it('answers every query of the Grafana dashboard, with data where this node has some', async () => {
    const dash = JSON.parse(readFileSync(join(ROOT, 'config/grafana/sixpn.json'), 'utf8'));
    const panels = dash.panels.filter((p: any) => p.type !== 'row');
    const empty: string[] = [];
    for (const p of panels) {
      for (const t of p.targets) {
        const r = await prom.query((t.expr as string).replaceAll('$app', '.*'));
        if (r.length === 0) empty.push(p.title);
      }
    }
    // No TCP traffic, nothing queued, no Redis, no DNS query, no alert firing for long enough, nothing unhealthy now:
    // those panels may be empty here; the rest must show what this run did.
    const mayBeEmpty = ['TCP connections/s by app', 'Catalog store reachable by node', 'DNS queries/s and SERVFAIL ratio by node', 'Firing sixpn alerts', 'Unhealthy machines now', 'Upstream connect errors/s'];
    expect(empty.filter((t) => !mayBeEmpty.includes(t))).toEqual([]);
  });
});

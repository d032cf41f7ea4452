/**
 * A real Prometheus (Debian's `prometheus` package) for tests: scrapes the given targets every
 * second, evaluates config/prometheus/sixpn.rules.yml every second, stores in a temporary
 * folder, listens on a free loopback port; `query` runs PromQL over its HTTP API.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './env.js';
import { freePort } from './net.js';
import { start, type Proc } from './procs.js';

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface TestPrometheus {
  url: string;
  proc: Proc;
  /** Instant query; throws with Prometheus' error text when the expression is refused. */
  query(expr: string): Promise<PromSample[]>;
  /** Range query over the last `seconds`, 1 s step: each series' values. */
  queryRange(expr: string, seconds: number): Promise<{ metric: Record<string, string>; values: [number, string][] }[]>;
  api<T = unknown>(path: string): Promise<T>;
  stop(): Promise<void>;
}

export async function startPrometheus(o: { target: string; token?: string }): Promise<TestPrometheus> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-prom-'));
  const auth = o.token ? `\n    authorization:\n      type: Bearer\n      credentials: ${o.token}` : '';
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - ${join(ROOT, 'config/prometheus/sixpn.rules.yml')}\nscrape_configs:\n  - job_name: sixpn${auth}\n    static_configs:\n      - targets: ['${o.target}']\n`,
  );
  const proc = start('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn']);
  const url = `http://127.0.0.1:${port}`;
  const api = async <T>(path: string): Promise<T> => {
    const r = await fetch(url + path);
    const body = (await r.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.error}`);
    return body.data;
  };
  // Ready when its API answers (the ready line is an info log, which warn level hides).
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/-/ready`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await proc.stop('SIGKILL');
      throw new Error(`prometheus did not become ready:\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    proc,
    api,
    query: async (expr) => (await api<{ result: PromSample[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result,
    queryRange: async (expr, seconds) => {
      const end = Date.now() / 1000;
      const q = `/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${end - seconds}&end=${end}&step=1`;
      return (await api<{ result: { metric: Record<string, string>; values: [number, string][] }[] }>(q)).result;
    },
    async stop() {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

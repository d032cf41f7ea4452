/**
 * The Prometheus rules and the Grafana dashboard in config/: promtool checks the rules and
 * runs their unit tests (config/prometheus/sixpn.rules.test.yml); every raw metric the rules
 * read is one the code registers; the dashboard reads only series the rules record.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hasCommand, ROOT } from '../../harness/env.js';
import { run } from '../../harness/procs.js';

const RULES = join(ROOT, 'config/prometheus/sixpn.rules.yml');
const RULE_TESTS = join(ROOT, 'config/prometheus/sixpn.rules.test.yml');
const GRAFANA = join(ROOT, 'config/grafana/sixpn.json');

/** Metric names the code registers: every `name: 'sixpn_...'` in src/. */
function registeredNames(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string): void => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/name: '(sixpn_[a-z0-9_]+)'/g)) names.add(m[1]!);
    }
  };
  walk(join(ROOT, 'src'));
  return names;
}

/** Raw metric names in a PromQL text (histogram series named by their metric). */
const rawNames = (text: string): string[] => [...new Set([...text.matchAll(/\bsixpn_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')))];

/** The `expr:` blocks of the rules file (one line or a `|` block). */
function ruleExprs(yaml: string): string[] {
  const out: string[] = [];
  const lines = yaml.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)expr: (.*)$/.exec(lines[i]!);
    if (!m) continue;
    if (m[2] !== '|') {
      out.push(m[2]!);
      continue;
    }
    const body: string[] = [];
    while (i + 1 < lines.length && (lines[i + 1]!.startsWith(`${m[1]}  `) || lines[i + 1]!.trim() === '')) body.push(lines[++i]!);
    out.push(body.join('\n'));
  }
  return out;
}

describe.skipIf(!hasCommand('promtool'))('Prometheus rules (promtool)', () => {
  it('pass promtool check rules', async () => {
    const r = await run('promtool', ['check', 'rules', RULES]);
    expect(r.stdout + r.stderr).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });

  it('pass their unit tests (promtool test rules)', async () => {
    const r = await run('promtool', ['test', 'rules', RULE_TESTS], { timeoutMs: 30_000 });
    expect(r.stdout + r.stderr).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });
});

describe('rules and dashboard read real series', () => {
  const yaml = readFileSync(RULES, 'utf8');
  const recorded = new Set([...yaml.matchAll(/- record: (sixpn:[a-z0-9_:]+)/g)].map((m) => m[1]!));

  it('name only metrics the code registers, raw names only in the recording rules', () => {
    const names = registeredNames();
    const known = (n: string): boolean => names.has(n);
    const recordingPart = yaml.slice(0, yaml.indexOf('- name: sixpn-alerts'));
    const alertPart = yaml.slice(yaml.indexOf('- name: sixpn-alerts'));
    const raw = rawNames(ruleExprs(recordingPart).join('\n'));
    expect(raw.length).toBeGreaterThan(8);
    expect(raw.filter((n) => !known(n))).toEqual([]);
    // Alerts read recorded series only, so a renamed metric is fixed in one place.
    expect(rawNames(ruleExprs(alertPart).join('\n'))).toEqual([]);
    for (const m of ruleExprs(alertPart).join('\n').matchAll(/sixpn:[a-z0-9_:]+/g)) expect(recorded).toContain(m[0]);
  });

  it('give the Grafana dashboard recorded series only, each panel placed on the 24-column grid', () => {
    const dash = JSON.parse(readFileSync(GRAFANA, 'utf8'));
    expect(dash.__inputs[0]).toMatchObject({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' });
    const panels = dash.panels.filter((p: any) => p.type !== 'row');
    expect(panels.length).toBeGreaterThanOrEqual(12);
    const ids = dash.panels.map((p: any) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      expect(p.datasource.uid).toBe('${DS_PROMETHEUS}');
      for (const t of p.targets) {
        expect(rawNames(t.expr)).toEqual([]);
        for (const m of (t.expr as string).matchAll(/sixpn:[a-z0-9_:]+/g)) expect(recorded, `${p.title}: ${t.expr}`).toContain(m[0]);
      }
    }
    const variable = dash.templating.list.find((v: any) => v.name === 'app');
    expect(variable.query.query).toMatch(/^label_values\(sixpn:catalog_app_machines, app\)$/);
  });
});

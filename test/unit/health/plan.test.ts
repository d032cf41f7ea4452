import { describe, expect, it } from 'vitest';
import { appSchema, type Machine } from '../../../src/catalog/types.js';
import { parseConfig } from '../../../src/config/index.js';
import { SixpnError } from '../../../src/errors.js';
import { checkTarget, planChecks, regionScope } from '../../../src/health/plan.js';

const machine = (o: Partial<Machine> = {}): Machine => ({
  id: 'aaaaaaaa0001',
  app: 'web',
  region: 'ewr',
  address: 'fdaa:0:18:a7b:7d:aaaa:aaaa:2',
  state: 'started',
  health: { status: 'unknown', reason: '', changed_at: 0 },
  created_at: 0,
  updated_at: 0,
  ...o,
});

describe('checkTarget', () => {
  it.each([
    [{}, 8080, undefined, { host: 'fdaa:0:18:a7b:7d:aaaa:aaaa:2', port: 8080 }],
    [{}, 8080, 9090, { host: 'fdaa:0:18:a7b:7d:aaaa:aaaa:2', port: 9090 }],
    [{ upstream: '127.0.0.1:9001' }, 8080, undefined, { host: '127.0.0.1', port: 9001 }],
    [{ upstream: '127.0.0.1:9001' }, 8080, 8080, { host: '127.0.0.1', port: 9001 }],
    [{ upstream: '[::1]:9001' }, 8080, 9090, { host: '::1', port: 9090 }],
  ] as const)('%j internal %i check port %s -> %j', (m, internal, port, want) => {
    expect(checkTarget(machine(m), internal, port)).toEqual(want);
  });
});

describe('planChecks', () => {
  it('takes every tcp and http check of every service, with fly.toml defaults', () => {
    const app = appSchema.parse({
      name: 'web',
      org: 'acme',
      services: [
        { internal_port: 8080, ports: [{ port: 80 }], tcp_checks: [{}], http_checks: [{ path: '/healthz', interval: '5s', timeout: '500ms' }] },
        { internal_port: 5432, ports: [{ port: 5432 }], tcp_checks: [{ port: 5433, grace_period: '30s' }] },
        { internal_port: 9000, ports: [{ port: 9000 }] },
      ],
    });
    const plans = planChecks(app, machine());
    expect(plans.map((p) => [p.kind, p.label, p.interval, p.timeout, p.grace])).toEqual([
      ['tcp', 'tcp :8080', 15_000, 2_000, 1_000],
      ['http', 'http GET /healthz :8080', 5_000, 500, 1_000],
      ['tcp', 'tcp :5433', 15_000, 2_000, 30_000],
    ]);
  });
});

describe('regionScope (which machines a checker node takes)', () => {
  it.each([
    [[], 'ewr', 'embedded', { ewr: true, iad: true }],
    [[], 'ewr', 'redis', { ewr: true, iad: false }],
    [['iad', 'lhr'], 'ewr', 'redis', { ewr: false, iad: true, lhr: true }],
    [['*'], 'ewr', 'redis', { ewr: true, syd: true }],
    [['ewr'], 'ewr', 'embedded', { ewr: true, iad: false }],
  ] as const)('regions %j on a %s node with a %s store', (regions, own, kind, want) => {
    const inScope = regionScope(regions, own, kind);
    for (const [r, yes] of Object.entries(want)) expect(inScope(r), r).toBe(yes);
  });

  it('config: regions must be region codes or "*"', () => {
    expect(parseConfig({ health: { regions: ['ewr', '*'] } }, {}).health.regions).toEqual(['ewr', '*']);
    expect(() => parseConfig({ health: { regions: ['EWR'] } }, {})).toThrow(SixpnError);
    expect(() => parseConfig({ health: { regions: ['ewr'], fall: 0 } }, {})).toThrow(/health\.fall/);
  });
});

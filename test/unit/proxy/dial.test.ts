import { readFileSync } from 'node:fs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Balancer, type Slot } from '../../../src/balancer/index.js';
import type { Machine, Service } from '../../../src/catalog/types.js';
import type { CatalogView } from '../../../src/catalog/view.js';
import { proxyConfigSchema } from '../../../src/proxy/config.js';
import { BAD_UPSTREAM, isConnectError, ProxyCore } from '../../../src/proxy/core.js';
import { parseRegionsCsv, RegionTable } from '../../../src/regions/index.js';

const table = new RegionTable(parseRegionsCsv(readFileSync(new URL('../../../config/regions.csv', import.meta.url), 'utf8')));

// Entries stored before the API checked upstreams (or written by hand) may still reach a dial:
// whatever they hold must come back as a connect failure, never as an exception.
describe('dialing a machine whose upstream no socket can use', () => {
  it.each(['127.0.0.1:99999', '127.0.0.1:-1', '127.0.0.1:abc', 'no-port', '[::1]:70000'])('%s is a connect failure', async (upstream) => {
    const balancer = new Balancer({ region: 'ewr', regions: table, slowStartMs: 0, passive: { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 10_000, maxEjectionPercent: 50 } });
    const core = new ProxyCore(proxyConfigSchema.parse({ connect_timeout: 500 }), {} as CatalogView, balancer, pino({ level: 'silent' }));
    const machine = { id: 'aaaa0001', app: 'web', region: 'ewr', address: 'fdaa:0:18:a7b:7d:aaaa:1:2', upstream } as Machine;
    const got = await core.dial({ machine } as Slot, { internal_port: 8080 } as Service);
    expect(got).toBeInstanceOf(Error);
    expect(isConnectError(got)).toBe(true);
    if ((got as NodeJS.ErrnoException).code === BAD_UPSTREAM) expect((got as Error).message).toContain('machine aaaa0001: cannot dial');
  });
});

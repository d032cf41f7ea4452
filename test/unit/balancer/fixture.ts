/**
 * What the balancer's unit tests pick over: the shipped region table (config/regions.csv) and
 * machines of app `web`, started and healthy unless a test says otherwise, at an address that
 * carries their id.
 */
import { readFileSync } from 'node:fs';
import type { Machine } from '../../../src/catalog/types.js';
import { parseRegionsCsv, RegionTable } from '../../../src/regions/index.js';

export const regionsCsv = readFileSync(new URL('../../../config/regions.csv', import.meta.url), 'utf8');
export const regionTable = new RegionTable(parseRegionsCsv(regionsCsv));

/** Machine `id` (eight hex digits) of app `web` in `region`; `over` replaces any field. */
export function webMachine(id: string, region: string, over: Partial<Machine> = {}): Machine {
  return {
    id,
    app: 'web',
    region,
    address: `fdaa:0:18:a7b:7d:${id.slice(0, 4)}:${id.slice(4, 8)}:2`,
    state: 'started',
    health: { status: 'healthy', reason: '', changed_at: 0 },
    created_at: 0,
    updated_at: 0,
    ...over,
  };
}

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { greatCircleKm, parseRegionsCsv, RegionTable, RegionTableError } from '../../../src/regions/index.js';

const csv = readFileSync(new URL('../../../config/regions.csv', import.meta.url), 'utf8');
const table = new RegionTable(parseRegionsCsv(csv));

describe('region table', () => {
  it('loads all 35 regions of the shipped table', () => {
    expect(table.regions).toHaveLength(35);
    expect(table.get('ewr')?.city).toBe('Secaucus');
  });

  it('measures great-circle distance', () => {
    const d = greatCircleKm(table.get('ewr')!, table.get('lhr')!);
    expect(d).toBeGreaterThan(5500);
    expect(d).toBeLessThan(5600);
    expect(greatCircleKm(table.get('syd')!, table.get('syd')!)).toBe(0);
  });

  it.each([
    ['ewr', ['ewr', 'bos', 'iad']],
    ['ams', ['ams', 'fra', 'lhr']],
    ['syd', ['syd']],
  ])('orders regions nearest-first from %s', (from, head) => {
    expect(table.nearestFirst(from).slice(0, head.length)).toEqual(head);
    expect(table.nearestFirst(from)).toHaveLength(35);
  });

  it('lets an RTT matrix override distance', () => {
    const t = new RegionTable(table.regions, { ewr: { syd: 1 } });
    expect(t.nearestFirst('ewr')[1]).toBe('syd');
    expect(t.distance('syd', 'ewr')).toBe(100);
  });

  it.each([
    ['', /first line/],
    ['code,city,country,latitude,longitude\newr,X,Y,north,1', /line 2/],
    ['code,city,country,latitude,longitude\newr,X,Y,100,1', /out of range/],
    ['code,city,country,latitude,longitude\newr,X,Y,1,1\newr,X,Y,1,1', /duplicate/],
    ['code,city,country,latitude,longitude\nEWR1,X,Y,1,1', /line 2/],
  ])('rejects a bad table (%#)', (text, re) => {
    expect(() => parseRegionsCsv(text)).toThrow(re);
  });

  it('rejects an RTT matrix naming an unknown region', () => {
    expect(() => new RegionTable(table.regions, { ewr: { zzz: 1 } })).toThrow(RegionTableError);
  });
});

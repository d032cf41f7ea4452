/**
 * Reads the region table from its CSV file (`[regions] file`), with the config's RTT overrides.
 * The table itself (./index.ts) stays pure; this is the one place that touches the disk.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { parseRegionsCsv, RegionTable } from './index.js';

export function loadRegionTable(file: string, rtt: Record<string, Record<string, number>>): RegionTable {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`regions.file: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return new RegionTable(parseRegionsCsv(text), rtt);
  } catch (err) {
    throw new ConfigError(`regions: ${(err as Error).message}`, { cause: err });
  }
}

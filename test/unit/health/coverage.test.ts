/**
 * Checker takeover as a table: which orphaned regions a node takes, from the liveness entries.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { NodeEntry } from '../../../src/catalog/types.js';
import { takenOver } from '../../../src/health/coverage.js';
import { parseRegionsCsv, RegionTable } from '../../../src/regions/index.js';
import { ROOT } from '../../harness/env.js';

const regions = new RegionTable(parseRegionsCsv(readFileSync(join(ROOT, 'config/regions.csv'), 'utf8')));
const NOW = 1_000_000;
const node = (name: string, region: string, o: Partial<NodeEntry> = {}): NodeEntry => ({
  name,
  region,
  state: 'up',
  session: `${name}-s`,
  checks: [region],
  heartbeat_interval: 1_000,
  heartbeat_at: NOW - 500,
  started_at: 0,
  ...o,
});

const cases: { name: string; self: NodeEntry; nodes: NodeEntry[]; regions: string[]; want: Record<string, string[]> }[] = [
  { name: 'every region covered by a live checker: nothing taken', self: node('a', 'ams'), nodes: [node('l', 'lhr')], regions: ['ams', 'lhr'], want: {} },
  { name: 'a checker silent for more than 3 heartbeats: its region taken', self: node('a', 'ams'), nodes: [node('l', 'lhr', { heartbeat_at: NOW - 3_001 })], regions: ['ams', 'lhr'], want: { lhr: ['l'] } },
  { name: 'silent for exactly 3 heartbeats: still alive', self: node('a', 'ams'), nodes: [node('l', 'lhr', { heartbeat_at: NOW - 3_000 })], regions: ['lhr'], want: {} },
  { name: 'a clean shutdown (down) hands over at once', self: node('a', 'ams'), nodes: [node('l', 'lhr', { state: 'down', heartbeat_at: NOW })], regions: ['lhr'], want: { lhr: ['l'] } },
  { name: 'the nearest live checker takes it (ams is nearer lhr than syd)', self: node('s', 'syd'), nodes: [node('a', 'ams'), node('l', 'lhr', { state: 'down' })], regions: ['lhr'], want: {} },
  { name: '... and the nearest one is this node', self: node('a', 'ams'), nodes: [node('s', 'syd'), node('l', 'lhr', { state: 'down' })], regions: ['lhr'], want: { lhr: ['l'] } },
  { name: 'two checkers in one region: the first name takes it', self: node('b', 'ams'), nodes: [node('a', 'ams'), node('l', 'lhr', { state: 'down' })], regions: ['lhr'], want: {} },
  { name: 'a region no node ever covered is not taken (config choice; its checker may not have started yet)', self: node('a', 'ams'), nodes: [], regions: ['ams', 'ord'], want: {} },
  { name: 'a "*" checker covers every region', self: node('a', 'ams'), nodes: [node('w', 'ewr', { checks: ['*'] })], regions: ['ord', 'lhr'], want: {} },
  { name: 'a node without a checker covers nothing', self: node('a', 'ams'), nodes: [node('p', 'lhr', { checks: undefined }), node('l', 'lhr', { state: 'down' })], regions: ['lhr'], want: { lhr: ['l'] } },
  { name: 'regions without machines are not taken', self: node('a', 'ams'), nodes: [node('l', 'lhr', { state: 'down' })], regions: ['ams'], want: {} },
];

describe('checker takeover (takenOver)', () => {
  for (const c of cases) {
    it(c.name, () => {
      const got = takenOver({ self: c.self, nodes: [c.self, ...c.nodes], regions: c.regions, now: NOW, rankFrom: (r) => regions.rankFrom(r) });
      expect(Object.fromEntries(got)).toEqual(c.want);
    });
  }
});

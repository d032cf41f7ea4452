/**
 * Which regions' checks a node takes over from checker nodes that died. Pure: the health role
 * calls it with the node liveness entries of the catalog view on every heartbeat and change.
 *
 * A checker node is alive while its entry says `up` and its last heartbeat is at most
 * DEAD_AFTER_BEATS of its own heartbeat intervals old. A region with machines that no live node
 * covers (by its configured regions, or `*`) but a dead one did is orphaned; of the live checker nodes, the one
 * nearest to it (region table rank, then name) takes it, provided some (dead) node did cover it. Every node computes the same answer from
 * the same entries, so a region is checked by one node, and handed back as soon as its own
 * checker heartbeats again (its entry covers it: no longer orphaned).
 */
import type { NodeEntry } from '../catalog/types.js';

/** Heartbeats a node may miss before its regions are taken over. */
export const DEAD_AFTER_BEATS = 3;

export function nodeAlive(n: NodeEntry, now: number): boolean {
  return n.state === 'up' && now - n.heartbeat_at <= DEAD_AFTER_BEATS * n.heartbeat_interval;
}

const covers = (n: NodeEntry, region: string): boolean => n.checks !== undefined && (n.checks.includes('*') || n.checks.includes(region));

export interface CoverageInput {
  /** This node's own entry (counted alive, whether or not the view holds it yet). */
  self: NodeEntry;
  nodes: Iterable<NodeEntry>;
  /** Regions that have machines. */
  regions: Iterable<string>;
  now: number;
  /** Region table rank from a region (0 = itself). */
  rankFrom(region: string): ReadonlyMap<string, number>;
}

/** Orphaned regions this node takes, each with the dead nodes that covered it (for logs). */
export function takenOver(input: CoverageInput): Map<string, string[]> {
  const live: NodeEntry[] = [input.self];
  const all = new Map<string, NodeEntry>();
  for (const n of input.nodes) {
    all.set(n.name, n);
    if (n.name !== input.self.name && n.checks !== undefined && nodeAlive(n, input.now)) live.push(n);
  }
  const out = new Map<string, string[]>();
  for (const region of new Set(input.regions)) {
    if (covers(input.self, region) || live.some((n) => covers(n, region))) continue;
    // Only a region whose checker died is taken: one that no node ever covered is a config
    // choice (src/health/README.md), and a checker that has not started yet must find its
    // machines' health still its to decide.
    const dead = [...all.values()].filter((n) => n.name !== input.self.name && covers(n, region));
    if (dead.length === 0) continue;
    const rank = input.rankFrom(region);
    const far = Number.MAX_SAFE_INTEGER;
    const adopter = [...live].sort((a, b) => (rank.get(a.region) ?? far) - (rank.get(b.region) ?? far) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))[0]!;
    if (adopter.name !== input.self.name) continue;
    out.set(region, dead.map((n) => n.name));
  }
  return out;
}

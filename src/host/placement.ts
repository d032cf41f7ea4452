/**
 * Where a new machine runs, pure: `--host` pins it; `--region` picks the host of that region
 * with the fewest machines (ties by name). Only hosts that are up and heartbeating count.
 */
import type { Host, Machine } from '../catalog/types.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';

export type HostStatus = 'up' | 'down' | 'unreachable';

/** `unreachable`: registered as up, but silent for longer than `staleAfterMs`. */
export function hostStatus(h: Pick<Host, 'state' | 'heartbeat_at'>, now: number, staleAfterMs: number): HostStatus {
  if (h.state === 'down') return 'down';
  return now - h.heartbeat_at > staleAfterMs ? 'unreachable' : 'up';
}

export interface PlacementWish {
  region?: string | undefined;
  host?: string | undefined;
}

export interface PlacementOptions {
  /** Name the other hosts in errors (default true); false for callers who may not see them (org tokens). */
  listHosts?: boolean;
}

export function placeMachine(hosts: Iterable<Host>, machines: Iterable<Pick<Machine, 'host'>>, wish: PlacementWish, now: number, staleAfterMs: number, opts: PlacementOptions = {}): Host {
  const all = [...hosts];
  const list = opts.listHosts ?? true;
  const describe = (h: Host) => `${h.name} in ${h.region} (${hostStatus(h, now, staleAfterMs)})`;
  if (wish.host !== undefined) {
    const h = all.find((x) => x.name === wish.host);
    if (!h) throw new NotFoundError(`host ${wish.host} not found${!list ? '' : all.length ? ` (hosts: ${all.map(describe).join(', ')})` : ' (no host is registered: start one with [host] enabled = true)'}`);
    if (wish.region !== undefined && h.region !== wish.region) throw new ValidationError(`host ${h.name} is in region ${h.region}, not ${wish.region}`);
    const st = hostStatus(h, now, staleAfterMs);
    if (st !== 'up') throw new ConflictError(`host ${h.name} is ${st} (last heartbeat ${Math.round((now - h.heartbeat_at) / 1000)} s ago): no machine can start there now`);
    return h;
  }
  if (wish.region === undefined) throw new ValidationError('a machine to run needs a region or a host');
  const count = new Map<string, number>();
  for (const m of machines) if (m.host !== undefined) count.set(m.host, (count.get(m.host) ?? 0) + 1);
  const candidates = all
    .filter((h) => h.region === wish.region && hostStatus(h, now, staleAfterMs) === 'up')
    .sort((a, b) => (count.get(a.name) ?? 0) - (count.get(b.name) ?? 0) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const pick = candidates[0];
  if (!pick) {
    const up = all.filter((h) => hostStatus(h, now, staleAfterMs) === 'up');
    throw new NotFoundError(`no host in region ${wish.region} is up${!list ? '' : up.length ? ` (hosts up: ${up.map((h) => `${h.name} in ${h.region}`).join(', ')})` : ' (no host is up)'}`);
  }
  return pick;
}

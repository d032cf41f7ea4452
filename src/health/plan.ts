/**
 * What to check for one machine: its app's services' `tcp_checks` and `http_checks` (fly.toml
 * vocabulary) resolved to a dial target, plus which machines this node is responsible for.
 * Pure: the checker calls it on every catalog change and compares the result.
 */
import type { App, HttpCheck, Machine } from '../catalog/types.js';

export interface CheckTarget {
  host: string;
  port: number;
  /** Dial from here: this host's own address in the machine's org (src/catalog/source.ts); absent off a host. */
  localAddress?: string;
}

interface PlannedBase {
  /** Short name for logs and reasons: `tcp :8080`, `http GET /healthz :8080`. */
  label: string;
  target: CheckTarget;
  interval: number;
  timeout: number;
  grace: number;
}
export type PlannedCheck = (PlannedBase & { kind: 'tcp' }) | (PlannedBase & { kind: 'http'; http: HttpCheck });

/** Splits `host:port` / `[v6]:port` (already validated by the catalog schema). */
export function parseHostPort(s: string): CheckTarget {
  const i = s.lastIndexOf(':');
  let host = s.slice(0, i);
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host, port: Number(s.slice(i + 1)) };
}

/**
 * The dial target of a check: the machine's 6PN address at the check's port (default the
 * service's internal_port). A machine with an explicit `upstream` is dialled there instead; a
 * check port other than the internal port keeps the upstream host and uses that port.
 */
export function checkTarget(machine: Machine, internalPort: number, checkPort: number | undefined): CheckTarget {
  if (machine.upstream !== undefined) {
    const up = parseHostPort(machine.upstream);
    return checkPort === undefined || checkPort === internalPort ? up : { host: up.host, port: checkPort };
  }
  return { host: machine.address, port: checkPort ?? internalPort };
}

export function planChecks(app: App, machine: Machine, localAddress?: string): PlannedCheck[] {
  const out: PlannedCheck[] = [];
  const from = (t: CheckTarget): CheckTarget => (localAddress === undefined ? t : { ...t, localAddress });
  for (const svc of app.services) {
    for (const c of svc.tcp_checks) {
      const target = from(checkTarget(machine, svc.internal_port, c.port));
      out.push({ kind: 'tcp', label: `tcp :${target.port}`, target, interval: c.interval, timeout: c.timeout, grace: c.grace_period });
    }
    for (const c of svc.http_checks) {
      const target = from(checkTarget(machine, svc.internal_port, c.port));
      out.push({
        kind: 'http',
        label: `${c.protocol} ${c.method} ${c.path} :${target.port}`,
        target,
        interval: c.interval,
        timeout: c.timeout,
        grace: c.grace_period,
        http: c,
      });
    }
  }
  return out;
}

/**
 * Which regions' machines this node checks. Several checker nodes sharing one catalog each
 * take their own region by default, so a machine is checked once, from nearby; a lone node
 * (embedded store) takes them all. `regions` from config overrides; `"*"` means every region.
 */
export function regionScope(regions: readonly string[], ownRegion: string, storeKind: 'embedded' | 'redis'): (region: string) => boolean {
  if (regions.includes('*') || (regions.length === 0 && storeKind === 'embedded')) return () => true;
  const set = new Set(regions.length ? regions : [ownRegion]);
  return (region) => set.has(region);
}

export function describeScope(regions: readonly string[], ownRegion: string, storeKind: 'embedded' | 'redis'): string {
  if (regions.includes('*') || (regions.length === 0 && storeKind === 'embedded')) return 'all regions';
  return (regions.length ? regions : [ownRegion]).join(', ');
}

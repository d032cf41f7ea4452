/**
 * Who may use a Flycast address: a caller whose source lies in the /48 of the org that holds
 * the address (the FlycastIp's `org`, which may differ from the app's own org). IPv4 and
 * IPv4-mapped callers are outsiders unless `[proxy] allow` maps their range to an org.
 * Pure: the proxy calls it once per caller connection.
 */
import ipaddr from 'ipaddr.js';
import { orgOf } from '../addressing/index.js';
import type { CatalogView } from '../catalog/view.js';
import { ConfigError } from '../errors.js';

export interface AllowRule {
  cidr: string;
  org: string;
}

interface ParsedRule {
  range: [ipaddr.IPv4 | ipaddr.IPv6, number];
  org: string;
}

export class CallerAcl {
  private readonly rules: ParsedRule[];

  constructor(allow: readonly AllowRule[]) {
    this.rules = allow.map((r, i) => {
      try {
        return { range: ipaddr.parseCIDR(r.cidr), org: r.org };
      } catch {
        throw new ConfigError(`proxy.allow[${i}].cidr: ${JSON.stringify(r.cidr)} is not a CIDR range`);
      }
    });
  }

  /** The network id the caller belongs to, or null for an outsider. */
  callerNetwork(remote: string | undefined, view: CatalogView): number | null {
    if (!remote) return null;
    const id = orgOf(remote);
    if (id !== null) return id;
    if (this.rules.length === 0) return null;
    let addr: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      addr = ipaddr.process(remote);
    } catch {
      return null;
    }
    for (const r of this.rules) {
      if (addr.kind() !== r.range[0].kind()) continue;
      if (addr.match(r.range)) return view.orgs.get(r.org)?.network_id ?? null;
    }
    return null;
  }

  /** Null when allowed, else the one-line reason shown to the caller and logged. */
  check(remote: string | undefined, flycastOrg: string, view: CatalogView): string | null {
    const owner = view.orgs.get(flycastOrg);
    if (!owner) return `flycast address belongs to unknown org ${flycastOrg}`;
    const caller = this.callerNetwork(remote, view);
    if (caller === owner.network_id) return null;
    if (caller === null) return `caller ${remote ?? '?'} is not inside any org network`;
    return `caller ${remote} is not a member of org ${flycastOrg}`;
  }
}

/**
 * Per-org DNS indexes kept current from the catalog view's change events.
 *
 * A query never scans the catalog: it reads its org's `OrgZone`, which is rebuilt lazily (on
 * the first query after a change touching that org) from the view's maps. Changes mark only the
 * orgs they touch dirty, so a health flip in one org does not rebuild the others. The index also
 * maps machine and peer addresses to their region, for `top<N>.nearest.of.<app>.internal`.
 */
import { orgOf, parseParts } from '../addressing/index.js';
import type { HostLiveness } from '../catalog/liveness.js';
import type { CatalogView } from '../catalog/view.js';
import { peerKey, type CatalogChange, type Machine, type Org, type Peer } from '../catalog/types.js';

export interface AppZone {
  name: string;
  /** Every machine of the app by id (any state): `<id>.vm.<app>.internal`. */
  byId: Map<string, Machine>;
  /** Started machines, sorted by id: TXT `vms`, `_instances`. */
  started: Machine[];
  /** Started machines after the health rule (see `preferHealthy`): `<app>.internal`. */
  serving: Machine[];
  /** Region -> started machines there after the health rule. */
  byRegion: Map<string, Machine[]>;
  /** Sorted region codes of started machines. */
  regions: string[];
}

export interface OrgZone {
  org: Org;
  /** Lowercase app name -> app (apps owned by this org). */
  apps: Map<string, AppZone>;
  /** Sorted app names. */
  appNames: string[];
  /** Lowercase peer name -> peer. */
  peers: Map<string, Peer>;
  /** Sorted peer names without `interactive-*` ones: TXT `_peer.internal`. */
  peerNames: string[];
  /** One `instance=..,app=..,ip=..,region=..` per started machine of the org. */
  instances: string[];
  /** Lowercase app name -> Flycast addresses in THIS org's network (the app may be another org's). */
  flycast: Map<string, string[]>;
  /** Bumped on every rebuild; the SOA serial. */
  serial: number;
}

/**
 * Unhealthy machines are left out when at least one machine is not unhealthy ("unknown" counts:
 * machines without checks stay unknown forever). When every machine is unhealthy all of them are
 * returned: an address that may work beats an empty answer that surely fails, and health checks
 * lag reality in both directions.
 */
export function preferHealthy(machines: Machine[]): Machine[] {
  let bad = 0;
  for (const m of machines) if (m.health.status === 'unhealthy') bad++;
  if (bad === 0 || bad === machines.length) return machines;
  return machines.filter((m) => m.health.status !== 'unhealthy');
}

const byId = (a: Machine, b: Machine): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** Key of the /120 a peer owns: the address with the low byte cleared. */
function peerBlockKey(address: string): string | null {
  const p = parseParts(address);
  if (!p) return null;
  return `${p.slice(0, 7).join(':')}:${p[7]! >> 8}`;
}

/** org -> set of keys, without empty sets. */
class Members {
  private readonly m = new Map<string, Set<string>>();
  of(org: string): Iterable<string> {
    return this.m.get(org) ?? [];
  }
  add(org: string, key: string): void {
    let set = this.m.get(org);
    if (!set) this.m.set(org, (set = new Set()));
    set.add(key);
  }
  delete(org: string, key: string): void {
    const set = this.m.get(org);
    if (set?.delete(key) && set.size === 0) this.m.delete(org);
  }
  clear(): void {
    this.m.clear();
  }
}

export class DnsIndex {
  private readonly zones = new Map<string, OrgZone>();
  private readonly dirty = new Set<string>();
  /** Address -> region of the machine holding it. */
  private readonly machineRegion = new Map<string, string>();
  /** Peer /120 key -> region. */
  private readonly peerRegion = new Map<string, string>();
  /** Machine id -> its org and address when we saw it (a delete no longer carries the value). */
  private readonly machineSeen = new Map<string, { org: string | undefined; address: string }>();
  /** Peer key -> peer when we saw it. */
  private readonly peerSeen = new Map<string, Peer>();
  private readonly appOrg = new Map<string, string>();
  /** Org -> its app names, peer keys and Flycast addresses: a rebuild reads only its own org. */
  private readonly orgApps = new Members();
  private readonly orgPeers = new Members();
  private readonly orgFlycast = new Members();
  /** Flycast address -> the org whose network holds it. */
  private readonly flycastOrg = new Map<string, string>();
  private serial = 0;
  private readonly listeners = new Set<(org: string | null) => void>();
  private readonly onChange = (c: CatalogChange): void => this.apply(c);
  private readonly onReset = (): void => this.rebuildAll();
  /** A host went silent or came back: the orgs of its machines answer without or with them again. */
  private readonly onHost = (host: string): void => {
    const orgs = new Set<string>();
    for (const m of this.view.machinesOnHost(host)) {
      const org = this.appOrg.get(m.app);
      if (org) orgs.add(org);
    }
    for (const org of orgs) this.touch(org);
  };

  /** `liveness` (closed with the index): machines of hosts that stopped heartbeating are left out like stopped ones. */
  constructor(
    private readonly view: CatalogView,
    private readonly liveness: HostLiveness | null = null,
  ) {
    view.on('change', this.onChange);
    view.on('reset', this.onReset);
    liveness?.on('change', this.onHost);
    this.rebuildAll();
  }

  /** Called with the org name whose answers may have changed (null: all of them). */
  onInvalidate(fn: (org: string | null) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    this.view.off('change', this.onChange);
    this.view.off('reset', this.onReset);
    this.liveness?.close();
    this.listeners.clear();
  }

  /** The org whose network holds `address`, if that org exists. */
  orgOfAddress(address: string): Org | undefined {
    return this.view.orgByNetworkId(orgOf(address));
  }

  orgByNetworkId(id: number): Org | undefined {
    return this.view.orgsByNetworkId.get(id);
  }

  orgByName(name: string): Org | undefined {
    return this.view.orgs.get(name);
  }

  /** Region of the machine or peer using `address`, if known. */
  regionOf(address: string): string | undefined {
    const m = this.machineRegion.get(address);
    if (m) return m;
    const key = peerBlockKey(address);
    return key ? this.peerRegion.get(key) : undefined;
  }

  /** The current zone of an org (rebuilt here when a change touched it). */
  zone(orgName: string): OrgZone | undefined {
    if (this.dirty.has(orgName) || !this.zones.has(orgName)) {
      this.dirty.delete(orgName);
      const org = this.view.orgs.get(orgName);
      if (!org) {
        this.zones.delete(orgName);
        return undefined;
      }
      this.zones.set(orgName, this.build(org));
    }
    return this.zones.get(orgName);
  }

  private build(org: Org): OrgZone {
    const apps = new Map<string, AppZone>();
    const instances: string[] = [];
    for (const name of this.orgApps.of(org.name)) {
      const app = this.view.apps.get(name);
      if (!app) continue;
      const all = [...this.view.machinesOf(app.name)].sort(byId);
      const started = all.filter((m) => m.state === 'started' && (this.liveness === null || this.liveness.reachable(m.host)));
      const regionsAll = new Map<string, Machine[]>();
      for (const m of started) {
        let list = regionsAll.get(m.region);
        if (!list) regionsAll.set(m.region, (list = []));
        list.push(m);
        instances.push(`instance=${m.id},app=${app.name},ip=${m.address},region=${m.region}`);
      }
      const byRegion = new Map<string, Machine[]>();
      for (const [r, list] of regionsAll) byRegion.set(r, preferHealthy(list));
      apps.set(app.name.toLowerCase(), {
        name: app.name,
        byId: new Map(all.map((m) => [m.id, m])),
        started,
        serving: preferHealthy(started),
        byRegion,
        regions: [...regionsAll.keys()].sort(),
      });
    }
    const peers = new Map<string, Peer>();
    const peerList: Peer[] = [];
    for (const key of this.orgPeers.of(org.name)) {
      const p = this.view.peers.get(key);
      if (p) peerList.push(p);
    }
    peerList.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const p of peerList) if (!peers.has(p.name.toLowerCase())) peers.set(p.name.toLowerCase(), p);
    const flycast = new Map<string, string[]>();
    for (const address of this.orgFlycast.of(org.name)) {
      const f = this.view.flycast.get(address);
      if (!f) continue;
      const key = f.app.toLowerCase();
      let list = flycast.get(key);
      if (!list) flycast.set(key, (list = []));
      list.push(f.address);
    }
    for (const list of flycast.values()) list.sort();
    return {
      org,
      apps,
      appNames: [...apps.values()].map((a) => a.name).sort(),
      peers,
      peerNames: peerList.filter((p) => !p.name.startsWith('interactive-')).map((p) => p.name),
      instances: instances.sort(),
      flycast,
      serial: ++this.serial,
    };
  }

  private rebuildAll(): void {
    this.zones.clear();
    this.dirty.clear();
    this.machineRegion.clear();
    this.peerRegion.clear();
    this.machineSeen.clear();
    this.peerSeen.clear();
    this.appOrg.clear();
    this.orgApps.clear();
    this.orgPeers.clear();
    this.orgFlycast.clear();
    this.flycastOrg.clear();
    for (const a of this.view.apps.values()) {
      this.appOrg.set(a.name, a.org);
      this.orgApps.add(a.org, a.name);
    }
    for (const f of this.view.flycast.values()) {
      this.flycastOrg.set(f.address, f.org);
      this.orgFlycast.add(f.org, f.address);
    }
    for (const m of this.view.machines.values()) this.trackMachine(m);
    for (const p of this.view.peers.values()) this.trackPeer(p, true);
    this.emit(null);
  }

  private trackMachine(m: Machine): void {
    this.machineSeen.set(m.id, { org: this.appOrg.get(m.app), address: m.address });
    this.machineRegion.set(m.address, m.region);
  }

  private trackPeer(p: Peer, present: boolean): void {
    const key = peerBlockKey(p.address);
    if (!key) return;
    const pk = peerKey(p.org, p.name);
    if (present) {
      this.peerRegion.set(key, p.region);
      this.peerSeen.set(pk, p);
      this.orgPeers.add(p.org, pk);
    } else {
      this.peerRegion.delete(key);
      this.orgPeers.delete(p.org, pk);
    }
  }

  private touch(org: string | undefined): void {
    if (!org) return;
    this.dirty.add(org);
    this.emit(org);
  }

  private emit(org: string | null): void {
    for (const fn of this.listeners) fn(org);
  }

  private apply(c: CatalogChange): void {
    switch (c.kind) {
      case 'org':
        this.touch(c.key);
        return;
      case 'app': {
        const before = this.appOrg.get(c.key);
        if (before) this.orgApps.delete(before, c.key);
        this.appOrg.delete(c.key);
        if (c.op === 'put') {
          this.appOrg.set(c.key, c.value.org);
          this.orgApps.add(c.value.org, c.key);
        }
        this.touch(before);
        if (c.op === 'put' && c.value.org !== before) this.touch(c.value.org);
        // Flycast addresses of the app (also those in other orgs' networks) change by their own events.
        return;
      }
      case 'machine': {
        const before = this.machineSeen.get(c.key);
        if (before) this.machineRegion.delete(before.address);
        this.machineSeen.delete(c.key);
        if (c.op === 'put') this.trackMachine(c.value);
        const now = this.machineSeen.get(c.key);
        this.touch(before?.org);
        if (now && now.org !== before?.org) this.touch(now.org);
        return;
      }
      case 'peer': {
        const org = c.key.slice(0, c.key.indexOf('/'));
        const before = this.peerSeen.get(c.key);
        if (before) this.trackPeer(before, false);
        this.peerSeen.delete(c.key);
        if (c.op === 'put') this.trackPeer(c.value, true);
        this.touch(org);
        return;
      }
      case 'flycast': {
        const before = this.flycastOrg.get(c.key);
        if (before) this.orgFlycast.delete(before, c.key);
        this.flycastOrg.delete(c.key);
        if (c.op === 'put') {
          this.flycastOrg.set(c.key, c.value.org);
          this.orgFlycast.add(c.value.org, c.key);
          this.touch(c.value.org);
        }
        this.touch(before);
        return;
      }
    }
  }
}
